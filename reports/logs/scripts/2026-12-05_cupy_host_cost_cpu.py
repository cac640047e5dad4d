"""Host cost of the cupy backend's raw functions on a machine without a GPU or CuPy: the stand-in CuPy of
tests/test_cupy_sources.py's fake_launch (launches recorded as no-ops), CPU tensors, VMamba-T stage-3 shapes at
batch 1 (fp16). What remains is this project's Python around a launch (planning, struct packing, allocation).
    python reports/logs/scripts/2026-12-05_cupy_host_cost_cpu.py TREE
TREE: a checkout to import vmamba_kernels from (run from inside it, for its tests.scan_cases).
"""
import contextlib
import importlib
import sys
import timeit
import types

tree = sys.argv[1]
sys.path.insert(0, tree)
import torch  # noqa: E402

torch.set_num_threads(1)


class _Kernel:
    def __init__(self, name):
        self.name, self.attributes, self.max_dynamic_shared_size_bytes = name, {}, 0
        self.kernel = type("F", (), {"ptr": 0})()

    def __call__(self, grid, block, args, shared_mem=0):
        pass


class _RawModule:
    def __init__(self, code, options, name_expressions):
        pass

    def get_function(self, name):
        return _Kernel(name)


fake = types.ModuleType("cupy")
fake.RawModule = _RawModule
fake.cuda = types.SimpleNamespace(
    Device=lambda i: contextlib.nullcontext(),
    Stream=types.SimpleNamespace(from_external=lambda ref: contextlib.nullcontext()),
    driver=types.SimpleNamespace(occupancyMaxActiveBlocksPerMultiprocessor=lambda f, b, s: 7))
sys.modules["cupy"] = fake
torch.cuda.current_device = lambda: 0
torch.cuda.get_device_properties = lambda i: types.SimpleNamespace(multi_processor_count=132)
torch.cuda.current_stream = lambda i=None: types.SimpleNamespace(cuda_stream=0)
torch._C._cuda_getCurrentRawStream = lambda i: 0
L = importlib.import_module("vmamba_kernels.cupy.launch")
from tests.scan_cases import make_inputs  # noqa: E402


def best_us(f, n=5000):
    return min(timeit.repeat(f, number=n, repeat=5)) / n * 1e6


ins = make_inputs(1, 1536, 196, 1, 4, dtype=torch.float16, requires_grad=False)
out, last, aux = L.selective_scan_fwd(*ins, True, torch.float16)
dout = torch.randn_like(out)
x, y = torch.randn(1, 384, 14, 14).half(), torch.randn(1, 4, 384, 196).half()
print(f"tree {tree}: us per raw call (best of 5), launches stubbed")
print(f"  selective_scan_fwd  {best_us(lambda: L.selective_scan_fwd(*ins, True, torch.float16)):7.2f}")
print(f"  selective_scan_bwd  {best_us(lambda: L.selective_scan_bwd(*ins, True, dout, aux), 1000):7.2f}")
print(f"  cross_scan_fwd      {best_us(lambda: L.cross_scan_fwd(x, 'cross2d', False)):7.2f}")
print(f"  cross_merge_fwd     {best_us(lambda: L.cross_merge_fwd(y, 14, 14, 'cross2d', False)):7.2f}")
