"""Effective receptive field (ERF) of a backbone, the method of RepLKNet (Ding et al. 2022) that the
VMamba paper uses to show that SS2D sees the whole image.

    python -m bench.erf --model vmamba_t
    python -m bench.erf --model vmamba_t,swin_tiny_patch4_window7_224,convnext_tiny --images /data/imagenet/val

For each image x (batch 1): the last stage's feature map F (C, h, w) of the backbone (no classifier),
the score s = sum_c ReLU(F[c, h//2, w//2]), its gradient ds/dx, ReLU, summed over RGB: an (S, S) map.
Maps are averaged over the images (an image whose gradient is not finite is skipped and counted) and
shown after the paper's normalisation m^0.2 / max (--scale pow) or on a log scale (--scale log). The
title gives RepLKNet's high-contribution area ratios r(t): the side^2 / S^2 of the smallest centred
square holding a fraction t of the total (small r = contributions concentrated at the centre).

Models: any name in models.list_models() (the features_only backbone, last stage map after its
outnorm, as the official Backbone_VSSM), and, when timm is installed, any timm model (its last
stage through forward_intermediates, else forward_features), so VMamba, Swin and ConvNeXt can share
one figure. Without --images the inputs are standard normal noise (in normalised image units) and
the figure says "random inputs"; without --pretrained the weights are the seeded random init and
the figure says "random weights". Defaults on a GPU are the official script's, 50 images at
1024 x 1024; without a CUDA device (or with --device cpu) it says so and uses 4 images at 224 x 224.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch

from bench import _images

AREA_THRESHOLDS = (0.2, 0.3, 0.5, 0.99)  # RepLKNet's table
GPU_DEFAULTS = dict(img_size=1024, num_images=50)  # the official analyze/erf.py
CPU_DEFAULTS = dict(img_size=224, num_images=4)  # 50 backward passes at 1024 x 1024 would take hours on a CPU


def _split(s: Optional[str]) -> List[str]:
    return [] if not s else [t.strip() for t in s.split(",")]


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m bench.erf",
        description="Effective receptive field (RepLKNet / VMamba method) of one or more backbones as a PNG heatmap.")
    p.add_argument("--model", required=True,
                   help="model name(s), comma list: models.list_models() names, or timm models when timm is installed "
                        "(e.g. vmamba_t,swin_tiny_patch4_window7_224,convnext_tiny)")
    p.add_argument("--impl", default=None,
                   help="kernel impl for the VMamba models (cuda, triton, cupy, torch, ...); default automatic")
    p.add_argument("--pretrained", default=None,
                   help="checkpoint path, or a comma list aligned with --model (empty entries: random weights)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="let --pretrained unpickle (the official checkpoints pickle their config; trusted files only)")
    p.add_argument("--img-size", type=int, default=None,
                   help=f"input side S (default {GPU_DEFAULTS['img_size']} on a GPU as the official, "
                        f"{CPU_DEFAULTS['img_size']} on the CPU)")
    p.add_argument("--num-images", type=int, default=None,
                   help=f"images averaged (default {GPU_DEFAULTS['num_images']} on a GPU as the official, "
                        f"{CPU_DEFAULTS['num_images']} on the CPU)")
    p.add_argument("--images", default=None,
                   help="folder of images (searched recursively); default: random inputs, said on the figure")
    p.add_argument("--out", default="erf.png", help="output PNG (default erf.png)")
    p.add_argument("--scale", choices=["pow", "log"], default="pow",
                   help="pow: m^0.2 / max as the VMamba paper (default); log: log10(m / max) over 4 decades")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights, inputs and image choice")
    p.add_argument("--model-factory", default=None,
                   help="module:function used instead of models.create_model for the VMamba names "
                        "(e.g. bench._tiny:create_small_vmamba)")
    a = p.parse_args(argv)
    a.models = [m for m in _split(a.model) if m]
    if not a.models:
        p.error("--model: give at least one model name")
    a.pretrained_list = _split(a.pretrained) or [""]
    if len(a.pretrained_list) == 1:
        a.pretrained_list = a.pretrained_list * len(a.models)
    if len(a.pretrained_list) != len(a.models):
        p.error(f"--pretrained: {len(a.pretrained_list)} entries for {len(a.models)} models; give one path, or one "
                f"entry per model (empty = random weights)")
    if a.img_size is not None and a.img_size < 8:
        p.error(f"--img-size must be at least 8, got {a.img_size}")
    if a.num_images is not None and a.num_images < 1:
        p.error(f"--num-images must be at least 1, got {a.num_images}")
    return a


def resolve_defaults(a, device: torch.device) -> Optional[str]:
    """Fill --img-size / --num-images for the device; returns a note when CPU defaults were used."""
    d = CPU_DEFAULTS if device.type == "cpu" else GPU_DEFAULTS
    filled = [f"--{k.replace('_', '-')} {v}" for k, v in d.items() if getattr(a, k) is None]
    for k, v in d.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    if device.type != "cpu":
        return None
    why = "--device cpu" if a.device else "no CUDA device"
    return f"{why}: computing on the CPU" + (f" with small defaults ({', '.join(filled)})" if filled else "")


# ---- the method ----------------------------------------------------------------------------------
def input_gradient(features: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """(H, W): sum over RGB of ReLU(d/dx sum_c ReLU(F[c, centre])) for an NCHW feature map F = features(x)."""
    x = x.detach().clone().requires_grad_(True)
    f = features(x)
    if f.dim() != 4:
        raise ValueError(f"the backbone must return an NCHW map; got shape {tuple(f.shape)}")
    h, w = f.shape[-2:]
    score = torch.relu(f[:, :, h // 2, w // 2]).sum()
    (g,) = torch.autograd.grad(score, x)
    return torch.relu(g).sum(dim=(0, 1))


def erf_map(features: Callable, images, progress: Optional[Callable[[int], None]] = None):
    """Mean input_gradient over `images` (an iterable of (1, 3, H, W) tensors on the model's device).
    Returns (map as a float64 numpy array, images used, images skipped for non-finite gradients)."""
    total, used, skipped = None, 0, 0
    for i, x in enumerate(images):
        g = input_gradient(features, x).double()
        if not torch.isfinite(g).all():
            skipped += 1
        else:
            total = g if total is None else total + g
            used += 1
        if progress:
            progress(i + 1)
    if total is None:
        raise RuntimeError(f"every one of the {skipped} input gradients had inf/NaN entries")
    return (total / used).cpu().numpy(), used, skipped


def area_ratio(m: np.ndarray, t: float) -> float:
    """RepLKNet's r(t): area of the smallest square centred on the map's centre holding a fraction t of
    its sum, over the map's area (1.0 when only the whole map holds it)."""
    H, W = m.shape
    total = float(m.sum())
    if total <= 0:
        return float("nan")
    cy, cx = H // 2, W // 2
    for r in range(0, max(H, W)):
        y0, y1, x0, x1 = max(0, cy - r), min(H, cy + r + 1), max(0, cx - r), min(W, cx + r + 1)
        if float(m[y0:y1, x0:x1].sum()) >= t * total:
            return (y1 - y0) * (x1 - x0) / (H * W)
    return 1.0


def normalise(m: np.ndarray, scale: str) -> np.ndarray:
    top = float(m.max())
    if top <= 0:
        return np.zeros_like(m)
    if scale == "pow":
        return np.power(m / top, 0.2)  # (m^0.2) / max(m^0.2), the paper's "simpnorm"
    return np.log10(np.maximum(m / top, 1e-4))


# ---- models --------------------------------------------------------------------------------------
def _factory(spec: Optional[str]) -> Callable:
    import importlib  # noqa: PLC0415

    if spec:
        mod, _, fn = spec.partition(":")
        return getattr(importlib.import_module(mod), fn or "create_model")
    import models  # noqa: PLC0415

    return models.create_model


def _vmamba_backbone(name: str, impl, pretrained: str, factory: Optional[str] = None, allow_pickle=False):
    import models  # noqa: PLC0415

    last = len(models.get_config(name).depths) - 1
    extra = dict(allow_pickle=True) if allow_pickle else {}  # asked for only: older registries lack it
    m = _factory(factory)(name, impl=None if impl in (None, "auto") else impl, pretrained=pretrained or None,
                          features_only=True, out_indices=(last,), **extra)
    return m, (lambda x: m(x)[0])


def _timm_backbone(name: str, pretrained: str, img_size: int):
    try:
        import timm  # noqa: PLC0415
    except ImportError as e:
        import models  # noqa: PLC0415

        raise ValueError(f"model {name!r} is not a vmamba-lab model (models.list_models(): "
                         f"{', '.join(models.list_models())}) and timm, which provides the baselines, is not installed "
                         f"(pip install timm)") from e
    kw = {}
    if pretrained:
        kw = dict(pretrained=True, pretrained_cfg_overlay=dict(file=str(pretrained)))
    try:
        m = timm.create_model(name, img_size=img_size, **kw)  # transformers take the input size at build time
    except TypeError:
        m = timm.create_model(name, **kw)  # convnets have no img_size argument

    def last_stage(x):
        if hasattr(m, "forward_intermediates"):
            return m.forward_intermediates(x, indices=1, intermediates_only=True)[-1]
        f = m.forward_features(x)
        if f.dim() == 4 and f.shape[-1] == getattr(m, "num_features", -1) and f.shape[1] != f.shape[-1]:
            f = f.permute(0, 3, 1, 2)  # NHWC (e.g. Swin) -> NCHW
        return f

    return m, last_stage


def build(name: str, impl, pretrained: str, img_size: int, device, factory: Optional[str] = None,
          allow_pickle: bool = False) -> Callable:
    """A function image -> last stage NCHW map, in eval mode, weights frozen (only the input needs a gradient)."""
    import models  # noqa: PLC0415

    if name in models.list_models():
        m, fn = _vmamba_backbone(name, impl, pretrained, factory, allow_pickle)
    else:
        m, fn = _timm_backbone(name, pretrained, img_size)
    m = m.to(device).eval()
    for prm in m.parameters():
        prm.requires_grad_(False)
    return fn


# ---- figure --------------------------------------------------------------------------------------
def plot(results: Sequence[dict], out, scale: str, subtitle: str):
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    n = len(results)
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 5.0), squeeze=False)
    label = "(ERF / max)^0.2" if scale == "pow" else "log10(ERF / max)"
    for ax, r in zip(axes[0], results):
        im = ax.imshow(normalise(r["map"], scale), cmap="RdYlGn", vmin=0 if scale == "pow" else -4,
                       vmax=1 if scale == "pow" else 0, interpolation="nearest")
        ax.set_title(f"{r['model']}\n{r['weights']}", fontsize=10)
        S = r["map"].shape[0]
        ax.set_xticks([0, S // 2, S - 1])
        ax.set_yticks([0, S // 2, S - 1])
        ax.set_xlabel("input x (pixels)\n" + "  ".join(f"r({int(100 * t)}%)={r['area'][t]:.3f}"
                                                      for t in AREA_THRESHOLDS), fontsize=9)
        ax.set_ylabel("input y (pixels)")
        cb = fig.colorbar(im, ax=ax, fraction=0.046, pad=0.03)
        cb.set_label(label)
    fig.suptitle("Effective receptive field: d sum_c ReLU(last stage centre) / d input, ReLU, summed over RGB\n"
                 + subtitle, fontsize=11)
    fig.tight_layout()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    a = parse_args(argv)
    t0 = time.perf_counter()
    device = torch.device(a.device) if a.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    note = resolve_defaults(a, device)
    if note:
        print(note, file=sys.stderr)
    if a.images:
        files = _images.list_images(a.images, a.num_images, a.seed)
        source = f"{len(files)} images from {a.images}, {a.img_size} x {a.img_size}"
    else:
        files = None
        source = f"{a.num_images} random inputs (standard normal), {a.img_size} x {a.img_size}"

    def images():
        if files is not None:
            for f in files:
                yield _images.load_image(f, a.img_size).to(device)
        else:
            gen = torch.Generator().manual_seed(a.seed)
            for _ in range(a.num_images):
                yield _images.random_image(a.img_size, gen).to(device)

    results = []
    for name, ckpt in zip(a.models, a.pretrained_list):
        torch.manual_seed(a.seed)  # the same random init for a model whatever else is in the list
        try:
            fn = build(name, a.impl, ckpt, a.img_size, device, a.model_factory, a.allow_pickle)
        except (ValueError, FileNotFoundError, RuntimeError) as e:
            print(f"error: {name}: {e}", file=sys.stderr)
            return 2
        m, used, skipped = erf_map(fn, images(),
                                   lambda i, name=name: print(f"\r{name}: image {i}", end="", file=sys.stderr))
        print(file=sys.stderr)
        area = {t: area_ratio(m, t) for t in AREA_THRESHOLDS}
        results.append(dict(model=name, map=m, used=used, skipped=skipped, area=area,
                            weights=_images.weights_label(ckpt)))
        del fn
    skipped_note = "; ".join(f"{r['model']}: {r['skipped']} skipped (non-finite gradient)"
                             for r in results if r["skipped"])
    subtitle = source + (f" ({skipped_note})" if skipped_note else "")
    plot(results, a.out, a.scale, subtitle)
    print(f"{'model':34s} {'images':>6s}  " + "  ".join(f"r({int(100 * t)}%)".rjust(8) for t in AREA_THRESHOLDS))
    for r in results:
        print(f"{r['model']:34s} {r['used']:6d}  " + "  ".join(f"{r['area'][t]:8.4f}" for t in AREA_THRESHOLDS)
              + f"   {r['weights']}")
    print(f"\n{source}; figure -> {a.out}; {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
