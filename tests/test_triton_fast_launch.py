"""vmamba_kernels/triton/fast_launch.py: direct launches hand the launcher what JITFunction.run would.

Without a GPU (CI): Triton compiles the real kernels for sm_90 (its bundled ptxas needs no GPU) under a
stand-in driver whose launcher records its arguments instead of launching. Every launched kernel of the
backend runs through its raw function twice per configuration, once with `fast_launch=False` (JITFunction.run
every time) and once after a warm-up launch (direct); the two recorded launches must agree argument for
argument. A misaligned view, another dtype and another shape must miss the cache. The same holds for Triton 3.6's
C-launch layout (simulated over this Triton's kernels) and for launches that keep CudaLauncher.__call__.
With a GPU: the raw functions' outputs with and without direct launches, bitwise.
"""
from __future__ import annotations

import gc
import itertools
import os
import sys

import pytest
import torch

triton = pytest.importorskip("triton")

pytestmark = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") == "1",
                                reason="the interpreter runs kernels in Python: no launcher to skip")

F32, F16 = torch.float32, torch.float16
# Triton releases whose CudaLauncher.__call__ only forwards to its C launch, which a direct launch then calls itself
C_LEVEL = ".".join(triton.__version__.split(".")[:2]) in ("3.6", "3.8")


class _Launch:
    """One recorded launch, as the C launcher receives it (CudaLauncher.__call__ forwards to it, a direct launch
    calls it): the head, and per kernel argument its address in a pointer slot (a tensor's data_ptr(), which is
    what the C launcher reads of one; an int is taken as the address) or its type and value elsewhere."""

    def __init__(self, name, pointer_slots, grid, stream, function, coop, pdl, packed, launch_metadata, hooks,
                 scratch, annotations, signature, args):
        # the metadata is read only by launch hooks: JITFunction.run builds it, a direct launch passes None;
        # both must hand over idle hooks (None, or Triton's empty HookChain objects)
        self.hooks_idle = all(h is None or not getattr(h, "calls", (h,)) for h in hooks)
        self.head = (name, grid, stream, function, packed, coop, pdl, scratch, annotations, signature)
        self.args = tuple(("ptr", a.data_ptr() if isinstance(a, torch.Tensor) else (a or 0)) if i in pointer_slots
                          else ("tensor in a scalar slot",) if isinstance(a, torch.Tensor) else (type(a), a)
                          for i, a in enumerate(args))

    def relative_to(self, inputs):
        """The launch with every address told as (input index, byte offset) when it lies in one of `inputs`' tensors,
        else as its 16-byte alignment (a tensor the raw function made): comparable across calls on other inputs."""
        spans = [(i, t.data_ptr(), t.untyped_storage().nbytes()) for i, t in enumerate(inputs)
                 if isinstance(t, torch.Tensor)]

        def tell(v):
            if v[0] != "ptr" or v[1] == 0:
                return v
            for i, p, n in spans:
                if p <= v[1] < p + max(n, 1):
                    return ("input", i, v[1] - p)
            return ("made", v[1] % 16)
        return (self.head, tuple(map(tell, self.args)))

    def __eq__(self, other):
        return self.head == other.head and self.args == other.args

    def __repr__(self):
        return f"Launch{self.head[:2]} args={self.args}"


class _StandInDriver:
    """The parts of a Triton driver that compiling and launching use: an sm_90 target, device 0 (stream 7; 17 on
    device 1), module loading that hands out a new function handle per compiled kernel, and Triton's own
    CudaLauncher (its __call__, as on a GPU) over a recording C-level launch. Each recorded launch tells its
    argument layout ("3.6" or "3.8") and whether CudaLauncher.__call__ made the call (`via_call`)."""

    def __init__(self, record=True):
        from triton.backends.nvidia.driver import CudaLauncher  # noqa: PLC0415

        self.record = record  # False: launches are dropped (timing the host work around them)
        self.launches = []
        self._handles = itertools.count(1000)
        drv = self

        class Utils:
            def load_binary(self, name, kernel, shared, device):
                return 0, next(drv._handles), 32, 0, 1024

            def get_device_properties(self, device):
                return {"max_shared_mem": 232448, "multiprocessor_count": 132, "max_num_regs": 65536,
                        "warpSize": 32, "sm_clock_rate": 1980000, "mem_clock_rate": 2619000, "mem_bus_width": 5120}

            def unload_module(self, module):
                pass

        class Launcher(CudaLauncher):
            def __init__(self, src, metadata):  # what CudaLauncher.__call__ reads; its C launch records
                self.name = metadata.name
                self.pointer_slots = {i for i, ty in enumerate(src.signature.values())
                                      if isinstance(ty, str) and ty.startswith("*")}
                self.num_ctas = getattr(metadata, "num_ctas", 1)
                self.global_scratch_size, self.global_scratch_align = (metadata.global_scratch_size,
                                                                       metadata.global_scratch_align)
                self.profile_scratch_size, self.profile_scratch_align = (metadata.profile_scratch_size,
                                                                         metadata.profile_scratch_align)
                self.launch_cooperative_grid, self.launch_pdl = metadata.launch_cooperative_grid, metadata.launch_pdl
                self.gsan_enabled = False
                self.arg_annotations, self.kernel_signature = ("annotations", self.name), b"signature"
                self.launch = self._record

            def _record(self, gx, gy, gz, stream, function, coop, pdl, *rest):
                if not drv.record:
                    return
                if len(rest) == 9 and rest[6] is self.arg_annotations:
                    # 3.8: metadata, hooks, scratch, annotations, signature, the kernel arguments as a tuple
                    layout, (packed, meta, enter, exit_, gs, ps, annotations, signature, args) = "3.8", rest
                else:  # 3.6: scratch, metadata, hooks, the kernel arguments spread
                    layout, (gs, ps, packed, meta, enter, exit_, *args) = "3.6", rest
                    annotations = signature = None
                launch = _Launch(self.name, self.pointer_slots, (gx, gy, gz), stream, function, coop, pdl, packed,
                                 meta, (enter, exit_), (gs, ps), annotations, signature, args)
                launch.layout = layout
                launch.via_call = sys._getframe(1).f_code is CudaLauncher.__call__.__code__
                drv.launches.append(launch)

        self.utils = Utils()
        self.launcher_cls = Launcher

    def get_current_target(self):
        from triton.backends.compiler import GPUTarget  # noqa: PLC0415

        return GPUTarget("cuda", 90, 32)

    device = 0

    def get_current_device(self):
        return self.device

    def get_current_stream(self, device):
        return 7 + 10 * device

    def get_active_torch_device(self):
        return torch.device("cpu")


