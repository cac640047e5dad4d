"""Triton cross scan / cross merge (VMamba's four 2-D routes, reference/cross_scan.py).

One kernel per direction, both layouts: a program owns a (BLOCK_H, BLOCK_W, BLOCK_C) tile of one
image (x addressed through its strides, so channels-first and channels-last are the same code with
different block shapes) and, for each of the four routes, reads/writes the matching positions of
y (B, 4, C, L): route 0 p = h W + w, route 1 q = w H + h, route 2 L-1-p, route 3 L-1-q (cross2d);
unidi uses p for all four, bidi p, p, L-1-p, L-1-p. Triton's layout conversion does the
transpose through shared memory, so both sides are coalesced. Merge sums the four routes in a
fixed order (deterministic). Offsets inside one image are int32 (int64 for images of >= 2^31
elements), the image's base int64.

Access width: the compiler vectorizes only what it can prove aligned and running forwards. The
kernels state how aligned H, W and the row stride are (HV, WV, SV: a 56 x 56 map otherwise compiles
to 2-byte accesses only), stores never run backwards (reversed routes are written from the reflected
pixels), and reads that must run backwards can be done forwards in aligned groups reversed in
registers (TritonTuning.reverse_groups). The channels-last cross2d scan of square maps takes a banded
kernel. The grid runs one image's tiles side by side (TritonTuning.hw_first): sectors that neighbouring
tiles share are still in L2 when the second tile reads them. Block shapes and these choices were
measured against the cuda kernels: reports/tuning.md ("Triton cross scan / merge").
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from .. import _alloc
from ..layout import map_dims, map_shape
from .fast_launch import launchable
from .tuning import TUNING, cdiv, interpret, launch_plan
from .tuning import np2 as _np2

_MODES = {"cross2d": 0, "unidi": 1, "bidi": 2}


@triton.jit
def _route_pos(k: tl.constexpr, MODE: tl.constexpr, p, q, L):
    if MODE == 0:
        if k == 0:
            r = p
        elif k == 1:
            r = q
        elif k == 2:
            r = L - 1 - p
        else:
            r = L - 1 - q
    elif MODE == 1:
        r = p
    else:
        if k < 2:
            r = p
        else:
            r = L - 1 - p
    return r


@triton.jit
def _program_ids(HW_FIRST: tl.constexpr):
    """(image (int64), tile, channel block) of this program: grid (tiles, channel blocks, images) when
    HW_FIRST, so one image's tiles run side by side, else (images, tiles, channel blocks); see _grid."""
    if HW_FIRST:
        return tl.program_id(2).to(tl.int64), tl.program_id(0), tl.program_id(1)
    else:
        return tl.program_id(0).to(tl.int64), tl.program_id(1), tl.program_id(2)


