"""The handwritten CUDA backend ("cuda"): kernels in csrc/, compiled into vmamba_kernels._C.

Selective scan (csrc/selective_scan/): forward = one warp per (batch, channel) row in chunks of
scan_chunk steps (256: 8 consecutive steps per lane, 16-byte loads), warp-shuffle scan of the affine
maps, carry between chunks. `aux` is the fp32 state entering every chunk, (batch, KD, ceil(L /
scan_chunk), N), which the backward uses to recompute the states of one chunk at a time; the chunk is
read from the extension (`build_info()["scan_chunk"]`), not repeated here. The backward is always
deterministic: dB/dC are summed over a group's channels in shared memory and in per-block private fp32
slices that a second kernel adds in a fixed order; dA/dD/ddelta_bias are per-(batch, channel) partials
summed over the batch by a third kernel (no float atomics anywhere). d_state = 1 (every VMamba v2
variant) runs dedicated kernels with the same layout. Measurements: reports/ (tuning.md for the
constants).

Fused SS2D core (csrc/ss2d_core/, issue #18; raw kernels ss2d_core_fwd / ss2d_core_bwd in extension.py): one
block per (batch, tile of 4 or 8 channels), a warp per channel walking the K routes one after the other in
scan_chunk-step chunks; the chunk's xdbl rows (dt terms, B, C) are staged once for the tile, delta is formed in
registers, y (backward: du) accumulates over the routes in fp32 in shared memory (global scratch for maps too
large) and is written once in x's layout. The backward recomputes each route's chunk states (a forward pass
storing the state entering every chunk), sums dxdbl over the tile's channels in shared memory and over tiles in
per-split fp32 slices added in a fixed order: deterministic, no float atomics. d_state 1..16.

Test and tuning knobs (`CudaTuning`) live in the extension (csrc/common/knobs.h): read from the
environment (VMAMBA_SCAN_* / VMAMBA_CROSS_*) once, then set through `vmamba_kernels.tuning("cuda", ...)`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, fields
from typing import Optional

from ..dispatch import Backend
from ..op_table import BASE_OPS, FUSED_OPS, SS2D_OPS
from ..tunables import register


@dataclass(frozen=True)
class CudaTuning:
    """The extension's knobs; None leaves a knob as the environment set it when the extension loaded
    (unset: the built-in rule). Field f is the extension's knob VMAMBA_<F> (csrc/common/knobs.h)."""

    scan_poison: Optional[bool] = None  # fill every output and scratch buffer with NaN before the kernels run
    scan_seq_min_rows: Optional[int] = None  # rows from which 1 < d_state <= 16 takes the row-per-thread kernels
    scan_bwd_splits: Optional[int] = None  # force the backward's channel split count
    scan_packed_rows: Optional[int] = None  # rows per warp of the lane-packed d_state = 1 forward (L <= 256)
    cross_max_vec: Optional[int] = None  # cap on the cross kernels' vector width (elements)
    cross_smem_kb: Optional[int] = None  # shared memory per block the cross planner may use
    cross_path: Optional[str] = None  # "direct" forces the direct cross kernels
    cross_cl_tiled: Optional[str] = None  # channels-last: "0" plane kernels, "1" tiled, "b" banded scan
    cross_cl_band: Optional[int] = None  # rows (columns) per band of the banded scan
    cross_cl_tile: Optional[str] = None  # "THxTW" or "THxTWxPC": fixed tile (and channels per block)
    ss2d_bwd_splits: Optional[int] = None  # force the fused SS2D core backward's split count (csrc/ss2d_core/)
    ss2d_global_acc: Optional[bool] = None  # the fused SS2D core accumulates routes in global memory (large maps)
    ss2d_warps: Optional[int] = None  # the fused SS2D core's channels per block (4 or 8; default: by occupancy)
    # the fused SS2D core forward's positions per segment (csrc/ss2d_core/ss2d_seg_body.cuh): n > 0 or "auto" (the
    # planner's size) runs the segmented forward; 0 the whole-map forward, where ss2d_warps and ss2d_global_acc apply.
    # None: the plan (channels-last: segmented where one segment holds the map, else the sweep where it applies, else
    # segmented; channels-first: the sweep, else whole-map; whole-map where ss2d_warps or ss2d_global_acc=True is set)
    ss2d_fwd_seg: Optional[object] = None
    # the same for the backward (csrc/ss2d_core/ss2d_seg_bwd_body.cuh): n > 0 or "auto" runs the segmented backward;
    # 0 the whole-map backward, where ss2d_warps, ss2d_global_acc and ss2d_bwd_splits apply. None: "auto" (the
    # default), or the whole-map backward where ss2d_warps, ss2d_global_acc=True or ss2d_bwd_splits is set
    ss2d_bwd_seg: Optional[object] = None
    # the fused SS2D core's sweep forward (csrc/ss2d_core/ss2d_sweep_body.cuh, d_state 1): None / "auto" runs it
    # wherever it applies unless ss2d_fwd_seg is set; 0 turns it off; "GxS" (e.g. "8x32") forces that tile
    ss2d_fwd_sweep: Optional[object] = None
    # the sweep forward's dt projection on tensor cores (tf32 weights; tiles with G >= 16 and 16-bit xdbl): True
    # runs it; None / False the fp32 FMA projection (the mma measured slower: csrc/ss2d_core/ss2d_core.cpp)
    ss2d_sweep_mma: Optional[bool] = None


