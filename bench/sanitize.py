"""compute-sanitizer over the CUDA backend on small cases: memcheck, racecheck, synccheck, initcheck.

    python -m bench.sanitize                      # every tool, every case (a few minutes)
    python -m bench.sanitize --tools racecheck    # one tool
    python -m bench.sanitize --ops ss2d_core,norm # only these case groups (scan, cross, ss2d_core, norm, dwconv)
    python -m bench.sanitize --cases              # run the cases once, no sanitizer (what each tool runs)

Each tool runs `python -m bench.sanitize --cases [--ops ...]` under `compute-sanitizer --tool T
--error-exitcode 1` and the table says whether it reported nothing. The cases cover every kernel of impl
"cuda", in five groups (--ops picks some; default all):

* scan: the selective scan forward and backward for fp32/fp16/bf16 with d_state 1 (the d_state = 1
  kernels), 4 and 16 (the warp-per-row kernels, then again with the row-per-thread ones forced), L from 1
  to 600 (one chunk, packed rows, several chunks, ragged last chunk), grouped and ungrouped B/C; then
  d_state 1 rows of one chunk with one backward split forced, so that a block runs several channel rounds.
* cross: the cross scan and cross merge for every mode in both layouts on odd, non-square, square and
  1-wide maps, channels-last also with the tiled kernels and the banded scan forced.
* ss2d_core: the fused SS2D core forward and backward (gradients of x, both projection weights, A, D and
  delta_bias) for fp32/fp16/bf16, every mode, both layouts, maps 1x1, 7x7, 5x13, 13x1, 1x9 and 17x19 (two
  scan chunks), batch 1 and 2, d_state 1, 4 and 16 (the cuda impl's range is 1..16), several channel tiles;
  no D / no delta_bias, float32 out_dtype, weights in x's dtype, softplus off (the plan's kernels: the
  segmented backward); then the whole-map forward and backward with the 4- and 8-channel tiles and the global
  route accumulator, several backward splits, and the segmented forward and backward with one-position, uneven
  and planner-chosen segments and several channel groups, and the sweep forward with its tile forced
  (vk.tuning("cuda", ss2d_fwd_sweep / ss2d_fwd_seg / ss2d_bwd_seg / ss2d_warps / ss2d_global_acc /
  ss2d_bwd_splits)). Its backward has no separate deterministic variant
  (the cuda backend is deterministic throughout), so there is no deterministic-mode pass.
* norm: add_layer_norm forward and backward (x, branch, weight, bias; s's gradient too) for the three
  dtypes, both layouts, no branch / branch / drop-path branch_scale, bias or not, a 16-bit branch on a
  float32 x, another out_dtype, C from 1 to 3072 (channels-last vector widths 8/4/2/1, rows over one to
  many warps), with the channels-first tile, the backward's block count and the vector width forced
  (VMAMBA_NORM_TILE / _BWD_BLOCKS / _MAX_VEC, read per call).
* dwconv: dwconv2d forward and backward (x, weight, bias) for the three dtypes, both layouts, K 3/5/7,
  act none/silu/gelu, bias or not, small and large planes, with the backward's partial rows and the vector
  width forced (VMAMBA_DWCONV_BWD_SEGS / _MAX_VEC).

Outputs and gradients are checked against the float64 reference (reference/; ss2d_core, norm and dwconv
compute it on the CPU, outside the sanitizer's view) with a scaled max error max|a - ref| / (1 + max|ref|) per
tensor and a per-dtype bound, so a case that runs clean but computes garbage still fails. `run_cases(impl="torch", device="cpu")` runs the same cases on the CPU with
the torch impl (tests/test_bench_sanitize.py). Exit status: number of tools that failed.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import time

TOOLS = ("memcheck", "racecheck", "synccheck", "initcheck")

# (batch, KD, K, N, L, dtype) for the scan
SCAN_CASES = [
    (1, 4, 1, 1, 1, "fp32"),
    (2, 8, 2, 1, 49, "fp16"),
    (1, 16, 4, 1, 300, "bf16"),
    (2, 8, 2, 1, 600, "fp32"),
    (1, 8, 2, 4, 130, "fp16"),
    (2, 4, 1, 16, 300, "fp32"),
    (1, 8, 4, 16, 7, "bf16"),
]
# d_state 1 rows of one chunk (VMamba's stages 3-4) with one backward split, so that a block runs several
# channel rounds (the kOne backward sums dB/dC over them in shared memory): 3 rounds with a ragged last
# one at L = 49, 10 at L = 196
SCAN_ROUND_CASES = [(1, 160, 2, 1, 49, "fp16"), (1, 80, 1, 1, 196, "bf16")]
# (batch, C, H, W, dtype) for the cross ops
CROSS_CASES = [(1, 3, 7, 7, "fp32"), (2, 5, 13, 1, "fp16"), (1, 4, 1, 1, "bf16"), (1, 8, 6, 14, "fp32"),
               (1, 16, 9, 9, "fp16")]
# channels-last cross kernels run as chosen (None), then forced: tiled ("1"), banded scan ("b")
CL_PATHS = (None, "1", "b")

OPS = ("scan", "cross", "ss2d_core", "norm", "dwconv")  # the case groups (--ops)

# (batch, D, H, W, N, R, mode, channels_last, dtype, options, cuda knobs) for the fused SS2D core. options:
# noD / nobias (no D / delta_bias), out32 (float32 out_dtype), wx (projection weights in x's dtype), nosp
# (delta_softplus off; inputs made so that delta >= 0). The knobs (vk.tuning("cuda", ...)) force the 4- / 8-channel
# tiles, the global route accumulator and the backward's split count; None keeps the plan's own choice.
SS2D_CASES = [
    (1, 3, 1, 1, 1, 1, "cross2d", False, "fp32", "", None),
    (2, 4, 7, 7, 1, 2, "cross2d", True, "fp16", "", None),
    (1, 5, 5, 13, 4, 2, "bidi", False, "bf16", "", None),
    (2, 3, 13, 1, 16, 1, "unidi", True, "fp32", "", None),
    (1, 6, 1, 9, 16, 3, "cross2d", False, "fp16", "out32", None),
    (2, 9, 7, 7, 4, 2, "unidi", False, "bf16", "noD,nobias", None),
    (1, 12, 5, 13, 1, 3, "bidi", True, "fp32", "wx", None),
    (2, 3, 1, 9, 4, 1, "bidi", True, "bf16", "nosp", None),
    (1, 4, 13, 1, 1, 2, "cross2d", False, "fp16", "nobias", None),
    (1, 3, 1, 1, 16, 2, "bidi", True, "fp16", "noD", None),
    (1, 3, 17, 19, 1, 2, "cross2d", True, "fp16", "", None),  # L = 323: two scan chunks per route
    (2, 17, 5, 13, 4, 3, "cross2d", False, "fp32", "", None),  # several channel tiles
    (1, 9, 7, 7, 16, 2, "unidi", True, "bf16", "wx,out32", None),
    (1, 9, 5, 13, 1, 2, "cross2d", False, "fp32", "", {"ss2d_warps": 4, "ss2d_bwd_splits": 3, "ss2d_fwd_seg": 0}),
    (2, 17, 7, 7, 4, 3, "bidi", True, "fp16", "", {"ss2d_warps": 8, "ss2d_bwd_splits": 2, "ss2d_fwd_seg": 0}),
    (1, 5, 13, 1, 16, 2, "unidi", False, "bf16", "", {"ss2d_warps": 4, "ss2d_fwd_seg": 0}),
    (2, 11, 5, 13, 1, 3, "cross2d", True, "fp16", "", {"ss2d_global_acc": True, "ss2d_bwd_splits": 2,
                                                       "ss2d_fwd_seg": 0}),
    (1, 6, 1, 9, 16, 2, "cross2d", False, "fp32", "nobias", {"ss2d_global_acc": True, "ss2d_warps": 4,
                                                             "ss2d_fwd_seg": 0}),
    (1, 3, 17, 19, 4, 2, "bidi", False, "bf16", "", {"ss2d_global_acc": True, "ss2d_fwd_seg": 0}),
    # the segmented forward with segments forced: one position, an uneven last segment, the planner's, channels
    # in two groups
    (1, 9, 17, 19, 1, 2, "cross2d", True, "fp16", "", {"ss2d_fwd_seg": 1}),
    (1, 7, 13, 30, 1, 6, "cross2d", True, "bf16", "", {"ss2d_fwd_seg": "auto"}),
    (2, 11, 17, 40, 4, 3, "cross2d", False, "bf16", "", {"ss2d_fwd_seg": 37}),
    (1, 150, 7, 7, 16, 5, "bidi", False, "fp32", "", {"ss2d_fwd_seg": 20}),
    # the segmented backward: one position, uneven, the planner's, channel groups (dxdbl slices summed)
    (1, 9, 17, 19, 1, 2, "cross2d", True, "fp16", "", {"ss2d_bwd_seg": 1}),
    (2, 11, 17, 40, 4, 3, "cross2d", False, "bf16", "", {"ss2d_bwd_seg": "auto"}),
    (1, 150, 7, 7, 16, 5, "bidi", True, "fp32", "", {"ss2d_bwd_seg": 20, "ss2d_fwd_seg": 9}),
    # the sweep forward (d_state 1) with its tile forced: several iterations ending mid-slot, channel groups with
    # idle lanes, R past the staging registers, channels-first write-out
    (1, 9, 17, 19, 1, 2, "cross2d", True, "fp16", "", {"ss2d_fwd_sweep": "8x8"}),
    (2, 40, 13, 30, 1, 6, "cross2d", False, "bf16", "", {"ss2d_fwd_sweep": "16x16"}),
    (1, 70, 7, 7, 1, 48, "cross2d", True, "fp32", "out32", {"ss2d_fwd_sweep": "32x2"}),
    (1, 5, 3, 9, 1, 5, "bidi", False, "fp16", "nosp", {"ss2d_fwd_sweep": "8x32"}),
    # its dt projection on tensor cores (knob ss2d_sweep_mma; weights in x's dtype, exact in tf32): the next
    # iteration's delta buffer, R padded to 8
    (2, 40, 13, 30, 1, 6, "cross2d", True, "bf16", "wx", {"ss2d_fwd_sweep": "16x16", "ss2d_sweep_mma": True}),
    (1, 70, 7, 7, 1, 48, "cross2d", False, "fp16", "wx", {"ss2d_fwd_sweep": "32x2", "ss2d_sweep_mma": True}),
]
# (batch, C, H, W, channels_last, dtype, branch, options, env knobs) for add_layer_norm. branch: none, add,
# scaled (drop path's branch_scale, sample 1 of 2 dropped). options: nobias, ds (s has a gradient too), out32 / out16
# (out_dtype float32 / float16), br16 / brbf16 (a 16-bit branch on a float32 x), fromy (the backward from the output,
# VSSM.set_recompute "norms": models.norm_node with from_y=True; weights kept away from 0). The env knobs are the
# extension's, read on every call (csrc/layer_norm/layer_norm.cpp).
NORM_CASES = [
    (1, 1, 1, 1, True, "fp16", "add", "ds", None),
    (2, 96, 3, 5, True, "fp16", "add", "ds", None),  # vectors of 8
    (2, 96, 3, 5, True, "fp32", "scaled", "nobias,ds", None),  # vectors of 4
    (1, 130, 2, 3, True, "bf16", "none", "out32", None),  # vectors of 2
    (3, 3, 1, 9, True, "fp32", "none", "", None),  # vectors of 1
    (1, 5, 13, 1, True, "bf16", "scaled", "ds", None),
    (1, 3072, 1, 3, True, "fp16", "scaled", "ds", None),  # a row over several warps (forward and backward)
    (1, 768, 5, 8, True, "fp16", "scaled", "", {"VMAMBA_NORM_BWD_BLOCKS": "10"}),
    (2, 96, 7, 7, True, "bf16", "add", "nobias", {"VMAMBA_NORM_BWD_BLOCKS": "3", "VMAMBA_NORM_MAX_VEC": "1"}),
    (2, 96, 3, 5, True, "fp32", "scaled", "br16,ds", None),
    (1, 130, 2, 3, True, "fp32", "add", "brbf16", None),
    (1, 1, 1, 1, False, "fp32", "add", "nobias", None),
    (2, 96, 13, 13, False, "fp16", "add", "ds", {"VMAMBA_NORM_TILE": "64"}),  # a tile cut at the image's end
    (2, 96, 13, 13, False, "fp32", "scaled", "ds", {"VMAMBA_NORM_TILE": "16", "VMAMBA_NORM_BWD_BLOCKS": "4"}),
    (1, 130, 7, 7, False, "bf16", "none", "out32", None),
    (3, 3, 1, 9, False, "fp32", "none", "out16", None),
    (2, 8, 4, 8, False, "fp16", "add", "", None),  # vectors of 8
    (2, 8, 4, 8, False, "fp16", "none", "", {"VMAMBA_NORM_MAX_VEC": "2"}),
    (1, 768, 2, 4, False, "fp16", "add", "ds", None),
    (1, 3, 16, 16, False, "bf16", "scaled", "nobias", {"VMAMBA_NORM_BWD_BLOCKS": "1"}),
    (2, 5, 13, 1, False, "bf16", "add", "", None),
    (1, 8, 4, 8, False, "fp32", "add", "brbf16,ds", None),
    (2, 7, 5, 13, False, "fp32", "scaled", "br16", None),
    (2, 96, 3, 5, True, "fp32", "scaled", "fromy,out16,ds", None),  # autocast's case: float32 x, 16-bit y
    (1, 130, 2, 3, True, "bf16", "add", "fromy", None),
    (1, 3072, 1, 3, True, "fp16", "none", "fromy", None),
    (3, 3, 1, 9, True, "fp32", "none", "fromy,nobias", None),
    (2, 96, 13, 13, False, "fp32", "add", "fromy,out16", {"VMAMBA_NORM_TILE": "16"}),
    (1, 768, 2, 4, False, "bf16", "scaled", "fromy,nobias,ds", None),
    (2, 5, 13, 1, False, "fp16", "none", "fromy", {"VMAMBA_NORM_BWD_BLOCKS": "1"}),
]
# (batch, C, H, W, K, channels_last, dtype, act, bias, env knobs) for dwconv2d
DWCONV_CASES = [
    (2, 8, 7, 9, 3, True, "fp32", "silu", True, None),  # vectors of 4
    (1, 16, 12, 12, 3, True, "fp16", "gelu", False, {"VMAMBA_DWCONV_BWD_SEGS": "3"}),
    (1, 130, 3, 4, 3, True, "bf16", "none", True, None),  # vectors of 2
    (3, 3, 5, 1, 3, True, "fp16", "silu", True, None),
    (1, 1, 1, 1, 3, True, "fp32", "gelu", True, None),
    (1, 4, 9, 8, 5, True, "fp32", "silu", True, None),
    (1, 2, 6, 7, 7, True, "bf16", "gelu", False, None),
    (2, 8, 1, 9, 3, True, "fp16", "none", False, {"VMAMBA_DWCONV_MAX_VEC": "1"}),
    (1, 5, 13, 1, 5, True, "bf16", "silu", True, None),
    (2, 8, 7, 9, 3, False, "fp32", "silu", True, None),
    (1, 4, 14, 14, 3, False, "fp16", "gelu", True, None),
    (1, 2, 16, 16, 3, False, "fp16", "none", False, None),  # vectors of 8
    (1, 2, 16, 16, 3, False, "bf16", "silu", True, {"VMAMBA_DWCONV_MAX_VEC": "4"}),
    (3, 3, 5, 1, 3, False, "fp32", "gelu", True, None),
    (1, 1, 1, 1, 7, False, "bf16", "none", True, None),
    (1, 1, 72, 64, 3, False, "fp32", "silu", True, {"VMAMBA_DWCONV_BWD_SEGS": "2"}),  # a large plane in segments
    (1, 4, 9, 8, 5, False, "fp32", "gelu", True, None),
    (1, 2, 6, 7, 7, False, "fp16", "silu", True, None),
    (10, 2, 5, 5, 3, False, "fp32", "silu", True, None),  # more partial rows
    (2, 3, 1, 9, 3, False, "bf16", "gelu", False, None),
    (1, 7, 5, 13, 5, False, "fp16", "none", True, None),
]


def parse_ops(ops) -> tuple:
    """The case groups of `ops` (a comma list or a sequence of names; None or "" = all), in OPS order; ValueError
    naming the unknown ones."""
    if ops is None:
        return OPS
    names = [o.strip() for o in ops.split(",")] if isinstance(ops, str) else [str(o).strip() for o in ops]
    names = [o for o in names if o]
    unknown = [o for o in names if o not in OPS]
    if unknown:
        raise ValueError(f"unknown case group(s) {', '.join(unknown)}; groups are {', '.join(OPS)}")
    return tuple(o for o in OPS if o in names) if names else OPS


def run_cases(impl: str = "cuda", device: str = "cuda", ops=None) -> int:
    """Run every case of the groups `ops` (see parse_ops; default all) once with `impl` on `device`, compare with
    the float64 reference; 0 when all agree, else 1. Each group draws its inputs from its own seed, so a group
    gets the same inputs whichever others run."""
    import torch  # noqa: PLC0415

    import vmamba_kernels as vk  # noqa: PLC0415

    groups = parse_ops(ops)
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    tol = {"fp32": 2e-3, "fp16": 2e-2, "bf16": 1e-1}
    bad = 0

    def generator(seed):
        g = torch.Generator(device=device).manual_seed(seed)

        def rnd(*shape, dt=torch.float32):
            return torch.randn(*shape, generator=g, device=device).to(dt)

        return g, rnd

    if "scan" in groups:
        g, rnd = generator(0)
        cases = [(c, False) for c in SCAN_CASES] + [(c, True) for c in SCAN_CASES if c[3] > 1]
        for (batch, KD, K, N, L, dn), seq in cases:
            # seq: the row-per-thread kernels of 1 < d_state <= 16, forced (they start at many rows)
            with vk.tuning("cuda", scan_seq_min_rows=0 if seq else 1 << 62):
                bad += _scan_case(vk, impl, rnd, g, device, dtypes, tol, batch, KD, K, N, L, dn, seq)
        for batch, KD, K, N, L, dn in SCAN_ROUND_CASES:
            with vk.tuning("cuda", scan_bwd_splits=1):
                bad += _scan_case(vk, impl, rnd, g, device, dtypes, tol, batch, KD, K, N, L, dn, False)
    if "cross" in groups:
        g, rnd = generator(1)
        for batch, Cc, H, W, dn in CROSS_CASES:
            for mode in ("cross2d", "unidi", "bidi"):
                for cl, path in [(False, None)] + [(True, q) for q in CL_PATHS]:
                    with vk.tuning("cuda", cross_cl_tiled=path):
                        bad += _cross_case(vk, impl, rnd, dtypes, tol, batch, Cc, H, W, dn, mode, cl, path)
    if "ss2d_core" in groups:
        g, rnd = generator(2)
        for case in SS2D_CASES:
            with vk.tuning("cuda", **(case[-1] or {})):
                bad += _guarded(_ss2d_case, _ss2d_tag(case), vk, impl, rnd, g, device, dtypes, tol, case)
    if "norm" in groups:
        g, rnd = generator(3)
        for case in NORM_CASES:
            with _env(case[-1]):
                bad += _guarded(_norm_case, _norm_tag(case), vk, impl, rnd, device, dtypes, tol, case)
    if "dwconv" in groups:
        g, rnd = generator(4)
        for case in DWCONV_CASES:
            with _env(case[-1]):
                bad += _guarded(_dwconv_case, _dwconv_tag(case), vk, impl, rnd, dtypes, tol, case)
    if device == "cuda":
        torch.cuda.synchronize()
    return 1 if bad else 0


def _scan_case(vk, impl, rnd, g, device, dtypes, tol, batch, KD, K, N, L, dn, seq) -> int:
    """One selective-scan case against the float64 reference; 1 when it fails."""
    import torch  # noqa: PLC0415

    from reference.selective_scan import selective_scan_parallel  # noqa: PLC0415

    dt = dtypes[dn]
    u, delta = rnd(batch, KD, L, dt=dt), (rnd(batch, KD, L) * 0.5 - 2).to(dt)
    A = -torch.rand(KD, N, generator=g, device=device) - 0.5
    B, C = rnd(batch, K, N, L, dt=dt), rnd(batch, K, N, L, dt=dt)
    D, bias = rnd(KD), rnd(KD) * 0.1
    leaves = [t.requires_grad_() for t in (u, delta, A, B, C, D, bias)]
    y = vk.selective_scan(*leaves[:5], D=leaves[5], delta_bias=leaves[6], delta_softplus=True,
                          out_dtype=torch.float32, impl=impl)
    dy = rnd(*y.shape)
    grads = torch.autograd.grad(y, leaves, dy)
    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    yr = selective_scan_parallel(*ref_leaves[:5], D=ref_leaves[5], delta_bias=ref_leaves[6],
                                 delta_softplus=True)
    # allow_unused: with L = 1 the reference never multiplies by exp(dt A) (the state starts at 0)
    ref_grads = torch.autograd.grad(yr, ref_leaves, dy.double(), allow_unused=True)
    ref_grads = [torch.zeros_like(x) if gr is None else gr for x, gr in zip(ref_leaves, ref_grads)]
    errs = [float((a.detach().double() - b.detach()).abs().max() / (1 + b.detach().abs().max()))
            for a, b in zip([y, *grads], [yr, *ref_grads])]
    ok = max(errs) <= tol[dn]
    print(f"scan  B{batch} KD{KD} K{K} N{N} L{L} {dn}{' row-per-thread' if seq else ''}: max scaled error {max(errs):.1e} {'ok' if ok else 'FAIL'}")
    return int(not ok)


def _cross_case(vk, impl, rnd, dtypes, tol, batch, Cc, H, W, dn, mode, cl, path) -> int:
    """One cross scan + merge case against the float64 reference; 1 when it fails."""
    from reference.cross_scan import cross_merge_ref, cross_scan_ref  # noqa: PLC0415

    x = rnd(batch, H, W, Cc, dt=dtypes[dn]) if cl else rnd(batch, Cc, H, W, dt=dtypes[dn])
    ys = vk.cross_scan(x, mode=mode, channels_last=cl, impl=impl)
    xm = vk.cross_merge(ys, H, W, mode=mode, channels_last=cl, impl=impl)
    ys_r = cross_scan_ref(x.double(), mode, channels_last=cl)
    xm_r = cross_merge_ref(ys.double(), H, W, mode, channels_last=cl)
    err = max(float((ys.double() - ys_r).abs().max()), float((xm.double() - xm_r).abs().max() /
                                                             (1 + xm_r.abs().max())))
    ok = err <= tol[dn]
    print(f"cross B{batch} C{Cc} {H}x{W} {mode} {'cl' if cl else 'cf'}"
          f"{'' if path is None else ' cross_cl_tiled=' + path} {dn}: {err:.1e} {'ok' if ok else 'FAIL'}")
    return int(not ok)


@contextlib.contextmanager
def _env(knobs):
    """The extension's per-call environment knobs set inside the block (None: none), restored after it."""
    old = {k: os.environ.get(k) for k in (knobs or {})}
    os.environ.update(knobs or {})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _guarded(case_fn, tag, *args) -> int:
    """case_fn(*args, tag), or a FAIL line with the error when it raises (a refusal, a launch error); 1 when it
    fails."""
    try:
        return case_fn(*args, tag)
    except Exception as e:  # noqa: BLE001 (any error fails the case; the next cases still run)
        kind = "refused" if type(e).__name__ == "ImplRefused" else type(e).__name__
        print(f"{tag}: FAIL ({kind}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})")
        return 1


