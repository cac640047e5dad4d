"""torch.library registration: one set of custom ops per backend, defined once, generically.

For backend NAME this defines
    vmamba_kernels::selective_scan_fwd_NAME, vmamba_kernels::selective_scan_bwd_NAME,
    vmamba_kernels::cross_scan_NAME, vmamba_kernels::cross_merge_NAME
with fake (meta) implementations, so torch.compile can trace models that use them, and autograd
formulas that call the same backend's backward. The op bodies load the backend lazily, so
registering a backend never imports its heavy dependencies.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

NAMESPACE = "vmamba_kernels"
_OPS: dict = {}


def ops_for(name: str) -> dict:
    """The custom ops of backend `name`: keys scan_fwd, scan_bwd, cross_scan, cross_merge."""
    from .dispatch import get_backend  # noqa: PLC0415 (cycle)

    get_backend(name)  # loads the registry; unknown names raise with the known ones
    return _OPS[name]


def _scan_fake_outputs(backend, u, A, out_dtype):
    batch, KD, L = u.shape
    N = A.shape[1]
    out = u.new_empty((batch, KD, L), dtype=out_dtype)
    last = u.new_empty((batch, KD, N), dtype=A.dtype)
    shape, dtype = backend.scan_aux_shape(batch, KD, L, N, u.dtype)
    return out, last, u.new_empty(shape, dtype=dtype)


def _empty_scan(backend, u, A, out_dtype):
    """Outputs for inputs with no elements (batch, KD or L = 0), the same for every backend, which never
    sees such inputs: an empty y, the state after no steps (zeros), and the aux shape the backend declares."""
    out, _, aux = _scan_fake_outputs(backend, u, A, out_dtype)
    batch, KD, _ = u.shape
    return out, u.new_zeros((batch, KD, A.shape[1]), dtype=A.dtype), aux.zero_()


def _empty_scan_grads(u, delta, A, B, C, D, delta_bias):
    """Gradients for inputs with no elements: zeros of every input's shape (dD / ddelta_bias empty when absent)."""
    z = torch.zeros_like
    e = A.new_empty(0)
    return (z(u), z(delta), z(A), z(B), z(C), z(D) if D is not None else e, z(delta_bias) if delta_bias is not None else e)


