"""The cupy backend runs the cuda extension's own kernels: CPU checks (no GPU, no CuPy) that it has no
kernel source of its own, that the csrc/ headers it compiles are torch-free and compile under nvcc
alone and under NVRTC (every template instance it may launch), and that its launch rules
(vmamba_kernels/cupy/plan.py) agree with the extension's C++ ones (tests/tools/plan_harness.cu, built
here as host code) on shapes, alignments and knobs, down to every field of the kernel argument structs.
The GPU behaviour of the backend is tests/test_cupy.py."""
from __future__ import annotations

import itertools
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.test_cupy import IN_CI, _nvcc
from vmamba_kernels import _alloc
from vmamba_kernels.cupy import plan as P
from vmamba_kernels.cupy import sources as S

ROOT = Path(__file__).resolve().parent.parent
CUPY_DIR = ROOT / "vmamba_kernels" / "cupy"


def _need_nvcc():
    nvcc = _nvcc()
    if nvcc is None:
        if IN_CI:
            pytest.fail("nvcc not found: CI must have nvcc")
        pytest.skip("nvcc not found (PATH, $CUDA_HOME, /usr/local/cuda-13.0)")
    return nvcc


# ---- one source ---------------------------------------------------------------------------------------
def test_cupy_backend_has_no_kernel_sources_of_its_own():
    own = [p.relative_to(ROOT) for p in CUPY_DIR.rglob("*") if p.suffix in (".cu", ".cuh", ".h", ".cpp")]
    assert own == [], f"the cupy backend compiles csrc/; kernel sources under vmamba_kernels/cupy: {own}"
    assert S.CSRC.resolve() == (ROOT / "csrc").resolve()
    assert S.missing_reason() is None
    for header in (S.SCAN_HEADER, S.CROSS_HEADER):
        assert f'#include "{header}"' in S.source(header)
    assert f"-I{ROOT / 'csrc'}" in S.options()


def _reachable_headers(start: Path) -> set:
    seen, todo = set(), [start]
    while todo:
        p = todo.pop().resolve()
        if p in seen:
            continue
        seen.add(p)
        for inc in re.findall(r'^\s*#\s*include\s+"([^"]+)"', p.read_text(), flags=re.M):
            todo.append(p.parent / inc)
    return seen


def test_kernel_headers_are_torch_free():
    for header in (S.SCAN_HEADER, S.CROSS_HEADER):
        for p in _reachable_headers(ROOT / "csrc" / header):
            text = p.read_text()
            bad = re.findall(r"^\s*#\s*include\s+[<\"](torch|ATen|c10)/", text, flags=re.M)
            assert not bad, f"{p.relative_to(ROOT)} includes {bad}: the cupy backend compiles it without torch"
            assert "common.h\"" not in text, f"{p.relative_to(ROOT)} includes common/common.h (ATen)"


def test_kernel_headers_compile_with_nvcc_without_torch(tmp_path):
    nvcc = _need_nvcc()
    src = tmp_path / "alone.cu"
    src.write_text(f'#include "{S.SCAN_HEADER}"\n#include "{S.CROSS_HEADER}"\n')
    r = subprocess.run([nvcc, "-std=c++17", "-arch=sm_90", f"-I{ROOT / 'csrc'}", "-c", str(src), "-o",
                        str(tmp_path / "alone.o")], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]


# ---- NVRTC: every instance the backend may launch -----------------------------------------------------
def _nvrtc():
    from tests.tools import nvrtc

    if nvrtc.find() is None:
        msg = "libnvrtc not found (torch's nvidia wheel, $CUDA_HOME/lib64, /usr/local/cuda/lib64)"
        if IN_CI:
            pytest.fail(msg + " -- CI installs torch's CUDA wheels, which bring it")
        pytest.skip(msg)
    if not S.cuda_include_dirs():
        pytest.skip("no CUDA include folder with cuda_fp16.h")
    return nvrtc


@pytest.mark.parametrize("header,names", [(S.SCAN_HEADER, S.all_scan_names()), (S.CROSS_HEADER, S.all_cross_names())],
                         ids=["scan", "cross"])
def test_every_instance_compiles_with_nvrtc(header, names):
    """PTX for sm_90 without optimization (-G): every template instantiated and code-generated, in seconds
    (optimized, the scan instances take a minute here; the extension builds the same code optimized)."""
    nvrtc = _nvrtc()
    ok, log, lowered, ptx = nvrtc.compile_names(S.source(header), names, S.options() + ("-arch=compute_90", "-G"))
    assert ok, log[-6000:]
    assert set(lowered) == set(names), set(names) - set(lowered)
    # the kernels are externally visible (a named inline namespace under NVRTC, not the unnamed one)
    assert all("_GLOBAL__N_" not in v for v in lowered.values()), lowered


def test_every_planned_kernel_has_an_instance():
    names = set(S.all_scan_names()) | set(S.all_cross_names())
    for t in ("float32", "float16", "bfloat16"):
        for o in sorted({"float32", t}):
            for kernel, targs in (("fwd_kernel", ()), ("fwd_n1_kernel", ()), ("fwd_n1_packed_kernel", ()),
                                  ("fwd_seq_kernel", (4,)), ("fwd_seq_kernel", (8,)), ("fwd_seq_kernel", (16,))):
                assert S.scan_fwd_name(kernel, t, o, *targs) in names
    for dt in ("float32", "float16", "bfloat16"):
        eb = P.ELEM_BYTES[dt]
        for v in (1, 2, 4, 8):
            kv = P._kernel_vec(v, eb)
            for k in ("cross_scan_plane_kernel", "cross_scan_tiled_kernel", "cross_scan_band_kernel",
                      "cross_merge_plane_kernel", "cross_merge_tiled_kernel"):
                assert S.cross_name(k, dt, kv) in names, (k, dt, kv)


# ---- the launch rules: plan.py against the C++ ----------------------------------------------------------
@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    nvcc = _need_nvcc()
    exe = tmp_path_factory.mktemp("plan") / "plan_harness"
    r = subprocess.run([nvcc, "-std=c++17", "-O1", "-x", "cu", str(ROOT / "tests" / "tools" / "plan_harness.cu"),
                        "-o", str(exe)], capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith("VMAMBA_")}  # knobs unset unless a query sets them

    def ask(queries):
        out = subprocess.run([str(exe)], input="\n".join(queries) + "\n", capture_output=True, text=True, env=env,
                             timeout=300)
        assert out.returncode == 0, out.stderr[-3000:]
        lines = out.stdout.strip().splitlines()
        assert len(lines) == len(queries)
        return [dict(kv.split("=", 1) for kv in ln.split()) for ln in lines]

    return ask


