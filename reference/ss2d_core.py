"""The SS2D core as the unfused chain of the reference ops (the definition of vmamba_kernels.ss2d_core):

    xs     = cross_scan(x, mode)                                   (B, K, D, L), K = 4
    x_dbl  = einsum("bkdl,kcd->bkcl", xs, x_proj_weight)           dts = [:R], Bs = [R:R+N], Cs = [R+N:]
    delta  = einsum("bkrl,kdr->bkdl", dts, dt_projs_weight)
    ys     = selective_scan(xs, delta, A, Bs, Cs, D, delta_bias, delta_softplus)   (grouped B/C, K groups)
    y      = cross_merge(ys, H, W, mode)                           in x's layout, out_dtype

Plain torch throughout, so autograd gives every gradient (in float64 with float64 inputs).
"""
from __future__ import annotations

import torch

from .cross_scan import cross_merge_ref, cross_scan_ref
from .selective_scan import selective_scan_ref


def ss2d_core(x, x_proj_weight, dt_projs_weight, A, D=None, delta_bias=None, mode="cross2d", channels_last=False,
              delta_softplus=True, out_dtype=None, scan=selective_scan_ref):
    Bn = x.shape[0]
    K, Dc, R = dt_projs_weight.shape
    N = A.shape[1]
    xs = cross_scan_ref(x, mode, channels_last)
    L = xs.shape[-1]
    H, W = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[3])
    x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, x_proj_weight.to(xs.dtype))
    dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
    delta = torch.einsum("bkrl,kdr->bkdl", dts, dt_projs_weight.to(xs.dtype))
    ys = scan(xs.reshape(Bn, K * Dc, L), delta.reshape(Bn, K * Dc, L), A, Bs, Cs, D, delta_bias, delta_softplus,
              out_dtype=out_dtype if out_dtype is not None else x.dtype)
    return cross_merge_ref(ys.view(Bn, K, Dc, L), H, W, mode, channels_last)