def _scaled_errors(names, found, want) -> dict:
    """{name: max|a - b| / (1 + max|b|)} with b the float64 reference (on the CPU)."""
    out = {}
    for name, a, b in zip(names, found, want):
        a, b = a.detach().cpu().double(), b.detach().cpu().double()
        if a.shape != b.shape:
            out[name] = float("inf")
        elif a.numel() == 0:
            out[name] = 0.0
        else:
            out[name] = float((a - b).abs().max() / (1 + b.abs().max()))
    return out


def _report(tag, errs, limit) -> int:
    worst = max(errs, key=lambda k: (errs[k] != errs[k], errs[k]))  # NaN counts as the worst
    err = errs[worst]
    ok = err <= limit  # False for NaN
    print(f"{tag}: max scaled error {err:.1e} {'ok' if ok else f'FAIL ({worst})'}")
    return int(not ok)


def _cpu64(ts):
    """float64 CPU copies that require grad (None stays None)."""
    return [None if t is None else t.detach().cpu().double().requires_grad_() for t in ts]


def _grads(outputs, leaves, grad_outputs):
    """autograd.grad over the leaves that are not None; a zero for a leaf the outputs do not reach (with L = 1 the
    reference never multiplies the state, which starts at 0, by exp(dt A))."""
    import torch  # noqa: PLC0415

    present = [t for t in leaves if t is not None]
    got = torch.autograd.grad(outputs, present, grad_outputs, allow_unused=True)
    return [torch.zeros_like(t) if gr is None else gr for t, gr in zip(present, got)]


