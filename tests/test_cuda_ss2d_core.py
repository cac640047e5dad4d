"""The CUDA fused SS2D core's raw kernels (csrc/ss2d_core/, impl "cuda") against the unfused chain in float64.

`ss2d_core_fwd` / `ss2d_core_bwd` (the raw-kernel contract of issue #18) against the composition written here from
the reference ops, run in float64 on the same inputs: cross_scan_ref, the route gather of xdbl (pixel order ->
route order through route_index), the dt projection, selective_scan_parallel and cross_merge_ref (routes
scattered back through route_index when K < 4). y and every gradient of the contract (dx through u, dxdbl, ddt_w,
dA, dD, ddelta_bias) with the selective scan's per-dtype tolerances (tests/scan_cases.py).

* CPU emulation (needs nvcc, no GPU): tests/cuda_emu runs the very kernel bodies (csrc/ss2d_core/
  ss2d_core_body.cuh) one fiber per CUDA thread, on small cases that reach every path: partial tiles, several
  chunks, 4- and 8-warp tiles, the shared and the global route accumulator, several backward rounds, d_state 1 /
  4 / 16, every mode (K = 4, and K = 1 / 2), both layouts, the three dtypes, softplus off, no D / delta_bias.
* GPU (marker `gpu`): the extension's ops on awkward maps (7x7, 13x13, 1xW, Hx1, 14x14, odd non-square, several
  chunks), batch 1 and 2, d_state 1 / 4 / 16, fp32 / fp16 / bf16 with fp32 or x-dtype weights and xdbl, every
  mode, both layouts, D / delta_bias present or not, softplus on and off; poisoned outputs and scratch (every
  unwritten element reads NaN); several channel rounds per backward block (ss2d_bwd_splits); the global route
  accumulator (ss2d_global_acc); bitwise determinism of the backward; the input checks; a > 2^31-element case
  (slow).

Timing: bench/tuning/ss2d_core_cuda.py.
"""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

import vmamba_kernels as vk
from reference.cross_scan import cross_merge_ref, cross_scan_ref, route_index
from reference.selective_scan import selective_scan_parallel
from tests.scan_cases import TOL, assert_close, dA_rounding_floor, grad_tol, poisoned

gpu = pytest.mark.gpu

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# (H, W): one chunk (<= 256 steps) and several (L = 300, 323, 520, 600, 3136), 1 x W and H x 1
MAPS = ((7, 7), (13, 13), (1, 37), (29, 1), (14, 14), (5, 11), (17, 19), (3, 100), (1, 600), (520, 1))
# routes each mode's K selects from reference route_index's four
ROUTES = {("cross2d", 4): (0, 1, 2, 3), ("unidi", 4): (0, 1, 2, 3), ("bidi", 4): (0, 1, 2, 3),
          ("unidi", 1): (0,), ("bidi", 2): (0, 2)}


@pytest.fixture(scope="module")
def ops():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    try:
        from vmamba_kernels.cuda import extension  # noqa: F401
    except ImportError as e:
        pytest.skip(f"vmamba_kernels._C not built ({e})")
    if not hasattr(torch.ops.vmamba_cuda, "ss2d_core_fwd"):
        pytest.fail("vmamba_kernels._C was built without csrc/ss2d_core")
    return torch.ops.vmamba_cuda


@pytest.fixture(scope="module")
def emu():
    from tests import cuda_emu
    try:
        return cuda_emu.load()
    except RuntimeError as e:
        pytest.skip(str(e))


class GpuRunner:
    """The extension's ops; the plan is the extension's own (knobs force splits / the global accumulator)."""
    device = "cuda"

    def __init__(self, ops, warps=None, seg=None, bwd_seg=None, sweep=None, mma=None):
        # seg / bwd_seg: the forward's / backward's segments (None: the plan's; 0: the whole-map kernel, where warps,
        # the global accumulator and splits apply; n or "auto": the segmented kernel); sweep: the sweep forward's
        # tile "GxS" (None: the plan's, which runs it where it applies unless seg is given; 0: off); mma: the
        # sweep's dt projection on tensor cores (knob ss2d_sweep_mma)
        self.ops, self.warps, self.seg, self.bwd_seg, self.sweep = ops, warps, seg, bwd_seg, sweep
        self.mma = mma

    def __call__(self, x, xdbl, dt_w, A, Dp, bias, mode, cl, softplus, out_dtype, splits=None, global_acc=None):
        with vk.tuning("cuda", scan_poison=True, ss2d_bwd_splits=splits, ss2d_global_acc=global_acc,
                       ss2d_warps=self.warps, ss2d_fwd_seg=self.seg, ss2d_bwd_seg=self.bwd_seg,
                       ss2d_fwd_sweep=self.sweep, ss2d_sweep_mma=self.mma), poisoned():
            y = self.ops.ss2d_core_fwd(x, xdbl, dt_w, A, Dp, bias, mode, cl, softplus, out_dtype)
            dy = torch.randn(y.shape, device=y.device).to(out_dtype)
            grads = self.ops.ss2d_core_bwd(x, xdbl, dt_w, A, Dp, bias, dy, mode, cl, softplus)
        return y, dy, grads


class EmuRunner:
    """The kernel bodies on the CPU emulator with an explicit plan (warps 4 / 8, accumulator, splits)."""
    device = "cpu"

    def __init__(self, emu, warps=8, seg=0, bwd_seg=0, sweep=(0, 0)):
        self.emu, self.warps, self.seg, self.bwd_seg, self.sweep = emu, warps, seg, bwd_seg, sweep

    def __call__(self, x, xdbl, dt_w, A, Dp, bias, mode, cl, softplus, out_dtype, splits=None, global_acc=None):
        y, _ = self.emu.ss2d_core_fwd(x, xdbl, dt_w, A, Dp, bias, mode, cl, softplus, out_dtype, warps=self.warps,
                                      smem_acc=not global_acc, seg_steps=self.seg, sweep=self.sweep)
        dy = torch.randn(y.shape).to(out_dtype)
        grads, _ = self.emu.ss2d_core_bwd(x, xdbl, dt_w, A, Dp, bias, dy, mode, cl, softplus, warps=self.warps,
                                          smem_acc=not global_acc, splits=splits or 1, seg_steps=self.bwd_seg)
        # the op returns empty tensors for absent D / delta_bias
        grads = tuple(torch.empty(0) if g is None else g for g in grads)
        return y, dy, grads


