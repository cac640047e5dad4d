"""Timing of the raw add_layer_norm / dwconv2d kernels against torch on VMamba-T stage shapes.

    python -m bench.norm_dwconv_timing [--batch 128] [--stages 0,1,2,3] [--layouts cf,cl]
                                       [--ops ln,add_ln,out_norm,dwconv] [--impls triton,cuda] [--reps 30]

Stages (C, H = W): (96, 56), (192, 28), (384, 14), (768, 7); VMamba-T[s1l8] has d_inner = C, so the
depthwise conv runs at the same shapes. Ops (each forward and backward):
- ln:       LayerNorm over channels of a 16-bit map, no residual (y fp16);
- add_ln:   s = x + branch, y = LN(s), fp16 in and out (the residual stream under AMP); the backward
            takes ds too (s feeds the next residual) and writes dx and dbranch;
- out_norm: LN of an fp32 map written as fp16 (SS2D out_norm after the scan);
- dwconv:   depthwise 3x3 + bias + SiLU, fp16.
Rows per op: the raw kernels of each available impl, "torch fp16" (the unfused ops with 16-bit
parameters), and "torch amp" (the model's current path under autocast: LayerNorm in fp32 with an fp32
output, conv with per-call weight casts; channels-first LN permutes as LayerNorm2d does,
channels-last conv runs cudnn on an NHWC tensor).
Times are medians of per-call CUDA events over input sets rotated so that no call reads from L2.
GB/s counts the bytes the op must move (read its inputs once, write its outputs once; the kernels'
own scratch traffic is not counted), "copy%" compares that with a large device-to-device copy.
"""
from __future__ import annotations

import argparse
import importlib
from typing import Callable, Optional

import torch
import torch.nn.functional as F

from bench.timing import copy_bandwidth, time_kernel

STAGES = [(96, 56), (192, 28), (384, 14), (768, 7)]
L2_BYTES = 64 << 20  # rotate input sets until a round trip exceeds ~4x this (H100 50 MB, H200 60 MB L2)


def _impls(names) -> dict:
    """name -> namespace of the four raw kernels, for the impls that import here."""
    where = {"triton": ("vmamba_kernels.triton.layer_norm", "vmamba_kernels.triton.dwconv"),
             "cuda": ("vmamba_kernels.cuda.extension",)}
    out = {}
    for name in names:
        funcs = {}
        try:
            for mod in where[name]:
                m = importlib.import_module(mod)
                for f in ("add_layer_norm_fwd", "add_layer_norm_bwd", "dwconv2d_fwd", "dwconv2d_bwd"):
                    if hasattr(m, f):
                        funcs[f] = getattr(m, f)
        except ImportError as e:
            print(f"# impl {name} skipped: {e}")
            continue
        if len(funcs) < 4:
            print(f"# impl {name} skipped: only {sorted(funcs)} found in {where[name]}")
            continue
        out[name] = funcs
    return out


