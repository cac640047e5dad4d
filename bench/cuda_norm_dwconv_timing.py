"""Timing of the CUDA fused residual-add + LayerNorm and depthwise conv ops (csrc/layer_norm, csrc/dwconv)
against what torch runs for the same work, at VMamba-T's stage shapes (batch 128 by default).

    python -m bench.cuda_norm_dwconv_timing                          # everything (a few minutes)
    python -m bench.cuda_norm_dwconv_timing --ops ln --layouts cl --dtypes fp16 --batch 64
    python -m bench.cuda_norm_dwconv_timing --csv out.csv            # also write the rows

Per (op, direction, layout, dtype, shape, impl): median ms over single calls bracketed by CUDA events
(bench.timing.time_kernel), inputs rotated over enough sets to exceed twice the L2 cache, random data;
GB/s of the minimum traffic of the work (every input read once, every output written once: the same
byte count for every impl of a row, so GB/s compare like ms do) and its fraction of the card's measured
device-to-device copy bandwidth; `vs_cuda` = impl ms / cuda ms of the same row.

Impls
  ln   "residual add + LayerNorm over C" (s = x + branch, y = LN(s)), and the SS2D out_norm (fp32 x, no
       branch, fp16 y):
       cuda            torch.ops.vmamba_cuda.add_layer_norm_fwd / _bwd, on the layout as stored
       torch           x + branch, then F.layer_norm in the activations' dtype
       torch_autocast  what the model runs today: under torch.autocast F.layer_norm runs in fp32 (input
                       cast up, fp32 output), and the next op casts the output back to the 16-bit dtype
       Channels-first torch rows run LayerNorm2d's path: permute to channels-last, LayerNorm, permute back.
  dw   depthwise 3x3 conv (no bias, as VMamba v2's SS2D) + SiLU:
       cuda            torch.ops.vmamba_cuda.dwconv2d_fwd / _bwd, on the layout as stored
       cudnn           F.conv2d(groups=C) + F.silu on an NCHW tensor (channels-first rows) or on a
                       channels_last-memory-format tensor (channels-last rows: what a channels-last model
                       hands to cudnn without a permute copy)
  Directions: fwd, and fwd+bwd (the forward followed by the backward: autograd for torch, the two ops
  for cuda).
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from typing import Callable, List

import torch
import torch.nn.functional as F

from bench.timing import copy_bandwidth, time_kernel

L2_BYTES = 50 << 20
DEVICE = "cuda"  # tests/test_bench_norm_dwconv_timing.py runs the logic on the CPU with stand-in ops
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
LN_EPS = 1e-5
# VMamba-T: (C, H, W) of the blocks' norms per stage, and of the downsample's LayerNorm over 4C (v1
# patch merging) at the next stage's resolution
LN_SHAPES = [(96, 56, 56), (192, 28, 28), (384, 14, 14), (768, 7, 7), (384, 28, 28), (768, 14, 14), (1536, 7, 7)]
# depthwise conv inputs: D = ssm_ratio * C with ratio 1 (T s1l8) and 2 (T s2l5)
DW_SHAPES = [(96, 56, 56), (192, 56, 56), (192, 28, 28), (384, 28, 28), (384, 14, 14), (768, 14, 14), (768, 7, 7),
             (1536, 7, 7)]


def _ops():
    try:
        import vmamba_kernels._C  # noqa: F401  (registers torch.ops.vmamba_cuda)
    except ImportError as e:
        raise SystemExit(f"the extension vmamba_kernels._C is not built ({e}): python setup.py build_ext --inplace")

    ops = torch.ops.vmamba_cuda
    for name in ("add_layer_norm_fwd", "add_layer_norm_bwd", "dwconv2d_fwd", "dwconv2d_bwd"):
        if not hasattr(ops, name):
            raise SystemExit(f"vmamba_kernels._C was built without torch.ops.vmamba_cuda.{name}: rebuild the extension")
    return ops


def _nsets(set_bytes: int) -> int:
    return max(2, min(16, math.ceil(2 * L2_BYTES / max(set_bytes, 1))))


def _act(B, C, H, W, dtype, channels_last):
    shape = (B, H, W, C) if channels_last else (B, C, H, W)
    return torch.randn(shape, device=DEVICE).to(dtype)


def _time(fn: Callable[[int], object], reps: int) -> float:
    return time_kernel(fn, DEVICE, warmup=10, reps=reps)["ms_p50"]


# ---- layer norm -----------------------------------------------------------------------------------
def _ln_rows(ops, B, C, H, W, dtype, channels_last, case, reps) -> List[dict]:
    """case "add": s = x + branch, y = LN(s) in dtype; case "outnorm": fp32 x, y in dtype, no branch."""
    xdt = torch.float32 if case == "outnorm" else dtype
    ydt = dtype
    es, ey = torch.finfo(xdt).bits // 8, torch.finfo(ydt).bits // 8
    n = B * C * H * W
    has_branch = case == "add"
    # minimum traffic: fwd reads x (+ branch), writes y (+ s); bwd reads dy (+ ds), s, writes dx (+ dbranch)
    fwd_bytes = n * (es * (2 if has_branch else 1) + ey + (es if has_branch else 0)) + 8 * B * H * W
    bwd_bytes = n * (ey + es + (es if has_branch else 0) + es * (2 if has_branch else 1)) + 8 * B * H * W
    sets = []
    for _ in range(_nsets(fwd_bytes + bwd_bytes)):
        x = _act(B, C, H, W, xdt, channels_last)
        sets.append(dict(x=x, br=_act(B, C, H, W, xdt, channels_last) if has_branch else None,
                         dy=_act(B, C, H, W, ydt, channels_last),
                         ds=_act(B, C, H, W, xdt, channels_last) if has_branch else None))
    w = torch.randn(C, device=DEVICE)
    b = torch.randn(C, device=DEVICE)
    out_dtype = ydt if case == "outnorm" else None

    def cuda_fwd(i):
        d = sets[i % len(sets)]
        return ops.add_layer_norm_fwd(d["x"], d["br"], w, b, None, LN_EPS, channels_last, out_dtype)

    def cuda_fwd_bwd(i):
        d = sets[i % len(sets)]
        y, s, mean, rstd = ops.add_layer_norm_fwd(d["x"], d["br"], w, b, None, LN_EPS, channels_last, out_dtype)
        return ops.add_layer_norm_bwd(d["dy"], d["ds"], s, w, b, mean, rstd, None, has_branch, channels_last, xdt)

    def torch_ln(s, wt, bt):
        if channels_last:
            return F.layer_norm(s, (C,), wt, bt, LN_EPS)
        return F.layer_norm(s.permute(0, 2, 3, 1), (C,), wt, bt, LN_EPS).permute(0, 3, 1, 2)

    # torch's 16-bit LayerNorm wants weights in the input's dtype; the backward computes their
    # gradients too (as the cuda op always does)
    params = {False: (w.to(xdt).requires_grad_(True), b.to(xdt).requires_grad_(True)),
              True: (w.clone().requires_grad_(True), b.clone().requires_grad_(True))}

    def torch_fwd(i, autocast, grad=False):
        d = sets[i % len(sets)]
        x, br = d["x"], d["br"]
        if grad:
            x = x.detach().requires_grad_(True)
            br = br.detach().requires_grad_(True) if br is not None else None
        wt, bt = params[autocast]
        with torch.set_grad_enabled(grad), torch.autocast(DEVICE, dtype=dtype, enabled=autocast):
            s = x + br if br is not None else x
            y = torch_ln(s, wt, bt)
        y = y.to(ydt)  # autocast: the next op's cast back to 16-bit; out_norm: the fp16 output
        if grad:
            torch.autograd.backward([y] + ([s] if br is not None else []),
                                    [d["dy"]] + ([d["ds"]] if br is not None else []))
            wt.grad = bt.grad = None
            return x.grad
        return y

    impls = {"cuda": (cuda_fwd, cuda_fwd_bwd),
             "torch": (lambda i: torch_fwd(i, False), lambda i: torch_fwd(i, False, True))}
    if dtype != torch.float32:
        impls["torch_autocast"] = (lambda i: torch_fwd(i, True), lambda i: torch_fwd(i, True, True))
    rows = []
    for direction, nbytes, k in (("fwd", fwd_bytes, 0), ("fwd+bwd", fwd_bytes + bwd_bytes, 1)):
        base = None
        for impl, fns in impls.items():
            ms = _time(fns[k], reps)
            base = ms if impl == "cuda" else base
            rows.append(dict(op=f"ln_{case}", direction=direction, layout="cl" if channels_last else "cf",
                             dtype=_dname(dtype), shape=f"{B}x{C}x{H}x{W}", impl=impl, ms=ms, gbps=nbytes / ms / 1e6,
                             vs_cuda=ms / base))
    del sets
    return rows


# ---- depthwise conv -------------------------------------------------------------------------------
def _dw_rows(ops, B, C, H, W, dtype, channels_last, reps) -> List[dict]:
    e = torch.finfo(dtype).bits // 8
    n = B * C * H * W
    fwd_bytes, bwd_bytes = 2 * n * e, 3 * n * e  # fwd: x, y; bwd: dy, x, dx
    sets = []
    for _ in range(_nsets(fwd_bytes + bwd_bytes)):
        x = torch.randn(B, C, H, W, device=DEVICE).to(dtype)
        dy = torch.randn(B, C, H, W, device=DEVICE).to(dtype)
        if channels_last:  # cuda: (B, H, W, C) contiguous; cudnn: the same memory as NCHW channels_last
            x, dy = x.permute(0, 2, 3, 1).contiguous(), dy.permute(0, 2, 3, 1).contiguous()
        sets.append((x, dy))
    w = torch.randn(C, 1, 3, 3, device=DEVICE) / 3
    wt = w.to(dtype)

    def cuda_fwd(i):
        x, _ = sets[i % len(sets)]
        return ops.dwconv2d_fwd(x, w, None, "silu", channels_last)

    def cuda_fwd_bwd(i):
        x, dy = sets[i % len(sets)]
        ops.dwconv2d_fwd(x, w, None, "silu", channels_last)
        return ops.dwconv2d_bwd(dy, x, w, None, "silu", channels_last)

    def nchw(t):  # the logical NCHW view cudnn takes (channels_last memory format when stored (B, H, W, C))
        return t.permute(0, 3, 1, 2) if channels_last else t

    def cudnn_fwd(i, grad=False):
        x, dy = sets[i % len(sets)]
        xv = nchw(x)
        if grad:
            xv = xv.detach().requires_grad_(True)
            wg = wt.detach().requires_grad_(True)
        with torch.set_grad_enabled(grad):
            y = F.silu(F.conv2d(xv, wg if grad else wt, None, padding=1, groups=C))
        if grad:
            y.backward(nchw(dy))
            return xv.grad
        return y

    rows = []
    impls = {"cuda": (cuda_fwd, cuda_fwd_bwd), "cudnn": (cudnn_fwd, lambda i: cudnn_fwd(i, True))}
    for direction, nbytes, k in (("fwd", fwd_bytes, 0), ("fwd+bwd", fwd_bytes + bwd_bytes, 1)):
        base = None
        for impl, fns in impls.items():
            ms = _time(fns[k], reps)
            base = ms if impl == "cuda" else base
            rows.append(dict(op="dwconv3x3_silu", direction=direction, layout="cl" if channels_last else "cf",
                             dtype=_dname(dtype), shape=f"{B}x{C}x{H}x{W}", impl=impl, ms=ms, gbps=nbytes / ms / 1e6,
                             vs_cuda=ms / base))
    del sets
    return rows


def _free():
    if DEVICE == "cuda":
        torch.cuda.empty_cache()


def _dname(dt):
    return {v: k for k, v in DTYPES.items()}[dt]


def run(ops_sel=("ln", "dw"), layouts=("cf", "cl"), dtypes=("fp16", "bf16", "fp32"), batch=128, reps=50,
        out=sys.stdout, ops=None) -> List[dict]:
    """All rows (also printed as they come); callable from other scripts."""
    ops = ops if ops is not None else _ops()
    torch.backends.cudnn.benchmark = True
    copy = copy_bandwidth(DEVICE)
    name = torch.cuda.get_device_name(0) if DEVICE == "cuda" else DEVICE
    print(f"# {name}: device-to-device copy {copy:.0f} GB/s; batch {batch}", file=out)
    hdr = f"{'op':16s} {'dir':8s} {'lay':3s} {'dtype':5s} {'shape':16s} {'impl':15s} {'ms':>8s} {'GB/s':>7s} {'%copy':>6s} {'vs_cuda':>7s}"
    print(hdr, file=out)
    rows = []

    def emit(rs):
        for r in rs:
            r["pct_copy"] = 100.0 * r["gbps"] / copy
            print(f"{r['op']:16s} {r['direction']:8s} {r['layout']:3s} {r['dtype']:5s} {r['shape']:16s} {r['impl']:15s} "
                  f"{r['ms']:8.4f} {r['gbps']:7.0f} {r['pct_copy']:6.1f} {r['vs_cuda']:7.2f}", file=out, flush=True)
        rows.extend(rs)

    for lay in layouts:
        cl = lay == "cl"
        for dn in dtypes:
            dt = DTYPES[dn]
            if "ln" in ops_sel:
                for C, H, W in LN_SHAPES:
                    emit(_ln_rows(ops, batch, C, H, W, dt, cl, "add", reps))
                    if dt != torch.float32:
                        emit(_ln_rows(ops, batch, C, H, W, dt, cl, "outnorm", reps))
                    _free()
            if "dw" in ops_sel:
                for C, H, W in DW_SHAPES:
                    emit(_dw_rows(ops, batch, C, H, W, dt, cl, reps))
                    _free()
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.cuda_norm_dwconv_timing", description=__doc__.split("\n")[0])
    ap.add_argument("--ops", default="ln,dw", help="ln, dw or both (comma-separated)")
    ap.add_argument("--layouts", default="cf,cl")
    ap.add_argument("--dtypes", default="fp16,bf16,fp32")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--csv", default=None, help="also write the rows to this CSV file")
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA device")
    rows = run(tuple(a.ops.split(",")), tuple(a.layouts.split(",")), tuple(a.dtypes.split(",")), a.batch, a.reps)
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            wr = csv.DictWriter(f, fieldnames=list(rows[0]))
            wr.writeheader()
            wr.writerows(rows)


if __name__ == "__main__":
    main()
