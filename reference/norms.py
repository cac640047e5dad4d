"""Residual add + LayerNorm over the channel axis ("add_layer_norm"), readable torch.

s = x + branch_scale[b] * branch  (the residual add; branch_scale is drop-path's per-sample
keep-mask / keep-prob), then y = LayerNorm over channels of s. The statistics are computed in
float32 (float64 when x is float64) with the biased variance, as F.layer_norm does. Layouts:
(B, C, H, W) when channels_last is False, (B, H, W, C) when True.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def residual_add(x: torch.Tensor, branch: Optional[torch.Tensor], branch_scale: Optional[torch.Tensor]) -> torch.Tensor:
    """s = x + branch_scale[b] * branch, rounded once to x's dtype; x itself when branch is None."""
    if branch is None:
        return x
    ct = _compute_dtype(x.dtype)
    b = branch.to(ct)
    if branch_scale is not None:
        b = b * branch_scale.to(ct).view(-1, *([1] * (x.dim() - 1)))
    return (x.to(ct) + b).to(x.dtype)


def add_layer_norm(x: torch.Tensor, branch: Optional[torch.Tensor], weight: torch.Tensor,
                   bias: Optional[torch.Tensor], branch_scale: Optional[torch.Tensor] = None,
                   eps: float = 1e-5, channels_last: bool = False,
                   out_dtype: Optional[torch.dtype] = None):
    """Returns (y, s): y in out_dtype (None -> x.dtype), s in x's dtype (x itself without a branch)."""
    s = residual_add(x, branch, branch_scale)
    ct = _compute_dtype(x.dtype)
    sc = s.to(ct)
    if not channels_last:
        sc = sc.movedim(1, -1)  # channels last, so F.layer_norm normalises over them
    C = sc.shape[-1]
    y = F.layer_norm(sc, (C,), weight.to(ct), None if bias is None else bias.to(ct), eps)
    if not channels_last:
        y = y.movedim(-1, 1)
    return y.to(out_dtype or x.dtype), s
