"""Triton residual add + LayerNorm over channels ("add_layer_norm"; reference/norms.py).

Raw kernels: inputs arrive validated, x-like tensors contiguous in their layout ((B, C, H, W), or
(B, H, W, C) when channels_last). A program owns a tile of BLOCK_P pixels x BLOCK_C channels:
- channels-last: BLOCK_P rows of contiguous channels (a row reduction); one chunk holds the whole
  row for C <= 4096, so the tile is read once and the statistics come from registers.
- channels-first: BLOCK_P consecutive pixels of one image (contiguous, so every load is coalesced
  along pixels) and the channels in chunks of BLOCK_C at stride H*W.
The statistics are fp32. One chunk: mean, then the centred sum of squares from registers. Several
chunks: each chunk's mean and centred sum of squares, merged into the running pair (Chan's update),
so a large mean does not cancel the variance; a second pass over the chunks (L2) writes y.
s = x + branch_scale[b] * branch is rounded to x's dtype before the statistics, so the backward
(which reads the stored s) and the unfused model (which adds in x's dtype) see the same s.

Backward: per pixel c1 = sum(xhat * dy * w) / C and c2 = sum(dy * w) / C (pass 1 over the chunks),
then g = ds + rstd (dy w - xhat c1 - c2) (pass 2). dweight / dbias are per-program partial sums
in an fp32 scratch buffer (a row per program when one chunk holds all channels and the program
walks several pixel blocks, else a row per pixel block) that torch sums over rows afterwards:
deterministic, no atomics.
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from .. import _alloc
from .fast_launch import launchable
from .tuning import cdiv, interpret, launch_plan, np2, sm_count

# the backward from the output reads weights of smaller magnitude as +-MIN_WEIGHT (the cuda kernels' kMinWeight)
MIN_WEIGHT = tl.constexpr(1e-5)


@triton.jit
def _pixels(pid_p, pid_b, C, HW, NPIX, CHANNELS_LAST: tl.constexpr, BLOCK_P: tl.constexpr):
    """(row of mean/rstd (int64), valid, image of each pixel (int64), offset of channel 0, channel stride)."""
    if CHANNELS_LAST:  # pixels of all images flattened: row r starts at r * C
        r = pid_p.to(tl.int64) * BLOCK_P + tl.arange(0, BLOCK_P)
        ok = r < NPIX
        img = r // HW
        base = r * C
        cstride = 1
    else:  # BLOCK_P consecutive pixels of image pid_b
        p = pid_p * BLOCK_P + tl.arange(0, BLOCK_P)
        ok = p < HW
        img = pid_b.to(tl.int64) + tl.zeros([BLOCK_P], tl.int64)
        r = img * HW + p
        base = img * C * HW + p
        cstride = HW
    return r, ok, img, base, cstride


@triton.jit
def _load_s(X, BR, SCALE, off, m, ok, img, HAS_BRANCH: tl.constexpr, HAS_SCALE: tl.constexpr):
    """s in x's dtype (x + scale[b] * branch, added in fp32 and rounded once)."""
    x = tl.load(X + off, mask=m, other=0.0)
    if HAS_BRANCH:
        br = tl.load(BR + off, mask=m, other=0.0).to(tl.float32)
        if HAS_SCALE:
            br = br * tl.load(SCALE + img, mask=ok, other=0.0)[:, None]
        x = (x.to(tl.float32) + br).to(X.dtype.element_ty)
    return x


