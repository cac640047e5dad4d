"""Depthwise KxK convolution + bias + activation ("dwconv2d"), readable torch.

Stride 1, zero padding K // 2, one KxK filter per channel (nn.Conv2d(C, C, K, groups=C)), then
"none" / "silu" / "gelu" (exact erf GELU, as nn.GELU()). Computed in float32 (float64 when x is
float64), the result in x's dtype. Layouts: (B, C, H, W), or (B, H, W, C) when channels_last.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

ACTS = ("none", "silu", "gelu")


def activation(z: torch.Tensor, act: str) -> torch.Tensor:
    if act == "none":
        return z
    if act == "silu":
        return F.silu(z)
    if act == "gelu":
        return F.gelu(z)
    raise ValueError(f"act must be one of {ACTS}, got {act!r}")


def dwconv2d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], act: str = "none",
             channels_last: bool = False) -> torch.Tensor:
    ct = torch.float64 if x.dtype == torch.float64 else torch.float32
    xc = x.to(ct)
    if channels_last:
        xc = xc.movedim(-1, 1)
    C, K = weight.shape[0], weight.shape[-1]
    z = F.conv2d(xc, weight.to(ct), None if bias is None else bias.to(ct), padding=K // 2, groups=C)
    y = activation(z, act)
    if channels_last:
        y = y.movedim(1, -1)
    return y.to(x.dtype)
