"""Triton selective scan (Mamba S6 with VMamba's grouped B/C): forward and backward.

Layout of the work
- One program owns BLOCK_D channels of one batch row (all in one B/C group: BLOCK_D divides
  G = KD // K) and all N states, and walks L in chunks of T steps. A chunk is a
  (BLOCK_D, NP, T) register tile (NP = next power of two >= N); the recurrence
  h_t = a_t h_{t-1} + b_t inside a chunk is a `tl.associative_scan` over the T axis of the
  affine pairs (a, b) (combine: (a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2)); the state entering
  the chunk is applied afterwards (h = A_cum h_in + B_cum) and the last column is carried on.
  Padded steps (t >= L) have dt = 0, so a = 1 and b = 0 and the last column is the last real state.
- N = 1 (VMamba v2) has its own kernels on 2-D (BLOCK_D, T * SUB) tiles: the loads' layout (8
  consecutive steps per thread) then carries through the scans, so most of a scan is in-thread. The
  carries enter through the first (backward: last) step, so one scan output is used; the adjoint
  scan's elements carry a_t, so delta is not reloaded one step later. LV (`_row_align`) tells the
  compiler how aligned rows are, for vector loads when L % 16 != 0.
- The forward stores the state at the end of every chunk (aux, (batch, KD, n_chunks, N) fp32; T is
  a function of (L, N) only, `chunk_len`, so the backward sees the same chunks). The last chunk's
  state is last_state.
- The backward walks the chunks in reverse: recomputes the chunk's forward states from the stored
  state at its start, then runs the adjoint recurrence g_t = C_t dout_t + a_{t+1} g_{t+1} as a
  reverse `tl.associative_scan` on the pairs (a_{t+1}, C_t dout_t) (a_{t+1} recomputed from delta at
  t+1; no register shift needed), carrying g across chunks. a_t h_{t-1} is taken as h_t - b_t (no
  division, no shifted states).
- Determinism: no atomics. dB/dC are summed over the program's BLOCK_D channels inside the program
  into fp32 partials (batch, KD // BLOCK_D, N, L), then over the G // BLOCK_D programs of a group by
  a torch sum of fixed shape; dA / dD / ddelta_bias are per-(batch row, channel) fp32 partials
  summed over the batch by torch. Results are bitwise reproducible run to run.
- 64-bit offsets: program ids are cast to int64 before they multiply strides.
- Block shapes: T = 64 steps per chunk (256 on rows of 129..256 steps); for N = 1 BLOCK_D 8 (4 at
  T = 256) forward with 16 tile elements per thread, and BLOCK_D 2 with one warp backward; for larger
  N, BLOCK_D shrinks to keep the tile within budget (sweeps: reports/tuning.md, "Triton"). Not
  autotuned at run time (the chunk length fixes the aux shape, which must be known before the forward
  runs); the chunk loops are software-pipelined on long rows. The constants and the pins that sweeps
  and tests use are fields of `TritonTuning` (tuning.py; `vmamba_kernels.tuning("triton", ...)`).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import _alloc
from .fast_launch import launchable
from .tuning import TUNING, chunk_len, interpret, launch_plan, n_chunks, scan_aux_shape  # noqa: F401
from .tuning import np2 as _np2


def _block_d(G: int, NP: int, T: int, budget: int, cap: int) -> int:
    """Largest power of two dividing G, within the tile budget and cap."""
    bd = 1
    while bd * 2 <= cap and G % (bd * 2) == 0 and bd * 2 * NP * T <= budget:
        bd *= 2
    return bd


@triton.jit
def _affine_combine(a1, b1, a2, b2):
    # (a1, b1) applied first, then (a2, b2):  h -> a2 (a1 h + b1) + b2
    return a1 * a2, a2 * b1 + b2


@triton.jit
def _softplus(x, z):
    # max(x, 0) + log1p(z), z = exp(-|x|) in (0, 1]: log1p(z) = z P(z) (degree-8 fit, ~1e-7 relative),
    # one ex2 and no log or division. Above 20 this is x to fp32 precision (z < 3e-9 < ulp(x) / 2).
    p = 0.005253457929939032 * z - 0.02958850748836994
    p = p * z + 0.07836166769266129
    p = p * z - 0.13674770295619965
    p = p * z + 0.19111430644989014
    p = p * z - 0.24844369292259216
    p = p * z + 0.33319270610809326
    p = p * z - 0.49999502301216125
    p = p * z + 1.0
    return tl.maximum(x, 0.0) + z * p


@triton.jit
def _load_dt(delta_ptr, offs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """dt (post bias / softplus, fp32; 0 where masked) and d dt / d delta."""
    pre = tl.load(delta_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        pre = pre + bias[:, None]
    if SOFTPLUS:
        z = tl.exp2(tl.abs(pre) * -1.4426950408889634)
        dt = _softplus(pre, z)
        # sigmoid from the same z: 1 / (1 + z) above 0, z / (1 + z) below (no cancellation for small dt,
        # where 1 - exp(-dt) would lose digits); dead code in the forward
        r = 1.0 / (1.0 + z)
        sig = tl.where(pre >= 0.0, r, z * r)
    else:
        dt = pre
        sig = tl.full(pre.shape, 1.0, tl.float32)
    dt = tl.where(mask, dt, 0.0)
    return dt, sig


@launchable
@triton.jit
def _ssm_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, out_ptr, last_ptr, aux_ptr,
    KD, L, N, K, G, NCHUNK,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, NP: tl.constexpr, T: tl.constexpr, SUB: tl.constexpr, STAGES: tl.constexpr,
):
    # one iteration covers SUB chunks of T steps (a tile of T * SUB) and stores the state at the end of each
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1).to(tl.int64)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D).to(tl.int64)  # (BD,)
    n = tl.arange(0, NP)
    n_mask = n < N
    grp = (pid_d * BLOCK_D) // G
    dn_mask = (d[:, None] < KD) & n_mask[None, :]
    A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=dn_mask, other=0.0) * 1.4426950408889634
    if HAS_D:
        Dv = tl.load(D_ptr + d)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d)
    else:
        bias = tl.zeros((BLOCK_D,), tl.float32)
    row = pid_b * KD * L + d * L  # (BD,) int64
    bc_base = pid_b * K * N * L + grp * N * L
    tt = tl.arange(0, T * SUB)
    h = tl.zeros((BLOCK_D, NP), tl.float32)
    for c in tl.range(0, tl.cdiv(NCHUNK, SUB), num_stages=STAGES):
        t = c * (T * SUB) + tt
        t_mask = t < L
        m2 = t_mask[None, :] & (d[:, None] < KD)
        offs = row[:, None] + t[None, :]
        u = tl.load(u_ptr + offs, mask=m2, other=0.0).to(tl.float32)
        dt, _ = _load_dt(delta_ptr, offs, m2, bias, HAS_BIAS, SOFTPLUS)
        nt_mask = n_mask[:, None] & t_mask[None, :]
        bc_offs = bc_base + n[:, None] * L + t[None, :]
        Bv = tl.load(B_ptr + bc_offs, mask=nt_mask, other=0.0).to(tl.float32)
        Cv = tl.load(C_ptr + bc_offs, mask=nt_mask, other=0.0).to(tl.float32)
        a = tl.exp2(dt[:, None, :] * A[:, :, None])
        b = (dt * u)[:, None, :] * Bv[None, :, :]
        acum, bcum = tl.associative_scan((a, b), 2, _affine_combine)
        hs = acum * h[:, :, None] + bcum
        y = tl.sum(hs * Cv[None, :, :], axis=1)
        if HAS_D:
            y += Dv[:, None] * u
        tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=m2)
        for k in tl.static_range(SUB):
            h = tl.sum(tl.where((tt == (k + 1) * T - 1)[None, None, :], hs, 0.0), axis=2)
            ck = c * SUB + k
            tl.store(aux_ptr + ((pid_b * KD + d[:, None]) * NCHUNK + ck) * N + n[None, :], h,
                     mask=dn_mask & (ck < NCHUNK))
    tl.store(last_ptr + (pid_b * KD + d[:, None]) * N + n[None, :], h, mask=dn_mask)


@triton.jit
def _n1_rows(A_ptr, D_ptr, bias_ptr, KD, L, K, G, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
             BLOCK_D: tl.constexpr):
    """The N = 1 kernels' program: its batch row and channel block, the channels (BLOCK_D divides G, so
    all are valid and in one B/C group), their A (natural units), D and delta_bias (0 when absent),
    and the 64-bit offsets of their rows and of their group's B/C row."""
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1).to(tl.int64)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D).to(tl.int64)
    grp = (pid_d * BLOCK_D) // G
    A_nat = tl.load(A_ptr + d)
    if HAS_D:
        Dv = tl.load(D_ptr + d)
    else:
        Dv = tl.zeros((BLOCK_D,), tl.float32)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d)
    else:
        bias = tl.zeros((BLOCK_D,), tl.float32)
    return pid_b, pid_d, d, A_nat, Dv, bias, (pid_b * KD + d) * L, (pid_b * K + grp) * L


