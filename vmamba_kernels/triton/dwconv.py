"""Triton depthwise KxK convolution + bias + activation ("dwconv2d"; reference/dwconv.py).

Raw kernels: inputs arrive validated, x contiguous in its layout ((B, C, H, W), or (B, H, W, C)
when channels_last); weight (C, 1, K, K) fp32 with K odd, stride 1, zero padding K // 2; bias (C,)
fp32 or None; act "none" / "silu" / "gelu" (exact erf). A program owns a (BLOCK_H, BLOCK_W, BLOCK_C)
tile of one image; each of the K*K taps is one masked load of the tile shifted by the tap (the halo
rows / columns come from L1 / L2, zero outside the image), accumulated in fp32. Both layouts are the
same code with different strides and block shapes: channels-last tiles are a few pixels wide and
BLOCK_C channels deep (contiguous channels), channels-first tiles are one or a few channel planes
of BLOCK_H x BLOCK_W pixels (contiguous along w).

Backward, two kernels:
1. dz = dy * act'(z), the pre-activation z recomputed from x (not stored by the forward), written
   in x's dtype (as the unfused path's autograd does); dbias = sum dz and
   dweight[c, kh, kw] = sum dz * x shifted by the tap, accumulated in registers by programs that walk
   several tiles of one channel block, written as one fp32 scratch row per program and summed over
   the rows by torch afterwards (deterministic, no atomics).
2. dx = the transposed conv of dz: the forward kernel with the taps mirrored, no bias, no act.
(A single kernel would need dz on the tile's halo, i.e. K*K times the conv work or a staged tile;
the lead's GPU timing decides whether that is worth it.)
"""
from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from .. import _alloc
from .fast_launch import launchable
from .tuning import cdiv, interpret, launch_plan, np2, sm_count

_ACTS = {"none": 0, "silu": 1, "gelu": 2}