def _ss2d_tag(case) -> str:
    batch, Dc, H, W, N, R, mode, cl, dn, opts, knobs = case
    extra = "".join(f" {k}={v}" for k, v in (knobs or {}).items())
    return (f"ss2d  B{batch} D{Dc} {H}x{W} N{N} R{R} {mode} {'cl' if cl else 'cf'} {dn}"
            f"{' ' + opts if opts else ''}{extra}")


def _ss2d_case(vk, impl, rnd, g, device, dtypes, tol, case, tag) -> int:
    """One fused SS2D core case (forward, and the gradients of every input) against reference.ss2d_core in float64
    on the CPU; 1 when it fails."""
    import math  # noqa: PLC0415

    import torch  # noqa: PLC0415

    import reference  # noqa: PLC0415

    batch, Dc, H, W, N, R, mode, cl, dn, opts, _ = case
    opts = set(opts.split(",")) - {""}
    dt, K = dtypes[dn], 4
    nosp = "nosp" in opts
    x = rnd(*((batch, H, W, Dc) if cl else (batch, Dc, H, W)))
    xpw = rnd(K, R + 2 * N, Dc) / math.sqrt(Dc)
    dtw = rnd(K, Dc, R) / math.sqrt(R)
    if nosp:  # delta = dt_w . (x_proj_weight[:R] . x) + delta_bias >= 0 without softplus (else the state grows)
        x, dtw = x.abs(), dtw.abs()
        xpw[:, :R] = xpw[:, :R].abs()
    A = -torch.exp(-3.0 + (math.log(16.0) + 3.0) * torch.rand(K * Dc, N, generator=g, device=device))
    D = None if "noD" in opts else rnd(K * Dc)
    bias = None if "nobias" in opts else (
        0.5 * torch.rand(K * Dc, generator=g, device=device) if nosp
        else -4.0 + 5.0 * torch.rand(K * Dc, generator=g, device=device))
    pw = dt if "wx" in opts else torch.float32
    leaves = [x.to(dt), xpw.to(pw), dtw.to(pw), A, D, bias]
    for t in leaves:
        if t is not None:
            t.requires_grad_()
    out_dtype = torch.float32 if "out32" in opts else None
    y = vk.ss2d_core(*leaves, mode=mode, channels_last=cl, delta_softplus=not nosp, out_dtype=out_dtype, impl=impl)
    if y.dtype != (out_dtype or dt) or y.shape != x.shape:
        print(f"{tag}: FAIL (y is {y.dtype} {tuple(y.shape)})")
        return 1
    dy = rnd(*y.shape).to(y.dtype)
    grads = _grads(y, leaves, dy)
    ref = _cpu64(leaves)
    # the reference's log-depth scan (its sequential one is slow on the larger maps)
    yr = reference.ss2d_core(*ref, mode=mode, channels_last=cl, delta_softplus=not nosp, out_dtype=torch.float64,
                             scan=reference.selective_scan_parallel)
    ref_grads = _grads(yr, ref, dy.cpu().double())
    names = [n for n, t in zip(("dx", "dx_proj_weight", "ddt_projs_weight", "dA", "dD", "ddelta_bias"), leaves)
             if t is not None]
    errs = _scaled_errors(["y", *names], [y, *grads], [yr, *ref_grads])
    return _report(tag, errs, tol[dn])