def tf32_round(t):
    """t's values at tf32 precision (10 mantissa bits), rounded as csrc/common/warp_mma.cuh's tf32_round does: to
    nearest, ties away from zero; inf / nan kept."""
    u = t.float().view(torch.int32)
    finite = (u & 0x7F800000) != 0x7F800000
    return torch.where(finite, (u + 0x1000) & -0x2000, u).view(torch.float32).to(t.dtype)


def make_case(batch, D, H, W, N, R, K, dtype, *, channels_last, w_dtype=None, xdbl_dtype=None, with_D=True,
              with_bias=True, softplus=True, tf32_w=False, device="cuda"):
    """Inputs of the raw kernels in VMamba's ranges: delta = softplus(dt_w . dts + bias) mostly in
    [1e-3, 0.5] with some large values, A = -exp(U(log 0.5, log 8)) (A = -1..-N for VMamba's init).
    tf32_w: dt_w at tf32 precision, the precision of the sweep's tensor-core dt projection (its operands round to
    tf32, so the float64 reference takes the same weights)."""
    L = H * W
    shape = (batch, H, W, D) if channels_last else (batch, D, H, W)
    x = torch.randn(shape, device=device).to(dtype)
    xdbl = torch.randn(batch, L, K, R + 2 * N, device=device)
    xdbl[..., :R] *= 2.0  # dt terms: delta spans both sides of softplus' bend
    xdbl = xdbl.to(xdbl_dtype or dtype)
    dt_w = (torch.randn(K, D, R, device=device) * R ** -0.5).to(w_dtype or torch.float32)
    A = -torch.exp(math.log(0.5) + (math.log(8.0) - math.log(0.5)) * torch.rand(K * D, N, device=device))
    Dp = torch.randn(K * D, device=device) if with_D else None
    bias = (-4.0 + 4.0 * torch.rand(K * D, device=device)) if with_bias else None
    if not softplus:  # dt = dt_w . dts + bias must stay >= 0 without softplus (else the state grows)
        xdbl[..., :R] = xdbl[..., :R].abs()
        dt_w = dt_w.abs()
        bias = torch.rand(K * D, device=device) if with_bias else None
    if tf32_w:
        dt_w = tf32_round(dt_w)
    return x, xdbl, dt_w, A, Dp, bias


def composition(x, xdbl, dt_w, A, Dp, bias, mode, channels_last, softplus, dy):
    """The unfused chain in float64 with autograd: (y, {name: gradient})."""
    leaves = [None if t is None else t.detach().double().requires_grad_(True) for t in (x, xdbl, dt_w, A, Dp, bias)]
    x64, xdbl64, w64, A64, D64, b64 = leaves
    Bn, L, K, C = xdbl.shape
    H, W = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[3])
    D = dt_w.shape[1]
    R = dt_w.shape[2]
    N = (C - R) // 2
    routes = ROUTES[(mode, K)]
    xs = cross_scan_ref(x64, mode, channels_last)[:, list(routes)]  # (B, K, D, L)
    idx = route_index(mode, H, W, device=x.device)[list(routes)]  # (K, L)
    xr = torch.stack([xdbl64[:, idx[k], k, :] for k in range(K)], dim=1).transpose(2, 3)  # (B, K, C, L)
    dts, Bs, Cs = xr[:, :, :R], xr[:, :, R:R + N], xr[:, :, R + N:]
    delta = torch.einsum("bkrl,kdr->bkdl", dts, w64)
    ys = selective_scan_parallel(xs.reshape(Bn, K * D, L), delta.reshape(Bn, K * D, L), A64, Bs.contiguous(),
                                 Cs.contiguous(), D64, b64, delta_softplus=softplus, out_dtype=torch.float64)
    ys = ys.view(Bn, K, D, L)
    if K == 4:
        y = cross_merge_ref(ys, H, W, mode, channels_last)
    else:  # the K distinct routes scattered back to their pixels
        yf = torch.zeros(Bn, D, L, dtype=torch.float64, device=x.device)
        for k in range(K):
            yf = yf.index_add(2, idx[k], ys[:, k])
        y = yf.view(Bn, D, H, W)
        y = y.permute(0, 2, 3, 1).contiguous() if channels_last else y
    y.backward(dy.double())
    names = ("x", "xdbl", "dt_w", "A", "D", "delta_bias")
    grads = {n: (None if t is None else (t.grad if t.grad is not None else torch.zeros_like(t)))
             for n, t in zip(names, leaves)}
    # the dA floor of the scan's tests (cancellation in fp32 sums), from the route-ordered operands
    dyr = cross_scan_ref(dy.double(), mode, channels_last)[:, list(routes)].reshape(Bn, K * D, L)
    floor = dA_rounding_floor(xs.reshape(Bn, K * D, L).detach(), delta.reshape(Bn, K * D, L).detach(), A64.detach(),
                              Bs.detach(), Cs.detach(), None if b64 is None else b64.detach(), softplus, dyr)
    return y.detach(), grads, floor


