"""Public functions: validate once, choose a backend, call its registered op."""
from __future__ import annotations

from typing import Optional

import torch

from . import dispatch, validate
from .op_table import spec, ss2d_dstate_range

# A public call first tries dispatch.FAST_CALL[0] (the extension's fast_call: a call prepared before, in one C++ call;
# NotImplemented otherwise), outside torch.compile, with the impl name dispatch.prepare would key it by.
_FAST = dispatch.FAST_CALL
_compiling = torch.compiler.is_compiling
_default = dispatch.get_default_impl


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
    r = NotImplemented if _compiling() else _FAST[0](0, impl if impl is not None else _default(), u, delta, A, B, C,
                                                       D, delta_bias, delta_softplus, out_dtype)
    if r is NotImplemented:
        call, args = dispatch.prepare("selective_scan", impl, (u, delta, A, B, C, D, delta_bias, delta_softplus,
                                                              out_dtype))
        r = call(args)
    y, last_state = r
    return (y, last_state) if return_last_state else y


def cross_scan(x, mode="cross2d", channels_last=False, impl=None):
    """Unfold a 2-D map into VMamba's four 1-D scan routes.

    x : (B, C, H, W), or (B, H, W, C) when channels_last.  Returns (B, 4, C, H*W) in x's dtype.
    Routes for mode "cross2d" (p = h*W + w row-major, q = w*H + h column-major, L = H*W):
    route 0 at p, route 1 at q, route 2 at L-1-p, route 3 at L-1-q. "unidi": all four are route 0;
    "bidi": routes 0, 0, 2, 2. The adjoint (and backward) is `cross_merge`.
    A map with no elements (B, C, H or W = 0) gives an empty result on every backend.
    """
    r = NotImplemented if _compiling() else _FAST[0](1, impl if impl is not None else _default(), x, mode,
                                                       channels_last)
    if r is NotImplemented:
        call, args = dispatch.prepare("cross_scan", impl, (x, mode, channels_last))
        r = call(args)
    return r


def cross_merge(y, H, W, mode="cross2d", channels_last=False, impl=None):
    """Fold four scan routes back onto the 2-D map, summing them (the adjoint of `cross_scan`).

    y : (B, 4, C, H*W).  Returns (B, C, H, W), or (B, H, W, C) when channels_last, in y's dtype.
    H, W >= 0; an empty y gives a zero (or empty) map on every backend.
    """
    r = NotImplemented if _compiling() else _FAST[0](2, impl if impl is not None else _default(), y, H, W, mode,
                                                       channels_last)
    if r is NotImplemented:
        call, args = dispatch.prepare("cross_merge", impl, (y, H, W, mode, channels_last))
        r = call(args)
    return r


def add_layer_norm(x, branch=None, weight=None, bias=None, eps=1e-5, *, branch_scale=None, channels_last=False,
                   out_dtype=None, impl=None):
    """Residual add + LayerNorm over the channel axis, in one pass: returns (y, s) with

        s = x + branch_scale[b] * branch          (s is x itself when branch is None)
        y = (s - mean_c(s)) / sqrt(var_c(s) + eps) * weight + bias      (statistics in float32)

    x : (B, C, H, W), or (B, H, W, C) when channels_last; float32 / float16 / bfloat16 (float64: torch
        impls). branch : None or x's shape, any float dtype (a 16-bit branch on a float32 residual
        stream under autocast); its gradient comes back in its dtype. s keeps x's dtype.
    weight, bias : (C,) float32 (bias optional). branch_scale : None or (B,) float32, drop path's
        per-sample factor (no gradient). out_dtype : dtype of y (default x's).
    Differentiable in x, branch, weight and bias; the backward is deterministic.
    """
    r = NotImplemented if _compiling() else _FAST[0](3, impl if impl is not None else _default(), x, branch, weight,
                                                       bias, eps, branch_scale, channels_last, out_dtype)
    if r is NotImplemented:
        call, args = dispatch.prepare("add_layer_norm", impl, (x, branch, weight, bias, eps, branch_scale,
                                                              channels_last, out_dtype))
        r = call(args)
    return r


def dwconv2d(x, weight, bias=None, act="none", *, channels_last=False, impl=None):
    """act(depthwise KxK convolution of x + bias): stride 1, zero padding K // 2, one filter per channel
    (nn.Conv2d(C, C, K, padding=K // 2, groups=C)), then "none", "silu" or "gelu" (exact erf).

    x : (B, C, H, W), or (B, H, W, C) when channels_last; float32 / float16 / bfloat16 (float64: torch
        impls). weight : (C, 1, K, K) float32, K odd; bias : (C,) float32 or None. Returns x's dtype and
        layout. Differentiable in x, weight and bias; deterministic backward.
    """
    r = NotImplemented if _compiling() else _FAST[0](4, impl if impl is not None else _default(), x, weight, bias,
                                                       act, channels_last)
    if r is NotImplemented:
        call, args = dispatch.prepare("dwconv2d", impl, (x, weight, bias, act, channels_last))
        r = call(args)
    return r


