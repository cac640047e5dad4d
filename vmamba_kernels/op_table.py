"""The ops, as data: one `OpSpec` per public op names everything the machinery needs to know about it.

Adding an op (README, "Adding an op"): write its validator in validate.py (returning an args object with
`dtype`, `device`, `requires_grad()` and `describe()`) and its check-free normalisation (`args_<op>`), its
torch.library definitions in _library.py (or reuse a group), one `OpSpec` entry below, and the public
function in api.py (`call, args = dispatch.prepare(op, impl, (...))`, then `call(args)`). Backends opt in by listing the op in `Backend.ops` and
exporting the raw kernels named in `kernels`; dispatch, explain, list_impls, `vmamba_kernels.ops`
and the per-backend op registration read this table and need no edits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from . import _library, validate


def _no_limits(backend, args) -> list:
    return []


@dataclass(frozen=True)
class OpSpec:
    """What the dispatch machinery needs to know about one public op."""

    name: str
    check: Callable  # validate.check_<op>(*args, **kwargs) -> normalised args (raises on bad input)
    kernels: tuple  # raw kernels a backend's module must export to implement the op
    define: Callable  # backend -> {key: custom op}; ops sharing one `define` are defined once per backend
    run: Callable  # (the backend's {key: custom op}, normalised args) -> the op's result
    limits: Callable = _no_limits  # (backend, args) -> reasons beyond device / dtype / grad / capabilities
    public_only: tuple = ()  # keywords of the public function that `check` does not take (explain drops them)
    # check's result for arguments whose metadata a check accepted before, without the checks (dispatch.prepare);
    # None: every call runs `check`
    fast: Optional[Callable] = None
    # `run` for arguments whose tensors are all contiguous (no .contiguous() calls, seven per scan call:
    # reports/logs/2026-12-07_contiguous_run_cpu.md); prepared calls take it when their key says so
    # (dispatch.OpCall.prepared). None: `run` always
    run_dense: Optional[Callable] = None


def _run_scan(ops, a):
    c = torch.Tensor.contiguous
    y, last_state, _ = ops["scan_fwd"](
        c(a.u), c(a.delta), c(a.A), c(a.B), c(a.C),
        None if a.D is None else c(a.D), None if a.delta_bias is None else c(a.delta_bias),
        a.delta_softplus, a.out_dtype)
    return y, last_state


def _run_scan_dense(ops, a):
    y, last_state, _ = ops["scan_fwd"](a.u, a.delta, a.A, a.B, a.C, a.D, a.delta_bias, a.delta_softplus, a.out_dtype)
    return y, last_state


def _scan_limits(backend, a) -> list:
    reasons = []
    if not (backend.min_dstate <= a.N <= backend.max_dstate):
        reasons.append(f"supports d_state {backend.min_dstate}..{backend.max_dstate}, not N={a.N}")
    if a.out_dtype not in backend.dtypes:
        reasons.append(f"cannot write out_dtype {a.out_dtype}")
    return reasons


def _run_add_layer_norm(ops, a):
    c = torch.Tensor.contiguous
    y, s, _, _ = ops["add_layer_norm_fwd"](
        c(a.x), None if a.branch is None else c(a.branch), c(a.weight), None if a.bias is None else c(a.bias),
        a.branch_scale, a.eps, a.channels_last, a.out_dtype)
    return y, (s if a.branch is not None else a.x)


def _run_add_layer_norm_dense(ops, a):
    y, s, _, _ = ops["add_layer_norm_fwd"](a.x, a.branch, a.weight, a.bias, a.branch_scale, a.eps, a.channels_last,
                                           a.out_dtype)
    return y, (s if a.branch is not None else a.x)


def _dwconv_limits(backend, a) -> list:
    ks = getattr(backend, "dwconv_kernel_sizes", None)
    if ks is not None and a.K not in ks:
        return [f"supports depthwise kernels {'/'.join(map(str, ks))}, not {a.K}x{a.K}"]
    return []


def _run_ss2d_core(ops, a):
    c = torch.Tensor.contiguous
    opt = lambda t: None if t is None else t.contiguous()  # noqa: E731
    return ops["ss2d_core_fwd"](c(a.x), c(a.x_proj_weight), c(a.dt_projs_weight), c(a.A), opt(a.D),
                                opt(a.delta_bias), a.mode, a.channels_last, a.delta_softplus, a.out_dtype)[0]


def _run_ss2d_core_dense(ops, a):
    return ops["ss2d_core_fwd"](a.x, a.x_proj_weight, a.dt_projs_weight, a.A, a.D, a.delta_bias, a.mode,
                                a.channels_last, a.delta_softplus, a.out_dtype)[0]


def ss2d_dstate_range(backend) -> tuple:
    """(min, max) d_state of the backend's ss2d_core (its scan's range unless it declares its own)."""
    top = backend.ss2d_max_dstate if backend.ss2d_max_dstate is not None else backend.max_dstate
    return backend.min_dstate, top


def _ss2d_core_limits(backend, a) -> list:
    reasons = []
    lo, hi = ss2d_dstate_range(backend)
    if not (lo <= a.N <= hi):
        from .dispatch import backends  # noqa: PLC0415 (dispatch imports this module)

        wider = [b.name for b in backends("ss2d_core") if b is not backend
                 and ss2d_dstate_range(b)[0] <= a.N <= ss2d_dstate_range(b)[1]]
        reasons.append(f"its ss2d_core supports d_state {lo}..{hi}, not N={a.N}"
                       + (f" (impl {' / '.join(wider)} can)" if wider else ""))
    if a.out_dtype not in backend.dtypes:
        reasons.append(f"cannot write out_dtype {a.out_dtype}")
    return reasons


_CROSS_KERNELS = ("cross_scan_fwd", "cross_merge_fwd")  # each op's backward is the other one

SPECS = {
    "selective_scan": OpSpec(
        "selective_scan", validate.check_selective_scan, ("selective_scan_fwd", "selective_scan_bwd"),
        _library.define_scan, _run_scan, limits=_scan_limits, public_only=("return_last_state",),
        fast=validate.args_selective_scan, run_dense=_run_scan_dense),
    "cross_scan": OpSpec(
        "cross_scan", validate.check_cross_scan, _CROSS_KERNELS, _library.define_cross,
        lambda ops, a: ops["cross_scan"](a.x.contiguous(), a.mode, a.channels_last), fast=validate.args_cross_scan,
        run_dense=lambda ops, a: ops["cross_scan"](a.x, a.mode, a.channels_last)),
    "cross_merge": OpSpec(
        "cross_merge", validate.check_cross_merge, _CROSS_KERNELS, _library.define_cross,
        lambda ops, a: ops["cross_merge"](a.x.contiguous(), a.H, a.W, a.mode, a.channels_last),
        fast=validate.args_cross_merge, run_dense=lambda ops, a: ops["cross_merge"](a.x, a.H, a.W, a.mode,
                                                                                    a.channels_last)),
    "add_layer_norm": OpSpec(
        "add_layer_norm", validate.check_add_layer_norm, ("add_layer_norm_fwd", "add_layer_norm_bwd"),
        _library.define_add_layer_norm, _run_add_layer_norm, fast=validate.args_add_layer_norm,
        run_dense=_run_add_layer_norm_dense),
    "dwconv2d": OpSpec(
        "dwconv2d", validate.check_dwconv2d, ("dwconv2d_fwd", "dwconv2d_bwd"), _library.define_dwconv2d,
        lambda ops, a: ops["dwconv2d_fwd"](a.x.contiguous(), a.weight.contiguous(),
                                           None if a.bias is None else a.bias.contiguous(), a.act,
                                           a.channels_last),
        limits=_dwconv_limits, fast=validate.args_dwconv2d,
        run_dense=lambda ops, a: ops["dwconv2d_fwd"](a.x, a.weight, a.bias, a.act, a.channels_last)),
    "ss2d_core": OpSpec(
        "ss2d_core", validate.check_ss2d_core, ("ss2d_core_fwd", "ss2d_core_bwd"), _library.define_ss2d_core,
        _run_ss2d_core, limits=_ss2d_core_limits, fast=validate.args_ss2d_core, run_dense=_run_ss2d_core_dense),
}
OPS = tuple(SPECS)
# what a Backend implements unless it says otherwise; a new op is opt-in (Backend(ops=...))
BASE_OPS = ("selective_scan", "cross_scan", "cross_merge")
FUSED_OPS = ("add_layer_norm", "dwconv2d")  # the fast path's fused ops (models/fused.py)
SS2D_OPS = ("ss2d_core",)  # the fused SS2D core (issue #18): cross scan + projections + scan + cross merge


def spec(op: str) -> OpSpec:
    if op not in SPECS:
        raise ValueError(f"unknown op {op!r}; ops are {', '.join(OPS)}")
    return SPECS[op]


def define_library_ops(backend) -> dict:
    """{key: custom op} for every op the backend implements (each `define` group once)."""
    out, done = {}, set()
    for op in backend.ops:
        d = spec(op).define
        if d not in done:
            done.add(d)
            out.update(d(backend))
    return out