@launchable
@triton.jit
def _add_ln_fwd_kernel(X, BR, SCALE, W, BIAS, S, Y, MEAN, RSTD, C, HW_UNITS, NPIX, eps,
                       HWA: tl.constexpr, CHANNELS_LAST: tl.constexpr, HAS_BRANCH: tl.constexpr,
                       HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr, SINGLE: tl.constexpr,
                       BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    HW = HW_UNITS * HWA  # the compiler then knows HW is a multiple of HWA (aligned channel rows)
    r, ok, img, base, cstride = _pixels(tl.program_id(0), tl.program_id(1), C, HW, NPIX,
                                        CHANNELS_LAST, BLOCK_P)
    cc = tl.arange(0, BLOCK_C)
    if SINGLE:
        cm = cc < C
        m = ok[:, None] & cm[None, :]
        off = base[:, None] + cc[None, :] * cstride
        sx = _load_s(X, BR, SCALE, off, m, ok, img, HAS_BRANCH, HAS_SCALE)
        if HAS_BRANCH:
            tl.store(S + off, sx, mask=m)
        s = sx.to(tl.float32)
        mean = tl.sum(s, 1) / C
        d = tl.where(m, s - mean[:, None], 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(d * d, 1) / C + eps)
        y = d * rstd[:, None] * tl.load(W + cc, mask=cm, other=0.0)[None, :]
        if HAS_BIAS:
            y += tl.load(BIAS + cc, mask=cm, other=0.0)[None, :]
        tl.store(Y + off, y.to(Y.dtype.element_ty), mask=m)
    else:
        mean = tl.zeros([BLOCK_P], tl.float32)
        m2 = tl.zeros([BLOCK_P], tl.float32)
        for c0 in range(0, C, BLOCK_C):
            c = c0 + cc
            cm = c < C
            m = ok[:, None] & cm[None, :]
            off = base[:, None] + c[None, :] * cstride
            s = _load_s(X, BR, SCALE, off, m, ok, img, HAS_BRANCH, HAS_SCALE).to(tl.float32)
            nb = tl.sum(cm.to(tl.float32), 0)  # channels in this chunk
            na = c0 * 1.0  # channels before it
            mb = tl.sum(s, 1) / nb
            db = tl.where(m, s - mb[:, None], 0.0)
            delta = mb - mean
            mean += delta * (nb / (na + nb))
            m2 += tl.sum(db * db, 1) + delta * delta * (na * nb / (na + nb))
        rstd = 1.0 / tl.sqrt(m2 / C + eps)
        for c0 in range(0, C, BLOCK_C):
            c = c0 + cc
            cm = c < C
            m = ok[:, None] & cm[None, :]
            off = base[:, None] + c[None, :] * cstride
            sx = _load_s(X, BR, SCALE, off, m, ok, img, HAS_BRANCH, HAS_SCALE)
            if HAS_BRANCH:
                tl.store(S + off, sx, mask=m)
            y = (sx.to(tl.float32) - mean[:, None]) * rstd[:, None] * tl.load(W + c, mask=cm, other=0.0)[None, :]
            if HAS_BIAS:
                y += tl.load(BIAS + c, mask=cm, other=0.0)[None, :]
            tl.store(Y + off, y.to(Y.dtype.element_ty), mask=m)
    tl.store(MEAN + r, mean, mask=ok)
    tl.store(RSTD + r, rstd, mask=ok)


@triton.jit
def _ln_bwd_load(DY, S, W, BIAS, off, m, cm, c, mean, rstd, FROM_Y: tl.constexpr, HAS_BIAS: tl.constexpr):
    """(xhat, dy, dy * w) of one tile in fp32 (zero outside the tile). FROM_Y: S holds the output y and
    xhat = (y - bias) / weight, |weight| clamped at MIN_WEIGHT (as the cuda kernels)."""
    s = tl.load(S + off, mask=m, other=0.0).to(tl.float32)
    dy = tl.load(DY + off, mask=m, other=0.0).to(tl.float32)
    w = tl.load(W + c, mask=cm, other=1.0)
    if FROM_Y:
        wc = tl.where(tl.abs(w) < MIN_WEIGHT, tl.where(w < 0, -MIN_WEIGHT, MIN_WEIGHT), w)
        if HAS_BIAS:
            s = s - tl.load(BIAS + c, mask=cm, other=0.0)[None, :]
        xhat = tl.where(m, s / wc[None, :], 0.0)
    else:
        xhat = tl.where(m, (s - mean[:, None]) * rstd[:, None], 0.0)
    return xhat, dy, dy * tl.where(cm, w, 0.0)[None, :]


@triton.jit
def _ln_bwd_store(DS, SCALE, DX, DBR, off, m, ok, img, xhat, wdy, rstd, c1, c2,
                  HAS_DS: tl.constexpr, HAS_BRANCH: tl.constexpr, HAS_SCALE: tl.constexpr):
    """g = ds + rstd (dy w - xhat c1 - c2): dx = g, dbranch = g * scale[b]."""
    g = (wdy - xhat * c1[:, None] - c2[:, None]) * rstd[:, None]
    if HAS_DS:
        g += tl.load(DS + off, mask=m, other=0.0).to(tl.float32)
    tl.store(DX + off, g.to(DX.dtype.element_ty), mask=m)
    if HAS_BRANCH:
        if HAS_SCALE:
            g = g * tl.load(SCALE + img, mask=ok, other=0.0)[:, None]
        tl.store(DBR + off, g.to(DBR.dtype.element_ty), mask=m)


@launchable
@triton.jit
def _add_ln_bwd_kernel(DY, DS, S, W, BIAS, SCALE, MEAN, RSTD, DX, DBR, PW, PB, C, HW_UNITS, NPIX,
                       P_BLOCKS, N_BLOCKS, ITERS,
                       HWA: tl.constexpr, CHANNELS_LAST: tl.constexpr, HAS_DS: tl.constexpr,
                       HAS_BRANCH: tl.constexpr, HAS_SCALE: tl.constexpr, HAS_BIAS: tl.constexpr,
                       FROM_Y: tl.constexpr, SINGLE: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    HW = HW_UNITS * HWA
    pid = tl.program_id(0)
    G = tl.num_programs(0)
    cc = tl.arange(0, BLOCK_C)
    acc_w = tl.zeros([BLOCK_C], tl.float32)
    acc_b = tl.zeros([BLOCK_C], tl.float32)
    for it in range(ITERS):  # pixel blocks pid, pid + G, ... (a fixed order: deterministic sums)
        t = pid + it * G
        r, ok, img, base, cstride = _pixels(t % P_BLOCKS, t // P_BLOCKS, C, HW, NPIX, CHANNELS_LAST, BLOCK_P)
        ok = ok & (t < N_BLOCKS)
        rstd = tl.load(RSTD + r, mask=ok, other=0.0)
        if FROM_Y:  # mean is not needed (MEAN is a stand-in)
            mean = rstd
        else:
            mean = tl.load(MEAN + r, mask=ok, other=0.0)
        if SINGLE:  # the whole tile stays in registers
            cm = cc < C
            m = ok[:, None] & cm[None, :]
            off = base[:, None] + cc[None, :] * cstride
            xhat, dy, wdy = _ln_bwd_load(DY, S, W, BIAS, off, m, cm, cc, mean, rstd, FROM_Y, HAS_BIAS)
            c1 = tl.sum(xhat * wdy, 1) / C
            c2 = tl.sum(wdy, 1) / C
            _ln_bwd_store(DS, SCALE, DX, DBR, off, m, ok, img, xhat, wdy, rstd, c1, c2,
                          HAS_DS, HAS_BRANCH, HAS_SCALE)
            acc_w += tl.sum(dy * xhat, 0)
            acc_b += tl.sum(dy, 0)
        else:  # pass 1: the two per-pixel sums over the chunks; pass 2: g (tiles again, from L2)
            c1 = tl.zeros([BLOCK_P], tl.float32)
            c2 = tl.zeros([BLOCK_P], tl.float32)
            for c0 in range(0, C, BLOCK_C):
                c = c0 + cc
                cm = c < C
                m = ok[:, None] & cm[None, :]
                xhat, dy, wdy = _ln_bwd_load(DY, S, W, BIAS, base[:, None] + c[None, :] * cstride, m, cm, c, mean, rstd,
                                             FROM_Y, HAS_BIAS)
                c1 += tl.sum(xhat * wdy, 1)
                c2 += tl.sum(wdy, 1)
            c1 = c1 / C
            c2 = c2 / C
            for c0 in range(0, C, BLOCK_C):
                c = c0 + cc
                cm = c < C
                m = ok[:, None] & cm[None, :]
                off = base[:, None] + c[None, :] * cstride
                xhat, dy, wdy = _ln_bwd_load(DY, S, W, BIAS, off, m, cm, c, mean, rstd, FROM_Y, HAS_BIAS)
                _ln_bwd_store(DS, SCALE, DX, DBR, off, m, ok, img, xhat, wdy, rstd, c1, c2,
                              HAS_DS, HAS_BRANCH, HAS_SCALE)
                pm = cm & (t < N_BLOCKS)  # one scratch row per pixel block, written once
                tl.store(PW + t.to(tl.int64) * C + c, tl.sum(dy * xhat, 0), mask=pm)
                if HAS_BIAS:
                    tl.store(PB + t.to(tl.int64) * C + c, tl.sum(dy, 0), mask=pm)
    if SINGLE:  # one scratch row per program
        tl.store(PW + pid.to(tl.int64) * C + cc, acc_w, mask=cc < C)
        if HAS_BIAS:
            tl.store(PB + pid.to(tl.int64) * C + cc, acc_b, mask=cc < C)


# ---- launch configuration ------------------------------------------------------------------------
# Elements of one fp32 register tile. 4096 = 16 per thread at 8 warps: large enough to hide DRAM
# latency with a few programs per SM, small enough not to spill (the lead's H200 sweep may move it).
# The interpreter's cost is per program and op, not per element: it takes as large tiles, but
# chunks of 64 channels, so that the CPU tests cross chunk boundaries at C = 96 / 130.
TILE = 4096
TILE_INTERPRET = 4096
# channels-last rows up to this many channels are one chunk (read once, statistics from registers)
MAX_ROW = 4096
MAX_ROW_INTERPRET = 64
# channels-first: pixels per tile, 128 = 256 contiguous bytes per channel row in 16-bit
CF_PIXELS = 128
CF_PIXELS_INTERPRET = 64
# backward programs per SM when one chunk holds all channels (programs walk several pixel blocks and
# keep dweight / dbias partials in registers: a small scratch buffer)
BWD_PROGRAMS_PER_SM = 4
BWD_PROGRAMS_INTERPRET = 3


def _dims(x: torch.Tensor, channels_last: bool):
    if channels_last:
        B, H, W, C = x.shape
    else:
        B, C, H, W = x.shape
    return B, C, H * W


def _hw_align(HW: int) -> int:
    """Largest power of two <= 8 that divides HW (16-byte vectors of 16-bit pixels)."""
    a = 1
    while a < 8 and HW % (2 * a) == 0:
        a *= 2
    return a


def ln_config(C: int, HW: int, NPIX: int, channels_last: bool, block_p: Optional[int] = None,
              block_c: Optional[int] = None):
    """(BLOCK_P, BLOCK_C, SINGLE, num_warps) for one launch; block_p / block_c override (sweeps)."""
    tile = TILE_INTERPRET if interpret() else TILE
    if channels_last:
        max_row = MAX_ROW_INTERPRET if interpret() else MAX_ROW
        bc = block_c or min(np2(C), max_row)
        bp = block_p or max(1, min(tile // bc, np2(NPIX)))
    else:
        bp = block_p or min(np2(HW), CF_PIXELS_INTERPRET if interpret() else CF_PIXELS)
        bc = block_c or (np2(C) if np2(C) * bp <= tile else max(1, tile // bp))
    num_warps = max(1, min(8, bp * bc // 512))
    return bp, bc, bc >= C, num_warps


def _grid_blocks(B: int, HW: int, bp: int, channels_last: bool):
    """(pixel blocks per image, images) of the launch grid (channels-last flattens the images)."""
    if channels_last:
        return cdiv(B * HW, bp), 1
    return cdiv(HW, bp), B


def add_layer_norm_fwd(x: torch.Tensor, branch: Optional[torch.Tensor], weight: torch.Tensor,
                       bias: Optional[torch.Tensor], branch_scale: Optional[torch.Tensor], eps: float,
                       channels_last: bool, out_dtype: Optional[torch.dtype] = None,
                       block_p: Optional[int] = None, block_c: Optional[int] = None):
    """(y, s, mean, rstd): s = x + branch_scale[b] * branch (x itself when branch is None), y = LN(s)
    in out_dtype (None -> x.dtype); mean / rstd fp32 (B, H*W)."""
    B, C, HW = _dims(x, channels_last)
    f32, ydt = torch.float32, out_dtype or x.dtype
    if branch is None:
        y, mean, rstd = _alloc.empty_many(x, (x.shape, ydt), ((B, HW), f32), ((B, HW), f32))
        s = x
    else:
        y, s, mean, rstd = _alloc.empty_many(x, (x.shape, ydt), (x.shape, x.dtype), ((B, HW), f32), ((B, HW), f32))
    if x.numel() == 0:
        return y, s, mean, rstd
    bp, bc, single, nw = launch_plan("ln", ln_config, C, HW, B * HW, channels_last, block_p, block_c)
    hwa = _hw_align(HW)
    _add_ln_fwd_kernel[_grid_blocks(B, HW, bp, channels_last)](
        x, x if branch is None else branch, weight if branch_scale is None else branch_scale,
        weight, weight if bias is None else bias, s, y, mean, rstd, C, HW // hwa, B * HW, float(eps),
        HWA=hwa, CHANNELS_LAST=channels_last, HAS_BRANCH=branch is not None,
        HAS_SCALE=branch is not None and branch_scale is not None, HAS_BIAS=bias is not None,
        SINGLE=single, BLOCK_P=bp, BLOCK_C=bc, num_warps=nw)
    return y, s, mean, rstd


def _bwd_programs(n_blocks: int, device: torch.device) -> int:
    if interpret() or device.type != "cuda":
        return min(n_blocks, BWD_PROGRAMS_INTERPRET)
    return min(n_blocks, BWD_PROGRAMS_PER_SM * sm_count(device))


def add_layer_norm_bwd(dy: torch.Tensor, ds: Optional[torch.Tensor], s: torch.Tensor, weight: torch.Tensor,
                       bias: Optional[torch.Tensor], mean: torch.Tensor, rstd: torch.Tensor,
                       branch_scale: Optional[torch.Tensor], has_branch: bool, channels_last: bool,
                       x_dtype: torch.dtype, block_p: Optional[int] = None, block_c: Optional[int] = None,
                       from_y: bool = False):
    """(dx, dbranch, dweight, dbias): g = ds + dLN/ds . dy in fp32; dx = g, dbranch = g * branch_scale[b]
    (None without a branch), both in x_dtype; dweight / dbias fp32 (dbias None without a bias).
    from_y: `s` is the norm's output y and xhat = (y - bias) / weight (mean is not read)."""
    B, C, HW = _dims(s, channels_last)
    if s.numel() == 0:
        dx = torch.empty(s.shape, dtype=x_dtype, device=s.device)
        dbr = torch.empty(s.shape, dtype=x_dtype, device=s.device) if has_branch else None
        z = torch.zeros(C, dtype=torch.float32, device=s.device)
        return dx, dbr, z, (None if bias is None else z.clone())
    bp, bc, single, nw = launch_plan("ln", ln_config, C, HW, B * HW, channels_last, block_p, block_c)
    p_blocks, images = _grid_blocks(B, HW, bp, channels_last)
    n_blocks = p_blocks * images
    G = _bwd_programs(n_blocks, s.device)
    rows = G if single else n_blocks
    f32 = torch.float32
    specs = [(s.shape, x_dtype), ((rows, C), f32)]  # dx, pw; then dbranch, pb where there are a branch, a bias
    if has_branch:
        specs.append((s.shape, x_dtype))
    if bias is not None:
        specs.append(((rows, C), f32))
    made = _alloc.empty_many(s, *specs)
    dx, pw = made[0], made[1]
    dbr = made[2] if has_branch else None
    pb = made[-1] if bias is not None else pw
    hwa = _hw_align(HW)
    _add_ln_bwd_kernel[(G,)](
        dy, dy if ds is None else ds, s, weight, weight if bias is None else bias,
        weight if branch_scale is None else branch_scale, rstd if mean is None else mean, rstd, dx,
        dx if dbr is None else dbr, pw, pb, C, HW // hwa, B * HW,
        p_blocks, n_blocks, cdiv(n_blocks, G),
        HWA=hwa, CHANNELS_LAST=channels_last, HAS_DS=ds is not None, HAS_BRANCH=has_branch,
        HAS_SCALE=has_branch and branch_scale is not None, HAS_BIAS=bias is not None, FROM_Y=bool(from_y),
        SINGLE=single, BLOCK_P=bp, BLOCK_C=bc, num_warps=nw)
    dweight = pw.sum(0)  # fixed-order reduction of the partial rows
    dbias = pb.sum(0) if bias is not None else None
    return dx, dbr, dweight, dbias
