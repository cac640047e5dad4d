"""Images for the analysis CLIs (bench.erf, bench.attnmap): files to normalised tensors, random stand-ins,
and the labels their figures carry. PIL (a matplotlib dependency) reads the files; no torchvision."""
from __future__ import annotations

import random
from pathlib import Path
from typing import List, Optional

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def load_image(path, size: int) -> torch.Tensor:
    """(1, 3, size, size): shorter side resized to `size` (bicubic), centre crop, ImageNet mean/std
    (the transform of the official ERF script)."""
    from PIL import Image  # noqa: PLC0415

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"image file {str(p)!r} does not exist")
    with Image.open(p) as im:
        im = im.convert("RGB")
        w, h = im.size
        s = size / min(w, h)
        im = im.resize((max(size, round(w * s)), max(size, round(h * s))), Image.BICUBIC)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        arr = np.asarray(im.crop((left, top, left + size, top + size)), dtype=np.float32) / 255.0
    x = torch.from_numpy(arr).permute(2, 0, 1)
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)


def to_display(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) normalised tensor -> (H, W, 3) array in [0, 1] for imshow (random inputs clip)."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (x[0].detach().cpu().float() * std + mean).clamp(0, 1).permute(1, 2, 0).numpy()


def list_images(folder, count: int, seed: int = 0) -> List[Path]:
    """`count` image files found under `folder` (recursively, e.g. an ImageNet val tree), a seeded
    random choice as the official ERF script samples the val set."""
    root = Path(folder)
    if not root.is_dir():
        raise NotADirectoryError(f"--images: {str(root)!r} is not a folder")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file())
    if not files:
        raise FileNotFoundError(f"--images: no image files ({', '.join(EXTENSIONS)}) under {str(root)!r}")
    random.Random(seed).shuffle(files)
    return files[:count]


def random_image(size: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """(1, 3, size, size) standard normal: a random input in normalised image units."""
    return torch.randn(1, 3, size, size, generator=generator)


def weights_label(pretrained) -> str:
    return f"weights: {Path(pretrained).name}" if pretrained else "random weights"
