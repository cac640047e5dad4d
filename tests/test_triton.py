"""Triton backend ("triton").

CPU (CI): the kernels run under Triton's interpreter. Without CUDA this module sets
TRITON_INTERPRET=1 before anything imports triton-dependent code; the public-API path (impl="triton"
through vmamba_kernels) additionally needs the variable set before vmamba_kernels is first imported
(the Backend declares cpu as a device only then), so CI runs this file on its own:

    TRITON_INTERPRET=1 python -m pytest -q tests/test_triton.py

Shapes are small (the interpreter runs numpy per tile). Values, last state and all gradients are
compared with the float64 reference (reference/selective_scan.py) at mamba_ssm's tolerances.

GPU (marker gpu): the full grid (L up to 65536, N 1/16/64, fp32/fp16/bf16, every flag), VMamba stage
shapes, determinism, mamba_ssm's selective_scan_cuda when built (`python -m bench.build_mamba_ssm`),
and torch.compile(fullgraph=True) through impl="triton".
"""
from __future__ import annotations

import os

import sys

import pytest
import torch

if not torch.cuda.is_available():  # must precede every import of triton kernels
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        # another test module imported triton first, without the interpreter: its driver is fixed now
        pytest.skip("no CUDA: run these under the interpreter in their own process, "
                    "`TRITON_INTERPRET=1 python -m pytest tests/test_triton.py` (the README test command does)",
                    allow_module_level=True)
    os.environ.setdefault("TRITON_INTERPRET", "1")

import itertools  # noqa: E402
import subprocess  # noqa: E402
from pathlib import Path  # noqa: E402


from reference import selective_scan_backward_ref, selective_scan_ref  # noqa: E402
from tests.scan_cases import (NAMES, RANGES, TOL, assert_close, check_softplus_sweep, grad_tol,  # noqa: E402
                              independent_cross_merge, independent_cross_scan, make_inputs,
                              poisoned, softplus_sweep, weight_grad_floor)



def _check_cross(kern, x, H, W, mode, channels_last, tol=(1e-6, 1e-6), scan_only=False):
    """The raw cross kernels (outputs from poisoned memory) against the pixel-loop definition."""
    tag = f"{mode} cl={channels_last} {H}x{W} {x.dtype}"
    g = torch.randn(x.shape[0], 4, x.shape[3 if channels_last else 1], H * W, device=x.device).to(x.dtype)
    with poisoned():
        y = kern.cross_scan_fwd(x, mode, channels_last)
        m = None if scan_only else kern.cross_merge_fwd(g, H, W, mode, channels_last)
    assert torch.equal(y.cpu().double(), independent_cross_scan(x, mode, channels_last)), tag
    if m is not None:
        assert_close(f"merge {tag}", m.cpu(), independent_cross_merge(g, H, W, mode, channels_last), *tol)

REPO = Path(__file__).resolve().parent.parent
CUDA = torch.cuda.is_available()
DEV = "cuda" if CUDA else "cpu"
INTERP = os.environ.get("TRITON_INTERPRET") == "1"

triton = pytest.importorskip("triton", reason="triton is not installed: `pip install triton`")


@pytest.fixture(scope="module")
def kern():
    if not CUDA and not INTERP:
        pytest.skip("no CUDA and TRITON_INTERPRET is not 1")
    from vmamba_kernels.triton import launch as kernels

    assert kernels.unavailable_reason() is None
    return kernels


def _ref(ins, softplus, dout):
    u, delta, A, B, C, D, bias = [None if t is None else t.detach().double() for t in ins]
    y, last = selective_scan_ref(u, delta, A, B, C, D, bias, softplus, True, torch.float64)
    grads = selective_scan_backward_ref(u, delta, A, B, C, D, bias, softplus, dout.double())
    return y, last, grads