def run_check(run, batch, D, H, W, N, R, K, mode, dtype, channels_last, *, w_x_dtype=False, xdbl_fp32=False,
              out_fp32=False, with_D=True, with_bias=True, softplus=True, splits=None, global_acc=None,
              tf32_w=False):
    x, xdbl, dt_w, A, Dp, bias = make_case(batch, D, H, W, N, R, K, dtype, channels_last=channels_last,
                                           w_dtype=dtype if w_x_dtype else torch.float32,
                                           xdbl_dtype=torch.float32 if xdbl_fp32 else dtype, with_D=with_D,
                                           with_bias=with_bias, softplus=softplus, tf32_w=tf32_w,
                                           device=run.device)
    out_dtype = torch.float32 if out_fp32 else dtype
    y, dy, (dx, dxdbl, ddt_w, dA, dD, dbias) = run(x, xdbl, dt_w, A, Dp, bias, mode, channels_last, softplus,
                                                   out_dtype, splits=splits, global_acc=global_acc)
    assert y.dtype == out_dtype and y.shape == x.shape
    for t in (dx, dxdbl, ddt_w, dA, dD, dbias):
        assert t.dtype == torch.float32
    assert dx.shape == x.shape and dxdbl.shape == xdbl.shape and ddt_w.shape == dt_w.shape and dA.shape == A.shape
    y_ref, g, floor = composition(x, xdbl, dt_w, A, Dp, bias, mode, channels_last, softplus, dy)
    tag = (f"B={batch} D={D} {H}x{W} N={N} R={R} K={K} {mode} cl={channels_last} {dtype} w_x={w_x_dtype} "
           f"xdbl32={xdbl_fp32} out32={out_fp32} Dp={with_D} bias={with_bias} sp={softplus} S={splits} "
           f"gacc={global_acc}")
    assert_close(f"y [{tag}]", y, y_ref, *TOL[dtype])
    assert_close(f"dx [{tag}]", dx, g["x"], *grad_tol("u", dtype))
    Rn = dt_w.shape[2]
    assert_close(f"dxdbl dts [{tag}]", dxdbl[..., :Rn], g["xdbl"][..., :Rn], *grad_tol("delta", dtype))
    assert_close(f"dxdbl B [{tag}]", dxdbl[..., Rn:Rn + N], g["xdbl"][..., Rn:Rn + N], *grad_tol("B", dtype))
    assert_close(f"dxdbl C [{tag}]", dxdbl[..., Rn + N:], g["xdbl"][..., Rn + N:], *grad_tol("C", dtype))
    assert_close(f"ddt_w [{tag}]", ddt_w, g["dt_w"], *grad_tol("delta_bias", dtype))
    rA, aA = grad_tol("A", dtype)
    assert_close(f"dA [{tag}]", dA, g["A"], rA, aA + floor)
    if with_D:
        assert_close(f"dD [{tag}]", dD, g["D"], *grad_tol("D", dtype))
    else:
        assert dD.numel() == 0
    if with_bias:
        assert_close(f"ddelta_bias [{tag}]", dbias, g["delta_bias"], *grad_tol("delta_bias", dtype))
    else:
        assert dbias.numel() == 0


def _grid():
    """Every (map, dtype) pair, with the other parameters cycled so that each value meets several maps."""
    cycle = itertools.cycle
    layouts, Ns, Ds = cycle((False, True)), cycle((1, 1, 16, 4)), cycle((3, 12, 20, 8))
    modes = cycle((("cross2d", 4), ("cross2d", 4), ("unidi", 4), ("bidi", 4), ("unidi", 1), ("bidi", 2)))
    batches, Rs = cycle((1, 2, 2)), cycle((1, 3, 6))
    flags = cycle(((False, False, False), (True, False, False), (False, True, True), (True, True, False)))
    opts = cycle(((True, True, True), (True, True, False), (False, True, True), (True, False, True)))
    cases = []
    for (H, W), dtype in itertools.product(MAPS, DTYPES):
        mode, K = next(modes)
        w_x, xdbl32, out32 = next(flags)
        with_D, with_bias, softplus = next(opts)
        cases.append(pytest.param(next(batches), next(Ds), H, W, next(Ns), next(Rs), K, mode, dtype, next(layouts),
                                  w_x, xdbl32, out32, with_D, with_bias, softplus,
                                  id=f"{H}x{W}-{str(dtype)[6:]}"))
    return cases


# ---- CPU emulation: the kernel bodies on small cases that reach every path -------------------------------------
EMU_CASES = [
    # batch, D, H, W, N, R, K, mode, dtype, channels_last, warps, options
    pytest.param(1, 3, 5, 6, 1, 2, 4, "cross2d", torch.float32, False, 8, {}, id="partial-tile"),
    pytest.param(2, 11, 3, 100, 1, 3, 4, "cross2d", torch.float16, True, 8, {"xdbl_fp32": True}, id="chunks-cl"),
    pytest.param(1, 3, 1, 37, 1, 2, 4, "cross2d", torch.float32, False, 4, {}, id="1xW"),
    pytest.param(1, 3, 29, 1, 2, 2, 4, "cross2d", torch.bfloat16, True, 4, {}, id="Hx1"),
    pytest.param(1, 9, 9, 29, 3, 3, 4, "cross2d", torch.float32, False, 4, {"splits": 2, "w_x_dtype": True},
                 id="warps4-rounds-N4"),
    pytest.param(1, 5, 4, 5, 16, 3, 4, "bidi", torch.float16, True, 8, {"out_fp32": True}, id="bidi-N16"),
    pytest.param(1, 5, 1, 300, 2, 1, 2, "bidi", torch.bfloat16, False, 8, {"global_acc": True}, id="bidi-K2-global"),
    pytest.param(1, 5, 290, 1, 1, 4, 1, "unidi", torch.float32, True, 4,
                 {"global_acc": True, "softplus": False, "with_bias": False}, id="unidi-K1-nosoftplus"),
    pytest.param(2, 17, 13, 13, 1, 6, 4, "unidi", torch.float32, True, 8,
                 {"global_acc": True, "splits": 3, "with_D": False, "with_bias": False}, id="unidi-global-rounds"),
]


@pytest.mark.parametrize("batch,D,H,W,N,R,K,mode,dtype,cl,warps,opts", EMU_CASES)
def test_emulated_against_float64_composition(emu, batch, D, H, W, N, R, K, mode, dtype, cl, warps, opts):
    run_check(EmuRunner(emu, warps), batch, D, H, W, N, R, K, mode, dtype, cl, **opts)


