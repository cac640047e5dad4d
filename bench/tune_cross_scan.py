"""Vector-width sweep of the CUDA cross scan / merge (csrc/cross_scan/) on VMamba's stage shapes, both
layouts, against a copy of the same bytes: the measurement behind the kernels' automatic width choice.

    python -m bench.tune_cross_scan

Times are triton.testing.do_bench medians; VMAMBA_CROSS_MAX_VEC caps the vector width per run
("auto" = the kernels' own choice), VMAMBA_CROSS_SMEM_KB sets the shared memory per block ("auto@128KB"). For the reports use `python -m bench.kernels --ops
cross_scan,cross_merge --layouts cf,cl` (CSV rows); this prints only.
"""
from __future__ import annotations

import os
import sys

import torch

DNAME = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
SMEM_KB = (100, 128, 200)  # shared-memory budgets tried on channels-last stage 1 (VMAMBA_CROSS_SMEM_KB)
STAGES = [("s1", 128, 96, 56, 56), ("s1_C192", 128, 192, 56, 56), ("s2", 128, 192, 28, 28),
          ("s3", 128, 384, 14, 14), ("s4", 128, 768, 7, 7)]


def _map(dims, dtype, channels_last, device="cuda"):
    B, C, H, W = dims
    shape = (B, H, W, C) if channels_last else (B, C, H, W)
    return torch.randn(shape, device=device).to(dtype)


def bench(out=sys.stdout):
    from triton.testing import do_bench

    import vmamba_kernels._C  # noqa: F401  (registers torch.ops.vmamba_cuda)

    ops = torch.ops.vmamba_cuda
    rows = []
    print(f"{'shape':>9} {'dtype':>5} {'layout':>6} {'op':>5} {'vec':>10} {'ms':>8} {'GB/s':>7} {'copy GB/s':>9} {'ratio':>6}",
          file=out)
    copy_cache = {}
    for name, B, C, H, W in STAGES:
        for dtype in (torch.float16, torch.float32):
            for cl in (False, True):
                if cl and name not in ("s1", "s4"):
                    continue
                L = H * W
                x = _map((B, C, H, W), dtype, cl, device="cuda")
                y = torch.randn(B, 4, C, L, device="cuda").to(dtype)
                nbytes = 5 * x.numel() * x.element_size()  # read once + write 4x (scan) / read 4x + write once (merge)
                key = (nbytes, dtype)
                if key not in copy_cache:
                    src = torch.empty(nbytes // 2 // x.element_size(), dtype=dtype, device="cuda").normal_()
                    copy_cache[key] = do_bench(lambda: src.clone(), warmup=10, rep=50, return_mode="median")
                t_copy = copy_cache[key]
                copy_gbs = nbytes / t_copy / 1e6
                if name.startswith("s1") and not cl:
                    vecs = ("auto", "1", "2", "4") + (("8",) if dtype == torch.float16 else ())
                elif name == "s1":  # channels-last: the shared-memory budget decides planes per block
                    vecs = ("auto",) + tuple(f"auto@{kb}KB" for kb in SMEM_KB)
                else:
                    vecs = ("auto",)
                for vec in vecs:
                    os.environ.pop("VMAMBA_CROSS_SMEM_KB", None)
                    if vec.startswith("auto@"):
                        os.environ["VMAMBA_CROSS_SMEM_KB"] = vec[5:-2]
                    if vec.startswith("auto"):
                        os.environ.pop("VMAMBA_CROSS_MAX_VEC", None)
                    else:
                        os.environ["VMAMBA_CROSS_MAX_VEC"] = vec
                    for op, fn in (("scan", lambda: ops.cross_scan(x, "cross2d", cl)),
                                   ("merge", lambda: ops.cross_merge(y, H, W, "cross2d", cl))):
                        t = do_bench(fn, warmup=10, rep=50, return_mode="median")
                        gbs = nbytes / t / 1e6
                        rows.append((name, DNAME[dtype], "cl" if cl else "cf", op, vec, t, gbs, copy_gbs))
                        print(f"{name:>9} {DNAME[dtype]:>5} {'cl' if cl else 'cf':>6} {op:>5} {vec:>10} {t:8.4f} "
                              f"{gbs:7.0f} {copy_gbs:9.0f} {gbs / copy_gbs:6.2f}", file=out, flush=True)
                os.environ.pop("VMAMBA_CROSS_MAX_VEC", None)
                os.environ.pop("VMAMBA_CROSS_SMEM_KB", None)
                del x, y
    print("\nsummary (auto vector width): stage dtype layout op GB/s (x copy)", file=out)
    for r in rows:
        if r[4] == "auto":
            print(f"  {r[0]:>8} {r[1]:>4} {r[2]} {r[3]:>5} {r[6]:6.0f} ({r[6] / r[7]:.2f})", file=out)
    return rows



if __name__ == "__main__":
    bench()