def _kernels():
    from vmamba_kernels.triton import cross_scan, dwconv, layer_norm, selective_scan, ss2d_core  # noqa: PLC0415
    from vmamba_kernels.triton.fast_launch import LaunchableKernel  # noqa: PLC0415

    mods = (cross_scan, dwconv, layer_norm, selective_scan, ss2d_core)
    return [v for m in mods for v in vars(m).values() if isinstance(v, LaunchableKernel)]


def _ptxas_missing():
    """Why Triton cannot compile for sm_90 here (its bundled ptxas does not run), or None."""
    try:
        from triton.backends.nvidia.compiler import get_ptxas_version  # noqa: PLC0415

        get_ptxas_version(90)
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    return None


def _native_launch_key():
    """The compiled extension's launch_key (csrc/common/arg_key.h), or why it is not here."""
    try:
        from vmamba_kernels import _C  # noqa: PLC0415
    except Exception as e:  # noqa: BLE001
        return None, f"the extension does not load ({type(e).__name__}: {e}); build it: see the README's set-up"
    fn = getattr(_C, "launch_key", None)
    return fn, None if fn is not None else "the extension was built before launch_key: rebuild it"


@pytest.fixture(params=["native key", "python key"])
def stand_in(monkeypatch, request):
    """The stand-in driver, active for the test; direct launches keyed by the extension's launch_key or by the
    Python loop (both paths of fast_launch.LaunchableKernel.launch)."""
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: test_direct_launch_outputs_gpu checks the real launches")
    missing = _ptxas_missing()
    if missing:
        pytest.skip(f"Triton's ptxas does not run here, so nothing compiles for sm_90 ({missing})")
    from triton.runtime import driver  # noqa: PLC0415

    from vmamba_kernels.triton import dwconv, fast_launch, layer_norm  # noqa: PLC0415

    native = request.param == "native key"
    if native:
        fn, why = _native_launch_key()
        if fn is None:
            pytest.skip(why)
    monkeypatch.setattr(fast_launch, "_NATIVE_KEY", [fast_launch._untried if native else None])

    monkeypatch.setattr(dwconv, "sm_count", lambda device: 132)
    monkeypatch.setattr(layer_norm, "sm_count", lambda device: 132)
    kernels = _kernels()
    assert len(kernels) == 12, [k.fn.__name__ for k in kernels]  # every launched kernel is wrapped
    saved = driver._active
    d = _StandInDriver()
    d.native_key = native
    driver.set_active(d)
    try:
        yield d
        assert fast_launch.native_launch_key() == native or not any(k.launches[1] for k in kernels)
    finally:
        for k in kernels:  # nothing compiled or remembered under the stand-in survives the test
            k.fn.device_caches.clear()
            k.clear()
        gc.collect()  # CompiledKernel.__del__ unloads its module through the driver: the stand-in's, still active
        driver._active = saved