def _sets(make: Callable[[], dict], nbytes: int) -> list:
    n = max(2, -(-4 * L2_BYTES // max(nbytes, 1)))
    return [make() for _ in range(min(n, 16))]


def _row(op, stage, layout, impl, direction, ms, nbytes, copy_bw):
    gbs = nbytes / (ms * 1e-3) / 1e9
    print(f"{op:9s} {stage:11s} {layout:3s} {impl:12s} {direction:4s} {ms:9.4f} {gbs:9.1f} {100 * gbs / copy_bw:6.1f}")
    return dict(op=op, stage=stage, layout=layout, impl=impl, direction=direction, ms=ms, gbs=gbs)


DEV = "cuda"  # --device cpu: a smoke run of this script under TRITON_INTERPRET=1 (no meaningful times)


def _time(fn, sets, reps):
    return time_kernel(lambda i: fn(sets[i % len(sets)]), DEV, warmup=min(5, reps), reps=reps)["ms_p50"]


def bench_ln(op: str, B, C, H, cl: bool, impls: dict, reps: int, copy_bw: float) -> list:
    dev = DEV
    shape = (B, H, H, C) if cl else (B, C, H, H)
    xdt = torch.float32 if op == "out_norm" else torch.float16
    has_branch = op == "add_ln"
    numel = B * C * H * H
    w, bias = 1 + 0.1 * torch.randn(C, device=dev), 0.1 * torch.randn(C, device=dev)
    w16, b16 = w.half(), bias.half()

    def make():
        d = dict(x=torch.randn(shape, device=dev, dtype=xdt), dy=torch.randn(shape, device=dev, dtype=torch.float16))
        if has_branch:
            d["br"] = torch.randn(shape, device=dev, dtype=xdt)
            d["ds"] = torch.randn(shape, device=dev, dtype=xdt)
        return d

    xb = torch.finfo(xdt).bits // 8
    fwd_bytes = numel * (xb + 2 + (2 * xb if has_branch else 0))  # x (+ branch) in, y (+ s) out
    bwd_bytes = numel * (2 + xb + (3 * xb if has_branch else xb))  # dy, s (, ds) in; dx (, dbranch) out
    sets = _sets(make, fwd_bytes + bwd_bytes)
    stage = f"{C}x{H}x{H}"
    lay = "cl" if cl else "cf"
    rows = []
    for name, k in impls.items():
        fwd = lambda d: k["add_layer_norm_fwd"](d["x"], d.get("br"), w, bias, None, 1e-5, cl, torch.float16)  # noqa: E731
        rows.append(_row(op, stage, lay, name, "fwd", _time(fwd, sets, reps), fwd_bytes, copy_bw))
        for d in sets:
            d["saved"] = fwd(d)
        bwd = lambda d: k["add_layer_norm_bwd"](d["dy"], d.get("ds"), d["saved"][1], w, bias, d["saved"][2],  # noqa: E731
                                                d["saved"][3], None, has_branch, cl, xdt)
        rows.append(_row(op, stage, lay, name, "bwd", _time(bwd, sets, reps), bwd_bytes, copy_bw))
        for d in sets:
            del d["saved"]

    def torch_ln(s, weight, b):
        if cl:
            return F.layer_norm(s, (C,), weight, b, 1e-5)
        return F.layer_norm(s.permute(0, 2, 3, 1), (C,), weight, b, 1e-5).permute(0, 3, 1, 2)  # LayerNorm2d

    for label, amp in (("torch fp16", False), ("torch amp", True)):
        if op == "out_norm" and not amp:
            continue  # fp32 in / fp16 out has no eager torch equivalent but the cast after it
        weight, b = (w, bias) if amp else (w16, b16)

        def fwd(d, weight=weight, b=b, amp=amp):
            with torch.autocast(DEV, torch.float16, enabled=amp):
                s = d["x"] + d["br"] if has_branch else d["x"]
                y = torch_ln(s, weight, b)
                return y.half() if op == "out_norm" else y, s

        with torch.no_grad():
            rows.append(_row(op, stage, lay, label, "fwd", _time(fwd, sets, reps), fwd_bytes, copy_bw))
        params = [weight.detach().requires_grad_(), b.detach().requires_grad_()]
        for d in sets:
            d["x"].requires_grad_(True)
            if has_branch:
                d["br"].requires_grad_(True)
            with torch.autocast(DEV, torch.float16, enabled=amp):
                s = d["x"] + d["br"] if has_branch else d["x"]
                y = torch_ln(s, *params)
            d["graph"] = (y, s)

        def bwd(d):
            y, s = d["graph"]
            ins = [d["x"]] + ([d["br"]] if has_branch else []) + params
            outs, grads = [y], [d["dy"].to(y.dtype)]
            if has_branch:
                outs.append(s)
                grads.append(d["ds"])
            return torch.autograd.grad(outs, ins, grads, retain_graph=True)

        rows.append(_row(op, stage, lay, label, "bwd", _time(bwd, sets, reps), bwd_bytes, copy_bw))
        for d in sets:
            del d["graph"]
            d["x"].requires_grad_(False)
            if has_branch:
                d["br"].requires_grad_(False)
    return rows


def bench_dwconv(B, C, H, cl: bool, impls: dict, reps: int, copy_bw: float, act: str = "silu") -> list:
    dev = DEV
    shape = (B, H, H, C) if cl else (B, C, H, H)
    w = torch.randn(C, 1, 3, 3, device=dev) / 3
    bias = 0.1 * torch.randn(C, device=dev)
    numel = B * C * H * H

    def make():
        return dict(x=torch.randn(shape, device=dev, dtype=torch.float16),
                    dy=torch.randn(shape, device=dev, dtype=torch.float16))

    fwd_bytes, bwd_bytes = 4 * numel, 6 * numel  # x in, y out; dy, x in, dx out (fp16)
    sets = _sets(make, fwd_bytes + bwd_bytes)
    stage = f"{C}x{H}x{H}"
    lay = "cl" if cl else "cf"
    rows = []
    for name, k in impls.items():
        fwd = lambda d: k["dwconv2d_fwd"](d["x"], w, bias, act, cl)  # noqa: E731
        rows.append(_row("dwconv", stage, lay, name, "fwd", _time(fwd, sets, reps), fwd_bytes, copy_bw))
        bwd = lambda d: k["dwconv2d_bwd"](d["dy"], d["x"], w, bias, act, cl)  # noqa: E731
        rows.append(_row("dwconv", stage, lay, name, "bwd", _time(bwd, sets, reps), bwd_bytes, copy_bw))
    actf = {"silu": F.silu, "gelu": F.gelu, "none": lambda z: z}[act]

    def nchw(t):  # channels-last data as an NCHW view in channels_last memory format (cudnn NHWC)
        return t.permute(0, 3, 1, 2) if cl else t

    for label, amp in (("torch fp16", False), ("torch amp", True)):
        weight, b = (w, bias) if amp else (w.half(), bias.half())

        def fwd(d, weight=weight, b=b, amp=amp):
            with torch.autocast(DEV, torch.float16, enabled=amp):
                return actf(F.conv2d(nchw(d["x"]), weight, b, padding=1, groups=C))

        with torch.no_grad():
            rows.append(_row("dwconv", stage, lay, label, "fwd", _time(fwd, sets, reps), fwd_bytes, copy_bw))
        params = [weight.detach().requires_grad_(), b.detach().requires_grad_()]
        for d in sets:
            d["x"].requires_grad_(True)
            with torch.autocast(DEV, torch.float16, enabled=amp):
                d["graph"] = actf(F.conv2d(nchw(d["x"]), *params, padding=1, groups=C))
        bwd = lambda d: torch.autograd.grad(d["graph"], [d["x"]] + params, nchw(d["dy"]), retain_graph=True)  # noqa: E731
        rows.append(_row("dwconv", stage, lay, label, "bwd", _time(bwd, sets, reps), bwd_bytes, copy_bw))
        for d in sets:
            del d["graph"]
            d["x"].requires_grad_(False)
    return rows


def main(argv: Optional[list] = None) -> list:
    ap = argparse.ArgumentParser(prog="python -m bench.norm_dwconv_timing", description=__doc__.split("\n")[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--stages", default="0,1,2,3", help="indices into (96,56) (192,28) (384,14) (768,7)")
    ap.add_argument("--layouts", default="cf,cl")
    ap.add_argument("--ops", default="ln,add_ln,out_norm,dwconv")
    ap.add_argument("--impls", default="triton,cuda")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--device", default="cuda", help="cpu: smoke-run the script (TRITON_INTERPRET=1, tiny shapes)")
    args = ap.parse_args(argv)
    global DEV
    DEV = args.device
    assert DEV == "cpu" or torch.cuda.is_available(), "needs a CUDA device"
    torch.backends.cudnn.benchmark = True
    impls = _impls(args.impls.split(","))
    copy_bw = copy_bandwidth(DEV)
    name = torch.cuda.get_device_name() if DEV == "cuda" else "cpu"
    print(f"# {name}, batch {args.batch}, copy bandwidth {copy_bw:.0f} GB/s")
    print(f"{'op':9s} {'stage':11s} {'lay':3s} {'impl':12s} {'dir':4s} {'ms':>9s} {'GB/s':>9s} {'copy%':>6s}")
    rows = []
    for si in (int(s) for s in args.stages.split(",")):
        C, H = STAGES[si]
        for lay in args.layouts.split(","):
            cl = lay == "cl"
            for op in args.ops.split(","):
                if op == "dwconv":
                    rows += bench_dwconv(args.batch, C, H, cl, impls, args.reps, copy_bw)
                else:
                    rows += bench_ln(op, args.batch, C, H, cl, impls, args.reps, copy_bw)
                if DEV == "cuda":
                    torch.cuda.empty_cache()
    return rows


if __name__ == "__main__":
    main()