def _norm_tag(case) -> str:
    batch, C, H, W, cl, dn, branch, opts, knobs = case
    extra = "".join(f" {k[7:]}={v}" for k, v in (knobs or {}).items())
    return (f"norm  B{batch} C{C} {H}x{W} {'cl' if cl else 'cf'} {dn} branch={branch}"
            f"{' ' + opts if opts else ''}{extra}")


def _norm_case(vk, impl, rnd, device, dtypes, tol, case, tag) -> int:
    """One add_layer_norm case (y, s and the gradients of x, branch, weight, bias) against reference.add_layer_norm
    in float64 on the CPU (of s rounded to x's dtype, as the op's definition rounds it); 1 when it fails."""
    import torch  # noqa: PLC0415

    import reference  # noqa: PLC0415

    batch, C, H, W, cl, dn, branch_kind, opts, _ = case
    opts = set(opts.split(",")) - {""}
    dt = dtypes[dn]
    shape = (batch, H, W, C) if cl else (batch, C, H, W)
    ramp = torch.linspace(-2.0, 2.0, C, device=device).view((1, 1, 1, C) if cl else (1, C, 1, 1))
    x = (rnd(*shape) * 1.5 + ramp + 2.0).to(dt)  # a mean away from 0, a variance away from 0 (C > 1)
    bdt = torch.float16 if "br16" in opts else torch.bfloat16 if "brbf16" in opts else dt
    branch = None if branch_kind == "none" else rnd(*shape, dt=bdt)
    scale = None
    if branch_kind == "scaled":  # drop path: sample 1 (of 2 or more) dropped, the others kept and scaled by 1 / keep
        scale = torch.full((batch,), 1.0 / 0.8, device=device)
        scale[1:2] = 0.0
    weight = 1.0 + 0.5 * rnd(C)
    if "fromy" in opts:  # xhat = (y - bias) / weight: |weight| from 0.5 to 1.5, both signs
        weight = (0.5 + torch.rand(C, device=device)) * torch.where(rnd(C) < 0, -1.0, 1.0)
    bias = None if "nobias" in opts else 0.5 * rnd(C)
    out_dtype = torch.float32 if "out32" in opts else torch.float16 if "out16" in opts else None
    leaves = [x, branch, weight, bias]
    for t in leaves:
        if t is not None:
            t.requires_grad_()
    if "fromy" in opts:
        from models.norm_node import add_norm_node  # noqa: PLC0415

        (y, s), _ = add_norm_node(x, branch, weight, bias, 1e-5, scale, cl, out_dtype, impl, from_y=True)
    else:
        y, s = vk.add_layer_norm(x, branch, weight, bias, 1e-5, branch_scale=scale, channels_last=cl,
                                 out_dtype=out_dtype, impl=impl)
    if y.dtype != (out_dtype or dt) or s.dtype != dt:
        print(f"{tag}: FAIL (y is {y.dtype}, s is {s.dtype})")
        return 1
    dy = rnd(*shape).to(y.dtype)
    with_ds = "ds" in opts and branch is not None  # s's own gradient (s is x itself without a branch)
    ds = rnd(*shape).to(dt) if with_ds else None
    outs, gouts = ([y, s], [dy, ds]) if with_ds else ([y], [dy])
    grads = _grads(outs, leaves, gouts)
    x64, b64, w64, bias64 = ref = _cpu64(leaves)
    sr = x64
    if b64 is not None:  # the residual add, rounded once to x's dtype as the op stores s (straight through for the
        # gradients): else that rounding, divided by a small pixel's deviation, would dominate y's error
        sr = x64 + b64 * (1.0 if scale is None else scale.cpu().double().view(-1, 1, 1, 1))
        sr = sr + (sr.detach().to(dt).double() - sr.detach())
    yr, _ = reference.add_layer_norm(sr, None, w64, bias64, None, 1e-5, cl, torch.float64)
    routs, rgouts = ([yr, sr], [dy.cpu().double(), ds.cpu().double()]) if with_ds else ([yr], [dy.cpu().double()])
    ref_grads = _grads(routs, ref, rgouts)
    names = ["y"] + [n for n, t in zip(("dx", "dbranch", "dweight", "dbias"), leaves) if t is not None]
    found, want = [y, *grads], [yr, *ref_grads]
    if branch is not None:  # s is x itself without a branch
        names, found, want = ["s", *names], [s, *found], [sr, *want]
    errs = _scaled_errors(names, found, want)
    # the roughest dtype involved: a 16-bit branch (its gradient comes back in its dtype) or out_dtype on float32 x
    name_of = {v: k for k, v in dtypes.items()}
    return _report(tag, errs, max(tol[name_of[d]] for d in (dt, bdt, y.dtype)))