def _check_raw(kern, batch, KD, L, N, K, dtype, out_dtype, softplus, with_D, with_bias, grouped=True,
               ranges="mamba_ssm"):
    """Raw kernels (fwd + bwd, outputs from poisoned memory) against the float64 reference."""
    ins = make_inputs(batch, KD, L, N, K, dtype=dtype, device=DEV, grouped=grouped,
                      with_D=with_D, with_bias=with_bias, requires_grad=False, ranges=ranges, softplus=softplus)
    u, delta, A, B, C, D, bias = ins
    with poisoned():
        y, last, aux = kern.selective_scan_fwd(u, delta, A, B, C, D, bias, softplus, out_dtype)
    from vmamba_kernels.triton.tuning import scan_aux_shape

    shape, adt = scan_aux_shape(batch, KD, L, N, dtype)
    assert tuple(aux.shape) == tuple(shape) and aux.dtype == adt
    assert y.dtype == out_dtype and last.dtype == torch.float32 and last.shape == (batch, KD, N)
    dout = torch.randn(batch, KD, L, device=DEV).to(dtype)
    with poisoned():
        grads = kern.selective_scan_bwd(u, delta, A, B, C, D, bias, softplus, dout, aux)
    ry, rlast, rgrads = _ref(ins, softplus, dout)
    rtol, atol = TOL[dtype]
    assert_close("out", y, ry, rtol, atol)
    assert_close("last_state", last, rlast, rtol, atol)
    for name, t, g, rg in zip(NAMES, ins, grads, rgrads):
        if t is None:
            assert g is None, name
            continue
        assert g.dtype == t.dtype and g.shape == t.shape, (name, g.dtype, g.shape)
        rtol_g, atol_g = grad_tol(name, dtype)
        atol_g = atol_g + weight_grad_floor(name, u, delta, A, B, C, bias, softplus, dout, rgrads[1])
        assert_close(f"d{name}", g, rg.to(t.dtype) if dtype != torch.float32 else rg, rtol_g, atol_g)
    return grads


# ---- CPU (interpreter) and GPU: small cases ---------------------------------------------------------
# (batch, KD, L, N, K): awkward L (1, 7, 49, 197: several chunks of the interpreter's 32 steps),
# N 1 and 16, K 1 and 2, one group of 3 channels (odd block), batch 1
SMALL = [(1, 4, 1, 1, 1), (2, 4, 7, 16, 2), (1, 4, 49, 1, 2), (1, 2, 197, 1, 1), (2, 6, 33, 16, 2),
         (1, 3, 40, 4, 1)]


@pytest.mark.parametrize("case", SMALL, ids=lambda c: "B{}-KD{}-L{}-N{}-K{}".format(*c))
@pytest.mark.parametrize("softplus,with_D,with_bias", [(True, True, True), (False, False, False),
                                                        (True, False, True), (False, True, False)],
                         ids=["sp-D-b", "plain", "sp-b", "D"])
def test_scan_fp32(kern, case, softplus, with_D, with_bias):
    _check_raw(kern, *case, torch.float32, torch.float32, softplus, with_D, with_bias)


@pytest.mark.parametrize("dtype,out", [(torch.float16, torch.float32), (torch.float16, torch.float16),
                                       (torch.bfloat16, torch.float32)], ids=["f16-o32", "f16-o16", "bf16-o32"])
def test_scan_half(kern, dtype, out):
    _check_raw(kern, 2, 4, 37, 2, 2, dtype, out, True, True, True)


@pytest.mark.parametrize("sub", (2, 4))
@pytest.mark.parametrize("L,N", [(197, 1), (64, 1), (70, 4)])
def test_scan_forward_tile_of_several_chunks(kern, sub, L, N):
    """The forward iterating over SUB chunks at a time (selective_scan.fwd_sub: 2 on long N = 1 rows on
    the GPU) stores the same chunk-end states, so the backward's chunks are unchanged: L not a
    multiple of the tile, the last tile with chunks past the end."""
    import vmamba_kernels as vk

    ins = make_inputs(1, 4, L, N, 2, dtype=torch.float32, device=DEV, requires_grad=False)
    with vk.tuning("triton", block_override={("fwd_sub", N, L): sub}):
        grads = _check_raw(kern, 2, 4, L, N, 2, torch.float32, torch.float32, True, True, True)
        assert all(g is None or torch.isfinite(g).all() for g in grads)
        y, last, aux = kern.selective_scan_fwd(*ins, True, torch.float32)
    y1, last1, aux1 = kern.selective_scan_fwd(*ins, True, torch.float32)
    assert_close("aux", aux, aux1, 1e-5, 1e-6)
    assert_close("out", y, y1, 1e-5, 1e-6)