def _flat(rec) -> list:
    out = []
    for name in rec.dtype.names:
        v = rec[name]
        out += _flat(v) if v.dtype.names else [int(v)]
    return out


def test_struct_layouts_match_the_cpp(harness):
    got = harness(["layout"])[0]
    for cname, dt in (("FwdParams", P.FWD_PARAMS), ("BwdParams", P.BWD_PARAMS), ("PlaneArgs", P.PLANE_ARGS),
                      ("TileArgs", P.TILE_ARGS), ("DirectArgs", P.DIRECT_ARGS), ("FastDivmod", P.DIVMOD)):
        assert int(got[f"sizeof.{cname}"]) == dt.itemsize, cname
        cpp = {k.split(".", 1)[1]: int(v) for k, v in got.items() if k.startswith(cname + ".")}
        if cname != "FastDivmod":
            assert list(cpp) == list(dt.names), (cname, list(cpp), dt.names)
            assert cpp == {n: dt.fields[n][1] for n in dt.names}, cname


SCAN_SHAPES = [  # (batch, KD, L, N, K): VMamba v2 stages, vanilla (d_state 16), awkward sizes
    (1, 4, 1, 1, 1), (2, 384, 3136, 1, 4), (2, 768, 784, 1, 4), (2, 1536, 196, 1, 4), (2, 3072, 49, 1, 4),
    (64, 384, 3136, 1, 4), (128, 3072, 49, 1, 4), (3, 24, 129, 1, 4), (1, 8, 257, 1, 1), (2, 8, 33, 1, 1),
    (1, 6, 65, 4, 1), (2, 384, 3136, 16, 4), (16, 768, 784, 16, 4), (64, 1536, 196, 16, 4), (1, 24, 1031, 64, 4),
    (2, 16, 197, 16, 4), (4, 96, 49, 8, 4), (1, 12, 7, 2, 4), (7, 40, 300, 5, 4), (2, 8, 0, 16, 4),
    (0, 8, 33, 1, 4),
]


def test_forward_plan_matches_the_cpp(harness):
    queries, expect = [], []
    for (batch, KD, L, N, K), (t, o), (au, ao), warps, (smr, pr) in itertools.product(
            SCAN_SHAPES, (("float16", "float32"), ("float32", "float32"), ("bfloat16", "bfloat16")),
            ((4096, 8192), (4098, 8200)), (528, 1), (("", ""), ("0", "3"))):
        if L == 0 or batch == 0:
            continue
        k = P.Knobs(scan_seq_min_rows=smr, scan_packed_rows=pr)
        addrs = {"u": au, "delta": au + 1024, "B": au, "C": au + 64, "out": ao}
        lp = P.fwd_plan(batch, KD, L, N, K, t, o, addrs, warps, k)
        queries.append(f"fwd {batch} {KD} {L} {N} {K} {P.ELEM_BYTES[t]} {P.ELEM_BYTES[o]} {au} {au + 1024} {au} "
                       f"{au + 64} {ao} {warps} {P.seq_min_rows(k)} {P.packed_rows_knob(k)}")
        expect.append((lp, L))
    for got, (lp, L) in zip(harness(queries), expect):
        kernel = {"fwd_n1_packed_kernel": 0, "fwd_n1_kernel": 1, "fwd_kernel": 5}.get(lp.kernel)
        if lp.kernel == "fwd_seq_kernel":
            kernel = {4: 2, 8: 3, 16: 4}[lp.targs[2]]
        assert int(got["kernel"]) == kernel, (got, lp)
        assert (int(got["grid"]),) == lp.grid and (int(got["block"]),) == lp.block, (got, lp)
        if lp.kernel == "fwd_n1_packed_kernel":
            assert [v for _, v in lp.extra] == [int(got["rpw"]), bool(int(got["piece8"])), int(got["out_piece"])]
        if lp.kernel == "fwd_seq_kernel":
            assert lp.extra == (("i4", int(got["bpg"])),)
        assert int(got["lpr"]) == P.lanes_per_row(L) and int(got["nch"]) == P.num_chunks(L)


def test_backward_plan_matches_the_cpp(harness):
    queries, expect = [], []
    for (batch, KD, L, N, K), sms, (smr, forced) in itertools.product(SCAN_SHAPES, (132, 7), (("", ""), ("0", "1"),
                                                                                              ("100000000", "3"))):
        k = P.Knobs(scan_seq_min_rows=smr, scan_bwd_splits=forced)
        G = KD // K
        seq = P.use_seq(N, batch * KD, P.seq_min_rows(k))
        S_ = P.splits(batch, K, G, N, L, sms, seq, k)
        lps = P.bwd_plan(batch, KD, L, N, K, S_, seq, "float16", "float32")
        queries.append(f"bwd {batch} {KD} {L} {N} {K} {sms} {P.seq_min_rows(k)} {P._atoi(forced) if forced else 0}")
        expect.append((seq, S_, lps))
    for got, (seq, S_, lps) in zip(harness(queries), expect):
        assert bool(int(got["seq"])) == seq and int(got["S"]) == S_, got
        by = {lp.kernel: lp for lp in lps}
        main = [lp for lp in lps if not lp.kernel.startswith("finalize")]
        kernel = 0
        if main:
            m = main[0]
            kernel = {"bwd_n1_kernel": 1, "bwd_kernel": 4, "bwd_n1_one_kernel": 5}.get(m.kernel) or {8: 2, 16: 3}[m.targs[2]]
            assert (int(got["grid"]),) == m.grid and (int(got["block"]),) == m.block, got
        assert int(got["kernel"]) == kernel, got
        bc = by.get("finalize_bc_kernel")
        assert int(got["bc_grid"]) == (bc.grid[0] if bc else 0), got
        if bc:
            assert bc.extra == (("i8", int(got["bc_elems"])), ("i4", S_))
        assert int(got["small_grid"]) == by["finalize_small_kernel"].grid[0], got


CROSS_MAPS = [(1, 96, 56, 56), (2, 192, 28, 28), (2, 384, 14, 14), (2, 768, 7, 7), (1, 5, 13, 7), (2, 8, 1, 9),
              (1, 3, 200, 200), (2, 16, 64, 64), (1, 64, 3, 129), (1, 2048, 7, 7), (3, 6, 46, 46), (2, 96, 40, 40),
              (1, 64, 32, 32), (1, 96, 45, 45)]
