"""The fused residual add + LayerNorm as one lean autograd node, for plain eager execution.

A VMamba-T step makes 48 add + norm calls forward and as many backward, and in eager training it waits on the
host (reports/logs/2026-12-03_host_work_H200.md). `add_norm_node` takes the check and the backend choice from
`vmamba_kernels.dispatch.prepare` (once per argument metadata) and calls the chosen backend's raw kernels:
in inference directly, in training through one autograd.Function whose forward and backward are the library
op's (same kernels, same saved tensors, same gradient dtypes), without the torch.library and twin layers.
Values and gradients equal the public op's (tests/test_norm_node.py).

`from_y` (VSSM.set_recompute "norms"): the node keeps its output y instead of its input s, and the backward
rebuilds xhat = (y - bias) / weight (add_layer_norm_bwd(from_y=True)). The projection after every VMamba norm
keeps y anyway, so the norm's own saved activation (s, float32 under autocast) goes: 4 bytes per element of
each of a block's three norms. The gradients then carry y's 16-bit rounding divided by |weight| (weights below
1e-5 in magnitude are clamped there: such a channel's xhat is not recoverable from y).

Where the backend records this node in C++ (the cuda backend with its native autograd on: its module's
`autograd_ops` holds the add + LayerNorm, and `NATIVE_ADD_NORM_NODE` takes the from_y choice), training calls take
that node instead of `_AddNorm` (same kernels, saved tensors and gradients; tests/test_cuda_native_autograd.py).

Used only where vmamba_kernels._library.eager_allowed holds; torch.compile, fake tensors, FLOP counters
and torch.func see the public op, as before.
"""
from __future__ import annotations

from typing import Optional

import torch

from vmamba_kernels import dispatch


def _branch_in(branch, x, mixed: bool):
    """The branch as the backend reads it (as the library op): x's dtype unless the backend reads a 16-bit branch
    on a float32 x itself (`mixed_branch`)."""
    if branch is not None and branch.dtype != x.dtype and not (mixed and x.dtype == torch.float32):
        return branch.to(x.dtype)
    return branch


class _AddNorm(torch.autograd.Function):
    """(y, s) = add_layer_norm(x, branch, ...) with a branch; y alone without one (s is x itself then)."""

    @staticmethod
    def forward(ctx, x, branch, weight, bias, scale, eps, cl, out_dtype, backend, from_y=False):
        mixed = getattr(backend, "mixed_branch", False)
        y, s, mean, rstd = backend.impl().add_layer_norm_fwd(x, _branch_in(branch, x, mixed), weight, bias, scale,
                                                             eps, cl, out_dtype)
        has_branch = branch is not None
        if from_y:  # y (an output: kept by the projection after the norm anyway) instead of s; no mean
            ctx.save_for_backward(y, weight, bias, None, rstd, scale)
        else:
            ctx.save_for_backward(s if has_branch else x, weight, bias, mean, rstd, scale)
        ctx.meta = (has_branch, cl, x.dtype, out_dtype, None if branch is None else branch.dtype, backend, from_y)
        ctx.set_materialize_grads(False)
        return (y, s) if has_branch else y

    @staticmethod
    def backward(ctx, dy, ds=None):
        s, weight, bias, mean, rstd, scale = ctx.saved_tensors
        has_branch, cl, x_dtype, out_dtype, branch_dtype, backend, from_y = ctx.meta
        ds = ds.contiguous() if (has_branch and ds is not None) else None
        if dy is None:  # only the sum s is used downstream
            if ds is None:
                return (None,) * 10
            dy = s.new_zeros(s.shape, dtype=out_dtype)
        if from_y:  # s is y here
            dx, dbr, dw, db = backend.impl().add_layer_norm_bwd(dy.contiguous(), ds, s, weight, bias, None, rstd,
                                                                scale, has_branch, cl, x_dtype, from_y=True)
        else:
            dx, dbr, dw, db = backend.impl().add_layer_norm_bwd(dy.contiguous(), ds, s, weight, bias, mean, rstd,
                                                                scale, has_branch, cl, x_dtype)
        if has_branch:
            dbr = dbr if dbr.dtype == branch_dtype else dbr.to(branch_dtype)
        return (dx, (dbr if has_branch else None), dw, (db if bias is not None else None),
                None, None, None, None, None, None)


def _native_node(backend):
    """The backend's C++ add + LayerNorm node with the from_y choice where its native autograd is on, else None."""
    mod = backend.impl()
    ops = getattr(mod, "autograd_ops", None)
    return getattr(mod, "NATIVE_ADD_NORM_NODE", None) if ops and "add_layer_norm_fwd" in ops else None


def add_norm_node(x: torch.Tensor, branch: Optional[torch.Tensor], weight: torch.Tensor, bias: Optional[torch.Tensor],
                  eps: float, branch_scale: Optional[torch.Tensor], channels_last: bool, out_dtype: torch.dtype,
                  impl: Optional[str], from_y: bool = False):
    """vmamba_kernels.add_layer_norm(x, branch, weight, bias, eps, branch_scale=..., channels_last=...,
    out_dtype=..., impl=impl) for plain eager execution: returns ((y, s), backend name). Raises what the public
    op raises (ValueError / TypeError on bad input, vmamba_kernels.ImplRefused when `impl` refuses).
    from_y: with gradients, keep y instead of s for the backward (module docstring)."""
    call, a = dispatch.prepare("add_layer_norm", impl, (x, branch, weight, bias, eps, branch_scale, channels_last,
                                                        out_dtype))
    b = call.backend
    c = torch.Tensor.contiguous
    x = c(a.x)
    branch = None if a.branch is None else c(a.branch)
    weight, bias = c(a.weight), None if a.bias is None else c(a.bias)
    if a.requires_grad():
        native = _native_node(b) if x.numel() > 0 else None
        if native is not None:
            y, s, _, _ = native(x, branch, weight, bias, a.branch_scale, a.eps, a.channels_last, a.out_dtype,
                                bool(from_y))
            return ((y, s) if branch is not None else (y, x)), b.name
        out = _AddNorm.apply(x, branch, weight, bias, a.branch_scale, a.eps, a.channels_last, a.out_dtype, b,
                             bool(from_y))
        return (out if branch is not None else (out, x)), b.name
    raw = b.impl()
    br = _branch_in(branch, x, getattr(b, "mixed_branch", False))
    infer = getattr(raw, "add_layer_norm_infer", None)  # no backward to come: a backend may skip the statistics
    if infer is not None:
        y, s = infer(x, br, weight, bias, a.branch_scale, a.eps, a.channels_last, a.out_dtype)
    else:
        y, s, _, _ = raw.add_layer_norm_fwd(x, br, weight, bias, a.branch_scale, a.eps, a.channels_last, a.out_dtype)
    return (y, s if branch is not None else x), b.name