@pytest.mark.parametrize("sub", (2, 4))
@pytest.mark.parametrize("L", (197, 64))
def test_scan_backward_tile_of_several_chunks(kern, sub, L):
    """The N = 1 backward iterating over SUB chunks at a time (selective_scan.bwd_sub, a tuning knob):
    its tile starts from the stored state before its first chunk; L not a multiple of the tile."""
    import vmamba_kernels as vk

    with vk.tuning("triton", block_override={("bwd_sub", 1, L): sub}):
        _check_raw(kern, 2, 4, L, 1, 2, torch.float32, torch.float32, True, True, True)


def test_scan_3d_BC(kern):
    _check_raw(kern, 1, 4, 21, 2, 1, torch.float32, torch.float32, True, True, True, grouped=False)


# VMamba's ranges (tests/scan_cases.make_inputs(ranges="vmamba")): softplus inputs over [-12, 30] (negative,
# both sides of 0 and of the threshold 20), dt over [1e-4, 30] without softplus, A in [-16, -0.05]; the
# d_state 1 kernels and the general one, fp32 and fp16 in / fp32 out
@pytest.mark.parametrize("softplus", [True, False], ids=["softplus", "dt"])
@pytest.mark.parametrize("case", [(2, 4, 49, 1, 2, torch.float32), (1, 4, 33, 4, 1, torch.float32),
                                  (2, 4, 37, 1, 2, torch.float16)],
                         ids=lambda c: "B{}-KD{}-L{}-N{}-K{}-{}".format(*c[:5], str(c[5])[6:]))
def test_scan_vmamba_ranges(kern, case, softplus):
    batch, KD, L, N, K, dtype = case
    _check_raw(kern, batch, KD, L, N, K, dtype, torch.float32, softplus, True, True, ranges="vmamba")


def _public_api_or_skip():
    from vmamba_kernels import dispatch

    reason = dispatch.get_backend("triton").why_not("selective_scan", _args_cpu())
    if reason:
        pytest.skip("impl triton cannot run here: " + "; ".join(reason) +
                    " (on the CPU run `TRITON_INTERPRET=1 python -m pytest tests/test_triton.py`)")


@pytest.mark.parametrize("N", [1, 2])
def test_softplus_through_the_scan(kern, N):
    """softplus, its threshold and its gradient as the kernels compute them (tests/scan_cases.SOFTPLUS_SWEEP)."""
    _public_api_or_skip()
    check_softplus_sweep(*softplus_sweep("triton", N, DEV))


def test_last_state_detached_and_empty_inputs(kern):
    """Through the public API: the last state is detached; empty inputs give empty outputs, a zero state
    and zero gradients; empty maps empty routes (the shared path in vmamba_kernels/_library.py)."""
    import vmamba_kernels as vk

    _public_api_or_skip()
    ins = make_inputs(2, 4, 9, 2, 2, device=DEV)
    y, last = vk.selective_scan(*ins, delta_softplus=True, return_last_state=True, impl="triton")
    assert y.requires_grad and not last.requires_grad
    for batch, KD, L in ((2, 4, 0), (0, 4, 5)):
        ins = make_inputs(batch, KD, L, 3, 1, device=DEV)
        y, last = vk.selective_scan(*ins, delta_softplus=True, return_last_state=True, impl="triton")
        assert y.shape == (batch, KD, L) and torch.equal(last, torch.zeros(batch, KD, 3, device=DEV))
        for t, g in zip(ins, torch.autograd.grad(y.sum(), ins)):
            assert torch.equal(g, torch.zeros_like(t))
    x = torch.randn(2, 3, 0, 4, device=DEV, requires_grad=True)
    assert vk.cross_scan(x, impl="triton").shape == (2, 4, 3, 0)
    assert vk.cross_merge(torch.randn(2, 4, 3, 0, device=DEV), 0, 4, impl="triton").shape == (2, 3, 0, 4)