KNOB_SETS = [P.Knobs(), P.Knobs(cross_max_vec="2"), P.Knobs(cross_path="direct"), P.Knobs(cross_cl_tiled="1"),
             P.Knobs(cross_cl_tiled="b", cross_cl_band="5"), P.Knobs(cross_cl_tiled="1", cross_cl_tile="5x6x8"),
             P.Knobs(cross_smem_kb="100"), P.Knobs(cross_cl_tiled="0"), P.Knobs(cross_smem_kb="16")]


def _cross_cases():
    for (B, C, H, W), mode, cl, dt, (ain, aout), k in itertools.product(
            CROSS_MAPS, (P.CROSS2D, P.UNIDI, P.BIDI), (False, True), ("float32", "float16"),
            ((4096, 8192), (4100, 8194)),
            KNOB_SETS):
        if k != P.Knobs() and (mode != P.CROSS2D or (ain, aout) != (4096, 8192)):
            continue  # the knobs on cross2d and aligned data only: keeps the grid small
        yield B, C, H, W, mode, cl, dt, ain, aout, k


def test_cross_plan_matches_the_cpp(harness):
    cases = list(_cross_cases())
    queries = []
    for B, C, H, W, mode, cl, dt, ain, aout, k in cases:
        for op in ("scan", "merge"):
            knobs = " ".join(getattr(k, f) or "-" for f in P.Knobs.__dataclass_fields__)
            queries.append(f"cross {op} {B} {C} {H} {W} {mode} {int(cl)} {P.DTYPE_CODE[dt]} {ain} {aout} 0 {knobs}")
    answers = harness(queries)
    kinds = set()
    for i, (B, C, H, W, mode, cl, dt, ain, aout, k) in enumerate(cases):
        for j, merge in enumerate((False, True)):
            got = answers[2 * i + j]
            prob = P.CrossProblem(B, C, H, W, mode, cl, dt, ain, aout)
            lp, d = P.cross_launch(prob, merge, k)
            ctx = (B, C, H, W, mode, cl, dt, ain, aout, k, merge, lp.kernel)
            assert (int(got["tiled"]), int(got["band"]), int(got["vec"]), int(got["total"])) == (
                d.tiled, d.band, d.vec, d.total), (ctx, got)
            assert (int(got["grid"]), int(got["smem"])) == (lp.grid[0], lp.smem), (ctx, got)
            want = ";".join(",".join(str(v) for v in _flat(a)) for a in lp.extra)
            assert got["args"] == want, (ctx, got["args"], want)
            kinds.add(lp.kernel)
    # the grid reaches every kernel kind
    assert kinds == {"cross_scan_plane_kernel", "cross_merge_plane_kernel", "cross_scan_tiled_kernel",
                     "cross_merge_tiled_kernel", "cross_scan_band_kernel", "cross_scan_direct_kernel",
                     "cross_merge_direct_kernel"}, kinds


def test_fast_divmod_matches_division():
    for d in (1, 2, 3, 7, 49, 196, 3136, 65535, 1 << 20, (1 << 31) - 1):
        d_, m, s = P.fast_divmod(d)
        for n in (0, 1, d - 1, d, d + 1, 12345, (1 << 31) - 1):
            q = ((((n * m) >> 32) + n) >> s) & P.U32
            assert q == n // d, (d, n)


def test_constants_come_from_the_headers():
    c = P.constants()
    text = (ROOT / "csrc" / "selective_scan" / "selective_scan.h").read_text()
    assert c["kItems"] == int(re.search(r"constexpr int kItems = (\d+);", text).group(1))
    assert c["kChunk"] == 32 * c["kItems"]
    assert set(c) == {n for names in P.HEADER_CONSTANTS.values() for n in names}
    assert np.dtype(P.FWD_PARAMS).itemsize % 8 == 0


# ---- launch.py end to end with a stand-in CuPy (records the launches instead of running them) ----------
class _FakeKernel:
    """A RawKernel stand-in; launches go through its Function (`.kernel`), as launch._run makes them."""

    def __init__(self, name, calls):
        self.name, self.calls = name, calls
        self.attributes = {}
        self.max_dynamic_shared_size_bytes = 0
        self.kernel = _FakeFunction(self)


class _FakeFunction:
    ptr = 0

    def __init__(self, raw):
        self.raw = raw

    def __call__(self, grid, block, args, shared_mem=0, stream=None):
        assert stream is not None, "a launch must name torch's stream"
        r = self.raw
        r.calls.append((r.name, grid, block, args, shared_mem, r.max_dynamic_shared_size_bytes))


@pytest.fixture()
def fake_launch(monkeypatch):
    import contextlib
    import importlib
    import sys
    import types

    import torch

    calls, compiled = [], []
    allowed = set(S.all_scan_names()) | set(S.all_cross_names())

    class RawModule:
        def __init__(self, code, options, name_expressions):
            assert code.startswith("// csrc digest") and tuple(options) == S.options()
            assert len(name_expressions) == 1 and name_expressions[0] in allowed, name_expressions
            compiled.append(name_expressions[0])

        def get_function(self, name):
            return _FakeKernel(name, calls)

    fake = types.ModuleType("cupy")
    fake.RawModule = RawModule
    fake.cuda = types.SimpleNamespace(
        Device=lambda i: contextlib.nullcontext(),
        Stream=types.SimpleNamespace(from_external=lambda ref: types.SimpleNamespace(ptr=ref.ptr)),
        driver=types.SimpleNamespace(occupancyMaxActiveBlocksPerMultiprocessor=lambda f, b, s: 7),
        runtime=types.SimpleNamespace(getDevice=lambda: 0))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.delitem(sys.modules, "vmamba_kernels.cupy.launch", raising=False)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda i=None: types.SimpleNamespace(cuda_stream=0))
    monkeypatch.setattr(torch._C, "_cuda_getCurrentRawStream", lambda i: 0, raising=False)  # what _run reads
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(multi_processor_count=132))
    for f in P.Knobs.__dataclass_fields__:
        monkeypatch.delenv("VMAMBA_" + f.upper(), raising=False)
    import vmamba_kernels.cupy as pkg

    # the stand-in module must not outlive the test: monkeypatch gives sys.modules and the package attribute
    # their earlier values back after this fixture's teardown drops the stand-in
    monkeypatch.delattr(pkg, "launch", raising=False)
    launch = importlib.import_module("vmamba_kernels.cupy.launch")
    yield launch, calls, compiled
    sys.modules.pop("vmamba_kernels.cupy.launch", None)
    if vars(pkg).get("launch") is launch:
        delattr(pkg, "launch")