@launchable
@triton.jit
def _ssm_fwd_n1_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, out_ptr, last_ptr, aux_ptr,
    KD, L, K, G, NCHUNK,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, T: tl.constexpr, SUB: tl.constexpr, STAGES: tl.constexpr, LV: tl.constexpr,
):
    # N = 1: 2-D (BLOCK_D, T * SUB) tiles. Without the size-1 state axis the loads' layout (runs of
    # consecutive steps per thread) carries through the scan, so most of it is in-thread.
    L = L // LV * LV  # LV, a power of two, divides L: tells the compiler rows are LV-aligned (vector loads)
    pid_b, pid_d, d, A_nat, Dv, bias, row, bc_base = _n1_rows(A_ptr, D_ptr, bias_ptr, KD, L, K, G, HAS_D, HAS_BIAS,
                                                              BLOCK_D)
    A = A_nat * 1.4426950408889634
    tt = tl.arange(0, T * SUB)
    h = tl.zeros((BLOCK_D,), tl.float32)
    for c in tl.range(0, tl.cdiv(NCHUNK, SUB), num_stages=STAGES):
        t = c * (T * SUB) + tt
        t_mask = t < L
        m2 = t_mask[None, :]
        offs = row[:, None] + t[None, :]
        u = tl.load(u_ptr + offs, mask=m2, other=0.0).to(tl.float32)
        dt, _ = _load_dt(delta_ptr, offs, m2, bias, HAS_BIAS, SOFTPLUS)
        Bv = tl.load(B_ptr + bc_base + t, mask=t_mask, other=0.0).to(tl.float32)
        Cv = tl.load(C_ptr + bc_base + t, mask=t_mask, other=0.0).to(tl.float32)
        a = tl.exp2(dt * A[:, None])
        b = dt * u * Bv[None, :]
        b = tl.where((tt == 0)[None, :], a * h[:, None] + b, b)  # the carry enters through the first step
        _, hs = tl.associative_scan((a, b), 1, _affine_combine)
        y = hs * Cv[None, :]
        if HAS_D:
            y += Dv[:, None] * u
        tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=m2)
        for k in tl.static_range(SUB):
            h = tl.sum(tl.where((tt == (k + 1) * T - 1)[None, :], hs, 0.0), axis=1)
            ck = c * SUB + k
            tl.store(aux_ptr + (pid_b * KD + d) * NCHUNK + ck, h, mask=ck < NCHUNK)
    tl.store(last_ptr + pid_b * KD + d, h)