def test_aux_shape_and_chunks():
    from vmamba_kernels.triton import tuning as _config

    for L in (1, 7, 16, 17, 49, 197, 3136, 65536):
        for N in (1, 16, 64):
            T = _config.chunk_len(L, N)
            assert T >= 16 and T & (T - 1) == 0
            assert _config.n_chunks(L, N) * T >= L > (_config.n_chunks(L, N) - 1) * T or L <= T


def test_public_api_autograd(kern):
    import vmamba_kernels as vk

    _public_api_or_skip()
    ins = make_inputs(2, 4, 23, 2, 2, dtype=torch.float32, device=DEV)
    y, last = vk.selective_scan(*ins, delta_softplus=True, return_last_state=True, impl="triton")
    dout = torch.randn_like(y)
    y.backward(dout)
    ry, rlast, rg = _ref(ins, True, dout)
    assert_close("out", y, ry, *TOL[torch.float32])
    assert_close("last", last, rlast, *TOL[torch.float32])
    for name, t, g in zip(NAMES, ins, rg):
        assert_close(f"d{name}", t.grad, g, *grad_tol(name, torch.float32))
    x = torch.randn(2, 3, 5, 7, device=DEV, requires_grad=True)
    ys = vk.cross_scan(x, mode="cross2d", impl="triton")
    assert torch.equal(ys.cpu().double(), independent_cross_scan(x, "cross2d"))
    gy = torch.randn_like(ys)
    ys.backward(gy)
    assert_close("dx", x.grad.cpu(), independent_cross_merge(gy, 5, 7, "cross2d"), 1e-6, 1e-6)


def _args_cpu():
    from vmamba_kernels import validate

    ins = make_inputs(1, 2, 3, 1, 1, device=DEV, requires_grad=False)
    return validate.check_selective_scan(*ins, True, None)


def test_compile_fullgraph(kern):
    """torch.compile(fullgraph=True) over the custom ops (fake impls trace; backward included).
    On the CPU with the aot_eager backend (no C++ toolchain needed), on the GPU with inductor."""
    import vmamba_kernels as vk
    from vmamba_kernels import dispatch

    if dispatch.get_backend("triton").why_not("selective_scan", _args_cpu()):
        pytest.skip("impl triton cannot run on this device in this process (set TRITON_INTERPRET=1 first)")
    torch._dynamo.reset()

    def f(x, delta, A, B, C, D, bias):
        Bn, Dd, H, W = x.shape
        xs = vk.cross_scan(x, mode="cross2d", impl="triton").reshape(Bn, 4 * Dd, H * W)
        y = vk.selective_scan(xs, delta, A, B, C, D, bias, delta_softplus=True, impl="triton")
        return vk.cross_merge(y.reshape(Bn, 4, Dd, H * W), H, W, mode="cross2d", impl="triton")

    Bn, Dd, H, W, N = 2, 2, 5, 3, 2
    x = torch.randn(Bn, Dd, H, W, device=DEV, requires_grad=True)
    _, delta, A, B, C, D, bias = make_inputs(Bn, 4 * Dd, H * W, N, 4, device=DEV)
    cf = torch.compile(f, fullgraph=True, backend="inductor" if CUDA else "aot_eager")
    out = cf(x, delta, A, B, C, D, bias)
    out.sum().backward()
    g_c = [t.grad.clone() for t in (x, delta, A, B, C, D, bias)]
    for t in (x, delta, A, B, C, D, bias):
        t.grad = None
    ref = f(x, delta, A, B, C, D, bias)
    ref.sum().backward()
    assert_close("compiled out", out, ref, 1e-5, 1e-5)
    for name, a, t in zip(("x",) + NAMES[1:], g_c, (x, delta, A, B, C, D, bias)):
        assert_close(f"compiled d{name}", a, t.grad, 1e-5, 1e-5)