def _fields(arr) -> dict:
    return {n: arr[n] for n in arr.dtype.names}


@pytest.mark.parametrize("L,N", [(196, 1), (3136, 1), (49, 16), (300, 4)])
def test_launch_module_builds_the_planned_launches(fake_launch, L, N):
    import torch

    from tests.scan_cases import make_inputs

    launch, calls, compiled = fake_launch
    ins = make_inputs(2, 24, L, N, 4, dtype=torch.float16, requires_grad=False)
    u, delta, A, B, C, D, bias = ins
    out, last, aux = launch.selective_scan_fwd(*ins, True, torch.float32)
    assert out.dtype == torch.float32 and aux.shape == (2, 24, P.num_chunks(L), N)
    name, grid, block, args, smem, _ = calls[-1]
    lp = P.fwd_plan(2, 24, L, N, 4, "float16", "float32", {"u": u.data_ptr(), "delta": delta.data_ptr(),
                    "B": B.data_ptr(), "C": C.data_ptr(), "out": out.data_ptr()}, 132 * 7 * 4, P.Knobs())
    assert name == S.scan_fwd_name(lp.kernel, "float16", "float32", *lp.targs[2:]) and grid == lp.grid
    f = _fields(args[0])
    assert args[0].dtype == P.FWD_PARAMS
    assert (int(f["u"]), int(f["out"]), int(f["aux"]), int(f["D"])) == (u.data_ptr(), out.data_ptr(),
                                                                          aux.data_ptr(), D.data_ptr())
    assert (int(f["batch"]), int(f["KD"]), int(f["L"]), int(f["N"]), int(f["K"]), int(f["G"])) == (2, 24, L, N, 4, 6)
    assert bool(f["softplus"]) and int(f["dtype"]) == 1 and int(f["out_dtype"]) == 0
    assert tuple(int(x) for x in f["kd_div"].tolist()) == P.fast_divmod(24)
    calls.clear()
    launch.selective_scan_bwd(*ins, True, torch.randn_like(out), aux)
    names = [c[0] for c in calls]
    assert names[-1] == S.SCAN_FINALIZE_SMALL and names[-2] == S.scan_finalize_bc_name("float16")
    b = _fields(calls[0][3][0])
    assert int(b["S"]) >= 1 and int(b["dout_dtype"]) == 0 and int(b["partA"]) != 0
    assert calls[-2][3][-1] == int(b["S"])  # finalize_bc_kernel's split count


def test_launch_module_cross_kernels(fake_launch):
    import torch

    launch, calls, compiled = fake_launch
    x = torch.randn(2, 56, 56, 96).half()
    y = launch.cross_scan_fwd(x, "cross2d", True)
    assert y.shape == (2, 4, 96, 56 * 56)
    name, grid, block, args, smem, opted = calls[-1]
    lp, _ = P.cross_launch(P.CrossProblem(2, 96, 56, 56, 0, True, "float16", x.data_ptr(), y.data_ptr()), False,
                           P.Knobs())
    assert name == S.cross_name(lp.kernel, "float16", *lp.targs[1:]) and grid == lp.grid and smem == lp.smem
    assert [int(a) for a in args[:2]] == [x.data_ptr(), y.data_ptr()]
    assert opted >= smem or smem <= 48 * 1024
    m = launch.cross_merge_fwd(y, 56, 56, "cross2d", True)
    assert m.shape == x.shape and calls[-1][0].startswith("vmamba::cross::cross_merge_")
    n = len(compiled)
    launch.cross_scan_fwd(x, "cross2d", True)
    assert len(compiled) == n, "the second call compiled again"
    assert launch.compile_stats()["compiles"] == n


class _RecordingCPointer:
    """cupy.cuda.function.CPointer's stand-in: keeps the address and the 8 bytes there, read when it is made (the
    launch module makes it right after the buffer it points into, and pads every argument to 8 bytes)."""

    def __init__(self, p):
        import ctypes
        self.p, self.raw = p, ctypes.string_at(p, 8)


def test_launch_module_passes_every_argument_as_a_pointer_to_its_bytes(fake_launch, monkeypatch):
    """Every kernel argument goes to the launch as a CPointer to bytes the module holds: CuPy reads a numpy scalar's
    or 0-d array's address through __array_interface__ (1.3 us a scalar, 17.8 us the scan's struct on the CI VM).
    The scan's struct, the cross kernels' addresses and the finalize kernel's addresses and scalars arrive as the
    bytes the kernels read."""
    import torch

    from tests.scan_cases import make_inputs

    launch, calls, _ = fake_launch
    monkeypatch.setattr(launch, "_CPointer", _RecordingCPointer)
    structs = []
    real_struct_arg = launch._struct_arg

    def struct_arg(data, dtype):
        buf, args = real_struct_arg(data, dtype)
        structs.append((bytes(data), dtype, buf.buffer_info()[0]))
        return buf, args

    monkeypatch.setattr(launch, "_struct_arg", struct_arg)
    u, delta, A, B, C, D, bias = ins = make_inputs(1, 24, 196, 1, 4, dtype=torch.float16, requires_grad=False)
    out, last, aux = launch.selective_scan_fwd(*ins, True, torch.float32)
    args = calls[-1][3]
    assert all(type(a) is _RecordingCPointer for a in args)
    data, dtype, addr = structs[-1]
    assert dtype == P.FWD_PARAMS and args[0].p == addr and args[0].raw == data[:8]
    f = _fields(np.frombuffer(data, dtype=P.FWD_PARAMS).reshape(()))
    assert (int(f["u"]), int(f["delta"]), int(f["A"]), int(f["B"]), int(f["C"]), int(f["D"]), int(f["delta_bias"]),
            int(f["out"]), int(f["last_state"]), int(f["aux"])) == (
        u.data_ptr(), delta.data_ptr(), A.data_ptr(), B.data_ptr(), C.data_ptr(), D.data_ptr(), bias.data_ptr(),
        out.data_ptr(), last.data_ptr(), aux.data_ptr())
    assert (int(f["L"]), int(f["KD"]), int(f["K"]), bool(f["softplus"])) == (196, 24, 4, True)
    assert data == launch._SCAN_PLANS[next(reversed(launch._SCAN_PLANS))][2].fill(
        u=u.data_ptr(), delta=delta.data_ptr(), A=A.data_ptr(), B=B.data_ptr(), C=C.data_ptr(), D=D.data_ptr(),
        delta_bias=bias.data_ptr(), out=out.data_ptr(), last_state=last.data_ptr(), aux=aux.data_ptr()).tobytes()
    lp = launch._SCAN_PLANS[next(reversed(launch._SCAN_PLANS))][0]
    assert len(args) == 1 + len(lp.extra)
    for a, (kind, v) in zip(args[1:], lp.extra):  # the packed kernel's scalars after the struct
        assert a.raw[:launch._SCALAR_PACK[kind].size] == launch._SCALAR_PACK[kind].pack(v)

    calls.clear()
    grads = launch.selective_scan_bwd(*ins, True, torch.randn_like(out), aux)
    bc = [c for c in calls if c[0] == S.scan_finalize_bc_name("float16")][0][3]
    assert [int.from_bytes(a.raw, "little") for a in bc[2:4]] == [grads[3].data_ptr(), grads[4].data_ptr()]  # dB, dC
    data, dtype, addr = structs[-1]
    b = _fields(np.frombuffer(data, dtype=P.BWD_PARAMS).reshape(()))
    assert dtype == P.BWD_PARAMS and int(b["dout"]) != 0 and int(b["S"]) >= 1
    assert [int.from_bytes(a.raw, "little") for a in bc[:2]] == [int(b["accB"]), int(b["accC"])]
    assert int.from_bytes(bc[-1].raw[:4], "little", signed=True) == int(b["S"])  # finalize_bc_kernel's split count
    first = calls[0][3]
    assert first[0].p == addr and first[0].raw == data[:8]

    x = torch.randn(2, 56, 56, 96).half()
    y = launch.cross_scan_fwd(x, "cross2d", True)
    args = calls[-1][3]
    assert [int.from_bytes(a.raw, "little") for a in args[:2]] == [x.data_ptr(), y.data_ptr()]
    (lp, _, fixed), = [v for v in launch._CROSS_PLANS.values() if v is not None]
    assert args[2:] == fixed.args and len(fixed.args) == len(lp.extra)