@launchable
@triton.jit
def _ssm_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, dout_ptr, aux_ptr,
    du_ptr, ddelta_ptr, dA_ptr, dBp_ptr, dCp_ptr, dD_ptr, dbias_ptr,
    KD, L, N, K, G, NCHUNK,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, NP: tl.constexpr, T: tl.constexpr, STAGES: tl.constexpr,
):
    pid_b = tl.program_id(0).to(tl.int64)
    pid_d = tl.program_id(1).to(tl.int64)
    n_dblk = tl.num_programs(1).to(tl.int64)
    d = pid_d * BLOCK_D + tl.arange(0, BLOCK_D).to(tl.int64)
    n = tl.arange(0, NP)
    n_mask = n < N
    grp = (pid_d * BLOCK_D) // G
    dn_mask = (d[:, None] < KD) & n_mask[None, :]
    A_nat = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=dn_mask, other=0.0)
    A = A_nat * 1.4426950408889634
    if HAS_D:
        Dv = tl.load(D_ptr + d)
    if HAS_BIAS:
        bias = tl.load(bias_ptr + d)
    else:
        bias = tl.zeros((BLOCK_D,), tl.float32)
    row = pid_b * KD * L + d * L
    bc_base = pid_b * K * N * L + grp * N * L
    part_base = (pid_b * n_dblk + pid_d) * N * L  # dB/dC partials (batch, KD // BLOCK_D, N, L)
    tt = tl.arange(0, T)
    g = tl.zeros((BLOCK_D, NP), tl.float32)  # adjoint of the state at the first step of the next chunk
    dA_acc = tl.zeros((BLOCK_D, NP), tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), tl.float32)
    db_acc = tl.zeros((BLOCK_D,), tl.float32)
    for ci in tl.range(0, NCHUNK, num_stages=STAGES):
        c = NCHUNK - 1 - ci
        t = c * T + tt
        t_mask = t < L
        m2 = t_mask[None, :] & (d[:, None] < KD)
        offs = row[:, None] + t[None, :]
        u = tl.load(u_ptr + offs, mask=m2, other=0.0).to(tl.float32)
        dout = tl.load(dout_ptr + offs, mask=m2, other=0.0).to(tl.float32)
        dt, sig = _load_dt(delta_ptr, offs, m2, bias, HAS_BIAS, SOFTPLUS)
        # a_{t+1} (0 past the end: nothing flows back from there)
        m2n = ((t + 1) < L)[None, :] & (d[:, None] < KD)
        dtn, _ = _load_dt(delta_ptr, offs + 1, m2n, bias, HAS_BIAS, SOFTPLUS)
        nt_mask = n_mask[:, None] & t_mask[None, :]
        bc_offs = bc_base + n[:, None] * L + t[None, :]
        Bv = tl.load(B_ptr + bc_offs, mask=nt_mask, other=0.0).to(tl.float32)
        Cv = tl.load(C_ptr + bc_offs, mask=nt_mask, other=0.0).to(tl.float32)
        # forward states of this chunk from the stored state at its start
        h0 = tl.load(aux_ptr + ((pid_b * KD + d[:, None]) * NCHUNK + (c - 1)) * N + n[None, :],
                     mask=dn_mask & (c > 0), other=0.0)
        a = tl.exp2(dt[:, None, :] * A[:, :, None])
        dtu = dt * u
        b = dtu[:, None, :] * Bv[None, :, :]
        acum, bcum = tl.associative_scan((a, b), 2, _affine_combine)
        hs = acum * h0[:, :, None] + bcum
        # adjoint: g_t = C_t dout_t + a_{t+1} g_{t+1}, reverse scan with the carry g
        an = tl.where(m2n[:, None, :], tl.exp2(dtn[:, None, :] * A[:, :, None]), 0.0)
        cdy = Cv[None, :, :] * dout[:, None, :]
        ga, gb = tl.associative_scan((an, cdy), 2, _affine_combine, reverse=True)
        gs = ga * g[:, :, None] + gb
        g = tl.sum(tl.where((tt == 0)[None, None, :], gs, 0.0), axis=2)
        q = gs * (hs - b)  # dL/d(dt A) = g_t a_t h_{t-1}
        dA_acc += tl.sum(q * dt[:, None, :], axis=2)
        gB = tl.sum(gs * Bv[None, :, :], axis=1)  # (BD, T)
        ddt = tl.sum(q * A_nat[:, :, None], axis=1) + gB * u
        du = gB * dt
        if HAS_D:
            du += Dv[:, None] * dout
            dD_acc += tl.sum(dout * u, axis=1)
        ddelta = ddt * sig
        ddelta = tl.where(m2, ddelta, 0.0)
        db_acc += tl.sum(ddelta, axis=1)
        tl.store(du_ptr + offs, du.to(du_ptr.dtype.element_ty), mask=m2)
        tl.store(ddelta_ptr + offs, ddelta.to(ddelta_ptr.dtype.element_ty), mask=m2)
        dBp = tl.sum(gs * dtu[:, None, :], axis=0)  # (NP, T)
        dCp = tl.sum(hs * dout[:, None, :], axis=0)
        p_offs = part_base + n[:, None] * L + t[None, :]
        tl.store(dBp_ptr + p_offs, dBp, mask=nt_mask)
        tl.store(dCp_ptr + p_offs, dCp, mask=nt_mask)
    w_offs = (pid_b * KD + d[:, None]) * N + n[None, :]
    tl.store(dA_ptr + w_offs, dA_acc, mask=dn_mask)
    if HAS_D:
        tl.store(dD_ptr + pid_b * KD + d, dD_acc)
    if HAS_BIAS:
        tl.store(dbias_ptr + pid_b * KD + d, db_acc)