@triton.jit
def _tile(pid_t, TILES_W, img, C, H, W, pid_c, CHANNELS_LAST: tl.constexpr,
          BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    """3-D index vectors (h, w, c) of tile pid_t of image img, the image's base offset and the
    pixel / channel strides of the layout."""
    h = (pid_t // TILES_W) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None, None]
    w = (pid_t % TILES_W) * BLOCK_W + tl.arange(0, BLOCK_W)[None, :, None]
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)[None, None, :]
    base = img * C * H * W
    if CHANNELS_LAST:
        ps = C
        cs = 1
    else:
        ps = 1
        cs = H * W
    return h, w, c, base, ps, cs


@triton.jit
def _conv_tile(X, WT, h, w, c, cm, base, ps, cs, H, W, K: tl.constexpr, MIRROR: tl.constexpr,
               BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    """sum over taps of weight[c, kh, kw] * x[h + kh - R, w + kw - R] (the mirrored taps
    x[h - kh + R, w - kw + R] when MIRROR: the transposed conv), fp32."""
    R: tl.constexpr = K // 2
    acc = tl.zeros([BLOCK_H, BLOCK_W, BLOCK_C], tl.float32)
    x0 = X + base + (h * W + w) * ps + c * cs
    for kh in tl.static_range(K):
        dh = (R - kh) if MIRROR else (kh - R)
        mh = (h + dh >= 0) & (h + dh < H)
        for kw in tl.static_range(K):
            dw = (R - kw) if MIRROR else (kw - R)
            m = mh & ((w + dw >= 0) & (w + dw < W)) & cm
            xv = tl.load(x0 + (dh * W + dw) * ps, mask=m, other=0.0)
            acc += xv.to(tl.float32) * tl.load(WT + c * (K * K) + (kh * K + kw), mask=cm, other=0.0)
    return acc


@triton.jit
def _sigmoid(z):
    e = tl.exp(-tl.abs(z))  # never overflows
    return tl.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


@triton.jit
def _act(z, ACT: tl.constexpr):
    if ACT == 1:
        z = z * _sigmoid(z)
    elif ACT == 2:
        z = 0.5 * z * (1.0 + tl.erf(z * 0.7071067811865476))
    return z


@triton.jit
def _act_grad(z, ACT: tl.constexpr):
    """d act / dz."""
    if ACT == 1:
        sg = _sigmoid(z)
        d = sg * (1.0 + z * (1.0 - sg))
    elif ACT == 2:  # Phi(z) + z phi(z)
        d = 0.5 * (1.0 + tl.erf(z * 0.7071067811865476)) + z * 0.3989422804014327 * tl.exp(-0.5 * z * z)
    else:
        d = tl.full(z.shape, 1.0, tl.float32)
    return d


@launchable
@triton.jit
def _dwconv_fwd_kernel(X, WT, BIAS, Y, C, H, W_UNITS, TILES_W,
                       WA: tl.constexpr, K: tl.constexpr, CHANNELS_LAST: tl.constexpr, HAS_BIAS: tl.constexpr,
                       ACT: tl.constexpr, MIRROR: tl.constexpr,
                       BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    """y = act(conv(x) + bias) of one tile (MIRROR, no bias, no act: dx of the backward)."""
    W = W_UNITS * WA  # the compiler then knows W is a multiple of WA (aligned rows: wider accesses)
    img = tl.program_id(2).to(tl.int64)
    h, w, c, base, ps, cs = _tile(tl.program_id(0), TILES_W, img, C, H, W, tl.program_id(1),
                                  CHANNELS_LAST, BLOCK_H, BLOCK_W, BLOCK_C)
    cm = c < C
    z = _conv_tile(X, WT, h, w, c, cm, base, ps, cs, H, W, K, MIRROR, BLOCK_H, BLOCK_W, BLOCK_C)
    if HAS_BIAS:
        z += tl.load(BIAS + c, mask=cm, other=0.0)
    y = _act(z, ACT)
    tl.store(Y + base + (h * W + w) * ps + c * cs, y.to(Y.dtype.element_ty), mask=(h < H) & (w < W) & cm)


@launchable
@triton.jit
def _dwconv_bwd_dz_kernel(X, WT, BIAS, DY, DZ, PW, PB, C, H, W_UNITS, TILES_W, TILES, N_TILES, ITERS,
                          WA: tl.constexpr, K: tl.constexpr, KK_PAD: tl.constexpr, CHANNELS_LAST: tl.constexpr,
                          HAS_BIAS: tl.constexpr, ACT: tl.constexpr,
                          BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr):
    """dz of the tiles pid, pid + G, ... of channel block program_id(1), and this program's row of
    the dweight / dbias partial sums."""
    W = W_UNITS * WA
    pid = tl.program_id(0)
    G = tl.num_programs(0)
    pid_c = tl.program_id(1)
    R: tl.constexpr = K // 2
    tap = tl.arange(0, KK_PAD)[:, None]
    acc_w = tl.zeros([KK_PAD, BLOCK_C], tl.float32)  # row kh * K + kw: dweight[c, kh, kw]
    acc_b = tl.zeros([BLOCK_C], tl.float32)
    for it in range(ITERS):
        t = pid + it * G
        h, w, c, base, ps, cs = _tile(t % TILES, TILES_W, (t // TILES).to(tl.int64), C, H, W, pid_c,
                                      CHANNELS_LAST, BLOCK_H, BLOCK_W, BLOCK_C)
        cm = c < C
        m = (h < H) & (w < W) & cm & (t < N_TILES)
        z = _conv_tile(X, WT, h, w, c, cm, base, ps, cs, H, W, K, False, BLOCK_H, BLOCK_W, BLOCK_C)
        if HAS_BIAS:
            z += tl.load(BIAS + c, mask=cm, other=0.0)
        off = base + (h * W + w) * ps + c * cs
        dy = tl.load(DY + off, mask=m, other=0.0).to(tl.float32)
        dz = tl.where(m, dy * _act_grad(z, ACT), 0.0)
        tl.store(DZ + off, dz.to(DZ.dtype.element_ty), mask=m)
        acc_b += tl.sum(tl.sum(dz, 0), 0)
        x0 = X + base + (h * W + w) * ps + c * cs
        for kh in tl.static_range(K):
            mh = (h + (kh - R) >= 0) & (h + (kh - R) < H)
            for kw in tl.static_range(K):
                xm = mh & ((w + (kw - R) >= 0) & (w + (kw - R) < W)) & cm
                xv = tl.load(x0 + ((kh - R) * W + (kw - R)) * ps, mask=xm, other=0.0).to(tl.float32)
                part = tl.sum(tl.sum(dz * xv, 0), 0)  # (BLOCK_C,)
                acc_w = tl.where(tap == kh * K + kw, acc_w + part[None, :], acc_w)
    cc = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    row = pid.to(tl.int64) * C
    tl.store(PW + row * (K * K) + cc[None, :] * (K * K) + tap, acc_w, mask=(tap < K * K) & (cc < C)[None, :])
    if HAS_BIAS:
        tl.store(PB + row + cc, acc_b, mask=cc < C)


# ---- launch configuration ------------------------------------------------------------------------
# Elements of one fp32 accumulator tile: 2048 = 16 per thread at 4 warps, room for the K*K loads in
# flight without spilling. The interpreter's cost is per program and per op, not per element, so it
# takes whole test maps (up to 16 x 16) in one tile; the triton tests force small blocks on a few
# cases to cross tile and channel-block edges.
TILE = 2048
TILE_INTERPRET = 8192
# channels-last: channels per tile (64 = 128 contiguous bytes per pixel in 16-bit) and tile width
CL_CHANNELS, CL_WIDTH = 64, 8
CL_CHANNELS_INTERPRET, CL_WIDTH_INTERPRET = 32, 16
# channels-first: tile width along the contiguous w (64 covers a 56-wide map in one tile row)
CF_WIDTH = 64
CF_WIDTH_INTERPRET, CF_HEIGHT_INTERPRET = 16, 16
# backward dz programs per SM (they walk several tiles and keep dweight partials in registers)
BWD_PROGRAMS_PER_SM = 4
BWD_PROGRAMS_INTERPRET = 3


def dwconv_config(C: int, H: int, W: int, channels_last: bool, block_h: Optional[int] = None,
                  block_w: Optional[int] = None, block_c: Optional[int] = None):
    """(BLOCK_H, BLOCK_W, BLOCK_C, num_warps); the block_* arguments override (sweeps)."""
    it = interpret()
    tile = TILE_INTERPRET if it else TILE
    if channels_last:
        bc = block_c or min(np2(C), CL_CHANNELS_INTERPRET if it else CL_CHANNELS)
        bw = block_w or min(np2(W), CL_WIDTH_INTERPRET if it else CL_WIDTH)
        bh = block_h or min(np2(H), max(1, tile // (bc * bw)))
    else:
        bw = block_w or min(np2(W), CF_WIDTH_INTERPRET if it else CF_WIDTH)
        bh = block_h or min(np2(H), max(1, tile // bw), CF_HEIGHT_INTERPRET if it else tile)
        bc = block_c or min(np2(C), max(1, tile // (bh * bw)))
    num_warps = max(1, min(8, bh * bw * bc // 256))  # 8 accumulators per thread: the K*K taps' loads fit
    return bh, bw, bc, num_warps


def _align(n: int) -> int:
    """Largest power of two <= 8 that divides n (rows of 16-bit pixels start 16-byte aligned)."""
    a = 1
    while a < 8 and n % (2 * a) == 0:
        a *= 2
    return a


def _dims(x: torch.Tensor, channels_last: bool):
    if channels_last:
        B, H, W, C = x.shape
    else:
        B, C, H, W = x.shape
    return B, C, H, W


def dwconv2d_fwd(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], act: str,
                 channels_last: bool, block_h: Optional[int] = None, block_w: Optional[int] = None,
                 block_c: Optional[int] = None) -> torch.Tensor:
    """y = act(depthwise_conv(x, weight) + bias) in x's dtype, x's layout."""
    return _launch_conv(x, weight, bias, _ACTS[act], channels_last, False, block_h, block_w, block_c)


def _launch_conv(x, weight, bias, act_id, channels_last, mirror, block_h=None, block_w=None, block_c=None):
    B, C, H, W = _dims(x, channels_last)
    y = torch.empty_like(x)  # one tensor: empty_like costs no more than _alloc.empty_many
    if x.numel() == 0:
        return y
    bh, bw, bc, nw = launch_plan("dwconv", dwconv_config, C, H, W, channels_last, block_h, block_w, block_c)
    tiles_w = cdiv(W, bw)
    grid = (cdiv(H, bh) * tiles_w, cdiv(C, bc), B)
    wa = _align(W)
    _dwconv_fwd_kernel[grid](x, weight, weight if bias is None else bias, y, C, H, W // wa, tiles_w,
                             WA=wa, K=weight.shape[-1], CHANNELS_LAST=channels_last, HAS_BIAS=bias is not None,
                             ACT=act_id, MIRROR=mirror, BLOCK_H=bh, BLOCK_W=bw, BLOCK_C=bc, num_warps=nw)
    return y


def _bwd_programs(n_tiles: int, c_blocks: int, device: torch.device) -> int:
    if interpret() or device.type != "cuda":
        return min(n_tiles, BWD_PROGRAMS_INTERPRET)
    return min(n_tiles, max(1, BWD_PROGRAMS_PER_SM * sm_count(device) // c_blocks))


def dwconv2d_bwd(dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], act: str,
                 channels_last: bool, block_h: Optional[int] = None, block_w: Optional[int] = None,
                 block_c: Optional[int] = None):
    """(dx in x's dtype, dweight (C, 1, K, K) fp32, dbias (C,) fp32 or None without a bias)."""
    B, C, H, W = _dims(x, channels_last)
    K = weight.shape[-1]
    if x.numel() == 0:
        dw = torch.zeros(weight.shape, dtype=torch.float32, device=x.device)
        return torch.empty_like(x), dw, (None if bias is None else torch.zeros(C, dtype=torch.float32, device=x.device))
    bh, bw, bc, nw = launch_plan("dwconv", dwconv_config, C, H, W, channels_last, block_h, block_w, block_c)
    tiles_w = cdiv(W, bw)
    tiles = cdiv(H, bh) * tiles_w
    c_blocks = cdiv(C, bc)
    n_tiles = B * tiles
    G = _bwd_programs(n_tiles, c_blocks, x.device)
    # pb (G x C floats) is made with the rest whether or not there is a bias
    dz, pw, pb = _alloc.empty_many(x, (x.shape, x.dtype), ((G, C, K * K), torch.float32), ((G, C), torch.float32))
    pb = pb if bias is not None else pw
    _dwconv_bwd_dz_kernel[(G, c_blocks)](
        x, weight, weight if bias is None else bias, dy, dz, pw, pb, C, H, W // _align(W), tiles_w, tiles, n_tiles,
        cdiv(n_tiles, G), WA=_align(W), K=K, KK_PAD=np2(K * K), CHANNELS_LAST=channels_last,
        HAS_BIAS=bias is not None, ACT=_ACTS[act], BLOCK_H=bh, BLOCK_W=bw, BLOCK_C=bc, num_warps=nw)
    dx = _launch_conv(dz, weight, None, 0, channels_last, True, block_h, block_w, block_c)
    dweight = pw.sum(0).view(C, 1, K, K)  # fixed-order reduction of the partial rows
    dbias = pb.sum(0) if bias is not None else None
    return dx, dweight, dbias
