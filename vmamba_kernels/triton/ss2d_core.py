"""Triton fused SS2D core (issue #18): the raw kernels ss2d_core_fwd / ss2d_core_bwd of the contract in
SS2D_CORE_CONTRACT.md (the composition around them, with the pixel-order GEMM that makes xdbl, is
vmamba_kernels._library.define_ss2d_core).

Layout of the work
- One program owns BLOCK_D channels d of one image and runs, one after the other, the four routes of
  those channels (route k is scan channel k*D + d, B/C group k) over all L steps, in chunks of T steps
  as the selective scan does (selective_scan.py: a (BLOCK_D, NP, T) register tile, tl.associative_scan
  of the affine pairs inside a chunk, the state carried between chunks; its combine functions and
  softplus are reused). At step l route k visits pixel p = route_pixel(k, l) (reference.route_index):
  u is read from x at p, the R dt terms and B / C from xdbl's row (p, k), and delta = dt_w[k] . dts is
  formed in registers (+ delta_bias, softplus).
- The routes are summed into y at the pixel by the program itself, in a fixed order: route 0 stores,
  routes 1..3 read back and add what the earlier routes of the same program wrote (a barrier between
  routes makes those stores visible to every thread of the program). No program touches another's
  channels, so there are no atomics and no (B, K, D, L) tensor: y (fp32 while it accumulates; cast
  once when out_dtype is 16-bit) is the only per-pixel write.
- Backward: a first launch of the forward kernel writes no y but the state at the end of every chunk
  of every route (B, K, D, n_chunks, N) fp32 (1/T of a route tensor per state: the backward recomputes
  the states of a chunk from it, nothing per step is stored). The backward kernel then walks each
  route's chunks in reverse, recomputes the chunk's states, runs the adjoint recurrence g_t = C_t dout_t
  + a_{t+1} g_{t+1} as a reverse scan that carries a_t (no shifted loads: the N = 1 scan kernel's
  combine), and reads dout = dy at the pixel (cross merge's adjoint is the cross scan). The gradient
  through u is summed over routes at the pixel like y; dxdbl (dt part = dt_w^T ddelta, B, C parts) is a
  sum over channels, written as per-program fp32 partials (B, n_blocks, L, K, R+2N) that torch sums in
  a fixed order; ddt_w / dA / dD / ddelta_bias are per-image partials summed over the batch by torch.
  Deterministic: no atomics anywhere.
- 64-bit offsets: program ids are cast to int64 before they multiply strides.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .fast_launch import launchable
from .selective_scan import _adjoint_combine, _affine_combine, _softplus
from .tuning import TUNING, cdiv, interpret
from .tuning import np2 as _np2

MODES = {"cross2d": 0, "unidi": 1, "bidi": 2}
K_ROUTES = 4
MAX_DSTATE = 16  # the (BLOCK_D, NP, T) tiles of the backward hold NP <= 16 states in registers


@triton.jit
def _route_pixel(l, H, W, L, KR: tl.constexpr, MODE: tl.constexpr):
    # pixel (row-major number) route KR visits at step l. cross2d: routes 1 / 3 column-major, 2 / 3 reversed;
    # unidi: all row-major; bidi: 2 / 3 reversed
    q = l
    if KR >= 2:
        if MODE != 1:
            q = L - 1 - l
    p = q
    if KR % 2 == 1:
        if MODE == 0:
            p = (q % H) * W + q // H
    return p


@triton.jit
def _dt_of(pre, mask, SOFTPLUS: tl.constexpr):
    """dt (0 where masked) and d dt / d pre from the pre-activation (delta + delta_bias), as _load_dt."""
    if SOFTPLUS:
        z = tl.exp2(tl.abs(pre) * -1.4426950408889634)
        dt = _softplus(pre, z)
        r = 1.0 / (1.0 + z)
        sig = tl.where(pre >= 0.0, r, z * r)
    else:
        dt = pre
        sig = tl.full(pre.shape, 1.0, tl.float32)
    return tl.where(mask, dt, 0.0), sig


@triton.jit
def _route_chunk(x_ptr, xdbl_ptr, dtw_ptr, pid_b, d, d_mask, kd, l, Dch, H, W, L, R, N,
                 KR: tl.constexpr, MODE: tl.constexpr, CL: tl.constexpr, BLOCK_D: tl.constexpr, T: tl.constexpr,
                 NP: tl.constexpr):
    """One chunk of route KR: the offsets of its pixels in x / y, u, the pre-activation of delta (without
    delta_bias), B and C (NP, T), and the offsets of its xdbl rows."""
    t_mask = l < L
    p = _route_pixel(l, H, W, L, KR, MODE)
    m2 = d_mask[:, None] & t_mask[None, :]
    if CL:
        xoffs = (pid_b * L + p[None, :]) * Dch + d[:, None]
    else:
        xoffs = (pid_b * Dch + d[:, None]) * L + p[None, :]
    u = tl.load(x_ptr + xoffs, mask=m2, other=0.0).to(tl.float32)
    C = R + 2 * N
    row = ((pid_b * L + p) * 4 + KR) * C  # (T,) int64: xdbl[b, p, KR, :]
    pre = tl.zeros((BLOCK_D, T), tl.float32)
    for r in range(0, R):  # delta = dt_w[KR] . dts in registers, one rank-1 term per dt rank
        dts_r = tl.load(xdbl_ptr + row + r, mask=t_mask, other=0.0).to(tl.float32)
        w_r = tl.load(dtw_ptr + kd * R + r, mask=d_mask, other=0.0).to(tl.float32)
        pre += w_r[:, None] * dts_r[None, :]
    n = tl.arange(0, NP)
    nt_mask = (n < N)[:, None] & t_mask[None, :]
    Bv = tl.load(xdbl_ptr + row[None, :] + R + n[:, None], mask=nt_mask, other=0.0).to(tl.float32)
    Cv = tl.load(xdbl_ptr + row[None, :] + R + N + n[:, None], mask=nt_mask, other=0.0).to(tl.float32)
    return xoffs, m2, u, pre, Bv, Cv, row, p, nt_mask


@triton.jit
def _route_weights(A_ptr, D_ptr, bias_ptr, kd, d_mask, N, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                   BLOCK_D: tl.constexpr, NP: tl.constexpr):
    n = tl.arange(0, NP)
    dn_mask = d_mask[:, None] & (n < N)[None, :]
    A_nat = tl.load(A_ptr + kd[:, None] * N + n[None, :], mask=dn_mask, other=0.0)
    if HAS_D:
        Dv = tl.load(D_ptr + kd, mask=d_mask, other=0.0)
    else:
        Dv = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + kd, mask=d_mask, other=0.0)
    else:
        bias = tl.zeros((BLOCK_D,), tl.float32)
    return A_nat, Dv, bias, dn_mask


@launchable
@triton.jit
def _ss2d_fwd_kernel(
    x_ptr, xdbl_ptr, dtw_ptr, A_ptr, D_ptr, bias_ptr, y_ptr, aux_ptr,
    Dch, H, W, L, R, N, NCHUNK,
    MODE: tl.constexpr, CL: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    WRITE_Y: tl.constexpr, STORE_AUX: tl.constexpr, BLOCK_D: tl.constexpr, NP: tl.constexpr, T: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1).to(tl.int64)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D).to(tl.int64)
    d_mask = d < Dch
    n = tl.arange(0, NP)
    tt = tl.arange(0, T)
    for k in tl.static_range(4):
        kd = k * Dch + d
        A_nat, Dv, bias, dn_mask = _route_weights(A_ptr, D_ptr, bias_ptr, kd, d_mask, N, HAS_D, HAS_BIAS,
                                                  BLOCK_D, NP)
        A = A_nat * 1.4426950408889634
        h = tl.zeros((BLOCK_D, NP), tl.float32)
        for c in range(0, NCHUNK):
            l = c * T + tt
            xoffs, m2, u, pre, Bv, Cv, row, p, nt_mask = _route_chunk(
                x_ptr, xdbl_ptr, dtw_ptr, pid_b, d, d_mask, kd, l, Dch, H, W, L, R, N, k, MODE, CL, BLOCK_D, T, NP)
            dt, _ = _dt_of(pre + bias[:, None], m2, SOFTPLUS)
            a = tl.exp2(dt[:, None, :] * A[:, :, None])
            b = (dt * u)[:, None, :] * Bv[None, :, :]
            acum, bcum = tl.associative_scan((a, b), 2, _affine_combine)
            hs = acum * h[:, :, None] + bcum
            # padded steps have dt = 0 (a = 1, b = 0): the last column is the last real state
            h = tl.sum(tl.where((tt == T - 1)[None, None, :], hs, 0.0), axis=2)
            if WRITE_Y:
                yv = tl.sum(hs * Cv[None, :, :], axis=1) + Dv[:, None] * u
                if k > 0:  # the earlier routes' sum at these pixels (written by this program)
                    yv += tl.load(y_ptr + xoffs, mask=m2, other=0.0)
                tl.store(y_ptr + xoffs, yv, mask=m2)
            if STORE_AUX:
                tl.store(aux_ptr + (((pid_b * 4 + k) * Dch + d[:, None]) * NCHUNK + c) * N + n[None, :], h,
                         mask=dn_mask)
        tl.debug_barrier()  # this route's stores to y are visible to every thread before the next route


@launchable
@triton.jit
def _ss2d_bwd_kernel(
    x_ptr, xdbl_ptr, dtw_ptr, A_ptr, D_ptr, bias_ptr, dy_ptr, aux_ptr,
    dx_ptr, dxdbl_p_ptr, ddtw_p_ptr, dA_p_ptr, dD_p_ptr, dbias_p_ptr,
    Dch, H, W, L, R, N, NCHUNK,
    MODE: tl.constexpr, CL: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, NP: tl.constexpr, T: tl.constexpr, RP: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1).to(tl.int64)
    n_dblk = tl.num_programs(1).to(tl.int64)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D).to(tl.int64)
    d_mask = d < Dch
    n = tl.arange(0, NP)
    tt = tl.arange(0, T)
    rr = tl.arange(0, RP)
    C = R + 2 * N
    ones = tl.full((BLOCK_D, NP, T), 1.0, tl.float32)
    for k in tl.static_range(4):
        kd = k * Dch + d
        A_nat, Dv, bias, dn_mask = _route_weights(A_ptr, D_ptr, bias_ptr, kd, d_mask, N, HAS_D, HAS_BIAS,
                                                  BLOCK_D, NP)
        A = A_nat * 1.4426950408889634
        m = tl.zeros((BLOCK_D, NP), tl.float32)  # a_{s+1} g_{s+1} flowing in from after this chunk
        dA_acc = tl.zeros((BLOCK_D, NP), tl.float32)
        dD_acc = tl.zeros((BLOCK_D,), tl.float32)
        db_acc = tl.zeros((BLOCK_D,), tl.float32)
        dw_acc = tl.zeros((BLOCK_D, RP), tl.float32)
        for ci in range(0, NCHUNK):
            c = NCHUNK - 1 - ci
            l = c * T + tt
            xoffs, m2, u, pre, Bv, Cv, row, p, nt_mask = _route_chunk(
                x_ptr, xdbl_ptr, dtw_ptr, pid_b, d, d_mask, kd, l, Dch, H, W, L, R, N, k, MODE, CL, BLOCK_D, T, NP)
            dout = tl.load(dy_ptr + xoffs, mask=m2, other=0.0).to(tl.float32)
            dt, sig = _dt_of(pre + bias[:, None], m2, SOFTPLUS)
            h0 = tl.load(aux_ptr + (((pid_b * 4 + k) * Dch + d[:, None]) * NCHUNK + (c - 1)) * N + n[None, :],
                         mask=dn_mask & (c > 0), other=0.0)
            a = tl.exp2(dt[:, None, :] * A[:, :, None])
            dtu = dt * u
            b = dtu[:, None, :] * Bv[None, :, :]
            acum, bcum = tl.associative_scan((a, b), 2, _affine_combine)
            hs = acum * h0[:, :, None] + bcum
            cdy = Cv[None, :, :] * dout[:, None, :]
            cdy = tl.where((tt == T - 1)[None, None, :], cdy + m[:, :, None], cdy)
            _, gs, _ = tl.associative_scan((ones, cdy, a), 2, _adjoint_combine, reverse=True)
            m = tl.sum(tl.where((tt == 0)[None, None, :], a * gs, 0.0), axis=2)
            q = gs * (hs - b)  # dL/d(dt A) = g_t a_t h_{t-1}
            dA_acc += tl.sum(q * dt[:, None, :], axis=2)
            gB = tl.sum(gs * Bv[None, :, :], axis=1)  # (BD, T)
            du = gB * dt + Dv[:, None] * dout
            if HAS_D:
                dD_acc += tl.sum(dout * u, axis=1)
            ddelta = tl.where(m2, (tl.sum(q * A_nat[:, :, None], axis=1) + gB * u) * sig, 0.0)
            db_acc += tl.sum(ddelta, axis=1)
            if k > 0:  # summed over routes at the pixel, as y in the forward
                du += tl.load(dx_ptr + xoffs, mask=m2, other=0.0)
            tl.store(dx_ptr + xoffs, du, mask=m2)
            # dxdbl partials of this program's channels: (B, n_blocks, L, K, R+2N)
            prow = (((pid_b * n_dblk + pid_d) * L + p) * 4 + k) * C
            t_mask = l < L
            for r in range(0, R):
                dts_r = tl.load(xdbl_ptr + row + r, mask=t_mask, other=0.0).to(tl.float32)
                w_r = tl.load(dtw_ptr + kd * R + r, mask=d_mask, other=0.0).to(tl.float32)
                tl.store(dxdbl_p_ptr + prow + r, tl.sum(w_r[:, None] * ddelta, axis=0), mask=t_mask)
                dw_acc += tl.where((rr == r)[None, :], tl.sum(ddelta * dts_r[None, :], axis=1)[:, None], 0.0)
            tl.store(dxdbl_p_ptr + prow[None, :] + R + n[:, None], tl.sum(gs * dtu[:, None, :], axis=0),
                     mask=nt_mask)
            tl.store(dxdbl_p_ptr + prow[None, :] + R + N + n[:, None], tl.sum(hs * dout[:, None, :], axis=0),
                     mask=nt_mask)
        w_row = pid_b * 4 * Dch + kd  # per-image partials (B, K*D, ...)
        tl.store(dA_p_ptr + w_row[:, None] * N + n[None, :], dA_acc, mask=dn_mask)
        tl.store(ddtw_p_ptr + w_row[:, None] * R + rr[None, :], dw_acc, mask=d_mask[:, None] & (rr < R)[None, :])
        if HAS_D:
            tl.store(dD_p_ptr + w_row, dD_acc, mask=d_mask)
        if HAS_BIAS:
            tl.store(dbias_p_ptr + w_row, db_acc, mask=d_mask)
        tl.debug_barrier()  # this route's dx stores are visible to every thread before the next route


def chunk_len(L: int) -> int:
    """Steps per chunk: 64 on the GPU (the scan's), 16 under the interpreter so small CPU tests cross
    chunk boundaries."""
    return max(16, min(_np2(L), 16 if interpret() else 64))


def _config(Dch: int, N: int, L: int, bwd: bool):
    """(BLOCK_D, NP, T, warps): the (BLOCK_D, NP, T) fp32 tile within 2048 elements forward, 1024 backward
    (the scan's budgets are 512 / 256 at d_state > 1; not yet swept on the GPU for the fused kernels).
    Sweeps pin a shape with TritonTuning.block_override[("ss2d_fwd" | "ss2d_bwd", D, N, L)] = (BLOCK_D, warps,
    T) (powers of two; the backward's pin also sets the chunks of its state pass)."""
    pin = TUNING.get().block_override.get(("ss2d_bwd" if bwd else "ss2d_fwd", Dch, N, L))
    if pin is not None:
        bd, warps, T = pin
        return bd, _np2(N), T, warps
    NP, T = _np2(N), chunk_len(L)
    budget = 256 if interpret() else (1024 if bwd else 2048)
    bd = 1
    while bd * 2 <= min(_np2(Dch), 32) and bd * 2 * NP * T <= budget:
        bd *= 2
    tile = bd * NP * T
    return bd, NP, T, (1 if tile <= 256 else 2 if tile <= 512 else 4)


def _common(x, xdbl, dt_w, A, D, delta_bias, mode, channels_last):
    Bn, L, K, C = xdbl.shape
    R, N = dt_w.shape[2], A.shape[1]
    Dch = dt_w.shape[1]
    H, W = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[3])
    Dp = D if D is not None else A
    bp = delta_bias if delta_bias is not None else A
    return Bn, L, R, N, Dch, H, W, Dp, bp


def _states(x, xdbl, dt_w, A, Dp, bp, flags, dims, cfg):
    """The state at the end of every chunk of every route, (B, K, D, n_chunks, N) fp32 (the forward kernel
    without its y)."""
    Bn, L, R, N, Dch, H, W = dims
    bd, NP, T, warps = cfg
    nch = cdiv(L, T)
    aux = torch.empty((Bn, K_ROUTES, Dch, nch, N), device=x.device, dtype=torch.float32)
    _ss2d_fwd_kernel[(Bn, cdiv(Dch, bd))](x, xdbl, dt_w, A, Dp, bp, aux, aux, Dch, H, W, L, R, N, nch,
                                                  WRITE_Y=False, STORE_AUX=True, BLOCK_D=bd, NP=NP, T=T,
                                                  num_warps=warps, **flags)
    return aux


def ss2d_core_fwd(x, xdbl, dt_w, A, D, delta_bias, mode, channels_last, delta_softplus, out_dtype):
    Bn, L, R, N, Dch, H, W, Dp, bp = _common(x, xdbl, dt_w, A, D, delta_bias, mode, channels_last)
    bd, NP, T, warps = _config(Dch, N, L, bwd=False)
    y = torch.empty(x.shape, device=x.device, dtype=torch.float32)  # the fp32 sum over routes
    flags = dict(MODE=MODES[mode], CL=bool(channels_last), HAS_D=D is not None, HAS_BIAS=delta_bias is not None,
                 SOFTPLUS=bool(delta_softplus))
    _ss2d_fwd_kernel[(Bn, cdiv(Dch, bd))](x, xdbl, dt_w, A, Dp, bp, y, y, Dch, H, W, L, R, N,
                                                  cdiv(L, T), WRITE_Y=True, STORE_AUX=False, BLOCK_D=bd,
                                                  NP=NP, T=T, num_warps=warps, **flags)
    return y if out_dtype == torch.float32 else y.to(out_dtype)


def ss2d_core_bwd(x, xdbl, dt_w, A, D, delta_bias, dy, mode, channels_last, delta_softplus):
    Bn, L, R, N, Dch, H, W, Dp, bp = _common(x, xdbl, dt_w, A, D, delta_bias, mode, channels_last)
    flags = dict(MODE=MODES[mode], CL=bool(channels_last), HAS_D=D is not None, HAS_BIAS=delta_bias is not None,
                 SOFTPLUS=bool(delta_softplus))
    dims = (Bn, L, R, N, Dch, H, W)
    cfg = _config(Dch, N, L, bwd=True)
    bd, NP, T, warps = cfg
    aux = _states(x, xdbl, dt_w, A, Dp, bp, flags, dims, cfg)
    nblk = cdiv(Dch, bd)
    dev, f32 = x.device, torch.float32
    C = R + 2 * N
    dx = torch.empty(x.shape, device=dev, dtype=f32)
    dxdbl_p = torch.empty((Bn, nblk, L, K_ROUTES, C), device=dev, dtype=f32)
    ddtw_p = torch.empty((Bn, K_ROUTES, Dch, R), device=dev, dtype=f32)
    dA_p = torch.empty((Bn, K_ROUTES * Dch, N), device=dev, dtype=f32)
    dD_p = torch.empty((Bn, K_ROUTES * Dch), device=dev, dtype=f32) if D is not None else None
    db_p = torch.empty((Bn, K_ROUTES * Dch), device=dev, dtype=f32) if delta_bias is not None else None
    _ss2d_bwd_kernel[(Bn, nblk)](x, xdbl, dt_w, A, Dp, bp, dy, aux, dx, dxdbl_p, ddtw_p, dA_p,
                                 dD_p if dD_p is not None else dA_p, db_p if db_p is not None else dA_p,
                                 Dch, H, W, L, R, N, aux.shape[3], BLOCK_D=bd, NP=NP, T=T, RP=_np2(R),
                                 num_warps=warps, **flags)
    dxdbl = dxdbl_p.sum(1) if nblk > 1 else dxdbl_p.view(Bn, L, K_ROUTES, C)  # fixed order: deterministic
    return (dx, dxdbl, ddtw_p.sum(0), dA_p.sum(0), dD_p.sum(0) if dD_p is not None else None,
            db_p.sum(0) if db_p is not None else None)