# the segmented forward (ss2d_seg_body.cuh): segments that split the map unevenly (and not by 4), one-position
# segments, one segment for the map (no transfer / prefix), more channels than one block, every mode and d_state
# bucket, both layouts, the row pass alone (bidi, unidi) and both passes (cross2d), more partial-sum rows than a chunk
SEG_EMU_CASES = [
    # batch, D, H, W, N, R, K, mode, dtype, channels_last, steps per segment, options
    pytest.param(1, 3, 7, 7, 1, 2, 4, "cross2d", torch.float32, False, 10, {}, id="7x7-seg10"),
    pytest.param(2, 11, 13, 13, 1, 6, 4, "cross2d", torch.float16, True, 16, {"xdbl_fp32": True}, id="13x13-cl"),
    pytest.param(1, 9, 6, 45, 1, 3, 4, "cross2d", torch.bfloat16, False, 37, {"w_x_dtype": True}, id="W45-seg37"),
    pytest.param(1, 3, 1, 37, 1, 2, 4, "cross2d", torch.float32, True, 1, {}, id="1xW-seg1"),
    pytest.param(1, 3, 29, 1, 2, 2, 4, "cross2d", torch.bfloat16, False, 8, {}, id="Hx1-N2"),
    pytest.param(1, 5, 4, 5, 16, 3, 4, "bidi", torch.float16, True, 3, {"out_fp32": True}, id="bidi-N16-seg3"),
    pytest.param(1, 5, 3, 9, 3, 5, 2, "bidi", torch.float32, False, 6, {"softplus": False}, id="bidi-K2-N3"),
    pytest.param(2, 17, 5, 6, 1, 4, 1, "unidi", torch.float32, True, 7, {"with_D": False, "with_bias": False},
                 id="unidi-K1"),
    pytest.param(1, 8, 14, 14, 1, 7, 4, "unidi", torch.float16, False, 196, {}, id="unidi-K4-one-seg"),
    pytest.param(1, 133, 7, 7, 1, 9, 4, "cross2d", torch.float16, True, 49, {}, id="D133-two-groups-one-seg"),
    pytest.param(1, 150, 5, 9, 4, 5, 4, "cross2d", torch.float32, False, 12, {}, id="D150-cf-groups"),
    # batch x segments = 180 rows of partial sums: the backward's two-level sum (chunks of kSumChunk = 64 rows)
    pytest.param(2, 3, 9, 10, 1, 2, 4, "cross2d", torch.float16, True, 1, {}, id="seg1-chunked-sums"),
]


@pytest.mark.parametrize("batch,D,H,W,N,R,K,mode,dtype,cl,seg,opts", SEG_EMU_CASES)
def test_emulated_segmented_forward(emu, batch, D, H, W, N, R, K, mode, dtype, cl, seg, opts):
    run_check(EmuRunner(emu, 8, seg), batch, D, H, W, N, R, K, mode, dtype, cl, **opts)


@pytest.mark.parametrize("batch,D,H,W,N,R,K,mode,dtype,cl,seg,opts", SEG_EMU_CASES)
def test_emulated_segmented_backward(emu, batch, D, H, W, N, R, K, mode, dtype, cl, seg, opts):
    """The segmented backward (ss2d_seg_bwd_body.cuh) on the same grid (the forward segmented too)."""
    run_check(EmuRunner(emu, 8, seg, seg), batch, D, H, W, N, R, K, mode, dtype, cl, **opts)


# the sweep forward (ss2d_sweep_body.cuh, d_state 1): tiles of 64 to 256 threads, maps that end mid-iteration and
# mid-slot, one iteration for the whole map, several channel groups with idle lanes, R large enough that the staging
# goes past its registers (R = 48: stage 4 of VMamba-T), every mode and K, both layouts, every dtype
SWEEP_EMU_CASES = [
    # batch, D, H, W, N, R, K, mode, dtype, channels_last, (G, S), options
    pytest.param(1, 3, 7, 7, 1, 2, 4, "cross2d", torch.float32, False, (8, 8), {}, id="7x7-cf-8x8"),
    pytest.param(2, 11, 13, 13, 1, 6, 4, "cross2d", torch.float16, True, (16, 4), {"xdbl_fp32": True},
                 id="13x13-cl-16x4"),
    pytest.param(1, 9, 6, 45, 1, 3, 4, "cross2d", torch.bfloat16, False, (8, 16), {"w_x_dtype": True},
                 id="W45-8x16"),
    pytest.param(1, 3, 1, 37, 1, 2, 4, "cross2d", torch.float32, True, (32, 2), {}, id="1xW-32x2"),
    pytest.param(1, 3, 29, 1, 1, 2, 4, "cross2d", torch.bfloat16, False, (8, 8), {}, id="Hx1"),
    pytest.param(1, 5, 3, 9, 1, 5, 2, "bidi", torch.float32, False, (8, 8), {"softplus": False}, id="bidi-K2"),
    pytest.param(1, 5, 4, 5, 1, 3, 4, "bidi", torch.float16, True, (16, 4), {"out_fp32": True}, id="bidi-K4"),
    pytest.param(2, 17, 5, 6, 1, 4, 1, "unidi", torch.float32, True, (8, 8), {"with_D": False, "with_bias": False},
                 id="unidi-K1"),
    pytest.param(1, 8, 14, 14, 1, 7, 4, "unidi", torch.float16, False, (8, 32), {}, id="unidi-K4-14x14"),
    pytest.param(1, 70, 7, 7, 1, 48, 4, "cross2d", torch.float16, True, (32, 2), {}, id="D70-groups-R48"),
    pytest.param(1, 40, 5, 9, 1, 5, 4, "cross2d", torch.float32, False, (16, 16), {}, id="D40-cf-groups"),
    # the dt projection on tensor cores (knob ss2d_sweep_mma; warp_mma_tf32's shuffle emulation), with tf32 weights
    # as its operands have them: R padded to the k-step of 8 (6 -> 8, 12 -> 16, 48), idle lanes in the 16-channel
    # row blocks, one iteration for the whole map (16 x 16: 8 warps, 16 tiles)
    pytest.param(1, 20, 13, 13, 1, 6, 4, "cross2d", torch.bfloat16, False, (32, 4, True),
                 {"w_x_dtype": True, "tf32_w": True}, id="mma-13x13-cf-32x4"),
    pytest.param(2, 24, 7, 7, 1, 12, 4, "cross2d", torch.float16, True, (16, 16, True), {"tf32_w": True},
                 id="mma-7x7-16x16-R12"),
    pytest.param(1, 37, 3, 11, 1, 3, 2, "bidi", torch.float16, False, (16, 8, True),
                 {"softplus": False, "tf32_w": True}, id="mma-bidi-16x8"),
    pytest.param(1, 70, 7, 7, 1, 48, 4, "cross2d", torch.float16, True, (32, 2, True), {"tf32_w": True},
                 id="mma-R48"),
]