def _dwconv_tag(case) -> str:
    batch, C, H, W, K, cl, dn, act, has_bias, knobs = case
    extra = "".join(f" {k[7:]}={v}" for k, v in (knobs or {}).items())
    return (f"dwconv B{batch} C{C} {H}x{W} K{K} {'cl' if cl else 'cf'} {dn} {act}{'' if has_bias else ' nobias'}"
            f"{extra}")


def _dwconv_case(vk, impl, rnd, dtypes, tol, case, tag) -> int:
    """One dwconv2d case (y and the gradients of x, weight, bias) against reference.dwconv2d in float64 on the
    CPU; 1 when it fails."""
    import torch  # noqa: PLC0415

    import reference  # noqa: PLC0415

    batch, C, H, W, K, cl, dn, act, has_bias, _ = case
    dt = dtypes[dn]
    shape = (batch, H, W, C) if cl else (batch, C, H, W)
    leaves = [rnd(*shape, dt=dt), rnd(C, 1, K, K) / K, 0.5 * rnd(C) if has_bias else None]
    for t in leaves:
        if t is not None:
            t.requires_grad_()
    y = vk.dwconv2d(*leaves, act, channels_last=cl, impl=impl)
    if y.dtype != dt or y.shape != leaves[0].shape:
        print(f"{tag}: FAIL (y is {y.dtype} {tuple(y.shape)})")
        return 1
    dy = rnd(*shape, dt=dt)
    grads = _grads(y, leaves, dy)
    ref = _cpu64(leaves)
    yr = reference.dwconv2d(*ref, act, cl)
    ref_grads = _grads(yr, ref, dy.cpu().double())
    names = [n for n, t in zip(("dx", "dweight", "dbias"), leaves) if t is not None]
    errs = _scaled_errors(["y", *names], [y, *grads], [yr, *ref_grads])
    return _report(tag, errs, tol[dn])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sanitize", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma list of {', '.join(TOOLS)}")
    ap.add_argument("--ops", default=",".join(OPS), help=f"comma list of the case groups {', '.join(OPS)}")
    ap.add_argument("--cases", action="store_true", help="run the cases once without a sanitizer")
    args = ap.parse_args(argv)
    try:
        groups = parse_ops(args.ops)
    except ValueError as e:
        ap.error(str(e))
    if args.cases:
        return run_cases(ops=groups)
    tools = [t for t in args.tools.split(",") if t]
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        ap.error(f"unknown tool(s) {', '.join(unknown)}; tools are {', '.join(TOOLS)}")
    exe = shutil.which("compute-sanitizer") or os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"),
                                                            "bin", "compute-sanitizer")
    if not os.path.exists(exe):
        print("compute-sanitizer not found: put the CUDA toolkit's bin/ on PATH or set CUDA_HOME", file=sys.stderr)
        return len(tools)
    failed = 0
    rows = []
    for tool in tools:
        cmd = [exe, "--tool", tool, "--error-exitcode", "1"]
        if tool == "memcheck":
            cmd += ["--leak-check", "no"]
        cmd += [sys.executable, "-m", "bench.sanitize", "--cases", "--ops", ",".join(groups)]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        summary = [ln for ln in proc.stdout.splitlines() + proc.stderr.splitlines() if "ERROR SUMMARY" in ln
                   or "RACECHECK SUMMARY" in ln]
        clean = proc.returncode == 0
        failed += not clean
        rows.append((tool, "clean" if clean else f"FAILED (rc {proc.returncode})", f"{time.time() - t0:.0f} s",
                     summary[-1].strip() if summary else ""))
        if not clean:
            print("\n".join((proc.stdout + proc.stderr).splitlines()[-40:]))
    for r in rows:
        print(f"{r[0]:<10} {r[1]:<18} {r[2]:>6}  {r[3]}")
    return failed


if __name__ == "__main__":
    sys.exit(main())
