"""Host cost of a whole training (or inference) step, measured on the CPU with the compute taken out.

    python -m bench.host_step                              # VMamba-T against Swin-T (timm), training
    python -m bench.host_step --model vmamba_s --infer --baseline none

On the GPU a VMamba-T training step waits on the host (bench.profile's first line): Python, the autograd
engine and kernel launches. This measures that cost where no GPU is needed: the model at a tiny width
(`--dims`, same depths and ops), a small image, batch 1, and the torch backend's raw kernels replaced by
stand-ins that only allocate their outputs (bench.overhead.mocked_kernels), with the cuda default policy's
composition (fused add + LayerNorm, cudnn's depthwise conv, the unfused SS2D chain). What remains is the
host work per step: it compares designs and baselines run here, not absolute GPU-machine times (this
host's speed differs, and the GPU's launches are not included). Prints ms per step (best of `--steps`) and
top-level aten operators per step (each one a dispatch, and on the GPU most of them a launch).
"""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import nullcontext

import torch

from bench.tp import recompute_arg


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.host_step", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="vmamba_t", help="a models.list_models() name")
    p.add_argument("--baseline", default="swin_tiny_patch4_window7_224",
                   help="a timm model at the same tiny scale (embed_dim 12, window 2), or 'none'")
    p.add_argument("--dims", type=int, default=8, help="VMamba stage-1 width (default 8: compute negligible)")
    p.add_argument("--img-size", type=int, default=64)
    p.add_argument("--infer", action="store_true", help="inference (no_grad) instead of a training step")
    p.add_argument("--amp", action="store_true", help="under torch.autocast('cpu', bfloat16)")
    p.add_argument("--recompute", type=recompute_arg, default=None, metavar="all|none|PART[+PART...]",
                   help="VMamba models' training recompute (VSSM.set_recompute: all, none, or parts of norms, delta, "
                        "routes, mlp joined by '+'; default: the model's own)")
    p.add_argument("--steps", type=int, default=10)
    return p.parse_args(argv)


def _stepper(model, x, train: bool, amp: bool):
    y = torch.zeros(x.shape[0], dtype=torch.long)

    def step():
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            if not train:
                with torch.no_grad():
                    return model(x)
            loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        model.zero_grad(set_to_none=True)
    return step


def measure(model, x, train: bool, amp: bool, steps: int) -> dict:
    """{"ms": best ms per step, "ops": top-level aten operators per step}."""
    model.train(train)
    step = _stepper(model, x, train, amp)
    for _ in range(2):
        step()
    best = float("inf")
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        step()
    ops = sum(1 for e in prof.events() if e.name.startswith("aten::")
              and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")))
    return {"ms": best * 1e3, "ops": ops}


def vmamba(name: str, dims: int, recompute):
    import models  # noqa: PLC0415
    from models import KernelPolicy  # noqa: PLC0415

    # the cuda default policy's composition, on the torch backend (whose raw kernels are mocked)
    policy = KernelPolicy.all("torch").merged(KernelPolicy(ss2d_core="off"))
    m = models.create_model(name, impl=policy, channels_last=True, dims=dims, num_classes=10)
    return m.set_recompute(recompute) if recompute else m


def baseline(name: str, img_size: int):
    import timm  # noqa: PLC0415

    return timm.create_model(name, pretrained=False, num_classes=10, embed_dim=12, img_size=img_size, window_size=2)


def main(argv=None) -> int:
    from bench.overhead import mocked_kernels  # noqa: PLC0415

    a = parse_args(argv)
    torch.set_num_threads(1)  # a host thread, as the GPU machine's Python runs
    torch.manual_seed(0)
    x = torch.randn(1, 3, a.img_size, a.img_size)
    mode = ("inference" if a.infer else "training") + (" AMP (bf16)" if a.amp else " fp32")
    print(f"host cost per {mode} step on this CPU, batch 1, {a.img_size}x{a.img_size}, compute taken out")
    rows = [(f"{a.model} (dims {a.dims}, kernels mocked)", vmamba(a.model, a.dims, a.recompute),
             mocked_kernels("torch"))]
    if a.baseline != "none":
        try:
            rows.append((f"{a.baseline} (embed 12, window 2)", baseline(a.baseline, a.img_size), nullcontext()))
        except ImportError:
            print("timm not installed: no baseline", file=sys.stderr)
    for label, model, ctx in rows:
        with ctx:
            r = measure(model, x, not a.infer, a.amp, a.steps)
        print(f"  {label:52s} {r['ms']:8.2f} ms/step  {r['ops']:6d} aten ops/step")
    return 0


if __name__ == "__main__":
    sys.exit(main())
