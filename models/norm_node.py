"""The fused residual add + LayerNorm as one lean autograd node, for plain eager execution.

A VMamba-T step makes 48 add + norm calls forward (and as many backward). Through the public op each one
validates its arguments, looks up the backend choice, enters the torch.library twin and records an autograd
node: about 60 us of host time per call on this project's CPU profile (bench.host_step), where the step
waits on the host (reports/logs/2026-12-03_host_work_H200.md). `add_norm_node` validates and chooses once
per shape (a cached plan, as models/chain.py does for the SS2D chain) and then calls the chosen backend's
raw kernels: in inference directly, in training through one autograd.Function whose forward and backward
are the library op's (same kernels, same saved tensors, same gradient dtypes), so values and gradients
equal the public op's (tests/test_norm_node.py).

Used only where vmamba_kernels._library.eager_allowed holds; torch.compile, fake tensors, FLOP counters
and torch.func see the public op, as before.
"""
from __future__ import annotations

from typing import Optional

import torch

from vmamba_kernels import dispatch, validate


class _Plan:
    __slots__ = ("backend", "name", "mixed")


class _AddNorm(torch.autograd.Function):
    """(y, s) = add_layer_norm(x, branch, ...) with a branch; y alone without one (s is x itself then)."""

    @staticmethod
    def forward(ctx, x, branch, weight, bias, scale, eps, cl, out_dtype, p: _Plan):
        raw = p.backend.impl()
        br = branch
        if br is not None and br.dtype != x.dtype and not (p.mixed and x.dtype == torch.float32):
            br = br.to(x.dtype)  # as the library op: backends without mixed_branch read x's dtype
        y, s, mean, rstd = raw.add_layer_norm_fwd(x, br, weight, bias, scale, eps, cl, out_dtype)
        has_branch = branch is not None
        ctx.save_for_backward(s if has_branch else x, weight, bias, mean, rstd, scale)
        ctx.meta = (has_branch, cl, x.dtype, out_dtype, None if branch is None else branch.dtype, p)
        ctx.set_materialize_grads(False)
        return (y, s) if has_branch else y

    @staticmethod
    def backward(ctx, dy, ds=None):
        s, weight, bias, mean, rstd, scale = ctx.saved_tensors
        has_branch, cl, x_dtype, out_dtype, branch_dtype, p = ctx.meta
        ds = ds.contiguous() if (has_branch and ds is not None) else None
        if dy is None:  # only the sum s is used downstream
            if ds is None:
                return (None,) * 9
            dy = s.new_zeros(s.shape, dtype=out_dtype)
        dx, dbr, dw, db = p.backend.impl().add_layer_norm_bwd(dy.contiguous(), ds, s, weight, bias, mean, rstd,
                                                             scale, has_branch, cl, x_dtype)
        if has_branch:
            dbr = dbr if dbr.dtype == branch_dtype else dbr.to(branch_dtype)
        return dx, (dbr if has_branch else None), dw, (db if bias is not None else None), None, None, None, None, None


_PLANS: dict = {}
_PLANS_MAX = 1024


def clear_plans() -> None:
    """Forget the cached plans (after changing a registered backend's availability or limits by hand)."""
    _PLANS.clear()


def _meta(t: Optional[torch.Tensor]):
    return None if t is None else (t.shape, t.dtype, t.device)


def add_norm_node(x: torch.Tensor, branch: Optional[torch.Tensor], weight: torch.Tensor, bias: Optional[torch.Tensor],
                  eps: float, branch_scale: Optional[torch.Tensor], channels_last: bool, out_dtype: torch.dtype,
                  impl: Optional[str]):
    """vmamba_kernels.add_layer_norm(x, branch, weight, bias, eps, branch_scale=..., channels_last=...,
    out_dtype=..., impl=impl) for plain eager execution: returns ((y, s), backend name). Validation and
    backend choice run once per shape; raises what the public op raises (ValueError / TypeError on bad
    input, vmamba_kernels.ImplRefused when `impl` refuses)."""
    need_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad
                                             or (branch is not None and branch.requires_grad)
                                             or (bias is not None and bias.requires_grad))
    key = (x.shape, x.dtype, x.device, _meta(branch), _meta(weight), _meta(bias), _meta(branch_scale),
           branch_scale is not None and branch_scale.requires_grad, torch.is_grad_enabled(), eps, channels_last,
           out_dtype, need_grad, impl,
           dispatch.get_default_impl(), len(dispatch._REGISTRY), torch.are_deterministic_algorithms_enabled())
    p = _PLANS.get(key)
    if p is None:
        args = validate.check_add_layer_norm(x, branch, weight, bias, eps, branch_scale, channels_last, out_dtype)
        b = dispatch.choose("add_layer_norm", args, impl).backend
        p = _Plan()
        p.backend, p.name, p.mixed = b, b.name, getattr(b, "mixed_branch", False)
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        _PLANS[key] = p
    dispatch._LAST.choice["add_layer_norm"] = p.name  # what last_choice reports, as a public call would
    c = torch.Tensor.contiguous
    x = c(x)
    branch = None if branch is None else c(branch)
    eps = float(eps)
    if need_grad:
        out = _AddNorm.apply(x, branch, c(weight), None if bias is None else c(bias), branch_scale, eps,
                             bool(channels_last), out_dtype, p)
        return (out if branch is not None else (out, x)), p.name
    br = branch
    if br is not None and br.dtype != x.dtype and not (p.mixed and x.dtype == torch.float32):
        br = br.to(x.dtype)
    y, s, _, _ = p.backend.impl().add_layer_norm_fwd(x, br, c(weight), None if bias is None else c(bias),
                                                     branch_scale, eps, bool(channels_last), out_dtype)
    return (y, s if branch is not None else x), p.name