@triton.jit
def _load_rev_w(yr, h, w_beg, c, H, W, C, L, BH: tl.constexpr, BW: tl.constexpr, BC: tl.constexpr,
                GS: tl.constexpr):
    """(BH, BW, BC) tile of yr[c, L-1-(h W + w)], w = w_beg + j: a read that runs backwards along w,
    done forwards in groups of GS steps (GS divides W: a group is all in or all out of the map) and
    reversed inside each group in registers (a backwards read compiles to 2-byte accesses)."""
    g = tl.arange(0, BW // GS)[None, :, None, None]
    e = tl.arange(0, GS)[None, None, :, None]
    h4 = h[:, None, None, None]
    c4 = c[None, None, None, :]
    mask = (h4 < H) & (w_beg + GS * g < W) & (c4 < C)
    # element e of group g is pixel w = w_beg + GS g + GS - 1 - e
    v = tl.load(yr + c4 * L + (L - h4 * W - w_beg - GS - GS * g + e), mask=mask, other=0.0)
    return tl.reshape(tl.flip(v, 2), (BH, BW, BC))


@triton.jit
def _load_rev_h(yr, w, h_beg, c, H, W, C, L, BH: tl.constexpr, BW: tl.constexpr, BC: tl.constexpr,
                GS: tl.constexpr):
    """(BH, BW, BC) tile of yr[c, L-1-(w H + h)], h = h_beg + i: as _load_rev_w, along h."""
    g = tl.arange(0, BH // GS)[:, None, None, None]
    e = tl.arange(0, GS)[None, :, None, None]
    w4 = w[None, None, :, None]
    c4 = c[None, None, None, :]
    mask = (h_beg + GS * g < H) & (w4 < W) & (c4 < C)
    v = tl.load(yr + c4 * L + (L - w4 * H - h_beg - GS - GS * g + e), mask=mask, other=0.0)
    return tl.reshape(tl.flip(v, 1), (BH, BW, BC))


@triton.jit
def _load_reflected(x_img, h, w_beg, c, C, H, W, sxc, sxh, sxw, BH: tl.constexpr, BW: tl.constexpr,
                    BC: tl.constexpr, GS: tl.constexpr):
    """(BH, BW, BC) tile of x at the reflected pixels (H-1-h, W-1-w), w = w_beg + j, for a map whose w
    axis is contiguous (channels-first): read forwards in groups of GS as in _load_rev_w."""
    g = tl.arange(0, BW // GS)[None, :, None, None]
    e = tl.arange(0, GS)[None, None, :, None]
    h4 = h[:, None, None, None]
    c4 = c[None, None, None, :]
    mask = (h4 < H) & (w_beg + GS * g < W) & (c4 < C)
    v = tl.load(x_img + c4 * sxc + (H - 1 - h4) * sxh + (W - w_beg - GS - GS * g + e) * sxw, mask=mask, other=0.0)
    return tl.reshape(tl.flip(v, 2), (BH, BW, BC))


@launchable
@triton.jit
def _cross_kernel(
    x_ptr, y_ptr, C, H, W, sxb, sxc, sxh, sxw, n_hb, n_wb,
    MERGE: tl.constexpr, MODE: tl.constexpr, BIG: tl.constexpr,
    BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr, BLOCK_C: tl.constexpr,
    HV: tl.constexpr, WV: tl.constexpr, SV: tl.constexpr, GH: tl.constexpr, GW: tl.constexpr,
    GX: tl.constexpr, HW_FIRST: tl.constexpr,
):
    # offsets inside one image are 32-bit unless BIG (an image of x or y with >= 2^31 elements); the
    # image's base is 64-bit. HV, WV, SV (powers of two <= 8, `_align`) divide H, W and sxh: stating
    # it lets the compiler prove rows aligned and move 8-16 bytes per access (without it, a 56 x 56
    # map compiles to 2-byte accesses only)
    H = H // HV * HV
    W = W // WV * WV
    sxh = sxh // SV * SV
    pid_b, pid_hw, pid_c = _program_ids(HW_FIRST)
    hb = pid_hw // n_wb
    wb = pid_hw % n_wb
    h = hb * BLOCK_H + tl.arange(0, BLOCK_H)
    w = wb * BLOCK_W + tl.arange(0, BLOCK_W)
    c = pid_c * BLOCK_C + tl.arange(0, BLOCK_C)
    if BIG:
        h = h.to(tl.int64)
        w = w.to(tl.int64)
        c = c.to(tl.int64)
    h3 = h[:, None, None]
    w3 = w[None, :, None]
    c3 = c[None, None, :]
    mask = (h3 < H) & (w3 < W) & (c3 < C)
    L = H * W
    x_img = x_ptr + pid_b * sxb
    x_offs = c3 * sxc + h3 * sxh + w3 * sxw
    p = h3 * W + w3
    q = w3 * H + h3
    y_base = y_ptr + pid_b * 4 * C * L + c3 * L
    CL = C * L
    if MERGE and MODE != 1 and GW > 1 and (GH > 1 or MODE == 2):
        # the reversed routes read forwards in groups (_load_rev_w / _load_rev_h); same sum order
        y_img = y_ptr + pid_b * 4 * CL
        acc = tl.load(y_base + p, mask=mask, other=0.0).to(tl.float32)
        acc += tl.load(y_base + CL + (q if MODE == 0 else p), mask=mask, other=0.0).to(tl.float32)
        acc += _load_rev_w(y_img + 2 * CL, h, wb * BLOCK_W, c, H, W, C, L, BLOCK_H, BLOCK_W, BLOCK_C,
                           GW).to(tl.float32)
        if MODE == 0:
            acc += _load_rev_h(y_img + 3 * CL, w, hb * BLOCK_H, c, H, W, C, L, BLOCK_H, BLOCK_W, BLOCK_C,
                               GH).to(tl.float32)
        else:
            acc += _load_rev_w(y_img + 3 * CL, h, wb * BLOCK_W, c, H, W, C, L, BLOCK_H, BLOCK_W, BLOCK_C,
                               GW).to(tl.float32)
        tl.store(x_img + x_offs, acc.to(x_ptr.dtype.element_ty), mask=mask)
    elif MERGE:
        acc = tl.load(y_base + _route_pos(0, MODE, p, q, L), mask=mask, other=0.0).to(tl.float32)
        acc += tl.load(y_base + CL + _route_pos(1, MODE, p, q, L), mask=mask, other=0.0).to(tl.float32)
        acc += tl.load(y_base + 2 * CL + _route_pos(2, MODE, p, q, L), mask=mask, other=0.0).to(tl.float32)
        acc += tl.load(y_base + 3 * CL + _route_pos(3, MODE, p, q, L), mask=mask, other=0.0).to(tl.float32)
        tl.store(x_img + x_offs, acc.to(x_ptr.dtype.element_ty), mask=mask)
    else:
        # Routes that run backwards (L-1-p, L-1-q) are written from the point-reflected pixel
        # (H-1-h, W-1-w), whose reversed position is p (or q) again: every store then runs forwards
        # (coalesced); the reflected read is a second, cache-friendly read of x.
        v = tl.load(x_img + x_offs, mask=mask, other=0.0)
        tl.store(y_base + p, v, mask=mask)
        if MODE == 0:
            tl.store(y_base + CL + q, v, mask=mask)
        else:
            tl.store(y_base + CL + p, v, mask=mask)
        if MODE == 1:
            tl.store(y_base + 2 * CL + p, v, mask=mask)
            tl.store(y_base + 3 * CL + p, v, mask=mask)
        else:
            if GX > 1:
                vr = _load_reflected(x_img, h, wb * BLOCK_W, c, C, H, W, sxc, sxh, sxw, BLOCK_H, BLOCK_W,
                                     BLOCK_C, GX)
            else:
                xr_offs = c3 * sxc + (H - 1 - h3) * sxh + (W - 1 - w3) * sxw
                vr = tl.load(x_img + xr_offs, mask=mask, other=0.0)
            tl.store(y_base + 2 * CL + p, vr, mask=mask)
            if MODE == 0:
                tl.store(y_base + 3 * CL + q, vr, mask=mask)
            else:
                tl.store(y_base + 3 * CL + p, vr, mask=mask)


@triton.jit
def _band_part(x_img, y_base, c3, C, H, W, L, CL, sxh, sxw, band,
               COLS: tl.constexpr, BAND: tl.constexpr, SIDE: tl.constexpr):
    # rows: a (BAND, SIDE, BLOCK_C) tile -> routes 0 and 2; columns: (SIDE, BAND, BLOCK_C) -> 1 and 3.
    # The reversed route is written forwards from a second read of the same band with the long axis
    # reversed (cache hits), so no store runs backwards (those compile to 2-byte accesses).
    a = tl.arange(0, SIDE)
    e = band * BAND + tl.arange(0, BAND)
    if COLS:
        h3 = a[:, None, None]
        w3 = e[None, :, None]
        hr3 = (H - 1 - a)[:, None, None]
        wr3 = w3
    else:
        h3 = e[:, None, None]
        w3 = a[None, :, None]
        hr3 = h3
        wr3 = (W - 1 - a)[None, :, None]
    mask = (h3 < H) & (w3 < W) & (c3 < C)
    v = tl.load(x_img + c3 + h3 * sxh + w3 * sxw, mask=mask, other=0.0)
    vr = tl.load(x_img + c3 + hr3 * sxh + wr3 * sxw, mask=mask, other=0.0)
    if COLS:
        r = w3 * H + h3  # route 1; route 3 at L-1-q(H-1-h, w) = L - (w+1) H + h
        tl.store(y_base + CL + r, v, mask=mask)
        tl.store(y_base + 3 * CL + (L - (w3 + 1) * H + h3), vr, mask=mask)
    else:
        r = h3 * W + w3  # route 0; route 2 at L-1-p(h, W-1-w) = L - (h+1) W + w
        tl.store(y_base + r, v, mask=mask)
        tl.store(y_base + 2 * CL + (L - (h3 + 1) * W + w3), vr, mask=mask)


@launchable
@triton.jit
def _cross_scan_band_kernel(
    x_ptr, y_ptr, C, H, W, sxb, sxh, sxw,
    BAND: tl.constexpr, SIDE: tl.constexpr, BLOCK_C: tl.constexpr, HV: tl.constexpr, SV: tl.constexpr,
    HW_FIRST: tl.constexpr,
):
    """cross2d scan of a channels-last square map in bands: program 2i writes routes 0 / 2 of rows
    [i BAND, (i+1) BAND) (one contiguous run per channel each), program 2i+1 routes 1 / 3 of the
    same columns; neighbouring programs read the same part of x, so the second read mostly hits L2.
    SIDE = next power of two >= H (= W). In-image offsets are 32-bit (the launcher checks); HV and SV
    as in _cross_kernel (W = H)."""
    H = H // HV * HV
    W = W // HV * HV
    sxh = sxh // SV * SV
    pid_b, pid, pid_c = _program_ids(HW_FIRST)
    band = pid // 2
    c3 = (pid_c * BLOCK_C + tl.arange(0, BLOCK_C))[None, None, :]
    L = H * W
    CL = C * L
    x_img = x_ptr + pid_b * sxb
    y_base = y_ptr + pid_b * 4 * CL + c3 * L
    # two calls (not one if / else over tiles of different shapes, which the compiler rejects)
    if pid % 2 == 0:
        _band_part(x_img, y_base, c3, C, H, W, L, CL, sxh, sxw, band, False, BAND, SIDE)
    else:
        _band_part(x_img, y_base, c3, C, H, W, L, CL, sxh, sxw, band, True, BAND, SIDE)


def _band_config(C, H):
    """(band, side, block_c) of the banded scan on an H x H map of C channels, or None for the tiled kernel.
    TritonTuning.band_scan (None: off): a program covers `band` rows (or columns) of the map, all of a small
    map (side <= small_side), times block_c channels (small_block_c on small maps), with at most max_elems
    elements (channels shrink on wide maps; maps wider than max_elems / band take the tiled kernel);
    reports/tuning.md, "Triton banded scan"."""
    cfg = TUNING.get().band_scan
    if cfg is None:
        return None
    side = _np2(H)
    small = side <= cfg["small_side"]
    band = side if small else min(cfg["band"], side)
    bc = min(_np2(C), cfg["small_block_c"] if small else cfg["block_c"], cfg["max_elems"] // (band * side))
    if bc < 1:
        return None
    if interpret():
        band, bc = min(band, 4), min(bc, 4)
    return band, side, bc


def _band_plan(shape, stride, C, H, W):
    """(grid, strides, meta) of the banded scan for x of this shape and stride, or None (tiled kernel)."""
    if H != W or stride[3] != 1 or shape[0] == 0 or C == 0 or H == 0 or _big_of(shape, stride, C, H, W):
        return None
    cfg = _band_config(C, H)
    if cfg is None:
        return None
    band, side, bc = cfg
    sxb, sxh, sxw, _ = stride
    grid, hw_first = _grid(shape[0], 2 * cdiv(H, band), cdiv(C, bc))
    return grid, (sxb, sxh, sxw), dict(BAND=band, SIDE=side, BLOCK_C=bc, HV=_align(H), SV=_align(sxh),
                                       HW_FIRST=hw_first, num_warps=TUNING.get().band_scan["warps"])


def _band_scan(x, y, C, H, W):
    """The banded channels-last cross2d scan (square maps); False when it does not apply."""
    plan = launch_plan("band", _band_plan, tuple(x.shape), x.stride(), C, H, W)
    if plan is None:
        return False
    grid, strides, meta = plan
    _cross_scan_band_kernel[grid](x, y, C, H, W, *strides, **meta)
    return True


def _grid(n_img, n_tiles, n_cb):
    """(grid, hw_first); images go last (TritonTuning.hw_first: one image's tiles side by side, so the parts
    of x or y that neighbouring tiles share are still in L2) only while they fit the grid's 65535 limit on
    axes 1 and 2."""
    if TUNING.get().hw_first and n_img <= 65535 and n_cb <= 65535:
        return (n_tiles, n_cb, n_img), True
    if n_tiles > 65535 or n_cb > 65535:
        raise ValueError(f"cross scan (triton): {n_tiles} tiles x {n_cb} channel blocks exceed the launch grid; "
                         "use impl 'cuda' or 'torch' for this map")
    return (n_img, n_tiles, n_cb), False


def _align(n):
    """Largest power of two <= 8 dividing n (8 for 0)."""
    n = abs(int(n))
    return 8 if n == 0 else min(8, n & -n)


def _big(x, C, H, W):
    """Whether one image of x or of y (4 C H W elements) may need offsets of 2^31 or more."""
    return _big_of(x.shape, x.stride(), C, H, W)


def _big_of(shape, stride, C, H, W):
    span = 1 + sum((n - 1) * abs(st) for n, st in zip(shape[1:], stride[1:]))
    return max(span, 4 * C * H * W) >= 2**31


def _blocks(C, H, W, channels_last, merge, esz):
    """(BLOCK_H, BLOCK_W, BLOCK_C, warps) for elements of esz bytes: the VMamba-T stage 1 winners against
    the cuda kernels (reports/tuning.md, "Triton cross scan / merge"), unless TritonTuning.cross_block_override
    pins a shape."""
    pins = TUNING.get().cross_block_override
    if (channels_last, merge, C, H, W) in pins:
        return pins[(channels_last, merge, C, H, W)]
    if interpret():
        bh, bw = min(_np2(H), 8), min(_np2(W), 8)
        return bh, bw, min(_np2(C), 8), 4
    if channels_last:
        bc = min(_np2(C), 16 if merge else 32)
        bh, bw = min(_np2(H), 16), min(_np2(W), (32 if esz < 4 else 64) if merge else 16)
    else:
        bh, bw = min(_np2(H), 16 if merge else 64), min(_np2(W), 64)
        bc = max(1, min(_np2(C), (1024 if merge else 4096) // (bh * bw)))
    small = bh * bw * bc <= 2048 or (channels_last and merge and esz < 4)
    return bh, bw, bc, (4 if small else 8)


def _launch_plan(shape, stride, esz, C, H, W, merge, mode, channels_last):
    """(grid, int arguments, meta) of the tiled kernel for x of this shape, stride and element size."""
    sxb, sxc, sxh, sxw = map_dims(stride, channels_last)
    bh, bw, bc, warps = _blocks(C, H, W, channels_last, merge, esz)
    n_hb, n_wb = cdiv(H, bh), cdiv(W, bw)
    grid, hw_first = _grid(shape[0], n_hb * n_wb, cdiv(C, bc))
    groups = TUNING.get().reverse_groups
    meta = dict(MERGE=merge, MODE=_MODES[mode], BIG=_big_of(shape, stride, C, H, W), BLOCK_H=bh, BLOCK_W=bw,
                BLOCK_C=bc, HV=_align(H), WV=_align(W), SV=_align(sxh),
                GH=min(_align(H), bh) if groups else 1,
                GW=min(_align(W), bw) if groups else 1,
                GX=min(_align(W), bw) if groups and sxw == 1 else 1, HW_FIRST=hw_first,
                num_warps=warps)
    return grid, (sxb, sxc, sxh, sxw, n_hb, n_wb), meta


def _launch(x, y, C, H, W, merge, mode, channels_last):
    if x.shape[0] == 0 or C == 0 or H == 0 or W == 0:
        return
    grid, ints, meta = launch_plan("cross", _launch_plan, tuple(x.shape), x.stride(), x.element_size(), C, H, W,
                                   merge, mode, channels_last)
    _cross_kernel[grid](x, y, C, H, W, *ints, **meta)


def cross_scan_fwd(x, mode, channels_last):
    Bn, C, H, W = map_dims(x, channels_last)
    (y,) = _alloc.empty_many(x, ((Bn, 4, C, H * W), x.dtype))
    if not (channels_last and mode == "cross2d" and _band_scan(x, y, C, H, W)):
        _launch(x, y, C, H, W, False, mode, channels_last)
    return y


def cross_merge_fwd(y, H, W, mode, channels_last):
    Bn, _, C, _ = y.shape
    (x,) = _alloc.empty_many(y, (map_shape(Bn, C, H, W, channels_last), y.dtype))
    _launch(x, y, C, H, W, True, mode, channels_last)
    return x
