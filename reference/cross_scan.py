"""Pure-torch cross scan / cross merge: VMamba's four 2-D scan routes and their adjoint.

For a map X (C, H, W), with p = h*W + w (row-major), q = w*H + h (column-major), L = H*W:

    mode "cross2d": route0[p] = X[h, w]   route1[q] = X[h, w]   route2[L-1-p] = X[h, w]   route3[L-1-q] = X[h, w]
    mode "unidi":   all four routes are route0
    mode "bidi":    routes are route0, route0, route2, route2

`cross_scan_ref` maps (B, C, H, W) -> (B, 4, C, L); `cross_merge_ref` maps (B, 4, C, L) ->
(B, C, H, W) by routing each direction back to pixel order and summing (the adjoint, so each is the
other's backward). channels_last means the map side is (B, H, W, C).

`route_index(mode, H, W)` gives the same maps as explicit indices: route k, position i reads pixel
route_index[k, i] (row-major pixel number). Tests build loops on it; kernels can cite it.
"""
from __future__ import annotations

import torch


def route_index(mode: str, H: int, W: int, device=None) -> torch.Tensor:
    """(4, H*W) long tensor: pixel (row-major number) read by each route at each position."""
    L = H * W
    row = torch.arange(L, device=device)
    col = torch.arange(L, device=device).view(H, W).t().reshape(L)  # position q holds pixel h*W+w
    routes = {
        "cross2d": (row, col, row.flip(0), col.flip(0)),
        "unidi": (row, row, row, row),
        "bidi": (row, row, row.flip(0), row.flip(0)),
    }
    if mode not in routes:
        raise ValueError(f"mode must be one of {tuple(routes)}; got {mode!r}")
    return torch.stack(routes[mode])


def _to_channels_first(x, channels_last):
    return x.permute(0, 3, 1, 2) if channels_last else x


def cross_scan_ref(x: torch.Tensor, mode: str = "cross2d", channels_last: bool = False) -> torch.Tensor:
    x = _to_channels_first(x, channels_last)
    Bn, C, H, W = x.shape
    row = x.reshape(Bn, C, H * W)
    col = x.transpose(2, 3).reshape(Bn, C, H * W)
    if mode == "cross2d":
        routes = (row, col, row.flip(-1), col.flip(-1))
    elif mode == "unidi":
        routes = (row, row, row, row)
    elif mode == "bidi":
        routes = (row, row, row.flip(-1), row.flip(-1))
    else:
        raise ValueError(f"mode must be one of ('cross2d', 'unidi', 'bidi'); got {mode!r}")
    return torch.stack(routes, dim=1)


def cross_merge_ref(y: torch.Tensor, H: int, W: int, mode: str = "cross2d",
                    channels_last: bool = False) -> torch.Tensor:
    Bn, _, C, L = y.shape
    y0, y1, y2, y3 = y.unbind(1)
    if mode == "cross2d":
        row = y0 + y2.flip(-1)
        col = y1 + y3.flip(-1)
        out = row.view(Bn, C, H, W) + col.view(Bn, C, W, H).transpose(2, 3)
    elif mode == "unidi":
        out = (y0 + y1 + y2 + y3).view(Bn, C, H, W)
    elif mode == "bidi":
        out = (y0 + y1 + (y2 + y3).flip(-1)).view(Bn, C, H, W)
    else:
        raise ValueError(f"mode must be one of ('cross2d', 'unidi', 'bidi'); got {mode!r}")
    return out.permute(0, 2, 3, 1).contiguous() if channels_last else out.contiguous()