@pytest.mark.parametrize("batch,D,H,W,N,R,K,mode,dtype,cl,tile,opts", SWEEP_EMU_CASES)
def test_emulated_sweep_forward(emu, batch, D, H, W, N, R, K, mode, dtype, cl, tile, opts):
    run_check(EmuRunner(emu, 8, sweep=tile), batch, D, H, W, N, R, K, mode, dtype, cl, **opts)


def test_emulated_backward_is_bitwise_deterministic(emu):
    x, xdbl, dt_w, A, Dp, bias = make_case(1, 9, 6, 7, 1, 2, 4, torch.float16, channels_last=False, device="cpu")
    dy = torch.randn(x.shape).half()
    first, _ = emu.ss2d_core_bwd(x, xdbl, dt_w, A, Dp, bias, dy, "cross2d", False, True, splits=2)
    again, _ = emu.ss2d_core_bwd(x, xdbl, dt_w, A, Dp, bias, dy, "cross2d", False, True, splits=2)
    for a, b in zip(first, again):
        assert torch.equal(a, b)


# ---- GPU: the extension's ops ---------------------------------------------------------------------------------
@gpu
@pytest.mark.parametrize("batch,D,H,W,N,R,K,mode,dtype,cl,w_x,xdbl32,out32,with_D,with_bias,softplus", _grid())
@pytest.mark.parametrize("seg", [None, 0], ids=["plan", "whole-map"])
def test_against_float64_composition(ops, batch, D, H, W, N, R, K, mode, dtype, cl, w_x, xdbl32, out32, with_D,
                                     with_bias, softplus, seg):
    """The plan's kernels (segmented or sweep forward, segmented backward), and the whole-map kernels forced."""
    run_check(GpuRunner(ops, seg=seg, bwd_seg=seg), batch, D, H, W, N, R, K, mode, dtype, cl, w_x_dtype=w_x, xdbl_fp32=xdbl32,
              out_fp32=out32, with_D=with_D, with_bias=with_bias, softplus=softplus)


@gpu
@pytest.mark.parametrize("mode,K", [("cross2d", 4), ("unidi", 4), ("bidi", 4), ("unidi", 1), ("bidi", 2)])
@pytest.mark.parametrize("cl", [False, True])
def test_every_mode_and_layout(ops, mode, K, cl):
    run_check(GpuRunner(ops), 2, 12, 9, 31, 1, 4, K, mode, torch.float16, cl)


@gpu
@pytest.mark.parametrize("N", [1, 2, 16])
@pytest.mark.parametrize("cl", [False, True])
def test_vmamba_stage_like(ops, N, cl):
    """A VMamba-T stage 1 map (56 x 56: 13 chunks per route) at few channels, and stage 4's R = 48."""
    run_check(GpuRunner(ops), 1, 10, 56, 56, N, 6, 4, "cross2d", torch.float16, cl)
    run_check(GpuRunner(ops), 2, 9, 7, 7, N, 48, 4, "cross2d", torch.bfloat16, cl)


@gpu
@pytest.mark.parametrize("splits", [1, 2])
@pytest.mark.parametrize("cl", [False, True])
def test_backward_channel_rounds(ops, splits, cl):
    """Several tiles per backward block (later rounds add into the block's dxdbl slice)."""
    run_check(GpuRunner(ops), 2, 37, 11, 13, 1, 3, 4, "cross2d", torch.float32, cl, splits=splits)
    run_check(GpuRunner(ops), 1, 29, 20, 17, 4, 2, 4, "cross2d", torch.float16, cl, splits=splits)


@gpu
@pytest.mark.parametrize("warps", [4, 8])
@pytest.mark.parametrize("cl", [False, True])
def test_both_tile_sizes(ops, warps, cl):
    """4- and 8-channel tiles (the plan picks one by occupancy; the knob ss2d_warps forces it)."""
    run_check(GpuRunner(ops, warps, seg=0), 2, 13, 19, 17, 1, 6, 4, "cross2d", torch.float16, cl)
    run_check(GpuRunner(ops, warps, seg=0), 1, 6, 9, 9, 16, 3, 4, "cross2d", torch.float32, cl, splits=1)


@gpu
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("N", [1, 16])
def test_global_accumulator(ops, cl, N):
    """The route accumulator in global memory (the path of maps too large for shared memory), forced."""
    run_check(GpuRunner(ops, seg=0), 2, 11, 13, 23, N, 3, 4, "cross2d", torch.float16, cl, global_acc=True,
              splits=2)


@gpu
def test_large_map_takes_the_global_accumulator(ops):
    """150 x 100 = 15000 pixels: even a 4-channel tile's fp32 map (240 KB) exceeds shared memory (the whole-map
    forward and backward; the segmented kernels' blocks hold one segment whatever the map)."""
    run_check(GpuRunner(ops, seg=0, bwd_seg=0), 1, 3, 150, 100, 1, 2, 4, "cross2d", torch.float16, False)
    run_check(GpuRunner(ops, seg="auto"), 1, 3, 150, 100, 1, 2, 4, "cross2d", torch.float16, True)


@gpu
@pytest.mark.parametrize("seg", [1, 5, 64, 4096, "auto"])
@pytest.mark.parametrize("cl", [False, True])
def test_segmented_forward_segment_sizes(ops, seg, cl):
    """The segmented forward with segments forced (one position, uneven, 64, one segment for the map), several
    channel groups, d_state 1 / 3 / 16."""
    run_check(GpuRunner(ops, seg=seg), 2, 19, 13, 45, 1, 6, 4, "cross2d", torch.float16, cl)
    run_check(GpuRunner(ops, seg=seg), 1, 9, 11, 7, 3, 2, 2, "bidi", torch.bfloat16, cl)
    run_check(GpuRunner(ops, seg=seg), 1, 5, 6, 9, 16, 3, 4, "cross2d", torch.float32, cl)
    run_check(GpuRunner(ops, seg=seg), 2, 200, 7, 7, 1, 13, 4, "cross2d", torch.float16, cl)


