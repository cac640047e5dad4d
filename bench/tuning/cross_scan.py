"""Launch-choice sweep of the CUDA cross scan / merge (csrc/cross_scan/) on VMamba's stage shapes, both
layouts, against a copy of the same bytes: the measurement behind the kernels' automatic choices.

    python -m bench.tuning.cross_scan

Times are triton.testing.do_bench medians. The `choice` column names the extension's knobs it sets
through `vmamba_kernels.tuning("cuda", ...)` (CudaTuning; csrc/common/knobs.h):
  auto           the kernels' own choice (no knob set)
  1 2 4 8        channels-first: cross_max_vec caps the vector width
  plane, tiled   channels-last: cross_cl_tiled="0" (plane-group kernel) / "1" (tiled kernel)
  band, band@16  channels-last: cross_cl_tiled="b" (banded scan; the merge as tiled), band height cross_cl_band
  plane@128KB    plane kernel with cross_smem_kb=128 (more planes per block)
  t@14x14        tiled kernel with cross_cl_tile="14x14" (tile shape; "x64" suffix: channels per
                 block); a shape over the shared-memory budget would silently time the plane kernel
For the reports use `python -m bench.kernels --ops cross_scan,cross_merge --layouts cf,cl` (CSV rows);
this prints only.
"""
from __future__ import annotations

import importlib
import sys

import torch

import vmamba_kernels as vk

DNAME = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
SMEM_KB = (100, 128, 200)  # plane-kernel budgets tried on channels-last stage 1 (cross_smem_kb)
# tiled-kernel shapes tried on stage 1 (cross_cl_tile); all fit the default 56 KB in both dtypes
TILES = ("14x14", "16x16", "28x28", "8x56", "14x14x64", "19x19x16", "8x56x16", "16x28x16", "16x32x16", "12x56x16",
         "8x28x16", "16x56x16")
STAGES = [("s1", 128, 96, 56, 56), ("s1_C192", 128, 192, 56, 56), ("s2", 128, 192, 28, 28),
          ("s3", 128, 384, 14, 14), ("s4", 128, 768, 7, 7)]
KNOBS = ("cross_max_vec", "cross_smem_kb", "cross_cl_tiled", "cross_cl_tile", "cross_cl_band")  # CudaTuning
BANDS = (4, 16, 28)  # band heights tried on stage 1 besides the default 8 (cross_cl_band)


def _map(dims, dtype, channels_last, device="cuda"):
    B, C, H, W = dims
    shape = (B, H, W, C) if channels_last else (B, C, H, W)
    return torch.randn(shape, device=device).to(dtype)


def _choices(name, dtype, cl):
    if not cl:
        if name.startswith("s1"):
            return ("auto", "1", "2", "4") + (("8",) if dtype == torch.float16 else ())
        return ("auto",)
    out = ("auto", "plane", "tiled", "band")
    if name == "s1":
        out += tuple(f"band@{b}" for b in BANDS)
        out += tuple(f"plane@{kb}KB" for kb in SMEM_KB) + tuple(f"t@{t}" for t in TILES)
    return out


def _knobs(choice) -> dict:
    """The CudaTuning changes for one `choice` (every other cross knob unset)."""
    k = dict.fromkeys(KNOBS)
    if choice.isdigit():
        k["cross_max_vec"] = int(choice)
    elif choice.startswith("band"):
        k["cross_cl_tiled"] = "b"
        if "@" in choice:
            k["cross_cl_band"] = int(choice.split("@")[1])
    elif choice.startswith("plane"):
        k["cross_cl_tiled"] = "0"
        if "@" in choice:
            k["cross_smem_kb"] = int(choice.split("@")[1][:-2])
    elif choice.startswith("t"):
        k["cross_cl_tiled"] = "1"
        if choice.startswith("t@"):
            k["cross_cl_tile"] = choice[2:]
    return k


def bench(out=sys.stdout):
    from triton.testing import do_bench

    importlib.import_module("vmamba_kernels.cuda.extension")  # registers torch.ops.vmamba_cuda, takes the knobs

    ops = torch.ops.vmamba_cuda
    rows = []
    print(f"{'shape':>9} {'dtype':>5} {'layout':>6} {'op':>5} {'choice':>12} {'ms':>8} {'GB/s':>7} {'copy GB/s':>9} "
          f"{'ratio':>6}", file=out)
    copy_cache = {}
    for name, B, C, H, W in STAGES:
        for dtype in (torch.float16, torch.float32):
            for cl in (False, True):
                L = H * W
                x = _map((B, C, H, W), dtype, cl, device="cuda")
                y = torch.randn(B, 4, C, L, device="cuda").to(dtype)
                nbytes = 5 * x.numel() * x.element_size()  # read once + write 4x (scan) / read 4x + write once (merge)
                key = (nbytes, dtype)
                if key not in copy_cache:
                    src = torch.empty(nbytes // 2 // x.element_size(), dtype=dtype, device="cuda").normal_()
                    copy_cache[key] = do_bench(lambda: src.clone(), warmup=10, rep=50, return_mode="median")
                    del src
                t_copy = copy_cache[key]
                copy_gbs = nbytes / t_copy / 1e6
                layout = "cl" if cl else "cf"
                for choice in _choices(name, dtype, cl):
                    with vk.tuning("cuda", **_knobs(choice)):
                        for op, fn in (("scan", lambda: ops.cross_scan(x, "cross2d", cl)),
                                       ("merge", lambda: ops.cross_merge(y, H, W, "cross2d", cl))):
                            t = do_bench(fn, warmup=10, rep=50, return_mode="median")
                            gbs = nbytes / t / 1e6
                            rows.append((name, DNAME[dtype], layout, op, choice, t, gbs, copy_gbs))
                            print(f"{name:>9} {DNAME[dtype]:>5} {layout:>6} {op:>5} {choice:>12} {t:8.4f} "
                                  f"{gbs:7.0f} {copy_gbs:9.0f} {gbs / copy_gbs:6.2f}", file=out, flush=True)
                x = y = None  # free before the next shape's allocations
    print("\nsummary (automatic choice): stage dtype layout op GB/s (x copy)", file=out)
    for r in rows:
        if r[4] == "auto":
            print(f"  {r[0]:>8} {r[1]:>4} {r[2]} {r[3]:>5} {r[6]:6.0f} ({r[6] / r[7]:.2f})", file=out)
    print("\nchannels-last plane vs tiled (cross_cl_tiled 0 / 1): stage dtype op GB/s (x copy)", file=out)
    by_key = {(r[0], r[1], r[3], r[4]): r for r in rows if r[2] == "cl"}
    for (name, dn, op, choice), r in by_key.items():
        if choice != "plane" or (name, dn, op, "tiled") not in by_key:
            continue
        t = by_key[(name, dn, op, "tiled")]
        print(f"  {name:>8} {dn:>4} {op:>5}  plane {r[6]:6.0f} ({r[6] / r[7]:.2f})  tiled {t[6]:6.0f} "
              f"({t[6] / t[7]:.2f})", file=out)
    return rows


def main(argv=None) -> int:
    import argparse  # noqa: PLC0415

    ap = argparse.ArgumentParser(prog="python -m bench.tuning.cross_scan", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench.tuning.cross_scan times the CUDA cross scan kernels: it needs a CUDA device and the built "
              "extension vmamba_kernels._C (none is visible here)", file=sys.stderr)
        return 2
    bench()
    return 0


if __name__ == "__main__":
    sys.exit(main())