# ---- cross scan / merge ---------------------------------------------------------------------------
CROSS_MAPS = [(7, 7), (13, 13), (7, 13), (1, 1)]


@pytest.mark.parametrize("channels_last", (False, True), ids=["cf", "cl"])
@pytest.mark.parametrize("mode", ("cross2d", "unidi", "bidi"))
def test_cross_scan_merge(kern, mode, channels_last):
    for H, W in CROSS_MAPS:
        C, Bn = 3, 2
        shape = (Bn, H, W, C) if channels_last else (Bn, C, H, W)
        _check_cross(kern, torch.randn(shape, device=DEV), H, W, mode, channels_last)


@pytest.mark.parametrize("groups,hw_first", ((False, False), (True, False), (True, True)),
                         ids=["plain", "grouped", "grouped-image-last"])
def test_cross_cut_tiles(kern, groups, hw_first):
    """Tiles cut by the map's edge on both axes, every mode and layout: 5 x 9 in 4 x 8 tiles (H, W, the
    row stride not multiples of 2: alignment hints and reversal groups of 1), 12 x 20 in 8 x 16 tiles
    (groups of 4), 16 x 8 in 8 x 8 tiles (groups of 8); 3 channels in blocks of 2. grouped: the merge's
    reversed routes read forwards in groups (reverse_groups); image-last: the grid's order (hw_first)."""
    import vmamba_kernels as vk

    pins = {(cl, merge, 3, H, W): (bh, bw, 2, 4) for H, W, bh, bw in ((5, 9, 4, 8), (12, 20, 8, 16), (16, 8, 8, 8))
            for cl in (False, True) for merge in (False, True)}
    with vk.tuning("triton", reverse_groups=groups, hw_first=hw_first, cross_block_override=pins):
        _check_cut_tiles(kern)


def _check_cut_tiles(kern):
    for H, W in ((5, 9), (12, 20), (16, 8)):
        for channels_last in (False, True):
            for mode in ("cross2d", "unidi", "bidi"):
                shape = (2, H, W, 3) if channels_last else (2, 3, H, W)
                _check_cross(kern, torch.randn(shape, device=DEV), H, W, mode, channels_last)


def test_cross_64bit_offsets(kern, monkeypatch):
    """The int64 offset variant (images of >= 2^31 elements, too big to allocate in a test), forced on
    small maps: same results as the reference. The banded scan, int32 only, must step aside for it."""
    from vmamba_kernels.triton import cross_scan as cs

    monkeypatch.setattr(cs, "_big", lambda *a: True)
    for channels_last in (False, True):
        for mode in ("cross2d", "bidi"):
            for H, W in ((7, 7), (5, 9)):
                shape = (2, H, W, 3) if channels_last else (2, 3, H, W)
                _check_cross(kern, torch.randn(shape, device=DEV), H, W, mode, channels_last)


@pytest.mark.parametrize("cfg,hw_first", (
    (None, True), ({"band": 8, "small_side": 0}, True), ({"band": 2, "small_side": 0}, True),
    ({"band": 2, "small_side": 0}, False), ({}, True), ({"max_elems": 64}, True)),
    ids=["tiled", "band8", "band2", "band2-image-major", "default", "capped"])
def test_cross_scan_channels_last_bands(kern, cfg, hw_first):
    """The banded channels-last cross2d scan (square maps): bands that divide the map, leave a cut last
    band or exceed it (small_side 0: no whole-map rule); channel blocks with a cut last block; the
    defaults (whole small maps); a cap on elements per program that shrinks the channel block to 1 or
    hands 16 x 16 to the tiled kernel; None: the tiled kernel; both grid orders (hw_first)."""
    import vmamba_kernels as vk

    band = None if cfg is None else dict(vk.get_tuning("triton").band_scan, **cfg)
    with vk.tuning("triton", band_scan=band, hw_first=hw_first):
        for H, C in ((1, 1), (7, 3), (13, 5), (16, 9)):
            _check_cross(kern, torch.randn(2, H, H, C, device=DEV), H, H, "cross2d", True, scan_only=True)