@gpu
@pytest.mark.parametrize("seg", [1, 5, 16, 4096, "auto"])
@pytest.mark.parametrize("cl", [False, True])
def test_segmented_backward_segment_sizes(ops, seg, cl):
    """The segmented backward with segments forced (the forward whole-map, so that each is checked alone), several
    channel groups (dxdbl summed over groups), d_state 1 / 3 / 16."""
    run = GpuRunner(ops, seg=0, bwd_seg=seg)
    run_check(run, 2, 19, 13, 45, 1, 6, 4, "cross2d", torch.float16, cl)
    run_check(run, 1, 9, 11, 7, 3, 2, 2, "bidi", torch.bfloat16, cl)
    run_check(run, 1, 5, 6, 9, 16, 3, 4, "cross2d", torch.float32, cl)
    run_check(run, 2, 200, 7, 7, 1, 13, 4, "cross2d", torch.float16, cl)


@gpu
@pytest.mark.parametrize("cl", [False, True])
def test_segmented_backward_is_bitwise_deterministic(ops, cl):
    x, xdbl, dt_w, A, Dp, bias = make_case(3, 150, 23, 29, 1, 6, 4, torch.float16, channels_last=cl)
    dy = torch.randn_like(x)
    with vk.tuning("cuda", ss2d_bwd_seg="auto"):
        a = ops.ss2d_core_bwd(x, xdbl, dt_w, A, Dp, bias, dy, "cross2d", cl, True)
        b = ops.ss2d_core_bwd(x, xdbl, dt_w, A, Dp, bias, dy, "cross2d", cl, True)
    for u, v in zip(a, b):
        assert torch.equal(u, v)


@gpu
@pytest.mark.parametrize("value", ["abc", "-3", "12x"])
def test_segment_knobs_reject_bad_values(ops, value):
    """A knob value that is neither 'auto', 0 nor a positive count is an error naming the accepted values (it
    used to fall back silently)."""
    x, xdbl, dt_w, A, Dp, bias = make_case(1, 4, 3, 3, 1, 2, 4, torch.float16, channels_last=True)
    with vk.tuning("cuda", ss2d_fwd_seg=value), pytest.raises(RuntimeError, match="VMAMBA_SS2D_FWD_SEG must be"):
        ops.ss2d_core_fwd(x, xdbl, dt_w, A, Dp, bias, "cross2d", True, True, torch.float16)
    with vk.tuning("cuda", ss2d_bwd_seg=value), pytest.raises(RuntimeError, match="VMAMBA_SS2D_BWD_SEG must be"):
        ops.ss2d_core_bwd(x, xdbl, dt_w, A, Dp, bias, torch.randn_like(x), "cross2d", True, True)


@gpu
@pytest.mark.parametrize("tile", ["8x8", "8x32", "16x16", "32x2", "32x8"])
@pytest.mark.parametrize("cl", [False, True])
def test_sweep_forward_tiles(ops, tile, cl):
    """The sweep forward with its tile forced (the plan's "auto" needs a block per SM, more than these small cases
    have): the awkward maps (7 x 7, 13 x 13, 14 x 14, 1 x W, H x 1, uneven), batch 1, channel groups with idle lanes,
    every dtype, K = 2 and 1, R = 48."""
    run = GpuRunner(ops, sweep=tile)
    run_check(run, 2, 19, 13, 45, 1, 6, 4, "cross2d", torch.float16, cl)
    run_check(run, 1, 9, 11, 7, 1, 2, 2, "bidi", torch.bfloat16, cl)
    run_check(run, 1, 5, 6, 9, 1, 3, 4, "cross2d", torch.float32, cl, out_fp32=True)
    run_check(run, 2, 200, 7, 7, 1, 48, 4, "cross2d", torch.float16, cl, xdbl_fp32=True)
    run_check(run, 1, 33, 14, 14, 1, 6, 4, "cross2d", torch.bfloat16, cl, w_x_dtype=True)
    run_check(run, 1, 8, 1, 37, 1, 4, 1, "unidi", torch.float16, cl, with_D=False, with_bias=False)
    run_check(run, 1, 8, 29, 1, 1, 4, 4, "cross2d", torch.float32, cl, softplus=False)


@gpu
@pytest.mark.parametrize("tile", ["16x4", "16x16", "32x2", "32x8"])
@pytest.mark.parametrize("cl", [False, True])
def test_sweep_forward_mma(ops, tile, cl):
    """The sweep's dt projection on tensor cores (knob ss2d_sweep_mma; 16-bit xdbl, G >= 16), with tf32 weights as
    its operands have them (with fp32 weights it differs from the float64 reference by the weights' rounding, up to
    2^-11 of each term, which can exceed fp16's tolerance: reports/logs/2026-12-06_sweep_forward.md, call 61).
    fp32 xdbl keeps the FMA projection with the knob on."""
    run = GpuRunner(ops, sweep=tile, mma=True)
    run_check(run, 2, 19, 13, 45, 1, 6, 4, "cross2d", torch.float16, cl, tf32_w=True)
    run_check(run, 1, 9, 11, 7, 1, 2, 2, "bidi", torch.bfloat16, cl, tf32_w=True)
    run_check(run, 2, 200, 7, 7, 1, 48, 4, "cross2d", torch.float16, cl, tf32_w=True)
    run_check(run, 2, 200, 7, 7, 1, 48, 4, "cross2d", torch.float16, cl, xdbl_fp32=True, tf32_w=True)
    run_check(run, 1, 33, 14, 14, 1, 6, 4, "cross2d", torch.bfloat16, cl, w_x_dtype=True, tf32_w=True)
    run_check(run, 1, 8, 1, 37, 1, 4, 1, "unidi", torch.float16, cl, with_D=False, with_bias=False, tf32_w=True)