def _define_scan(backend) -> dict:
    name = backend.name

    @torch.library.custom_op(f"{NAMESPACE}::selective_scan_fwd_{name}", mutates_args=())
    def scan_fwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                 delta_bias: Optional[Tensor], delta_softplus: bool, out_dtype: torch.dtype
                 ) -> tuple[Tensor, Tensor, Tensor]:
        if u.numel() == 0:
            return _empty_scan(backend, u, A, out_dtype)
        return tuple(backend.impl().selective_scan_fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype))

    @scan_fwd.register_fake
    def _(u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype):
        return _scan_fake_outputs(backend, u, A, out_dtype)

    @torch.library.custom_op(f"{NAMESPACE}::selective_scan_bwd_{name}", mutates_args=())
    def scan_bwd(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                 delta_bias: Optional[Tensor], delta_softplus: bool, dout: Tensor, aux: Tensor
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        if u.numel() == 0:
            return _empty_scan_grads(u, delta, A, B, C, D, delta_bias)
        grads = backend.impl().selective_scan_bwd(u, delta, A, B, C, D, delta_bias, delta_softplus, dout, aux)
        # custom ops cannot return None: absent D / delta_bias give empty tensors, mapped back below
        return tuple(g if g is not None else A.new_empty(0) for g in grads)

    @scan_bwd.register_fake
    def _(u, delta, A, B, C, D, delta_bias, delta_softplus, dout, aux):
        e = A.new_empty(0)
        return (torch.empty_like(u), torch.empty_like(delta), torch.empty_like(A), torch.empty_like(B),
                torch.empty_like(C), torch.empty_like(D) if D is not None else e,
                torch.empty_like(delta_bias) if delta_bias is not None else e)

    def setup_context(ctx, inputs, output):
        u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype = inputs
        ctx.save_for_backward(u, delta, A, B, C, D, delta_bias, output[2])
        ctx.delta_softplus = delta_softplus
        ctx.has_D = D is not None
        ctx.has_bias = delta_bias is not None
        ctx.set_materialize_grads(True)
        # last_state is returned detached (mamba_ssm semantics): requires_grad False, so a loss through it
        # fails loudly instead of getting a silent zero gradient; aux is internal
        ctx.mark_non_differentiable(output[1], output[2])

    def backward(ctx, dout, dlast, daux):
        u, delta, A, B, C, D, delta_bias, aux = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, dbias = scan_bwd(
            u, delta, A, B, C, D, delta_bias, ctx.delta_softplus, dout.contiguous(), aux)
        return (du, ddelta, dA, dB, dC, dD if ctx.has_D else None, dbias if ctx.has_bias else None, None, None)

    scan_fwd.register_autograd(backward, setup_context=setup_context)
    return {"scan_fwd": scan_fwd, "scan_bwd": scan_bwd}


def _scanned_shape(x, channels_last):
    B, H, W, C = x.shape if channels_last else (x.shape[0], x.shape[2], x.shape[3], x.shape[1])
    return (B, 4, C, H * W)


def _merged_shape(y, H, W, channels_last):
    B, _, C, _ = y.shape
    return (B, H, W, C) if channels_last else (B, C, H, W)


def _define_cross(backend) -> dict:
    name = backend.name

    @torch.library.custom_op(f"{NAMESPACE}::cross_scan_{name}", mutates_args=())
    def cross_scan(x: Tensor, mode: str, channels_last: bool) -> Tensor:
        if x.numel() == 0:  # no pixels, channels or images: the same empty result on every backend
            return x.new_zeros(_scanned_shape(x, channels_last))
        return backend.impl().cross_scan_fwd(x, mode, channels_last)

    @cross_scan.register_fake
    def _(x, mode, channels_last):
        return x.new_empty(_scanned_shape(x, channels_last))

    @torch.library.custom_op(f"{NAMESPACE}::cross_merge_{name}", mutates_args=())
    def cross_merge(y: Tensor, H: int, W: int, mode: str, channels_last: bool) -> Tensor:
        if y.numel() == 0:
            return y.new_zeros(_merged_shape(y, H, W, channels_last))
        return backend.impl().cross_merge_fwd(y, H, W, mode, channels_last)

    @cross_merge.register_fake
    def _(y, H, W, mode, channels_last):
        return y.new_empty(_merged_shape(y, H, W, channels_last))

    def scan_setup(ctx, inputs, output):
        x, mode, channels_last = inputs
        ctx.mode, ctx.channels_last = mode, channels_last
        ctx.HW = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[3])

    def scan_backward(ctx, gy):
        H, W = ctx.HW
        return cross_merge(gy.contiguous(), H, W, ctx.mode, ctx.channels_last), None, None

    def merge_setup(ctx, inputs, output):
        _, _, _, mode, channels_last = inputs
        ctx.mode, ctx.channels_last = mode, channels_last

    def merge_backward(ctx, gx):
        return cross_scan(gx.contiguous(), ctx.mode, ctx.channels_last), None, None, None, None

    cross_scan.register_autograd(scan_backward, setup_context=scan_setup)
    cross_merge.register_autograd(merge_backward, setup_context=merge_setup)
    return {"cross_scan": cross_scan, "cross_merge": cross_merge}


def define_ops(backend) -> None:
    if backend.name in _OPS:
        return
    ops = {}
    if "selective_scan" in backend.ops:
        ops.update(_define_scan(backend))
    if "cross_scan" in backend.ops or "cross_merge" in backend.ops:
        ops.update(_define_cross(backend))
    _OPS[backend.name] = ops