def _compare(d, fn, make_inputs, via_call=not C_LEVEL, layout=None):
    """fn(*inputs) with JITFunction.run only, then direct after a warm-up on other tensors of the same kind:
    the launches must match one for one, and the second pass must have launched directly, through
    CudaLauncher.__call__ or not (`via_call`). `layout`: the direct launches' C argument layout, when it is not the
    one CudaLauncher.__call__ uses (then the annotations and signature, which that layout lacks, are not compared)."""
    import vmamba_kernels as vk  # noqa: PLC0415

    with vk.tuning("triton", fast_launch=False):
        inputs = make_inputs()  # (inputs of a backward come from a forward: launches of their own)
        d.launches.clear()
        fn(*inputs)
    cut = slice(None, 8 if layout else None)
    want = [(h[cut], a) for h, a in (w.relative_to(inputs) for w in d.launches)]
    assert want, "the raw function launched nothing"
    assert all(w.hooks_idle and w.via_call for w in d.launches)
    kernels = _kernels()
    fn(*make_inputs())  # warm-up: remembers the configurations
    inputs = make_inputs()
    before = sum(k.launches[1] for k in kernels)
    d.launches.clear()
    fn(*inputs)
    assert sum(k.launches[1] for k in kernels) - before == len(want), "not every launch went direct"
    assert all(g.hooks_idle for g in d.launches)
    assert [g.via_call for g in d.launches] == [via_call] * len(want)
    assert all(g.layout == layout for g in d.launches) if layout else True
    assert [(h[cut], a) for h, a in (g.relative_to(inputs) for g in d.launches)] == want


def _g(seed=0):
    return torch.Generator().manual_seed(seed)


def _t(*shape, dtype=F16, seed=0):
    return torch.randn(shape, generator=_g(seed)).to(dtype)


CASES = {}


def _case(name):
    def deco(f):
        CASES[name] = f
        return f
    return deco


@_case("cross_scan_cl")
def _cross_scan_cl(L):
    return L.cross_scan_fwd, lambda: (_t(2, 14, 14, 24), "cross2d", True)


@_case("cross_scan_cf_odd")
def _cross_scan_cf(L):
    return L.cross_scan_fwd, lambda: (_t(1, 8, 13, 7), "bidi", False)


@_case("cross_merge_cl")
def _cross_merge_cl(L):
    return L.cross_merge_fwd, lambda: (_t(2, 4, 24, 49), 7, 7, "cross2d", True)


def _scan_inputs(N, dtype=F16, batch=2, KD=16, L=300, K=4):
    def make():
        u, delta = _t(batch, KD, L, dtype=dtype), _t(batch, KD, L, dtype=dtype, seed=1)
        A = -torch.rand(KD, N, generator=_g(2)) - 0.5
        B, C = _t(batch, K, N, L, dtype=dtype, seed=3), _t(batch, K, N, L, dtype=dtype, seed=4)
        return u, delta, A, B, C, torch.randn(KD, generator=_g(5)), torch.randn(KD, generator=_g(6)), True
    return make


@_case("scan_fwd_n1")
def _scan_fwd_n1(L):
    make = _scan_inputs(1)
    return L.selective_scan_fwd, lambda: (*make(), F32)


@_case("scan_fwd_n4_bf16")
def _scan_fwd_n4(L):
    make = _scan_inputs(4, torch.bfloat16)
    return L.selective_scan_fwd, lambda: (*make(), torch.bfloat16)


def _on_test_device(ts):
    """A backward case runs its forward while making its inputs: on the GPU in the GPU test (the stand-in tests skip
    there), else on the CPU under the stand-in driver. The other cases' inputs are moved by the GPU test."""
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    return tuple(t.to(dev) if isinstance(t, torch.Tensor) else t for t in ts)


def _scan_bwd(L, N):
    make = _scan_inputs(N)

    def inputs():
        args = _on_test_device(make())
        _, _, aux = L.selective_scan_fwd(*args, F16)
        return (*args, _t(*args[0].shape, seed=7), aux)
    return L.selective_scan_bwd, inputs


@_case("scan_bwd_n1")
def _scan_bwd_n1(L):
    return _scan_bwd(L, 1)


@_case("scan_bwd_n4")
def _scan_bwd_n4(L):
    return _scan_bwd(L, 4)


def _ln_inputs(cl=True):
    def make():
        x = _t(2, 7, 7, 40) if cl else _t(2, 40, 7, 7)
        return x, _t(*x.shape, seed=1), torch.rand(40, generator=_g(2)) + 0.5, torch.randn(40, generator=_g(3))
    return make


@_case("add_layer_norm_fwd")
def _ln_fwd(L):
    make = _ln_inputs()
    return L.add_layer_norm_fwd, lambda: (*make(), None, 1e-5, True, F16)


@_case("add_layer_norm_bwd")
def _ln_bwd(L):
    make = _ln_inputs(cl=False)

    def inputs():
        x, br, w, b = _on_test_device(make())
        y, s, mean, rstd = L.add_layer_norm_fwd(x, br, w, b, None, 1e-5, False, F16)
        return _t(*x.shape, seed=4), None, s, w, b, mean, rstd, None, True, False, F16
    return L.add_layer_norm_bwd, inputs


def _conv_inputs():
    def make():
        return _t(2, 13, 13, 24), torch.randn(24, 1, 3, 3, generator=_g(1)), torch.randn(24, generator=_g(2))
    return make


@_case("dwconv2d_fwd")
def _conv_fwd(L):
    make = _conv_inputs()
    return L.dwconv2d_fwd, lambda: (*make(), "silu", True)