def ss2d_core(x, x_proj_weight, dt_projs_weight, A, D=None, delta_bias=None, *, mode="cross2d", channels_last=False,
              delta_softplus=True, out_dtype=None, impl=None):
    """The SS2D core of VMamba in one op: SS2Dv05.forward_core's unfused chain up to (not including) out_norm,

        xs    = cross_scan(x, mode)                                 (B, K, D, L), K = 4, L = H*W
        x_dbl = einsum("bkdl,kcd->bkcl", xs, x_proj_weight)         dts = [:R], Bs = [R:R+N], Cs = [R+N:]
        delta = einsum("bkrl,kdr->bkdl", dts, dt_projs_weight)
        ys    = selective_scan(xs, delta, A, Bs, Cs, D, delta_bias, delta_softplus)   (K groups of B/C)
        y     = cross_merge(ys, H, W, mode)

    without writing the route tensors (the fused backends read every route's u, dt, B, C at its pixel).

    x : (B, D, H, W), or (B, H, W, D) when channels_last; float32 / float16 / bfloat16 (float64: torch impls)
    x_proj_weight : (K, R + 2N, D) and dt_projs_weight : (K, D, R), float32 (the model's parameters) or x's dtype
    A : (K*D, N) float32;  D, delta_bias : (K*D,) float32 or None
    mode : any mode of cross_scan ("cross2d", "unidi", "bidi");  out_dtype : y's dtype (default x's)
    Returns y in x's layout. Differentiable in x, both weights, A, D and delta_bias; deterministic backward.
    Empty inputs (B, D, H or W = 0) give a zero y and zero gradients on every backend.
    """
    r = NotImplemented if _compiling() else _FAST[0](5, impl if impl is not None else _default(), x, x_proj_weight,
                                                       dt_projs_weight, A, D, delta_bias, mode, channels_last,
                                                       delta_softplus, out_dtype)
    if r is NotImplemented:
        call, args = dispatch.prepare("ss2d_core", impl, (x, x_proj_weight, dt_projs_weight, A, D, delta_bias, mode,
                                                         channels_last, delta_softplus, out_dtype))
        r = call(args)
    return r


def ops(impl: str) -> dict:
    """The torch.library custom ops of backend `impl`, without validation or dispatch (benchmarks,
    opcheck): keys scan_fwd, scan_bwd (the raw kernel contract in dispatch.py, plus autograd and fake
    tensors), cross_scan, cross_merge. Registering does not load the backend: a call to an
    unavailable one raises with the reason."""
    return dict(dispatch.get_backend(impl).library_ops)


def _args_for(op, args, kwargs):
    s = spec(op)
    kwargs = {k: v for k, v in kwargs.items() if k != "impl" and k not in s.public_only}
    return s.check(*args, **kwargs)


class ImplList(list):
    """The rows of `list_impls` (a plain list of dicts) that print as a table: `print(vk.list_impls())`
    or just `vk.list_impls()` at a prompt."""

    op: Optional[str] = None

    def table(self, width: int = 100) -> str:
        import textwrap  # noqa: PLC0415

        head = ("impl", "here", "devices", "dtypes", "d_state", "backward")
        cells = [(r["name"], "yes" if r["available"] else "no", ",".join(r["devices"]),
                  ",".join(d.replace("float", "f") for d in r["dtypes"]),
                  "{}-{}".format(*r.get("op_d_state", r["d_state"])), "yes" if r["backward"] else "no")
                 for r in self]
        w = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
        what = f"{self.op} implementations" if self.op else "implementations"
        lines = [f"{what}, best first (impl=None takes the first that is here and can run the inputs):",
                 "  " + "  ".join(h.ljust(w[i]) for i, h in enumerate(head)).rstrip()]
        for r, c in zip(self, cells):
            lines.append("  " + "  ".join(v.ljust(w[i]) for i, v in enumerate(c)).rstrip())
            if r["reason"]:
                lines += textwrap.wrap(f"why not here: {r['reason']}", width=width, initial_indent="      ",
                                       subsequent_indent="        ", break_on_hyphens=False)
        return "\n".join(lines)

    __str__ = table

    def __repr__(self) -> str:
        return self.table()


def list_impls(op: Optional[str] = None) -> ImplList:
    """Every registered implementation of `op` (or of any op), best priority first, as a list of dicts:
    name, priority, available, reason (why unavailable and how to fix), dtypes, devices,
    d_state range, backward, compile, deterministic. The list prints as a readable table."""
    if op is not None:
        spec(op)  # unknown ops raise with the known ones
    rows = ImplList()
    rows.op = op
    for b in dispatch.backends(op):
        reason = b.unavailable_reason()
        rows.append({
            "name": b.name, "priority": b.priority, "available": reason is None, "reason": reason,
            "ops": list(b.ops), "dtypes": [str(d).replace("torch.", "") for d in b.dtypes],
            "devices": list(b.devices), "d_state": (b.min_dstate, b.max_dstate),
            "backward": b.supports_backward, "compile": b.supports_compile,
            "deterministic": b.deterministic,
        })
        if op == "ss2d_core":  # its own d_state range (the fused kernels keep fewer states in registers)
            rows[-1]["op_d_state"] = ss2d_dstate_range(b)
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
