"""CuPy backend ("cupy", the extension's kernels through NVRTC): on a GPU the full grid against the float64
reference (outputs, last state, all gradients), every kernel path the launch rules reach (forced through
the knobs), cross scan/merge on awkward maps and every cross kernel kind, poisoned outputs, determinism,
torch streams, the compile cache and its timing, and mamba_ssm when built. CPU checks of the sources and
the launch rules: tests/test_cupy_sources.py."""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from reference import selective_scan_backward_ref, selective_scan_parallel
from tests.scan_cases import (NAMES, RANGES, TOL, assert_close, check_softplus_sweep, grad_tol, independent_cross_merge,
                              independent_cross_scan, make_inputs, poisoned, softplus_sweep)

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI") == "true"


# ---- CPU (the sources, launch rules and NVRTC compile: tests/test_cupy_sources.py) ---------------------
def _nvcc():
    cands = [shutil.which("nvcc")]
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if os.environ.get(env):
            cands.append(os.path.join(os.environ[env], "bin", "nvcc"))
    cands.append("/usr/local/cuda-13.0/bin/nvcc")
    cands.append("/usr/local/cuda/bin/nvcc")
    for c in cands:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return c
    return None


def test_aux_shape_is_the_cuda_backends():
    """The cupy backend runs the extension's kernels, so its aux is theirs: (batch, KD, ceil(L / 256), N)."""
    from vmamba_kernels.cupy import tuning as _config

    assert _config.scan_aux_shape(2, 8, 3136, 1, torch.float16) == ((2, 8, 13, 1), torch.float32)
    assert _config.scan_aux_shape(1, 4, 1, 16, torch.float32) == ((1, 4, 1, 16), torch.float32)
    assert _config.scan_aux_shape(1, 4, 257, 16, torch.float32) == ((1, 4, 2, 16), torch.float32)