@_case("dwconv2d_bwd")
def _conv_bwd(L):
    make = _conv_inputs()
    return L.dwconv2d_bwd, lambda: (_t(2, 13, 13, 24, seed=3), *make(), "silu", True)


def _core_inputs(N=1, R=2, D=8, H=5, W=7):
    def make():
        x = _t(1, H, W, D)
        xdbl = _t(1, H * W, 4, R + 2 * N, seed=1)
        dt_w = torch.randn(4, D, R, generator=_g(2)).to(F16)
        A = -torch.rand(4 * D, N, generator=_g(3)) - 0.5
        return x, xdbl, dt_w, A, torch.randn(4 * D, generator=_g(4)), torch.randn(4 * D, generator=_g(5))
    return make


@_case("ss2d_core_fwd")
def _core_fwd(L):
    make = _core_inputs()
    return L.ss2d_core_fwd, lambda: (*make(), "cross2d", True, True, F32)


@_case("ss2d_core_bwd")
def _core_bwd(L):
    make = _core_inputs(N=2)
    return L.ss2d_core_bwd, lambda: (*make(), _t(1, 5, 7, 8, dtype=F32, seed=6), "cross2d", True, True)


@pytest.mark.parametrize("case", sorted(CASES))
def test_direct_launch_matches_jit_run(stand_in, case):
    from vmamba_kernels.triton import launch as L  # noqa: PLC0415

    fn, make = CASES[case](L)
    _compare(stand_in, fn, make)


def test_every_wrapped_kernel_is_covered(stand_in):
    from vmamba_kernels.triton import launch as L  # noqa: PLC0415

    for case in CASES.values():
        fn, make = case(L)
        fn(*make())
    missed = [k.fn.__name__ for k in _kernels() if k.launches == [0, 0]]
    assert not missed, f"kernels no case launches: {missed}"


def test_new_alignment_dtype_or_shape_goes_through_jit_run(stand_in):
    from vmamba_kernels.triton import launch as L  # noqa: PLC0415
    from vmamba_kernels.triton.cross_scan import _cross_kernel  # noqa: PLC0415

    import vmamba_kernels as vk  # noqa: PLC0415

    n = 9 * 9 * 192
    buf = _t(n + 8)
    x = buf[:n].view(1, 9, 9, 192)[..., :24]  # channels-last, strided, 16-byte aligned
    mis = buf[1:n + 1].view(1, 9, 9, 192)[..., :24]  # the same strides, 2 bytes further: misaligned
    assert mis.stride() == x.stride() and x.data_ptr() % 16 == 0 and mis.data_ptr() % 16 != 0
    with vk.tuning("triton", band_scan=None):  # the tiled kernel for every map
        L.cross_scan_fwd(x, "cross2d", True)
        jit0, direct0 = _cross_kernel.launches
        handle_aligned = stand_in.launches[-1].head[3]
        L.cross_scan_fwd(_t(n, seed=1).view(1, 9, 9, 192)[..., :24], "cross2d", True)  # same configuration
        assert _cross_kernel.launches == [jit0, direct0 + 1]
        L.cross_scan_fwd(mis, "cross2d", True)
        assert _cross_kernel.launches == [jit0 + 1, direct0 + 1], "a misaligned tensor reused an aligned kernel"
        assert stand_in.launches[-1].head[3] != handle_aligned  # Triton compiled another specialization
        L.cross_scan_fwd(mis, "cross2d", True)  # remembered too
        assert _cross_kernel.launches == [jit0 + 1, direct0 + 2]
        handle_misaligned = stand_in.launches[-1].head[3]
        L.cross_scan_fwd(buf[4:n + 4].view(1, 9, 9, 192)[..., :24], "cross2d", True)  # 8-byte aligned only
        assert _cross_kernel.launches == [jit0 + 1, direct0 + 3]
        assert stand_in.launches[-1].head[3] == handle_misaligned, "an 8-byte aligned tensor took the aligned kernel"
        L.cross_scan_fwd(x.float(), "cross2d", True)  # another dtype
        assert _cross_kernel.launches == [jit0 + 2, direct0 + 3]
        L.cross_scan_fwd(_t(1, 9, 11, 24), "cross2d", True)  # another shape
        assert _cross_kernel.launches == [jit0 + 3, direct0 + 3]
        with vk.tuning("triton", cross_block_override={(True, False, 24, 9, 9): (16, 16, 32, 4)}):
            L.cross_scan_fwd(x, "cross2d", True)  # the default blocks with 4 warps, not 8: only the meta differs
        assert _cross_kernel.launches == [jit0 + 4, direct0 + 3]
        stand_in.device = 1  # another current device: its own compiled kernel and handles
        L.cross_scan_fwd(x, "cross2d", True)
        assert _cross_kernel.launches == [jit0 + 5, direct0 + 3]
        L.cross_scan_fwd(x, "cross2d", True)  # direct, on the current device's stream
        assert _cross_kernel.launches == [jit0 + 5, direct0 + 4]
        assert stand_in.launches[-1].head[2] == stand_in.launches[-2].head[2] == stand_in.get_current_stream(1)
        stand_in.device = 0
        L.cross_scan_fwd(x, "cross2d", True)
        assert _cross_kernel.launches == [jit0 + 5, direct0 + 5]
        assert stand_in.launches[-1].head[2] == stand_in.get_current_stream(0)