def test_fixed_arguments_hold_the_plan_scalars_and_structs_bytes(fake_launch, monkeypatch):
    """_Fixed: a launch's scalars and structs, packed once into one buffer it holds, each padded to 8 bytes and
    reached through its own CPointer; numpy values where CuPy has no CPointer."""
    import ctypes

    launch, _, _ = fake_launch
    monkeypatch.setattr(launch, "_CPointer", _RecordingCPointer)
    st = P.record(P.DIRECT_ARGS, B=2, C=96, H=7, W=5, L=35, total=6720, mode=2, channels_last=True)
    extra = (("i4", -7), ("?", True), st, ("i8", 1 << 40))
    fx = launch._Fixed(extra)
    ptrs = [a.p for a in fx.args]
    assert [q - ptrs[0] for q in ptrs] == [0, 8, 16, 16 + st.nbytes + (-st.nbytes % 8)]
    assert ctypes.string_at(ptrs[0], 4) == (-7).to_bytes(4, "little", signed=True)
    assert ctypes.string_at(ptrs[1], 1) == b"\x01"
    assert ctypes.string_at(ptrs[2], st.nbytes) == st.tobytes()
    assert ctypes.string_at(ptrs[3], 8) == (1 << 40).to_bytes(8, "little")
    buf, heads = launch._address_args(5, 1 << 50)
    assert [ctypes.string_at(h.p, 8) for h in heads] == [(5).to_bytes(8, "little"), (1 << 50).to_bytes(8, "little")]
    assert launch._Fixed(()).args == ()
    monkeypatch.setattr(launch, "_CPointer", None)
    fx = launch._Fixed(extra)
    assert [type(a) for a in fx.args] == [np.int32, np.bool_, np.ndarray, np.int64] and fx.args[2] is st
    assert [type(a) for a in launch._address_args(5, 6)[1]] == [np.uint64, np.uint64]
    (arr,) = launch._struct_arg(st.tobytes(), P.DIRECT_ARGS)[1]
    assert arr.shape == () and arr.tobytes() == st.tobytes()


def test_launch_module_holds_every_argument_buffer_until_the_launch(fake_launch, monkeypatch):
    """A CPointer is an address: the driver reads the bytes behind it when the launch is issued, so the buffer every
    argument points into (the call's struct or addresses, the plan's _Fixed bytes) must still be alive at the launch,
    not only when the pointer is made (a buffer freed early reads as the right bytes until it is reused). Every
    array.array the module makes is tracked by a weak reference; the stand-in Function checks that each argument
    points into a live one."""
    import array
    import types
    import weakref

    import torch

    from tests.scan_cases import make_inputs

    launch, _, _ = fake_launch
    monkeypatch.setattr(launch, "_CPointer", _RecordingCPointer)
    made, launched = [], []

    def tracked(code, init):
        buf = array.array(code, init)
        base, n = buf.buffer_info()
        made.append((weakref.ref(buf), base, base + n * buf.itemsize))
        return buf

    def call(self, grid, block, args, shared_mem=0, stream=None):
        for i, a in enumerate(args):
            assert any(r() is not None and lo <= a.p < hi for r, lo, hi in made), (
                f"{self.raw.name}: argument {i}'s buffer was freed before the launch")
        launched.append(self.raw.name)

    monkeypatch.setattr(launch, "array", types.SimpleNamespace(array=tracked))
    monkeypatch.setattr(_FakeFunction, "__call__", call)
    for N in (1, 16):  # the packed kernel (struct and scalars), the seq kernel (struct and one scalar)
        ins = make_inputs(2, 24, 196, N, 4, dtype=torch.float16, requires_grad=False)
        out, _, aux = launch.selective_scan_fwd(*ins, True, torch.float32)
        launch.selective_scan_bwd(*ins, True, torch.randn_like(out), aux)  # struct; finalize_bc's addresses
    x = torch.randn(2, 8, 14, 14)
    launch.cross_merge_fwd(launch.cross_scan_fwd(x, "cross2d", False), 14, 14, "cross2d", False)
    assert len(launched) == 2 * 4 + 2 and S.scan_finalize_bc_name("float16") in launched