@gpu
@pytest.mark.parametrize("cl", [False, True])
def test_sweep_forward_auto_at_model_size(ops, cl):
    """The plan's own choice where the sweep applies (a block per SM: 48 batch rows x 12 channel groups of VMamba-T
    stage 3's 384 channels at 14 x 14): the default call runs the sweep (its output is bitwise one forced tile's) and
    agrees with the whole-map forward of the same inputs; ss2d_fwd_seg set keeps the sweep off."""
    x, xdbl, dt_w, A, Dp, bias = make_case(48, 384, 14, 14, 1, 24, 4, torch.float16, channels_last=cl)

    def fwd(**knobs):
        with vk.tuning("cuda", **knobs):
            return ops.ss2d_core_fwd(x, xdbl, dt_w, A, Dp, bias, "cross2d", cl, True, torch.float32)

    y = fwd()
    tiles = [f"{g}x{s}" for g in (8, 16, 32) for s in (1, 2, 4, 8, 16, 32) if 64 <= g * s <= 256]
    assert any(torch.equal(y, fwd(ss2d_fwd_sweep=t)) for t in tiles)
    whole_map = fwd(ss2d_fwd_sweep=0, ss2d_fwd_seg=0)
    torch.testing.assert_close(y, whole_map, rtol=2e-4, atol=2e-4)
    # the dt projection on tensor cores (off by default: slower, GPU call 61) rounds the weights to tf32: it agrees
    # with the whole-map forward of tf32 weights to fp32 rounding, and differs from the FMA projection
    mma = fwd(ss2d_fwd_sweep="32x4", ss2d_sweep_mma=True)
    assert not torch.equal(mma, fwd(ss2d_fwd_sweep="32x4"))
    w32 = tf32_round(dt_w)
    with vk.tuning("cuda", ss2d_fwd_sweep=0, ss2d_fwd_seg=0):
        whole_map_tf32 = ops.ss2d_core_fwd(x, xdbl, w32, A, Dp, bias, "cross2d", cl, True, torch.float32)
    torch.testing.assert_close(mma, whole_map_tf32, rtol=2e-4, atol=2e-4)
    # an explicit ss2d_fwd_seg (0: the whole-map kernel) takes precedence over the sweep's auto
    assert torch.equal(fwd(ss2d_fwd_seg=0), whole_map)


@gpu
def test_sweep_knob_errors(ops):
    """Bad tiles, a tile on d_state > 1 and a tile whose accumulator cannot fit raise, naming the knob."""
    x, xdbl, dt_w, A, Dp, bias = make_case(1, 4, 3, 3, 1, 2, 4, torch.float16, channels_last=True)
    for value in ("bogus", "16", "4x16", "8x3", "32x16"):
        with vk.tuning("cuda", ss2d_fwd_sweep=value), pytest.raises(RuntimeError, match="VMAMBA_SS2D_FWD_SWEEP must"):
            ops.ss2d_core_fwd(x, xdbl, dt_w, A, Dp, bias, "cross2d", True, True, torch.float16)
    x3, xdbl3, dt_w3, A3, Dp3, bias3 = make_case(1, 4, 3, 3, 3, 2, 4, torch.float16, channels_last=True)
    with vk.tuning("cuda", ss2d_fwd_sweep="8x8"), pytest.raises(RuntimeError, match="d_state 1 only"):
        ops.ss2d_core_fwd(x3, xdbl3, dt_w3, A3, Dp3, bias3, "cross2d", True, True, torch.float16)
    xb, xdblb, dt_wb, Ab, Dpb, biasb = make_case(1, 4, 200, 200, 1, 2, 4, torch.float16, channels_last=True)
    with vk.tuning("cuda", ss2d_fwd_sweep="32x8"), pytest.raises(RuntimeError, match="more than this GPU allows"):
        ops.ss2d_core_fwd(xb, xdblb, dt_wb, Ab, Dpb, biasb, "cross2d", True, True, torch.float16)


@gpu
@pytest.mark.parametrize("cl", [False, True])
@pytest.mark.parametrize("bwd_seg", [None, 0], ids=["plan", "whole-map-bwd"])
def test_backward_is_bitwise_deterministic(ops, cl, bwd_seg):
    x, xdbl, dt_w, A, Dp, bias = make_case(3, 40, 23, 29, 1, 6, 4, torch.float16, channels_last=cl)
    with vk.tuning("cuda", ss2d_bwd_seg=bwd_seg):
        y = ops.ss2d_core_fwd(x, xdbl, dt_w, A, Dp, bias, "cross2d", cl, True, torch.float16)
        dy = torch.randn_like(y)
        first = ops.ss2d_core_bwd(x, xdbl, dt_w, A, Dp, bias, dy, "cross2d", cl, True)
        for _ in range(2):
            again = ops.ss2d_core_bwd(x, xdbl, dt_w, A, Dp, bias, dy, "cross2d", cl, True)
            for a, b in zip(first, again):
                assert torch.equal(a, b)
        y2 = ops.ss2d_core_fwd(x, xdbl, dt_w, A, Dp, bias, "cross2d", cl, True, torch.float16)
    assert torch.equal(y, y2)


@gpu
def test_forward_default_plan(ops):
    """Unset, the forward takes the segmented kernel where "auto" runs the map as one segment: VMamba-T stage 4's
    7 x 7 map, also at d_state 1 with enough blocks for the sweep to apply (48 batch rows x 384 channels, as
    test_sweep_forward_auto_at_model_size at 14 x 14, where the sweep runs). A whole-map-only knob (tile size,
    global accumulator) set alone asks for the whole-map forward where the sweep does not apply (d_state 4), as
    channels-first does unset."""
    for batch, D, N, R in ((48, 384, 1, 24), (2, 40, 4, 3)):
        x, xdbl, dt_w, A, Dp, bias = make_case(batch, D, 7, 7, N, R, 4, torch.float16, channels_last=True)

        def fwd(**knobs):
            with vk.tuning("cuda", **knobs):
                return ops.ss2d_core_fwd(x, xdbl, dt_w, A, Dp, bias, "cross2d", True, True, torch.float32)

        seg = fwd(ss2d_fwd_seg="auto")
        assert torch.equal(fwd(), seg), N
        assert torch.equal(fwd(ss2d_fwd_seg=49), seg), N  # "auto" took the map (49 positions) as one segment
        torch.testing.assert_close(seg, fwd(ss2d_fwd_seg=0), rtol=2e-4, atol=2e-4)
        if N == 4:
            for knobs in ({"ss2d_warps": 8}, {"ss2d_global_acc": True}):
                assert torch.equal(fwd(**knobs), fwd(ss2d_fwd_seg=0, **knobs)), knobs
            # channels-first keeps the whole-map forward (the segmented one measured slower there, GPU call 64)
            xf = x.permute(0, 3, 1, 2).contiguous()
            with vk.tuning("cuda", ss2d_fwd_seg=0):
                whole = ops.ss2d_core_fwd(xf, xdbl, dt_w, A, Dp, bias, "cross2d", False, True, torch.float32)
            assert torch.equal(ops.ss2d_core_fwd(xf, xdbl, dt_w, A, Dp, bias, "cross2d", False, True, torch.float32),
                               whole)