def test_a_tensor_of_another_device_type_goes_through_jit_run(stand_in):
    """Direct launches pass addresses, which the C launcher does not check: a tensor that is not a CUDA one where a
    CUDA one was launched before must miss the cache (on a GPU, Triton's path then refuses a CPU tensor). The
    stand-in's tensors are CPU ones; a subclass that says it is a CUDA tensor stands in for the other kind."""
    from vmamba_kernels.triton import launch as L  # noqa: PLC0415
    from vmamba_kernels.triton.cross_scan import _cross_kernel  # noqa: PLC0415

    class SaysCuda(torch.Tensor):
        is_cuda = property(lambda self: True)

    x = _t(1, 8, 9, 11)
    L.cross_scan_fwd(x, "cross2d", False)
    L.cross_scan_fwd(x, "cross2d", False)
    jit0, direct0 = _cross_kernel.launches
    assert direct0 >= 1
    L.cross_scan_fwd(x.as_subclass(SaysCuda), "cross2d", False)
    assert _cross_kernel.launches == [jit0 + 1, direct0], "a tensor of another device type reused the cached launch"


def _key_cases():
    """Launch argument tuples that differ from the first in one thing Triton can see, or in nothing it can."""
    buf = _t(64)
    other = _t(64, seed=1)
    base = (buf[:16], buf[8:24], 3, True, 1.5, None)
    return [
        base,
        (other[:16], other[8:24], 3, True, 1.5, None),  # other tensors, the same kind: the same key
        (buf[:16].float(), buf[8:24], 3, True, 1.5, None),  # another dtype
        (buf[1:17], buf[8:24], 3, True, 1.5, None),  # misaligned by 2 bytes
        (buf[4:20], buf[8:24], 3, True, 1.5, None),  # 8-byte aligned, not 16-byte
        (buf[:16], buf[8:24], 4, True, 1.5, None),  # another int
        (buf[:16], buf[8:24], 3, 1, 1.5, None),  # an int equal to True
        (buf[:16], buf[8:24], 3, False, 1.5, None),
        (buf[:16], buf[8:24], 3, True, 1.0, None),  # another float
        (buf[:16], buf[8:24], 3, True, 1, None),  # an int equal to the float 1.0 of the case above
        (buf[:16], buf[8:24], 3, True, 1.5, 0),  # 0 for None
        (buf[:16], buf[8:24], 3, True, 1.5, torch.nn.Parameter(buf[:8])),  # a Parameter is a tensor
        (buf[:16], buf[8:24], -(2 ** 63), True, float("nan"), None),  # the ends of the ranges
    ]


def test_native_launch_key_tells_apart_what_the_python_key_tells_apart():
    """csrc/common/arg_key.h's launch_key against fast_launch's Python loop: two argument tuples get the same
    native key exactly when they get the same Python key (a NaN, which is never equal to itself in Python, aside),
    and the addresses are the same."""
    from vmamba_kernels.triton import fast_launch  # noqa: PLC0415

    native, why = _native_launch_key()
    if native is None:
        pytest.skip(why)
    cases = _key_cases()
    got = [native(c) for c in cases]
    want = [fast_launch._python_launch_key(c) for c in cases]
    for c, g, w in zip(cases, got, want):
        assert isinstance(g[0], bytes)
        assert list(g[1]) == list(w[1]) and [type(v) for v in g[1]] == [type(v) for v in w[1]], c
    nan = len(cases) - 1
    for i, j in itertools.combinations(range(nan), 2):
        assert (got[i][0] == got[j][0]) == (want[i][0] == want[j][0]), (cases[i], cases[j])
    assert got[nan][0] == native(cases[nan])[0]  # a NaN argument still hits its entry
    assert len({g[0] for g in got}) == len(got) - 2  # only the first two share a key, and the two misaligned ones


