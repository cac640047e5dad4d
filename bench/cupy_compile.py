"""First-call compile time of the cupy backend, which NVRTC-compiles each kernel instance at its first
launch (vmamba_kernels/cupy/launch.py, one instance per module). Builds a model with impl="cupy", points
CuPy's on-disk kernel cache at a fresh folder (so every instance really compiles), runs one forward and
backward per precision, and prints every compiled instance with its seconds and the totals.

    python -m bench.cupy_compile                               # VMamba-T, batch 2, fp32 and fp16 autocast
    python -m bench.cupy_compile --model vmamba_s --precisions amp
    python -m bench.cupy_compile --keep-cache                  # CuPy's usual cache: the warm-start time

Needs a GPU and CuPy. Nothing is written to reports/ (copy the printed totals there).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.cupy_compile", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="vmamba_t")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--precisions", default="fp32,amp", help="comma list of fp32 and amp (fp16 autocast)")
    p.add_argument("--channels-last", action="store_true", help="build the model channels-last (else its default)")
    p.add_argument("--keep-cache", action="store_true", help="use CuPy's usual on-disk cache instead of a fresh one")
    a = p.parse_args(argv)
    if not a.keep_cache:  # before CuPy is imported: it reads the variable once
        os.environ["CUPY_CACHE_DIR"] = tempfile.mkdtemp(prefix="vmamba_cupy_cache_")
    import torch

    import models
    from vmamba_kernels import dispatch

    reason = dispatch.get_backend("cupy").unavailable_reason()
    if reason is not None:
        print(f"cupy backend unavailable: {reason}", file=sys.stderr)
        return 2
    from vmamba_kernels.cupy import launch

    layout = {"channels_last": True} if a.channels_last else {}
    model = models.create_model(a.model, impl="cupy", **layout).cuda()
    x = torch.randn(a.batch_size, 3, a.img_size, a.img_size, device="cuda")
    total_wall = 0.0
    for prec in a.precisions.split(","):
        before = len(launch.compile_stats()["log"])
        torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.float16, enabled=prec == "amp"):
            y = model(x)
        y.float().sum().backward()
        torch.cuda.synchronize()
        wall = time.perf_counter() - t
        total_wall += wall
        log = launch.compile_stats()["log"][before:]
        print(f"{a.model} {prec}: first forward+backward {wall:.2f} s, {len(log)} kernel instances compiled in "
              f"{sum(s for _, _, s in log):.2f} s")
        for name, _, s in log:
            print(f"    {s:7.2f} s  {name}")
    st = launch.compile_stats()
    print(f"first-call compile: {st['compile_seconds']:.1f} s for the {a.model} set ({st['compiles']} instances, "
          f"{'warm' if a.keep_cache else 'fresh'} CuPy cache; first calls {total_wall:.1f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