def knob_values(t: CudaTuning) -> dict:
    """{extension knob name: value string} ("" = as the environment had it)."""
    out = {}
    for f in fields(t):
        v = getattr(t, f.name)
        out["VMAMBA_" + f.name.upper()] = "" if v is None else ("1" if v is True else "0" if v is False else str(v))
    return out


def _apply(new: CudaTuning, old: CudaTuning) -> None:
    # only once the extension is loaded (extension.py applies the current value when it loads)
    if "vmamba_kernels._C" in sys.modules:
        from . import extension  # noqa: PLC0415

        extension.set_knobs(new, old)


TUNING = register("cuda", CudaTuning(), apply=_apply)


def _aux_shape(batch, KD, L, N, dtype):
    import torch

    from .extension import scan_chunk

    chunk = scan_chunk()
    return (batch, KD, (L + chunk - 1) // chunk, N), torch.float32


MAX_LN_CHANNELS = 4096  # the add_layer_norm kernels keep a pixel's channels on chip (csrc/layer_norm/)
LN_SMEM_MAX = 200 * 1024  # csrc/layer_norm/layer_norm_body.cuh kSmemMax: the most shared memory a plan asks for


def ln_cf_bwd_smem(C: int, x_bytes: int, y_bytes: int) -> int:
    """Bytes of shared memory of the channels-first add_layer_norm backward at its smallest tile (8 pixels x C
    channels), as csrc/layer_norm/layer_norm_body.cuh's bwd_cf_shape counts them: x / dx elements of x_bytes,
    dy (y's dtype) of y_bytes, and the saved tensor (s, or y itself in the backward from the output) taken as
    the wider of the two. The plan refuses C when this exceeds LN_SMEM_MAX: channels first, float32 in and out
    takes at most 1948 channels, float32 in and 16-bit out 2814 (VMamba-B's out_norm: 2048)."""
    P, Q = 8, 16 // max(x_bytes, y_bytes)
    cpt = 1
    while cpt * 2 <= 32 and cpt * 2 * C <= 256 and cpt * 2 <= P // Q:
        cpt *= 2

    def row(e):  # padded_row: 16-byte units, cpt times an odd number (bank spread)
        units = (P * e + 15) // 16
        while cpt < 8 and units % (2 * cpt) != cpt:
            units += 1
        return units * 16

    return C * (row(max(x_bytes, y_bytes)) + row(y_bytes)) + 4 * P * 4 + 2 * 256 * 4 + 2 * C * 4


def ln_refusal(C: int, channels_last: bool, x_dtype: torch.dtype, out_dtype: torch.dtype):
    """Why the cuda add_layer_norm kernels cannot take C channels in this layout and these dtypes, or None."""
    if C > MAX_LN_CHANNELS:
        return f"add_layer_norm takes at most {MAX_LN_CHANNELS} channels, not {C}"
    if not channels_last:
        need = ln_cf_bwd_smem(C, x_dtype.itemsize, out_dtype.itemsize)
        if need > LN_SMEM_MAX:
            return (f"add_layer_norm channels first with {C} channels ({x_dtype} in, {out_dtype} out): the backward's "
                    f"smallest tile needs {need // 1024} KB of shared memory, more than {LN_SMEM_MAX // 1024} KB "
                    f"(a 16-bit out_dtype needs less; channels last takes up to {MAX_LN_CHANNELS})")
    return None
MAX_SS2D_ROW = 96  # ss2d_core: R + 2N per route staged in shared memory (csrc/ss2d_core/ss2d_core.h kMaxComp)


def _limits(op, args) -> list:
    if op == "add_layer_norm":
        C = args.x.shape[-1] if args.channels_last else args.x.shape[1]
        why = ln_refusal(C, args.channels_last, args.x.dtype, args.out_dtype)
        if why is not None:
            return [why]
    if op == "ss2d_core":
        row = args.x_proj_weight.shape[1]
        if row > MAX_SS2D_ROW:
            return [f"ss2d_core stages at most {MAX_SS2D_ROW} projections per route (dt_rank + 2 d_state), not {row}"]
    return []


BACKENDS = [
    Backend(
        name="cuda", priority=10, module="vmamba_kernels.cuda.extension",
        install_hint="build the extension: `pip install --no-build-isolation -e .` on a machine with nvcc, "
                     "a CUDA build of torch and a visible GPU (or with TORCH_CUDA_ARCH_LIST set, which builds "
                     "for those GPU architectures without one)",
        scan_aux_shape=_aux_shape, max_dstate=64, deterministic=True,
        ops=BASE_OPS + FUSED_OPS + SS2D_OPS, dwconv_kernel_sizes=(3, 5, 7), extra_reasons=_limits, mixed_branch=True, strided_bc=True,
        ss2d_max_dstate=16,
        doc="handwritten CUDA C++ (csrc/); deterministic backwards (no float atomics)",
    ),
]