def test_record_fill_addresses_equals_a_full_fill():
    rec = P.Record(P.BWD_PARAMS, batch=2, KD=96, L=49, G=24, N=16, K=4, S=3, lpr=7, softplus=True, seq=True, dtype=1,
                   dout_dtype=0, bc_bstride=4 * 16 * 49, bc_gstride=16 * 49)
    names = [n for n in P.BWD_PARAMS.names][:P.leading_pointers(P.BWD_PARAMS)]
    assert names[0] == "u" and names[-1] == "partBias" and len(names) == 21
    addrs = [(i + 1) * 0x1000 + 0x7F0000000000 for i in range(len(names))]
    assert rec.fill_addresses(*addrs) == rec.fill(**dict(zip(names, addrs))).tobytes()
    assert P.leading_pointers(P.FWD_PARAMS) == 10 and P.leading_pointers(P.DIRECT_ARGS) == 0
    # pointers are uint64 fields at 0, 8, ...: not a uint32, not a uint64 after a gap
    assert P.leading_pointers(P.PLANE_ARGS) == 0 and P.leading_pointers(P.TILE_ARGS) == 0
    gapped = np.dtype({"names": ["a", "b", "c"], "formats": ["<u8"] * 3, "offsets": [0, 8, 24], "itemsize": 32})
    assert P.leading_pointers(gapped) == 2


def test_launch_module_edge_cases(fake_launch):
    import torch

    from tests.scan_cases import make_inputs

    launch, calls, _ = fake_launch
    ins = make_inputs(1, 8, 0, 2, 4, dtype=torch.float32, requires_grad=False)  # L = 0: no steps
    out, last, aux = launch.selective_scan_fwd(*ins, False, torch.float32)
    assert out.shape == (1, 8, 0) and torch.equal(last, torch.zeros_like(last)) and aux.shape == (1, 8, 0, 2)
    ins = make_inputs(0, 8, 5, 1, 4, dtype=torch.float16, requires_grad=False)  # no rows: nothing launched
    calls.clear()
    out, _, aux = launch.selective_scan_fwd(*ins, False, torch.float16)
    assert out.dtype == torch.float16 and calls == []
    launch.selective_scan_bwd(*ins, False, out, aux)  # no rows: dA etc. still written (zeros), by the finalizer
    assert [c[0] for c in calls] == [S.SCAN_FINALIZE_SMALL]
    ins = make_inputs(1, 8, 9, 1, 4, dtype=torch.bfloat16, requires_grad=False)  # out in u's dtype
    out, _, _ = launch.selective_scan_fwd(*ins, False, torch.bfloat16)
    assert out.dtype == torch.bfloat16
    assert calls[-1][0] == S.scan_fwd_name("fwd_n1_packed_kernel", "bfloat16", "bfloat16")
    assert launch.cross_scan_fwd(torch.randn(0, 3, 4, 5), "bidi", False).shape == (0, 4, 3, 20)