@pytest.mark.tuning_pin
def test_cross_band_config(monkeypatch):
    """Which band shape each map gets on a GPU (interpreter clamps off): the tuned VMamba-T stages, channel
    blocks that shrink to keep a program within max_elems, and maps too wide for one band of one channel
    go to the tiled kernel."""
    from vmamba_kernels.triton import cross_scan as cs

    monkeypatch.setattr(cs, "interpret", lambda: False)
    assert cs._band_config(96, 56) == (4, 64, 32)
    assert cs._band_config(192, 28) == (4, 32, 32)
    assert cs._band_config(384, 14) == (16, 16, 16)
    assert cs._band_config(768, 7) == (8, 8, 16)
    assert cs._band_config(3, 7) == (8, 8, 4)
    assert cs._band_config(96, 512) == (4, 512, 4)
    assert cs._band_config(96, 2048) == (4, 2048, 1)
    assert cs._band_config(96, 2049) is None
    import vmamba_kernels as vk

    with vk.tuning("triton", band_scan=None):
        assert cs._band_config(96, 56) is None


@pytest.mark.tuning_pin
def test_cross_grid_order_and_limit():
    """The launch grid: image-last only while the images fit axis 2's 65535 limit, image-major
    otherwise; a map with more tiles than image-major allows gets a clear error (no launch needed)."""
    import vmamba_kernels as vk
    from vmamba_kernels.triton import cross_scan as cs

    assert vk.get_tuning("triton").hw_first
    assert cs._grid(128, 49, 3) == ((49, 3, 128), True)
    assert cs._grid(70000, 49, 3) == ((70000, 49, 3), False)
    with pytest.raises(ValueError, match="exceed the launch grid.*impl 'cuda'"):
        cs._grid(70000, 70000, 3)
    with vk.tuning("triton", hw_first=False):
        assert cs._grid(128, 49, 3) == ((128, 49, 3), False)


def test_import_without_triton_is_unavailable():
    code = ("import sys; sys.modules['triton'] = None\n"
            "import vmamba_kernels\n"
            "from vmamba_kernels import dispatch\n"
            "print('REASON', dispatch.get_backend('triton').unavailable_reason())\n")
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "REASON" in r.stdout and "triton is not installed" in r.stdout and "pip install triton" in r.stdout, r.stdout


