"""The one place that knows the two layouts of a 2-D map (the `channels_last` argument of the cross ops,
and of the models): channels-first (B, C, H, W) or channels-last (B, H, W, C)."""
from __future__ import annotations


def map_dims(x, channels_last: bool) -> tuple:
    """(B, C, H, W) of a 4-D map `x` (a tensor, or a shape) in either layout."""
    shape = getattr(x, "shape", x)
    if channels_last:
        B, H, W, C = shape
    else:
        B, C, H, W = shape
    return B, C, H, W


def map_shape(B: int, C: int, H: int, W: int, channels_last: bool) -> tuple:
    """The shape of a (B, C, H, W) map in the given layout."""
    return (B, H, W, C) if channels_last else (B, C, H, W)