def test_import_without_cupy_is_importerror_and_backend_unavailable():
    code = (
        "import sys; sys.modules['cupy'] = None\n"
        "try:\n"
        "    import vmamba_kernels.cupy.launch\n"
        "except ImportError as e:\n"
        "    print('IMPORTERROR', e)\n"
        "from vmamba_kernels import dispatch\n"
        "print('REASON', dispatch.get_backend('cupy').unavailable_reason())\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "IMPORTERROR CuPy is not installed" in r.stdout, r.stdout
    assert "pip install cupy-cuda" in r.stdout, r.stdout


# ---- GPU ------------------------------------------------------------------------------------------
def _backend_reason():
    from vmamba_kernels import dispatch

    return dispatch.get_backend("cupy").unavailable_reason()


@pytest.fixture(scope="module")
def kern():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    reason = _backend_reason()
    if reason is not None:
        pytest.skip(f"cupy backend unavailable: {reason}")
    from vmamba_kernels.cupy import launch as kernels

    return kernels


def _ref_scan(ins, softplus, dout):
    u, delta, A, B, C, D, bias = [None if t is None else t.detach().double() for t in ins]
    y, last = selective_scan_parallel(u, delta, A, B, C, D, bias, softplus, True, torch.float64)
    grads = selective_scan_backward_ref(u, delta, A, B, C, D, bias, softplus, dout.double())
    return y, last, grads


def _check_scan(batch, KD, L, N, K, dtype, out_fp32, softplus, with_D, with_bias, ranges="mamba_ssm"):
    """Through the public API, outputs from poisoned memory, against the float64 reference."""
    import vmamba_kernels as vk

    ins = make_inputs(batch, KD, L, N, K, dtype=dtype, device="cuda", with_D=with_D, with_bias=with_bias,
                      ranges=ranges, softplus=softplus)
    out_dtype = torch.float32 if out_fp32 else dtype
    with poisoned():
        y, last = vk.selective_scan(*ins, delta_softplus=softplus, return_last_state=True, out_dtype=out_dtype,
                                    impl="cupy")
    assert y.dtype == out_dtype and last.dtype == torch.float32
    dout = torch.randn_like(y)
    with poisoned():
        y.backward(dout)
    ry, rlast, rgrads = _ref_scan(ins, softplus, dout)
    assert_close("out", y, ry, *TOL[dtype])  # out_dtype is fp32 or the input dtype
    assert_close("last_state", last, rlast, *TOL[dtype])
    for name, t, g in zip(NAMES, ins, rgrads):
        if t is None:
            continue
        assert t.grad is not None, name
        assert t.grad.dtype == t.dtype, (name, t.grad.dtype)
        assert_close(f"d{name}", t.grad, g, *grad_tol(name, dtype))


DTYPES = (torch.float32, torch.float16, torch.bfloat16)
LS = (1, 7, 49, 197, 1031, 3136)
NS = (1, 16, 64)
# every (L, N, dtype) once; K, out dtype, softplus, D/bias and batch cycle through all their values
GRID = []
for i, (L, N, dtype) in enumerate(itertools.product(LS, NS, DTYPES)):
    GRID.append((L, N, dtype, (1, 4)[i % 2], bool((i // 2) % 2), bool((i // 4) % 2), bool((i // 3) % 2),
                 (1, 2)[(i // 5) % 2]))


@pytest.mark.gpu
@pytest.mark.parametrize("ranges", RANGES)
@pytest.mark.parametrize("L,N,dtype,K,out_fp32,softplus,with_Dbias,batch", GRID,
                         ids=[f"L{c[0]}-N{c[1]}-{str(c[2])[6:]}-K{c[3]}-o{int(c[4])}-sp{int(c[5])}-Db{int(c[6])}-b{c[7]}"
                              for c in GRID])
def test_scan_grid(kern, L, N, dtype, K, out_fp32, softplus, with_Dbias, batch, ranges):
    KD = 24 if K == 4 else 8  # K=4: 6 channels per group (2 per backward block); K=1: 8 per group
    _check_scan(batch, KD, L, N, K, dtype, out_fp32, softplus, with_Dbias, with_Dbias, ranges=ranges)


@pytest.mark.gpu
@pytest.mark.parametrize("N", [1, 2, 16, 64])
def test_softplus_through_the_scan(kern, N):
    """softplus, its threshold and its gradient as the kernels compute them (tests/scan_cases.SOFTPLUS_SWEEP)."""
    check_softplus_sweep(*softplus_sweep("cupy", N, "cuda"))


@pytest.mark.gpu
@pytest.mark.parametrize("out_fp32,softplus,with_D,with_bias", list(itertools.product((0, 1), repeat=4)))
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_scan_flags(kern, dtype, out_fp32, softplus, with_D, with_bias):
    _check_scan(2, 16, 197, 16, 4, dtype, bool(out_fp32), bool(softplus), bool(with_D), bool(with_bias))


@pytest.mark.gpu
def test_scan_3d_BC_and_odd_group(kern):
    import vmamba_kernels as vk

    # 3-D B/C (K = 1) and a group size G = 3 (one channel per backward block)
    for grouped, KD, K in ((False, 6, 1), (True, 12, 4)):
        ins = make_inputs(1, KD, 65, 4, K, dtype=torch.float32, device="cuda", grouped=grouped)
        y, last = vk.selective_scan(*ins, delta_softplus=True, return_last_state=True, impl="cupy")
        dout = torch.randn_like(y)
        y.backward(dout)
        ry, rlast, rg = _ref_scan(ins, True, dout)
        assert_close("out", y, ry, *TOL[torch.float32])
        for name, t, g in zip(NAMES, ins, rg):
            assert_close(f"d{name}", t.grad, g.reshape(t.shape), *grad_tol(name, torch.float32))


@pytest.mark.gpu
def test_scan_deterministic_and_side_stream(kern):
    ins = make_inputs(2, 96, 1031, 1, 4, dtype=torch.float16, device="cuda", requires_grad=False)
    u, delta, A, B, C, D, bias = ins
    y, last, aux = kern.selective_scan_fwd(u, delta, A, B, C, D, bias, True, torch.float32)
    dout = torch.randn_like(y)
    g1 = kern.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        y2, last2, aux2 = kern.selective_scan_fwd(u, delta, A, B, C, D, bias, True, torch.float32)
        g2 = kern.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux2)
    s.synchronize()
    assert torch.equal(y, y2) and torch.equal(last, last2)
    for a, b in zip(g1, g2):
        assert torch.equal(a, b), "backward is not bitwise reproducible"


@pytest.mark.gpu
def test_launches_go_to_torchs_current_stream(kern):
    """A launch runs on torch's current stream: on a side stream its input is rewritten after a long sleep, so a
    kernel launched on any other stream would read the old values."""
    ins = make_inputs(2, 96, 1031, 1, 4, dtype=torch.float16, device="cuda", requires_grad=False)
    x = torch.zeros(2, 24, 14, 14, device="cuda", dtype=torch.float16)
    new = torch.randn_like(x)
    u_new = torch.randn_like(ins[0])
    want_cross = kern.cross_scan_fwd(new, "cross2d", False)
    want_scan = kern.selective_scan_fwd(u_new, *ins[1:], True, torch.float32)[0]
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    u = ins[0].clone()
    torch.cuda.synchronize()
    with torch.cuda.stream(s):
        torch.cuda._sleep(200_000_000)  # ~0.1 s at 2 GHz
        x.copy_(new)
        u.copy_(u_new)
        got_cross = kern.cross_scan_fwd(x, "cross2d", False)
        got_scan = kern.selective_scan_fwd(u, *ins[1:], True, torch.float32)[0]
    s.synchronize()
    assert torch.equal(got_cross, want_cross)
    assert torch.equal(got_scan, want_scan)


@pytest.mark.gpu
def test_compile_is_cached(kern):
    ins = make_inputs(1, 8, 33, 2, 4, dtype=torch.bfloat16, device="cuda", requires_grad=False)
    kern.selective_scan_fwd(*ins, False, torch.bfloat16)
    n = kern.compile_stats()["compiles"]
    for L in (33, 40, 60):  # same module (same dtype, N class, ITEMS bucket)
        ins = make_inputs(1, 8, L, 2, 4, dtype=torch.bfloat16, device="cuda", requires_grad=False)
        kern.selective_scan_fwd(*ins, False, torch.bfloat16)
    assert kern.compile_stats()["compiles"] == n, kern.compile_stats()


@pytest.mark.gpu
@pytest.mark.parametrize("knobs", [dict(scan_seq_min_rows=0), dict(scan_seq_min_rows=10**9), dict(scan_bwd_splits=1),
                                   dict(scan_packed_rows=1), dict(scan_packed_rows=3)], ids=str)
def test_scan_kernel_paths_through_the_knobs(kern, knobs):
    """Every kernel the launch rules can pick, forced on small inputs through the extension's knobs: the
    row-per-thread kernels for 1 < N <= 16 (seq_min_rows 0) or never, several channel rounds per backward
    block, packed d_state-1 rows crossing warp boundaries."""
    import vmamba_kernels as vk

    with vk.tuning("cupy", **knobs):
        for L, N, dtype in ((49, 1, torch.float16), (197, 16, torch.float32), (300, 4, torch.bfloat16),
                            (1031, 1, torch.float32), (65, 8, torch.float16)):
            _check_scan(2, 24, L, N, 4, dtype, True, True, True, True)


@pytest.mark.gpu
def test_matches_the_cuda_backend(kern):
    """Same kernels, same launch rules: the cupy and cuda backends agree to rounding (NVRTC and nvcc may
    contract differently) on every VMamba-T stage shape at batch 2, forward and backward."""
    import vmamba_kernels as vk
    from vmamba_kernels import dispatch

    if dispatch.get_backend("cuda").unavailable_reason() is not None:
        pytest.skip("the cuda backend is not built here")
    for KD, L, N in ((384, 3136, 1), (768, 784, 1), (1536, 196, 1), (3072, 49, 1), (768, 3136, 16)):
        ins = make_inputs(2, KD, L, N, 4, dtype=torch.float16, device="cuda", requires_grad=False)
        a = vk.ops("cupy")["scan_fwd"](*ins, True, torch.float32)
        b = vk.ops("cuda")["scan_fwd"](*ins, True, torch.float32)
        for name, x, y in zip(("out", "last", "aux"), a, b):
            assert_close(f"{name} cupy vs cuda", x, y, 1e-5, 1e-6)
        dout = torch.randn_like(a[0])
        ga = kern.selective_scan_bwd(*ins, True, dout, a[2])
        gb = vk.ops("cuda")["scan_bwd"](*ins, True, dout, b[2])
        for name, x, y in zip(NAMES, ga, gb):
            if x is not None and y is not None and y.numel():
                assert_close(f"d{name} cupy vs cuda", x.float(), y.float(), *grad_tol(name, torch.float16))


@pytest.mark.gpu
def test_first_call_compile_is_logged(kern):
    """compile_stats logs each compiled instance with its seconds (bench.cupy_compile sums them per model)."""
    ins = make_inputs(1, 8, 77, 3, 4, dtype=torch.float32, device="cuda", requires_grad=False)
    n = kern.compile_stats()["compiles"]
    kern.selective_scan_fwd(*ins, True, torch.float32)
    st = kern.compile_stats()
    assert st["compiles"] >= n and all(s >= 0 for _, _, s in st["log"])
    assert any("vmamba::scan::" in name for name, _, _ in st["log"]), st["log"]


CROSS_MAPS = ((7, 7), (13, 13), (14, 14), (5, 11), (1, 1), (1, 9), (8, 3))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("channels_last", (False, True))
@pytest.mark.parametrize("mode", ("cross2d", "unidi", "bidi"))
def test_cross_scan_merge(kern, mode, channels_last, dtype):
    for H, W in CROSS_MAPS:
        C, Bn = 5, 2
        shape = (Bn, H, W, C) if channels_last else (Bn, C, H, W)
        x = torch.randn(shape, device="cuda").to(dtype)
        with poisoned():
            y = kern.cross_scan_fwd(x, mode, channels_last)
        assert torch.equal(y.cpu().double(), independent_cross_scan(x, mode, channels_last)), (mode, channels_last, H, W)
        g = torch.randn(Bn, 4, C, H * W, device="cuda").to(dtype)
        with poisoned():
            m = kern.cross_merge_fwd(g, H, W, mode, channels_last).cpu()
        ref = independent_cross_merge(g, H, W, mode, channels_last)
        assert m.shape == ref.shape
        rtol, atol = TOL[dtype]
        assert_close(f"merge {mode} cl={channels_last} {H}x{W}", m, ref, rtol, atol)


@pytest.mark.gpu
@pytest.mark.parametrize("knobs", [dict(cross_cl_tiled="1"), dict(cross_cl_tiled="b"), dict(cross_path="direct"),
                                   dict(cross_max_vec=1), dict(cross_cl_tiled="1", cross_cl_tile="5x6x8"), {}], ids=str)
def test_cross_kernel_kinds_through_the_knobs(kern, knobs):
    """Plane, tiled, banded and direct kernels (as the knobs force them) on awkward and VMamba-sized maps."""
    import vmamba_kernels as vk

    with vk.tuning("cupy", **knobs):
        for (H, W), C, dtype in itertools.product(((13, 13), (14, 14), (5, 11), (56, 56), (46, 46)), (8, 96),
                                                  (torch.float32, torch.float16)):
            for channels_last in (False, True):
                Bn = 2
                shape = (Bn, H, W, C) if channels_last else (Bn, C, H, W)
                x = torch.randn(shape, device="cuda").to(dtype)
                with poisoned():
                    y = kern.cross_scan_fwd(x, "cross2d", channels_last)
                assert torch.equal(y.cpu().double(), independent_cross_scan(x, "cross2d", channels_last)), (knobs, H, W)
                g = torch.randn(Bn, 4, C, H * W, device="cuda").to(dtype)
                with poisoned():
                    m = kern.cross_merge_fwd(g, H, W, "cross2d", channels_last).cpu()
                assert_close(f"merge {knobs} {H}x{W}", m, independent_cross_merge(g, H, W, "cross2d", channels_last),
                             *TOL[dtype])


@pytest.mark.gpu
def test_cross_autograd_adjoint(kern):
    import vmamba_kernels as vk

    x = torch.randn(2, 6, 13, 7, device="cuda", requires_grad=True)
    with poisoned():
        y = vk.cross_scan(x, mode="cross2d", impl="cupy")
        g = torch.randn_like(y)
        y.backward(g)
    assert_close("dx", x.grad.cpu(), independent_cross_merge(g, 13, 7, "cross2d"), 1e-5, 1e-5)


def _mamba_module():
    try:
        from bench import mamba_ref
    except ImportError as e:
        pytest.skip(f"bench.mamba_ref not importable ({e})")
    if mamba_ref.load_selective_scan_cuda() is None:
        pytest.skip(f"mamba_ssm unavailable: {mamba_ref.unavailable_reason()}")
    return mamba_ref


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("L,N", ((49, 1), (197, 16), (1031, 1), (3136, 4)))
def test_against_mamba_ssm(kern, dtype, L, N):
    mr = _mamba_module()
    u, delta, A, B, C, D, bias = make_inputs(2, 16, L, N, 4, dtype=dtype, device="cuda", requires_grad=False)
    y, last, aux = kern.selective_scan_fwd(u, delta, A, B, C, D, bias, True, dtype)
    my, mx = mr.mamba_fwd(u, delta, A, B, C, D, bias, True)
    rtol, atol = TOL[dtype]
    assert_close("out vs mamba_ssm", y, my, rtol, atol)
    dout = torch.randn_like(y)
    ours = kern.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux)
    theirs = mr.mamba_bwd(u, delta, A, B, C, D, bias, True, dout, mx)
    for name, a, b in zip(NAMES, ours, theirs):
        assert_close(f"d{name} vs mamba_ssm", a, b, *grad_tol(name, dtype))


@pytest.mark.gpu
@pytest.mark.parametrize("L,N,dtype", ((4097, 2, torch.float32), (65536, 1, torch.float16)))
def test_scan_long_L(kern, L, N, dtype):
    _check_scan(1, 8, L, N, 4, dtype, True, True, True, True)


@pytest.mark.gpu
def test_opcheck_cupy_ops(kern):
    import vmamba_kernels as vk

    ops = vk.ops("cupy")
    ins = make_inputs(2, 8, 37, 3, 4, dtype=torch.float32, device="cuda", requires_grad=False)
    torch.library.opcheck(ops["scan_fwd"], (*ins, True, torch.float32))
    nd = make_inputs(1, 4, 9, 1, 1, dtype=torch.float16, device="cuda", with_D=False, with_bias=False,
                     requires_grad=False)
    torch.library.opcheck(ops["scan_fwd"], (*nd, False, torch.float16))
    torch.library.opcheck(ops["cross_scan"], (torch.randn(2, 3, 5, 7, device="cuda"), "cross2d", False))
    torch.library.opcheck(ops["cross_merge"], (torch.randn(2, 4, 3, 35, device="cuda"), 5, 7, "bidi", True))