# ---- GPU: full grid, VMamba shapes, determinism, mamba_ssm -------------------------------------------
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
GRID = []
for i, (L, N, dtype) in enumerate(itertools.product((1, 7, 49, 197, 1031, 3136), (1, 16, 64), DTYPES)):
    GRID.append((L, N, dtype, (1, 4)[i % 2], bool((i // 2) % 2), bool((i // 4) % 2), bool((i // 3) % 2)))


@pytest.mark.gpu
@pytest.mark.parametrize("ranges", RANGES)
@pytest.mark.parametrize("L,N,dtype,K,out_fp32,softplus,with_Db", GRID,
                         ids=[f"L{c[0]}-N{c[1]}-{str(c[2])[6:]}-K{c[3]}-o{int(c[4])}-sp{int(c[5])}-Db{int(c[6])}"
                              for c in GRID])
def test_gpu_grid(kern, L, N, dtype, K, out_fp32, softplus, with_Db, ranges):
    KD = 24 if K == 4 else 8
    _check_raw(kern, 2, KD, L, N, K, dtype, torch.float32 if out_fp32 else dtype, softplus, with_Db, with_Db,
               ranges=ranges)


@pytest.mark.gpu
@pytest.mark.parametrize("KD,L", [(384, 3136), (768, 784), (1536, 196), (3072, 49)])
def test_gpu_vmamba_stage_shapes(kern, KD, L):
    _check_raw(kern, 2, KD, L, 1, 4, torch.float16, torch.float32, True, True, True)


@pytest.mark.gpu
def test_gpu_long_L(kern):
    _check_raw(kern, 1, 4, 65536, 1, 1, torch.float32, torch.float32, True, True, True)


@pytest.mark.gpu
def test_gpu_deterministic(kern):
    u, delta, A, B, C, D, bias = make_inputs(2, 96, 1031, 1, 4, dtype=torch.float16, device="cuda",
                                             requires_grad=False)
    y, last, aux = kern.selective_scan_fwd(u, delta, A, B, C, D, bias, True, torch.float32)
    dout = torch.randn_like(y)
    g1 = kern.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux)
    g2 = kern.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux)
    for a, b in zip(g1, g2):
        assert torch.equal(a, b), "backward is not bitwise reproducible"


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_gpu_cross_all(kern, dtype):
    for (H, W), mode, cl in itertools.product(((7, 7), (14, 14), (56, 56), (5, 11), (1, 9), (33, 3), (300, 300)),
                                              ("cross2d", "unidi", "bidi"), (False, True)):
        C = 40
        x = torch.randn((2, H, W, C) if cl else (2, C, H, W), device="cuda").to(dtype)
        _check_cross(kern, x, H, W, mode, cl, tol=TOL[dtype])


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("L,N", ((49, 1), (197, 16), (3136, 4)))
def test_gpu_against_mamba_ssm(kern, dtype, L, N):
    try:
        from bench import mamba_ref
    except ImportError as e:
        pytest.skip(f"bench.mamba_ref not importable ({e})")
    if mamba_ref.load_selective_scan_cuda() is None:
        pytest.skip(f"mamba_ssm unavailable: {mamba_ref.unavailable_reason()}")
    u, delta, A, B, C, D, bias = make_inputs(2, 16, L, N, 4, dtype=dtype, device="cuda", requires_grad=False)
    y, last, aux = kern.selective_scan_fwd(u, delta, A, B, C, D, bias, True, dtype)
    my, mx = mamba_ref.mamba_fwd(u, delta, A, B, C, D, bias, True)
    assert_close("out vs mamba_ssm", y, my, *TOL[dtype])
    dout = torch.randn_like(y)
    ours = kern.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux)
    theirs = mamba_ref.mamba_bwd(u, delta, A, B, C, D, bias, True, dout, mx)
    for name, a, b in zip(NAMES, ours, theirs):
        assert_close(f"d{name} vs mamba_ssm", a, b, *grad_tol(name, dtype))


@pytest.mark.tuning_pin
def test_gpu_block_configs(monkeypatch):
    """The GPU defaults (no interpreter): the block of channels divides the group, tiles stay small,
    VMamba's N = 1 stages get the measured best (T 64: BLOCK_D 8 fwd with 16 tile elements per thread,
    BLOCK_D 2 / 1 warp bwd; stage 3's L = 196: T 256, BLOCK_D 4, 2 warps fwd)."""
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    from vmamba_kernels.triton import selective_scan as ss
    from vmamba_kernels.triton import tuning as _config

    for G in (1, 2, 3, 6, 8, 96, 192, 384, 768):
        for N in (1, 16, 64):
            for L in (1, 49, 196, 3136, 65536):
                for cfg in (ss._fwd_config(G, N, L), ss._bwd_config(G, N, L)):
                    bd, NP, T, warps = cfg
                    assert G % bd == 0 and NP >= N and T == _config.chunk_len(L, N) and warps in (1, 2, 4, 8)
                    assert bd * NP * T <= 4096
    assert ss._fwd_config(96, 1, 3136) == (8, 1, 64, 2)  # 2 chunks per iteration
    assert ss._bwd_config(96, 1, 3136) == (2, 1, 64, 1)
    assert ss._fwd_config(384, 1, 196) == (4, 1, 256, 2)
    assert ss._bwd_config(384, 1, 196) == (2, 1, 256, 1)
    assert ss._fwd_config(768, 1, 49) == (8, 1, 64, 1)
    assert ss._bwd_config(3, 1, 49) == (1, 1, 64, 1)
    assert _config.scan_aux_shape(2, 8, 3136, 1, torch.float16) == ((2, 8, 49, 1), torch.float32)