@triton.jit
def _adjoint_combine(p1, g1, f1, p2, g2, f2):
    # reverse scan, block 1 later than block 2. A block of steps t..s is (a_{t+1}..a_s, G, a_t): its
    # first adjoint is g_t = G + a_{t+1}..a_s m for m = a_{s+1} g_{s+1} flowing in from after it.
    # Carrying a_t along avoids loading delta shifted by one step to get a_{t+1}.
    w = p2 * f1
    return w * p1, g2 + w * g1, f2


@launchable
@triton.jit
def _ssm_bwd_n1_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, dout_ptr, aux_ptr,
    du_ptr, ddelta_ptr, dA_ptr, dBp_ptr, dCp_ptr, dD_ptr, dbias_ptr,
    KD, L, K, G, NCHUNK,
    HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, T: tl.constexpr, SUB: tl.constexpr, STAGES: tl.constexpr, LV: tl.constexpr,
):
    # N = 1 backward on 2-D (BLOCK_D, T * SUB) tiles (see the forward's N = 1 kernel); a tile spans SUB
    # chunks and starts from the stored state before its first one.
    L = L // LV * LV
    pid_b, pid_d, d, A_nat, Dv, bias, row, bc_base = _n1_rows(A_ptr, D_ptr, bias_ptr, KD, L, K, G, HAS_D, HAS_BIAS,
                                                              BLOCK_D)
    A = A_nat * 1.4426950408889634
    n_dblk = tl.num_programs(1).to(tl.int64)
    part_base = (pid_b * n_dblk + pid_d) * L  # dB/dC partials (batch, KD // BLOCK_D, 1, L)
    tt = tl.arange(0, T * SUB)
    ones = tl.full((BLOCK_D, T * SUB), 1.0, tl.float32)
    m = tl.zeros((BLOCK_D,), tl.float32)  # adjoint flowing into the state at the end of this tile
    dA_acc = tl.zeros((BLOCK_D,), tl.float32)
    dD_acc = tl.zeros((BLOCK_D,), tl.float32)
    db_acc = tl.zeros((BLOCK_D,), tl.float32)
    NT = tl.cdiv(NCHUNK, SUB)
    for ci in tl.range(0, NT, num_stages=STAGES):
        c = NT - 1 - ci
        t = c * (T * SUB) + tt
        t_mask = t < L
        m2 = t_mask[None, :]
        offs = row[:, None] + t[None, :]
        u = tl.load(u_ptr + offs, mask=m2, other=0.0).to(tl.float32)
        dout = tl.load(dout_ptr + offs, mask=m2, other=0.0).to(tl.float32)
        dt, sig = _load_dt(delta_ptr, offs, m2, bias, HAS_BIAS, SOFTPLUS)
        Bv = tl.load(B_ptr + bc_base + t, mask=t_mask, other=0.0).to(tl.float32)
        Cv = tl.load(C_ptr + bc_base + t, mask=t_mask, other=0.0).to(tl.float32)
        h0 = tl.load(aux_ptr + (pid_b * KD + d) * NCHUNK + (c * SUB - 1), mask=c > 0, other=0.0)
        a = tl.exp2(dt * A[:, None])
        dtu = dt * u
        b = dtu * Bv[None, :]
        # the carries enter through the first / last step, so each scan has one output to use
        _, hs = tl.associative_scan((a, tl.where((tt == 0)[None, :], a * h0[:, None] + b, b)), 1,
                                    _affine_combine)
        cdy = Cv[None, :] * dout
        cdy = tl.where((tt == T * SUB - 1)[None, :], cdy + m[:, None], cdy)
        _, gs, _ = tl.associative_scan((ones, cdy, a), 1, _adjoint_combine, reverse=True)
        m = tl.sum(tl.where((tt == 0)[None, :], a * gs, 0.0), axis=1)
        q = gs * (hs - b)  # dL/d(dt A) = g_t a_t h_{t-1}
        dA_acc += tl.sum(q * dt, axis=1)
        gB = gs * Bv[None, :]
        du = gB * dt
        if HAS_D:
            du += Dv[:, None] * dout
            dD_acc += tl.sum(dout * u, axis=1)
        ddelta = (q * A_nat[:, None] + gB * u) * sig  # 0 on padded steps: g, q and sig are 0 there
        db_acc += tl.sum(ddelta, axis=1)
        tl.store(du_ptr + offs, du.to(du_ptr.dtype.element_ty), mask=m2)
        tl.store(ddelta_ptr + offs, ddelta.to(ddelta_ptr.dtype.element_ty), mask=m2)
        tl.store(dBp_ptr + part_base + t, tl.sum(gs * dtu, axis=0), mask=t_mask)
        tl.store(dCp_ptr + part_base + t, tl.sum(hs * dout, axis=0), mask=t_mask)
    tl.store(dA_ptr + pid_b * KD + d, dA_acc)
    if HAS_D:
        tl.store(dD_ptr + pid_b * KD + d, dD_acc)
    if HAS_BIAS:
        tl.store(dbias_ptr + pid_b * KD + d, db_acc)