@gpu
def test_backward_default_plan(ops):
    """Unset, the backward is the segmented one ("auto"); a whole-map-only knob (tile size, global accumulator,
    splits) set alone asks for the whole-map backward. Told apart by their results: the two kernels sum the
    gradients in different orders."""
    x, xdbl, dt_w, A, Dp, bias = make_case(2, 24, 13, 17, 1, 3, 4, torch.float16, channels_last=True)
    dy = torch.randn_like(x)

    def bwd(**knobs):
        with vk.tuning("cuda", **knobs):
            return ops.ss2d_core_bwd(x, xdbl, dt_w, A, Dp, bias, dy, "cross2d", True, True)

    def same(a, b):
        return all(torch.equal(u, v) for u, v in zip(a, b))

    plan, seg, whole = bwd(), bwd(ss2d_bwd_seg="auto"), bwd(ss2d_bwd_seg=0)
    assert same(plan, seg)
    assert not same(seg, whole)
    for knobs in ({"ss2d_warps": 8}, {"ss2d_global_acc": True}, {"ss2d_bwd_splits": 1}):
        assert same(bwd(**knobs), bwd(ss2d_bwd_seg=0, **knobs)), knobs
        assert not same(bwd(**knobs), seg), knobs
    # ss2d_global_acc=False does not ask for anything: the plan's backward
    assert same(bwd(ss2d_global_acc=False), seg)


@gpu
def test_input_checks(ops):
    x, xdbl, dt_w, A, Dp, bias = make_case(1, 8, 5, 6, 1, 2, 4, torch.float16, channels_last=False)
    f = ops.ss2d_core_fwd

    def bad(match, *args):
        with pytest.raises(RuntimeError, match=match):
            f(*args)

    bad("mode must be one of", x, xdbl, dt_w, A, Dp, bias, "diag", False, True, torch.float16)
    bad("xdbl", x, xdbl[:, :, :2].contiguous(), dt_w, A, Dp, bias, "cross2d", False, True, torch.float16)
    bad("xdbl", x, xdbl.to(torch.bfloat16), dt_w, A, Dp, bias, "cross2d", False, True, torch.float16)
    bad("xdbl", x, xdbl[..., :-1].contiguous(), dt_w, A, Dp, bias, "cross2d", False, True, torch.float16)
    bad("dt_w", x, xdbl, dt_w[:, :4].contiguous(), A, Dp, bias, "cross2d", False, True, torch.float16)
    bad("A", x, xdbl, dt_w, A.half(), Dp, bias, "cross2d", False, True, torch.float16)
    bad("d_state", x, torch.zeros(1, 30, 4, 2 + 34, device="cuda", dtype=torch.float16), dt_w,
        torch.zeros(32, 17, device="cuda"), Dp, bias, "cross2d", False, True, torch.float16)
    bad("D", x, xdbl, dt_w, A, Dp[:5], bias, "cross2d", False, True, torch.float16)
    bad("delta_bias", x, xdbl, dt_w, A, Dp, bias.double(), "cross2d", False, True, torch.float16)
    bad("x", x.cpu(), xdbl, dt_w, A, Dp, bias, "cross2d", False, True, torch.float16)
    bad("contiguous", x.transpose(2, 3), xdbl, dt_w, A, Dp, bias, "cross2d", False, True, torch.float16)
    # channels_last reads (1, 8, 5, 6) as H = 8, W = 5, D = 6: xdbl's 30 pixels and dt_w's 8 channels disagree
    bad("xdbl", x, xdbl, dt_w, A, Dp, bias, "cross2d", True, True, torch.float16)
    with pytest.raises(RuntimeError, match="dy"):
        ops.ss2d_core_bwd(x, xdbl, dt_w, A, Dp, bias, x[:, :4].contiguous(), "cross2d", False, True)


@gpu
@pytest.mark.slow
def test_more_than_2_31_elements(ops):
    """x with more than 2^31 elements (65538 x 8 channels x 64 x 64): the last two batch rows against the same
    rows run alone (64-bit offsets in every index)."""
    H = W = 64
    D, N, R, K = 8, 1, 2, 4
    batch = (2 ** 31) // (D * H * W) + 2
    x, xdbl, dt_w, A, Dp, bias = make_case(batch, D, H, W, N, R, K, torch.float16, channels_last=True)
    tail = slice(batch - 2, batch)
    # the same forward kernel for both calls (the plan's choice depends on the batch): the sweep, the whole-map, the
    # segmented
    for knobs in ({"ss2d_fwd_sweep": "8x32"}, {"ss2d_fwd_seg": 0}, {"ss2d_fwd_seg": "auto"}):
        with vk.tuning("cuda", **knobs):
            y = ops.ss2d_core_fwd(x, xdbl, dt_w, A, Dp, bias, "cross2d", True, True, torch.float16)
            y_tail = ops.ss2d_core_fwd(x[tail].contiguous(), xdbl[tail].contiguous(), dt_w, A, Dp, bias, "cross2d",
                                       True, True, torch.float16)
        assert torch.equal(y[tail], y_tail)
        del y, y_tail
    dy = torch.randn(x.shape, device="cuda", dtype=torch.float16)
    # the whole-map backward and the segmented one (whose partial sums over batch x 256 segments need more rows per
    # chunk than kSumChunk to keep the chunks under the grid's y limit)
    for bwd_seg in (0, "auto"):
        with vk.tuning("cuda", ss2d_bwd_seg=bwd_seg):
            dx, dxdbl = ops.ss2d_core_bwd(x, xdbl, dt_w, A, Dp, bias, dy, "cross2d", True, True)[:2]
            dx_t, dxdbl_t = ops.ss2d_core_bwd(x[tail].contiguous(), xdbl[tail].contiguous(), dt_w, A, Dp, bias,
                                              dy[tail].contiguous(), "cross2d", True, True)[:2]
        assert torch.equal(dx[tail], dx_t)
        assert torch.allclose(dxdbl[tail], dxdbl_t, rtol=1e-5, atol=1e-5)  # split sums may group differently
        del dx, dxdbl, dx_t, dxdbl_t
