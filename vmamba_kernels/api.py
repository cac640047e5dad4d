"""Public functions: validate once, choose a backend, call its registered op."""
from __future__ import annotations

from typing import Optional

import torch

from . import _library, dispatch, validate


def selective_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, out_dtype=None, impl=None):
    """Selective scan (Mamba S6) with grouped B/C, as VMamba uses it.

    For every batch b, channel d (group g = d // (KD // K)), state n and step t::

        dt      = delta[b, d, t] + delta_bias[d]           (then softplus if delta_softplus)
        x[n]    = exp(dt * A[d, n]) * x[n] + dt * B[b, g, n, t] * u[b, d, t]     (x starts at 0)
        y[b,d,t] = sum_n C[b, g, n, t] * x[n] + D[d] * u[b, d, t]

    Parameters
    ----------
    u, delta : (batch, KD, L) float32 / float16 / bfloat16 (float64 for the torch impls)
    A : (KD, N) float32
    B, C : (batch, K, N, L) with K dividing KD, or (batch, N, L) meaning K = 1; u's dtype
    D, delta_bias : (KD,) float32, optional
    delta_softplus : apply softplus (threshold 20) to delta + delta_bias
    return_last_state : also return the final state (batch, KD, N) float32. It is returned detached
        (requires_grad False, as mamba_ssm's): no gradient flows through it, and a loss that uses only
        it fails with autograd's "does not require grad" instead of a silent zero gradient.
    out_dtype : dtype of y; default u's dtype. The state is always float32.
    impl : backend name ("cuda", "triton", "cupy", "torch", "torch_sequential"); None = default/auto

    Returns y (batch, KD, L), or (y, last_state) when return_last_state.
    Differentiable in u, delta, A, B, C, D and delta_bias.
    Empty inputs (batch, KD or L = 0) give the same on every backend: an empty y, a zero last state
    (the state after no steps) and zero gradients.
    """
    args = validate.check_selective_scan(u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype)
    backend = dispatch.choose("selective_scan", args, impl)
    op = _library.ops_for(backend.name)["scan_fwd"]
    c = torch.Tensor.contiguous
    y, last_state, _ = op(
        c(args.u), c(args.delta), c(args.A), c(args.B), c(args.C),
        None if args.D is None else c(args.D), None if args.delta_bias is None else c(args.delta_bias),
        args.delta_softplus, args.out_dtype)
    return (y, last_state) if return_last_state else y


def cross_scan(x, mode="cross2d", channels_last=False, impl=None):
    """Unfold a 2-D map into VMamba's four 1-D scan routes.

    x : (B, C, H, W), or (B, H, W, C) when channels_last.  Returns (B, 4, C, H*W) in x's dtype.
    Routes for mode "cross2d" (p = h*W + w row-major, q = w*H + h column-major, L = H*W):
    route 0 at p, route 1 at q, route 2 at L-1-p, route 3 at L-1-q. "unidi": all four are route 0;
    "bidi": routes 0, 0, 2, 2. The adjoint (and backward) is `cross_merge`.
    A map with no elements (B, C, H or W = 0) gives an empty result on every backend.
    """
    args = validate.check_cross_scan(x, mode, channels_last)
    backend = dispatch.choose("cross_scan", args, impl)
    return _library.ops_for(backend.name)["cross_scan"](args.x.contiguous(), args.mode, args.channels_last)


def cross_merge(y, H, W, mode="cross2d", channels_last=False, impl=None):
    """Fold four scan routes back onto the 2-D map, summing them (the adjoint of `cross_scan`).

    y : (B, 4, C, H*W).  Returns (B, C, H, W), or (B, H, W, C) when channels_last, in y's dtype.
    H, W >= 0; an empty y gives a zero (or empty) map on every backend.
    """
    args = validate.check_cross_merge(y, H, W, mode, channels_last)
    backend = dispatch.choose("cross_merge", args, impl)
    return _library.ops_for(backend.name)["cross_merge"](args.x.contiguous(), H, W, args.mode, args.channels_last)


def _args_for(op, args, kwargs):
    kwargs = dict(kwargs)
    kwargs.pop("impl", None)
    if op == "selective_scan":
        kwargs.pop("return_last_state", None)
        return validate.check_selective_scan(*args, **kwargs)
    if op == "cross_scan":
        return validate.check_cross_scan(*args, **kwargs)
    if op == "cross_merge":
        return validate.check_cross_merge(*args, **kwargs)
    raise ValueError(f"unknown op {op!r}; ops are {', '.join(dispatch.OPS)}")


def list_impls(op: Optional[str] = None) -> list:
    """Every registered implementation of `op` (or of any op), best priority first, as dicts:
    name, priority, available, reason (why unavailable and how to fix), dtypes, devices,
    d_state range, backward, compile, deterministic."""
    if op is not None and op not in dispatch.OPS:
        raise ValueError(f"unknown op {op!r}; ops are {', '.join(dispatch.OPS)}")
    rows = []
    for b in dispatch.backends(op):
        reason = b.unavailable_reason()
        rows.append({
            "name": b.name, "priority": b.priority, "available": reason is None, "reason": reason,
            "ops": list(b.ops), "dtypes": [str(d).replace("torch.", "") for d in b.dtypes],
            "devices": list(b.devices), "d_state": (b.min_dstate, b.max_dstate),
            "backward": b.supports_backward, "compile": b.supports_compile,
            "deterministic": b.deterministic,
        })
    return rows


def explain(op: str, *args, **kwargs) -> str:
    """For these inputs: which impl would run, which can, and for each that can't, why.

    Example: ``print(explain("selective_scan", u, delta, A, B, C, D))``.
    """
    a = _args_for(op, args, kwargs)
    lines = [f"{op} on {a.describe()}:"]
    chosen = None
    for b in dispatch.backends(op):
        reasons = b.why_not(op, a)
        if not reasons and chosen is None:
            chosen = b.name
        lines.append(f"  {b.name:17s} " + ("can run" if not reasons else "cannot: " + "; ".join(reasons)))
    default = dispatch.get_default_impl()
    lines.append(f"impl=None picks: {default + ' (default set)' if default else chosen or 'nothing'}")
    return "\n".join(lines)