def _stages(kind, nch):
    """Software-pipelining depth of the chunk loops (tl.range num_stages: the next chunks' loads are issued
    while the current one is computed): TritonTuning.pipeline_<kind>, else 3 from 8 chunks on, else 1
    (reports/tuning.md, "Triton pipelining")."""
    pinned = TUNING.get().pipeline_fwd if kind == "fwd" else TUNING.get().pipeline_bwd
    if pinned is not None:
        return pinned
    return 3 if nch >= 8 else 1


def fwd_sub(N, L):
    """Chunks per forward iteration, a power of two (the forward's tile is SUB * chunk_len steps; it still
    stores the state at every chunk end, so the backward's chunks do not change). 2 for N = 1 rows of
    >= 512 steps (reports/tuning.md, "Triton forward tile")."""
    pins = TUNING.get().block_override
    if ("fwd_sub", N, L) in pins:
        return pins[("fwd_sub", N, L)]
    return 2 if N == 1 and L >= 512 and not interpret() else 1


def bwd_sub(N, L):
    """Chunks per backward iteration of the N = 1 kernel (its tile is SUB * chunk_len steps; the chunks,
    hence aux, do not change). 1 unless TritonTuning.block_override[("bwd_sub", N, L)] says otherwise."""
    return TUNING.get().block_override.get(("bwd_sub", N, L), 1)