def test_native_launch_key_leaves_what_it_does_not_encode_to_python():
    native, why = _native_launch_key()
    if native is None:
        pytest.skip(why)

    class Sub(torch.Tensor):
        pass

    x = _t(8)
    for odd in (x.as_subclass(Sub), 2 ** 64, [1], "s", torch.float16, x.to_sparse()):
        assert native((x, 1, odd)) is None, odd
    with pytest.raises(TypeError, match="tuple"):
        native([x, 1])
    assert native(()) == (b"", ())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_native_launch_key_tells_a_cuda_tensor_from_a_cpu_one():
    native, why = _native_launch_key()
    if native is None:
        pytest.skip(why)
    x = _t(16)
    xc = x.cuda()
    assert x.data_ptr() % 16 == 0 and xc.data_ptr() % 16 == 0
    assert native((x, 1))[0] != native((xc, 1))[0]
    assert native((xc, 1))[0] == native((torch.empty_like(xc), 1))[0]
    assert native((xc, 1))[1] == (xc.data_ptr(), 1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cpu_tensor_after_cuda_launches_is_refused_not_launched():
    """With the configuration cached from CUDA tensors, a CPU tensor of the same dtype and alignment gets Triton's
    error instead of its host address reaching a kernel."""
    from vmamba_kernels.triton import launch as L  # noqa: PLC0415

    x = _t(1, 8, 9, 11)
    for _ in range(2):
        L.cross_scan_fwd(x.cuda(), "cross2d", False)
    with pytest.raises(ValueError, match="cpu tensor"):
        L.cross_scan_fwd(x, "cross2d", False)
    torch.cuda.synchronize()  # no fault left behind


def test_wrapper_forwards_attributes_and_copies():
    import copy  # noqa: PLC0415

    from vmamba_kernels.triton.cross_scan import _cross_kernel  # noqa: PLC0415

    assert _cross_kernel.arg_names == _cross_kernel.fn.arg_names  # the JIT function's attributes
    assert copy.copy(_cross_kernel).fn is _cross_kernel.fn
    with pytest.raises(AttributeError):
        _cross_kernel.no_such_attribute  # noqa: B018


def test_hooks_and_the_knob_turn_direct_launches_off(stand_in):
    from triton import knobs  # noqa: PLC0415

    from vmamba_kernels.triton import launch as L  # noqa: PLC0415
    from vmamba_kernels.triton.cross_scan import _cross_kernel  # noqa: PLC0415

    import vmamba_kernels as vk  # noqa: PLC0415

    x = _t(1, 8, 9, 11)
    L.cross_scan_fwd(x, "cross2d", False)
    L.cross_scan_fwd(x, "cross2d", False)
    jit0, direct0 = _cross_kernel.launches
    assert direct0 >= 1
    with vk.tuning("triton", fast_launch=False):
        L.cross_scan_fwd(x, "cross2d", False)
    assert _cross_kernel.launches == [jit0 + 1, direct0]
    seen = []
    hook = seen.append
    knobs.runtime.launch_enter_hook.add(hook)  # a profiler's hook: it must see every launch
    try:
        L.cross_scan_fwd(x, "cross2d", False)
    finally:
        knobs.runtime.launch_enter_hook.remove(hook)
    assert _cross_kernel.launches == [jit0 + 2, direct0]
    L.cross_scan_fwd(x, "cross2d", False)
    assert _cross_kernel.launches == [jit0 + 2, direct0 + 1]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("case", sorted(CASES))
def test_direct_launch_outputs_gpu(case):
    import vmamba_kernels as vk  # noqa: PLC0415
    from vmamba_kernels.triton import launch as L  # noqa: PLC0415

    fn, make = CASES[case](L)

    def run():
        out = fn(*[a.cuda() if isinstance(a, torch.Tensor) else a for a in make()])
        out = out if isinstance(out, tuple) else (out,)
        return [o for o in out if o is not None]

    with vk.tuning("triton", fast_launch=False):
        want = run()
    run()
    before = sum(k.launches[1] for k in _kernels())
    got = run()
    assert sum(k.launches[1] for k in _kernels()) > before
    for g, w in zip(got, want):
        assert torch.equal(g, w)


def test_argument_types_and_defaults(stand_in):
    """A value equal as a dict key but not to Triton (True, 1, 1.0) gets its own kernel; a parameter left to its
    default is passed as JITFunction.run's binder passes it."""
    import triton.language as tl  # noqa: PLC0415

    from vmamba_kernels.triton.fast_launch import launchable  # noqa: PLC0415

    @launchable
    @triton.jit
    def scale(x_ptr, n, f, BLOCK: tl.constexpr, TWICE: tl.constexpr = False):
        i = tl.arange(0, BLOCK)
        v = tl.load(x_ptr + i, mask=i < n) * f
        if TWICE:
            v = v * 2
        tl.store(x_ptr + i, v, mask=i < n)

    x = torch.zeros(64)
    try:
        handles = []
        for f in (True, 1, 1.0, 1, True, 1.0):
            d0 = scale.launches[1]
            scale[(1,)](x, 64, f, BLOCK=64)
            handles.append(stand_in.launches[-1].head[3])
            assert stand_in.launches[-1].args[-1] == (bool, False)  # TWICE's default, passed as the binder does
        assert len(set(handles[:3])) == 3, "True, 1 and 1.0 shared a compiled kernel"
        assert handles[3:] == [handles[1], handles[0], handles[2]] and scale.launches == [3, 3]
        scale[lambda meta: (1,)](x, 64, 2.0, BLOCK=64, TWICE=True)  # a grid function: through JITFunction.run
        assert scale.launches == [4, 3] and stand_in.launches[-1].args[-1] == (bool, True)
        with pytest.raises(Exception) as e:  # an unhashable argument: Triton's own answer, not a TypeError of ours
            scale[(1,)](x, 64, [2.0], BLOCK=64)
        assert "unhashable" not in str(e.value) and scale.launches == [5, 3]
    finally:
        scale.fn.device_caches.clear()


def _scale_by():
    """A kernel of the tests' own with a runtime parameter that has a default (clear it and its device_caches after
    use, before the stand-in driver goes: their compiled kernels unload through it)."""
    import triton.language as tl  # noqa: PLC0415

    from vmamba_kernels.triton.fast_launch import launchable  # noqa: PLC0415

    @launchable
    @triton.jit
    def scale_by(x_ptr, n, BLOCK: tl.constexpr, f=1.0):
        i = tl.arange(0, BLOCK)
        tl.store(x_ptr + i, tl.load(x_ptr + i, mask=i < n) * f, mask=i < n)
    return scale_by


def test_keyword_arguments_and_options_reach_the_launcher_as_jit_run_passes_them(stand_in):
    """A parameter with a default given by keyword, or left to its default, and launch options (launch_pdl: the C
    launch's cooperative and pdl flags): the direct launch equals JITFunction.run's, on a 3-D grid."""
    import vmamba_kernels as vk  # noqa: PLC0415

    k = _scale_by()
    x = torch.zeros(64)
    try:
        for meta in (dict(f=3.0), dict(), dict(launch_pdl=True), dict(f=0.5, num_warps=2)):
            with vk.tuning("triton", fast_launch=False):
                k[(2, 3, 4)](x, 64, BLOCK=64, **meta)
            want = stand_in.launches[-1]
            direct = k.launches[1]
            k[(2, 3, 4)](x, 64, BLOCK=64, **meta)  # remembered
            k[(2, 3, 4)](x, 64, BLOCK=64, **meta)
            assert k.launches[1] == direct + 1 and stand_in.launches[-1] == want, meta
            assert want.args[-1] == (float, meta.get("f", 1.0)) and want.head[5:7] == (False, "launch_pdl" in meta)
    finally:
        k.fn.device_caches.clear()
        k.clear()


def test_meta_names_are_part_of_the_key(stand_in):
    import triton.language as tl  # noqa: PLC0415

    from vmamba_kernels.triton.fast_launch import launchable  # noqa: PLC0415

    @launchable
    @triton.jit
    def pick(x_ptr, A: tl.constexpr, B: tl.constexpr):
        if A:
            tl.store(x_ptr, 1.0)
        if B:
            tl.store(x_ptr + 1, 2.0)

    x = torch.zeros(2)
    try:
        for _ in range(2):
            pick[(1,)](x, A=True, B=False)
        assert pick.launches == [1, 1]
        handle = stand_in.launches[-1].head[3]
        pick[(1,)](x, B=True, A=False)  # the same values in the same order, under the other names
        assert pick.launches == [2, 1] and stand_in.launches[-1].head[3] != handle
    finally:
        pick.fn.device_caches.clear()
        pick.clear()


def test_remembered_configurations_are_bounded(stand_in, monkeypatch):
    from vmamba_kernels.triton import fast_launch  # noqa: PLC0415

    monkeypatch.setattr(fast_launch, "_MAX_ENTRIES", 2)
    k = _scale_by()
    x = torch.zeros(64)
    try:
        for block in (16, 32, 64):
            for _ in range(2):
                k[(1,)](x, 64, BLOCK=block)
        assert k.launches == [3, 3] and len(k._cache) == 1  # the third configuration found the cache full
        k[(1,)](x, 64, BLOCK=16)  # forgotten: JITFunction.run again
        assert k.launches == [4, 3] and len(k._cache) == 2
        k.clear()
        k[(1,)](x, 64, BLOCK=16)
        assert k.launches == [5, 3] and len(k._cache) == 1
    finally:
        k.fn.device_caches.clear()
        k.clear()


def test_direct_launches_are_keyed_by_the_chosen_key(stand_in):
    """The fixture's choice: the extension's launch_key (bytes), looked up at the first launch, or the Python loop."""
    from vmamba_kernels.triton import fast_launch, launch as L  # noqa: PLC0415
    from vmamba_kernels.triton.cross_scan import _cross_kernel  # noqa: PLC0415

    assert not fast_launch.native_launch_key()  # not looked up yet (native key) or off (Python key)
    x = _t(1, 8, 9, 11)
    for _ in range(2):
        L.cross_scan_fwd(x, "cross2d", False)
    assert _cross_kernel.launches[1] >= 1
    assert fast_launch.native_launch_key() == stand_in.native_key
    keys = [key[-1] for key in _cross_kernel._cache]
    assert keys and all(type(k) is (bytes if stand_in.native_key else tuple) for k in keys)


@pytest.mark.parametrize("layout", ["3.6", None])
@pytest.mark.parametrize("case", sorted(CASES))
def test_other_launcher_layouts_hand_over_the_same(stand_in, monkeypatch, case, layout):
    """Triton 3.6's C launch (its arguments laid out otherwise; simulated over this Triton's compiled kernels) and
    the launcher's __call__ (any other Triton: layout None) get what JITFunction.run hands the launcher."""
    from vmamba_kernels.triton import fast_launch, launch as L  # noqa: PLC0415

    monkeypatch.setattr(fast_launch, "_LAYOUT", layout)
    fn, make = CASES[case](L)
    _compare(stand_in, fn, make, via_call=layout is None, layout=layout)


def test_c_level_launch_only_where_call_would_only_forward(monkeypatch):
    """_c_launch: the C launch of a CudaLauncher of Triton 3.6 or 3.8 needing no scratch and no sanitizer; None for
    another launcher (its own __call__, other attributes) and where __call__ does more than forward."""
    from vmamba_kernels.triton import fast_launch  # noqa: PLC0415

    assert fast_launch._LAYOUT == (".".join(triton.__version__.split(".")[:2]) if C_LEVEL else None)
    launcher_cls = _StandInDriver().launcher_cls

    def launcher(cls=launcher_cls, **attrs):
        run = object.__new__(cls)  # the attributes CudaLauncher.__init__ sets that _c_launch reads
        vals = dict(launch=print, launch_cooperative_grid=False, launch_pdl=True, global_scratch_size=0,
                    profile_scratch_size=0, gsan_enabled=False, arg_annotations="ann", kernel_signature=b"sig")
        run.__dict__.update({k: v for k, v in {**vals, **attrs}.items() if v is not None})
        return run

    class OwnCall(launcher_cls):
        def __call__(self, *args):
            pass

    plain = launcher()
    monkeypatch.setattr(fast_launch, "_LAYOUT", "3.8")
    assert fast_launch._c_launch(plain) == (print, False, True, "ann", b"sig")
    for attrs in (dict(global_scratch_size=256), dict(profile_scratch_size=256), dict(gsan_enabled=True),
                  dict(launch_pdl=None), dict(cls=OwnCall)):
        assert fast_launch._c_launch(launcher(**attrs)) is None, attrs
    monkeypatch.setattr(fast_launch, "_LAYOUT", "3.6")
    assert fast_launch._c_launch(plain) == (print, False, True, None, None)
    monkeypatch.setattr(fast_launch, "_LAYOUT", None)
    assert fast_launch._c_launch(plain) is None


@pytest.mark.parametrize("knob", ["enter hook", "exit hook", "plain function hook", "debug", "stages inspection hook",
                                  "instrumentation"])
def test_each_knob_that_changes_a_launch_turns_direct_launches_off(knob):
    from triton import knobs  # noqa: PLC0415

    from vmamba_kernels.triton import fast_launch  # noqa: PLC0415

    def hook(*args):
        return None

    assert fast_launch._direct_hooks() == (None, None)
    chain = {"enter hook": knobs.runtime.launch_enter_hook, "exit hook": knobs.runtime.launch_exit_hook}.get(knob)
    with knobs.runtime.scope(), knobs.compilation.scope():
        if chain is not None:
            chain.add(hook)
        elif knob == "plain function hook":  # Triton before 3.6 keeps a hook as a plain function
            knobs.runtime.launch_enter_hook = hook
        elif knob == "debug":
            knobs.runtime.debug = True
        elif knob == "stages inspection hook":
            knobs.runtime.add_stages_inspection_hook = hook
        else:
            knobs.compilation.instrumentation_mode = "consan"
        try:
            assert fast_launch._direct_hooks() is None
        finally:
            if chain is not None:
                chain.remove(hook)
    assert fast_launch._direct_hooks() == (None, None)


def test_a_keyword_argument_of_another_type_gets_its_own_kernel(stand_in):
    """As for positional arguments (test_argument_types_and_defaults): 2 == 2.0 == 2 as dict keys, not for Triton."""
    k = _scale_by()
    x = torch.zeros(64)
    try:
        for _ in range(2):
            k[(1,)](x, 64, BLOCK=64, f=2)
        handle = stand_in.launches[-1].head[3]
        k[(1,)](x, 64, BLOCK=64, f=2.0)  # JITFunction.run compiles a kernel for a float f
        assert stand_in.launches[-1].head[3] != handle and stand_in.launches[-1].args[-1] == (float, 2.0)
    finally:
        k.fn.device_caches.clear()
        k.clear()


# ---- host-side helpers of the launch functions --------------------------------------------------------------------
def test_host_cdiv_is_ceil_division_and_replaces_tritons_in_launch_code():
    """The launch functions size their grids with tuning.cdiv, not triton.cdiv, a constexpr_function whose host call
    costs far more (reports/logs/2026-12-07_host_cdiv.md). Kernels keep tl.cdiv."""
    import pathlib

    from vmamba_kernels.triton.tuning import cdiv
    for a in range(0, 70):
        for b in (1, 2, 3, 7, 16, 64):
            assert cdiv(a, b) == -(-a // b) == (a + b - 1) // b
    assert cdiv(2 ** 60 + 1, 2 ** 20) == 2 ** 40 + 1  # integer arithmetic: exact where a float ceil would not be
    pkg = pathlib.Path(__file__).resolve().parents[1] / "vmamba_kernels" / "triton"
    slow = [f"{p.name}:{i}" for p in sorted(pkg.glob("*.py")) for i, line in enumerate(p.read_text().splitlines(), 1)
            if "triton.cdiv(" in line or "triton.next_power_of_2(" in line]
    assert not slow, f"host launch code calls Triton's constexpr_function helpers: {slow}"