def test_launch_module_scan_plan_cache_follows_alignment_knobs_and_shapes(fake_launch, monkeypatch):
    """The scan's per-configuration cache (plan, instance names, fixed struct fields) against a fresh plan for every
    call: misaligned addresses (each of u, delta, B, C alone, and out), other knobs, another length, d_state or dtype;
    every address filled per call."""
    import torch

    import vmamba_kernels as vk
    from tests.scan_cases import make_inputs

    launch, calls, _ = fake_launch

    def knobs_now():
        return P.Knobs(**{f: str(v) for f, v in vars(vk.get_tuning("cupy")).items() if v is not None})

    def fwd(L, N, dtype=torch.float16, shift=0, out_dtype=None, which=(0, 1)):
        out_dtype = out_dtype or dtype
        ins = list(make_inputs(2, 24, L, N, 4, dtype=dtype, requires_grad=False))
        if shift:  # u and delta (or `which` inputs) past a 16-byte boundary: the packed kernel's access width changes
            for i in which:
                ins[i] = torch.cat([ins[i].new_zeros(shift), ins[i].flatten()])[shift:].view(ins[i].shape)
        out, last, aux = launch.selective_scan_fwd(*ins, True, out_dtype)
        name, grid, _, args, _, _ = calls[-1]
        u, delta, A, B, C, D, bias = ins
        addrs = {"u": u.data_ptr(), "delta": delta.data_ptr(), "B": B.data_ptr(), "C": C.data_ptr(),
                 "out": out.data_ptr()}
        t, o = str(dtype)[6:], str(out_dtype)[6:]
        lp = P.fwd_plan(2, 24, L, N, 4, t, o, addrs, 132 * 7 * 4, knobs_now())
        assert name == S.scan_fwd_name(lp.kernel, t, o, *lp.targs[2:]) and grid == lp.grid
        assert int(_fields(args[0])["out_dtype"]) == P.DTYPE_CODE[o]
        assert tuple(x.item() if hasattr(x, "item") else x for x in args[1:]) == tuple(e[1] for e in lp.extra)
        f = _fields(args[0])
        assert (int(f["u"]), int(f["delta"]), int(f["out"]), int(f["last_state"]), int(f["aux"]), int(f["L"])) == (
            u.data_ptr(), delta.data_ptr(), out.data_ptr(), last.data_ptr(), aux.data_ptr(), L)
        return name, args[1:]

    aligned = fwd(196, 1)
    assert fwd(196, 1) == aligned  # cached
    assert fwd(196, 1, shift=1) != aligned  # 2 bytes off: another access width
    assert fwd(196, 1, shift=2) != aligned  # 4 bytes off: 8-byte pieces no more
    for i in (0, 1, 3, 4):  # u, delta, B or C alone 4 bytes off: each address's alignment is in the key
        assert fwd(196, 1, shift=2, which=(i,)) != aligned
    with vk.tuning("cupy", scan_packed_rows=3):
        assert fwd(196, 1)[1][0] == 3  # the knob's rows per warp, not the cached plan's
    assert fwd(196, 1) == aligned
    fwd(200, 1)
    fwd(196, 4)
    fwd(196, 1, torch.bfloat16)
    wide = fwd(196, 1, out_dtype=torch.float32)
    assert wide[0] != aligned[0]  # another output dtype: another instance
    empty = torch.empty

    def off8(shape, **kw):  # out 8 bytes past a 16-byte boundary: torch's allocators align more, an allocator need not
        n = int(np.prod(shape))
        t = empty(n + 16, **kw)
        return t[8 // t.element_size():][:n].view(shape)

    def off8_many(like, *specs):  # the raw kernels allocate through vmamba_kernels._alloc
        return tuple(off8(shape, dtype=dtype, device=like.device) for shape, dtype in specs)

    with monkeypatch.context() as m:
        m.setattr(_alloc, "empty_many", off8_many)
        assert fwd(196, 1, out_dtype=torch.float32)[1][2] == 8 != wide[1][2]  # 8-byte output pieces, not 16
    # the backward: the split count follows its knob and lands in the struct and in finalize_bc's argument
    KD, L, N = 256, 300, 4
    ins = make_inputs(2, KD, L, N, 4, dtype=torch.float16, requires_grad=False)
    out, _, aux = launch.selective_scan_fwd(*ins, True, torch.float32)
    seen = []
    for splits in (None, 1, 3, None):
        calls.clear()
        with vk.tuning("cupy", scan_bwd_splits=splits):
            du, *_ = launch.selective_scan_bwd(*ins, True, torch.randn_like(out), aux)
            k = knobs_now()
            want = P.splits(2, 4, KD // 4, N, L, 132, P.use_seq(N, 2 * KD, P.seq_min_rows(k)), k)
        b = _fields(calls[0][3][0])
        assert int(b["S"]) == want and calls[-2][3][-1] == want and int(b["du"]) == du.data_ptr()
        acc_b, acc_c = int(b["accB"]), int(b["accC"])
        assert acc_c - acc_b == 4 * want * 2 * 4 * N * L  # the two halves of one (2, S, batch, K, N, L) buffer
        assert tuple(int(h) for h in calls[-2][3][:2]) == (acc_b, acc_c)  # finalize_bc reads what the kernel wrote
        seen.append(want)
    assert len(set(seen)) == 3, seen  # three split counts: a stale cached plan would show


def test_launch_module_cross_plan_cache_follows_knobs_and_alignment(fake_launch):
    import torch

    import vmamba_kernels as vk

    launch, calls, _ = fake_launch
    x = torch.randn(2, 8, 14, 14)
    launch.cross_scan_fwd(x, "cross2d", False)
    assert "plane" in calls[-1][0]
    with vk.tuning("cupy", cross_path="direct"):
        launch.cross_scan_fwd(x, "cross2d", False)
    assert "direct" in calls[-1][0]
    launch.cross_scan_fwd(x, "cross2d", False)
    assert "plane" in calls[-1][0] and calls[-1][0].endswith(", 4>")  # 16-byte vectors on aligned data
    xs = torch.randn(2 * 8 * 14 * 14 + 1)[1:].view(2, 8, 14, 14)  # 4-byte aligned only
    launch.cross_scan_fwd(xs, "cross2d", False)
    assert calls[-1][0].endswith(", 1>"), calls[-1][0]
    xs8 = torch.randn(2 * 8 * 14 * 14 + 2)[2:].view(2, 8, 14, 14)  # 8-byte aligned only
    launch.cross_scan_fwd(xs8, "cross2d", False)
    assert calls[-1][0].endswith(", 2>"), calls[-1][0]


def test_launch_module_cross_plan_cache_tells_dtype_mode_and_layout_apart(fake_launch):
    """Calls of one shape that differ only in dtype, mode or layout each get their own plan: the launch (kernel
    instance and its argument structs) equals a fresh plan's for that call, whatever ran before."""
    import torch

    launch, calls, _ = fake_launch
    x = torch.randn(2, 8, 8, 8)
    for dt, mode, cl in (("float32", "cross2d", False), ("float16", "cross2d", False), ("float16", "bidi", False),
                         ("float16", "bidi", True), ("float32", "unidi", True), ("float32", "cross2d", False)):
        t = x.to(getattr(torch, dt))
        y = launch.cross_scan_fwd(t, mode, cl)
        lp, _ = P.cross_launch(P.CrossProblem(2, 8, 8, 8, launch._MODES[mode], cl, dt, t.data_ptr() % 16,
                                              y.data_ptr() % 16), False, P.Knobs())
        name, grid, block, args, smem, _ = calls[-1]
        assert name == S.cross_name(lp.kernel, dt, *lp.targs[1:]) and grid == lp.grid, (dt, mode, cl)
        structs = [e for e in lp.extra if type(e) is np.ndarray]
        assert [a.tobytes() for a in args[2:] if type(a) is np.ndarray] == [e.tobytes() for e in structs], (dt, mode, cl)


def test_launch_module_fills_every_forward_field(fake_launch, monkeypatch):
    """Every struct field the kernel reads, with softplus, knobs and strides from this call's configuration; scalar
    arguments in the kernel's own types; an output dtype the kernels do not write comes back converted; L = 0 leaves
    the last state 0 (outputs from poisoned memory); 2^31 rows are refused."""
    import torch

    import vmamba_kernels as vk
    from tests.scan_cases import make_inputs

    launch, calls, _ = fake_launch
    empty = torch.empty
    monkeypatch.setattr(torch, "empty", lambda *a, **k: empty(*a, **k).fill_(float("nan")))
    monkeypatch.setattr(_alloc, "empty_many", _alloc.torch_empty_many)  # the raw kernels' allocations: poisoned too
    for N, softplus in ((16, True), (16, False), (1, False)):
        u, delta, A, B, C, D, bias = ins = make_inputs(2, 24, 49, N, 4, dtype=torch.float16, requires_grad=False)
        with vk.tuning("cupy", scan_packed_rows=2, scan_seq_min_rows=0):
            launch.selective_scan_fwd(*ins, softplus, torch.float32)
        f = _fields(calls[-1][3][0])
        assert [int(f[n]) for n in ("A", "B", "C", "D", "delta_bias", "delta")] == [
            t.data_ptr() for t in (A, B, C, D, bias, delta)]
        assert bool(f["softplus"]) == softplus and int(f["G"]) == 6
        assert tuple(int(x) for x in f["g_div"].tolist()) == P.fast_divmod(6)
        assert (int(f["bc_bstride"]), int(f["bc_gstride"])) == (4 * N * 49, N * 49)
        assert (int(f["packed_rows"]), int(f["seq_min_rows"])) == (2, 0)
    assert calls[-1][0].startswith("vmamba::scan::fwd_n1_packed_kernel")
    assert [type(a) for a in calls[-1][3][1:]] == [np.int32, np.bool_, np.int32]  # (int rpw, bool piece8, int)
    for batch in (1, 0):  # fp16 out of fp32 inputs: written in fp32 (no such instance), then converted
        calls.clear()
        out, _, _ = launch.selective_scan_fwd(*make_inputs(batch, 8, 9, 1, 4, requires_grad=False), False,
                                              torch.float16)
        assert out.dtype == torch.float16 and [c[0][-14:] for c in calls] == ["<float, float>"] * batch
    out, last, _ = launch.selective_scan_fwd(*make_inputs(1, 8, 0, 2, 4, requires_grad=False), False, torch.float32)
    assert torch.equal(last, torch.zeros_like(last))
    KD = 1 << 31  # zero-size tensors of 2^31 rows
    e = torch.empty
    with pytest.raises(RuntimeError, match=r"2\^31 - 1 rows per call"):
        launch.selective_scan_fwd(e(1, KD, 0), e(1, KD, 0), e(KD, 0), e(1, 1, 0, 0), e(1, 1, 0, 0), None, None, False,
                                  torch.float32)


def test_launch_module_fills_every_backward_field(fake_launch):
    """The backward's struct (addresses of every gradient and of the partial-sum sections, G, softplus, dout's dtype)
    for each dout dtype and softplus flag in turn; finalize_bc writes dB and dC; an aux of another shape is refused."""
    import torch

    from tests.scan_cases import make_inputs

    launch, calls, _ = fake_launch
    u, delta, A, B, C, D, bias = ins = make_inputs(2, 24, 49, 4, 4, dtype=torch.float16, requires_grad=False)
    out, _, aux = launch.selective_scan_fwd(*ins, True, torch.float32)
    with pytest.raises(RuntimeError, match=r"aux has shape \(2, 24, 1, 1\), expected \(2, 24, 1, 4\)"):
        launch.selective_scan_bwd(*ins, True, out, aux[..., :1])
    for dt, softplus, code in ((torch.float32, True, 0), (torch.float16, True, 1), (torch.float16, False, 1),
                               (torch.bfloat16, False, 0)):  # bf16 dout of fp16 inputs: converted to fp32
        calls.clear()
        grads = launch.selective_scan_bwd(*ins, softplus, torch.randn(out.shape).to(dt), aux)
        b = _fields(calls[0][3][0])
        assert (int(b["dout_dtype"]), bool(b["softplus"]), int(b["G"])) == (code, softplus, 6)
        names = ("du", "ddelta", "dA", "dB", "dC", "dD", "ddelta_bias")
        assert [int(b[n]) for n in names] == [g.data_ptr() for g in grads]
        pa = int(b["partA"])
        assert (int(b["partD"]), int(b["partBias"])) == (pa + 4 * 48 * 4, pa + 4 * 48 * 5)  # (rows, N + 2) floats
        (bc,) = [c for c in calls if c[0] == S.scan_finalize_bc_name("float16")]
        assert [int(h) for h in bc[3][:4]] == [int(b["accB"]), int(b["accC"]), grads[3].data_ptr(),
                                               grads[4].data_ptr()]


def test_launch_module_launches_on_the_tensors_device_and_its_stream(fake_launch, monkeypatch):
    """A launch goes to torch's current stream of the tensors' device, switching CuPy's device only when that is not
    the current one; plans are per device (another SM count: another packed rows per warp); the dynamic shared
    memory opt-in grows with a launch that needs more; tensors on a device other than the current one get that
    device's plan, arguments and stream."""
    import contextlib
    import types

    import torch

    from tests.scan_cases import make_inputs

    launch, calls, _ = fake_launch
    state = {"current": 0, "inside": [], "seen": []}

    @contextlib.contextmanager
    def device(i):
        state["inside"].append(i)
        try:
            yield
        finally:
            state["inside"].pop()

    def call(self, grid, block, args, shared_mem=0, stream=None):
        state["seen"].append((list(state["inside"]), stream.ptr))
        self.raw.calls.append((self.raw.name, grid, block, args, shared_mem, self.raw.max_dynamic_shared_size_bytes))

    monkeypatch.setattr(launch.cupy.cuda, "Device", device)
    monkeypatch.setattr(launch.cupy.cuda.runtime, "getDevice", lambda: state["current"])
    monkeypatch.setattr(_FakeFunction, "__call__", call)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: state["current"])
    monkeypatch.setattr(torch.cuda, "get_device_properties",
                        lambda i: types.SimpleNamespace(multi_processor_count=(132, 7)[i]))
    monkeypatch.setattr(launch, "_raw_stream", lambda i: 1000 + i)
    ins = make_inputs(2, 256, 196, 1, 4, dtype=torch.float16, requires_grad=False)  # 512 rows
    for current, rpw in ((0, 1), (1, 3), (0, 1)):  # 132 x 7 x 4 resident warps on device 0, 7 x 7 x 4 on device 1
        state["current"] = current
        launch.selective_scan_fwd(*ins, True, torch.float32)
        assert int(calls[-1][3][1]) == rpw and state["seen"][-1] == ([], 1000 + current)
    lp, _ = P.cross_launch(P.CrossProblem(1, 8, 14, 14, P.CROSS2D, False, "float32", 0, 0), False, P.Knobs())
    name = S.cross_name(lp.kernel, "float32", *lp.targs[1:])
    for current, dev in ((0, 1), (1, 0)):  # tensors on the other device: its stream, inside Device(it)
        state["current"] = current
        launch._run(S.CROSS_HEADER, name, lp, (), dev)
        assert state["seen"][-1] == ([dev], 1000 + dev)
    for smem in (64 << 10, 100 << 10, 80 << 10):
        launch._run(S.CROSS_HEADER, name, P.Launch(lp.kernel, lp.targs, (1,), (32,), smem), (), 0)
        assert calls[-1][4] == smem and calls[-1][5] >= smem
    n = len(calls)
    launch._run(S.CROSS_HEADER, name, P.Launch(lp.kernel, lp.targs, (0,), (32,)), (), 0)
    assert len(calls) == n, "an empty grid was launched (CUDA refuses it)"

    class OnDevice1(torch.Tensor):  # CPU tensors that say they are on cuda:1 (the scan's and cross's idx)
        @property
        def device(self):
            return torch.device("cuda", 1)

    state["current"] = 0
    on1 = [t.as_subclass(OnDevice1) for t in ins]
    with monkeypatch.context() as m:
        empty = torch.empty
        m.setattr(torch, "empty", lambda *a, device=None, **k: empty(*a, **k))
        m.setattr(_alloc, "empty_many", _alloc.torch_empty_many)
        out, _, aux = launch.selective_scan_fwd(*on1, True, torch.float32)
        assert int(calls[-1][3][1]) == 3 and state["seen"][-1] == ([1], 1001)  # device 1's plan, args and stream
        n = len(state["seen"])
        launch.selective_scan_bwd(*on1, True, torch.randn(out.shape).as_subclass(OnDevice1), aux)
        assert len(state["seen"]) > n and all(s == ([1], 1001) for s in state["seen"][n:])
        launch.cross_scan_fwd(torch.randn(1, 8, 14, 14).as_subclass(OnDevice1), "cross2d", False)
        assert state["seen"][-1] == ([1], 1001) and len(calls[-1][3]) == 3  # in, out, the plane struct