def _fwd_config(G, N, L):
    t = TUNING.get()
    if ("fwd", G, N, L) in t.block_override:
        bd, warps = t.block_override[("fwd", G, N, L)]
        return bd, _np2(N), chunk_len(L, N), warps
    if (G, N, L) in t.tuned_blocks:
        bd, warps = t.tuned_blocks[(G, N, L)][0]
        return bd, _np2(N), chunk_len(L, N), warps
    NP = _np2(N)
    T = chunk_len(L, N)
    # N = 1 rows of one 256-step chunk: BLOCK_D 4 (reports/tuning.md, "Triton block shapes")
    budget = 1024 if interpret() or (NP == 1 and T == 256) else t.fwd_tile
    bd = _block_d(G, NP, T, budget, 16)
    tile = bd * NP * T
    if NP == 1 and not interpret():
        # the 2-D N = 1 kernel: 16 elements of the (BLOCK_D, T * SUB) tile per thread (one warp on
        # single-chunk rows; reports/tuning.md, "Triton block shapes")
        return bd, NP, T, max(1, tile * fwd_sub(N, L) // 512)
    warps = 2 if tile <= 512 or (NP == 1 and tile <= 1024) else (4 if tile <= 2048 else 8)
    return bd, NP, T, warps


def _bwd_config(G, N, L):
    t = TUNING.get()
    if ("bwd", G, N, L) in t.block_override:
        bd, warps = t.block_override[("bwd", G, N, L)]
        return bd, _np2(N), chunk_len(L, N), warps
    if (G, N, L) in t.tuned_blocks:
        bd, warps = t.tuned_blocks[(G, N, L)][1]
        return bd, _np2(N), chunk_len(L, N), warps
    NP = _np2(N)
    T = chunk_len(L, N)
    if NP == 1 and not interpret():
        # the 2-D N = 1 kernel: BLOCK_D 2, one warp (fastest on every VMamba-T stage although the dB / dC
        # partials double against BLOCK_D 4; reports/tuning.md, "Triton block shapes")
        return _block_d(G, 1, T, 2 * T, 2), NP, T, 1
    # N = 1 rows of one 256-step chunk: BLOCK_D 4 with 4 warps (the rule before the 2-D N = 1 kernel)
    budget = 1024 if interpret() or (NP == 1 and T == 256) else t.bwd_tile
    bd = _block_d(G, NP, T, budget, 16)
    tile = bd * NP * T
    warps = 2 if tile <= 256 else (4 if tile <= 1024 else 8)
    return bd, NP, T, warps


def _row_align(L):
    """Largest power of two <= 8 dividing L (rows of fp16 start that many elements aligned)."""
    return min(8, L & -L)


def _as4(t, batch):
    return t if t.dim() == 4 else t.unsqueeze(1)


def _fwd_plan(G, N, L):
    """(BLOCK_D, NP, T, warps, chunks, SUB, STAGES, LV) of the forward for one shape."""
    bd, NP, T, warps = _fwd_config(G, N, L)
    nch = n_chunks(L, N)
    return bd, NP, T, warps, nch, fwd_sub(N, L), _stages("fwd", nch), _row_align(L)


def _bwd_plan(G, N, L):
    """(BLOCK_D, NP, T, warps, chunks, SUB, STAGES, LV) of the backward for one shape."""
    bd, NP, T, warps = _bwd_config(G, N, L)
    nch = n_chunks(L, N)
    if N == 1:
        sub = bwd_sub(N, L)
        return bd, NP, T, warps, nch, sub, _stages("bwd", -(-nch // sub)), _row_align(L)
    return bd, NP, T, warps, nch, 1, _stages("bwd", nch), _row_align(L)


def selective_scan_fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype):
    batch, KD, L = u.shape
    N = A.shape[1]
    B4, C4 = _as4(B, batch), _as4(C, batch)
    K = B4.shape[1]
    G = KD // K
    f32 = torch.float32
    if L == 0 or batch == 0 or KD == 0:
        out, last, aux = _alloc.empty_many(u, ((batch, KD, L), out_dtype), ((batch, KD, N), f32),
                                           ((batch, KD, n_chunks(L, N), N), f32))
        last.zero_()
        aux.zero_()
        return out, last, aux
    bd, NP, T, warps, nch, sub, stages, lv = launch_plan("scan_fwd", _fwd_plan, G, N, L)
    out, last, aux = _alloc.empty_many(u, ((batch, KD, L), out_dtype), ((batch, KD, N), f32),
                                       ((batch, KD, nch, N), f32))
    grid = (batch, KD // bd)
    Dp, bp = D if D is not None else A, delta_bias if delta_bias is not None else A
    flags = dict(HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
                 BLOCK_D=bd, T=T, SUB=sub, STAGES=stages, num_warps=warps)
    if N == 1:
        _ssm_fwd_n1_kernel[grid](u, delta, A, B4, C4, Dp, bp, out, last, aux, KD, L, K, G, nch,
                                 LV=lv, **flags)
    else:
        _ssm_fwd_kernel[grid](u, delta, A, B4, C4, Dp, bp, out, last, aux, KD, L, N, K, G, nch, NP=NP, **flags)
    return out, last, aux


def selective_scan_bwd(u, delta, A, B, C, D, delta_bias, delta_softplus, dout, aux):
    batch, KD, L = u.shape
    N = A.shape[1]
    B4, C4 = _as4(B, batch), _as4(C, batch)
    K = B4.shape[1]
    G = KD // K
    bd, NP, T, warps, nch, sub, stages, lv = launch_plan("scan_bwd", _bwd_plan, G, N, L)
    nblk = KD // bd
    f32 = torch.float32
    # dD_p / db_p (batch * KD floats each) are made with the rest whether or not D / delta_bias are given
    du, ddelta, dA_p, dB_p, dC_p, dD_p, db_p = _alloc.empty_many(
        u, (u.shape, u.dtype), (delta.shape, delta.dtype), ((batch, KD, N), f32), ((batch, nblk, N, L), f32),
        ((batch, nblk, N, L), f32), ((batch, KD), f32), ((batch, KD), f32))
    dD_p = dD_p if D is not None else None
    db_p = db_p if delta_bias is not None else None
    if L > 0 and batch > 0 and KD > 0:
        args = (u, delta, A, B4, C4, D if D is not None else A, delta_bias if delta_bias is not None else A,
                dout, aux, du, ddelta, dA_p, dB_p, dC_p,
                dD_p if dD_p is not None else dA_p, db_p if db_p is not None else dA_p, KD, L)
        flags = dict(HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(delta_softplus),
                     BLOCK_D=bd, T=T, num_warps=warps)
        if N == 1:
            _ssm_bwd_n1_kernel[(batch, nblk)](*args, K, G, nch, SUB=sub, LV=lv, STAGES=stages, **flags)
        else:
            _ssm_bwd_kernel[(batch, nblk)](*args, N, K, G, nch, NP=NP, STAGES=stages, **flags)
    else:
        for t in (du, ddelta, dA_p, dB_p, dC_p, dD_p, db_p):
            if t is not None:
                t.zero_()
    P = G // bd
    dB = dB_p.view(batch, K, P, N, L).sum(2) if P > 1 else dB_p.view(batch, K, N, L)
    dC = dC_p.view(batch, K, P, N, L).sum(2) if P > 1 else dC_p.view(batch, K, N, L)
    dB = dB.to(B.dtype).reshape(B.shape)
    dC = dC.to(C.dtype).reshape(C.shape)
    dA = dA_p.sum(0)
    dD = dD_p.sum(0) if dD_p is not None else None
    dbias = db_p.sum(0) if db_p is not None else None
    return du, ddelta, dA, dB, dC, dD, dbias
