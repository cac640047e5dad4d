"""torch.library definitions: the custom ops of one backend, built generically from its raw kernels.

Each `define_*` function takes a backend (anything with `.name`, `.impl()` returning the module of
raw kernels, and `.scan_aux_shape`) and returns {key: custom op}; vmamba_kernels/op_table.py names
which function an op uses, and registering a backend (dispatch.register_backend) calls them once and
stores the result on the Backend (`vmamba_kernels.ops(name)` returns it). For backend NAME this gives
    vmamba_kernels::selective_scan_fwd_NAME, vmamba_kernels::selective_scan_bwd_NAME,
    vmamba_kernels::cross_scan_NAME, vmamba_kernels::cross_merge_NAME
with fake (meta) implementations, so torch.compile can trace models that use them, and autograd
formulas that call the same backend's backward. The op bodies load the backend lazily, so
registering a backend never imports its heavy dependencies.

Eager twins. A torch.library custom op costs tens of microseconds per call on the host (its Python
dispatch and autograd wrappers), more than a small kernel runs. So every op defined here also gets an
*eager twin* (`eager_twin(op)`): the same body, setup_context and backward, as a plain
torch.autograd.Function (or the bare body when no input requires grad). dispatch.OpCall runs the twins
when `eager_allowed` (not while torch.compile traces, no TorchDispatchMode such as FakeTensorMode or
FlopCounterMode, no TorchFunctionMode, no torch.func transform or torch.jit.trace, plain tensors):
torch.compile, fake tensors, opcheck, jit traces and the FLOP counters still see the custom ops. An op registered without a twin simply
runs its custom op.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .layout import map_dims, map_shape

NAMESPACE = "vmamba_kernels"

_EAGER: dict = {}  # custom op -> its eager twin
# custom op -> its twin's two halves, for callers that already know whether autograd must record the call
# (dispatch's prepared calls: their key holds the grad mode and every input's requires_grad): the bare body,
# and the autograd.Function's apply (absent for ops without a backward)
_BODY: dict = {}
_APPLY: dict = {}
_PLAIN = (Tensor, torch.nn.Parameter)


_dispatch_depth = torch._C._len_torch_dispatch_stack
_function_depth = torch._C._len_torch_function_stack
_interpreter = torch._C._functorch.peek_interpreter_stack
_tracing = torch._C._get_tracing_state


def _plain_eager() -> bool:
    """No dispatch mode (fake tensors, FLOP counter, AOT tracing), no function mode (it would see the bodies' inner
    torch calls), no torch.func transform (its autograd.Function rules differ), no torch.jit.trace (fvcore's FLOP
    count must record the custom op). For callers that know torch.compile is not tracing (dispatch's prepared calls:
    dispatch.prepare checked it in the same public call)."""
    return not _dispatch_depth() and not _function_depth() and _interpreter() is None and _tracing() is None


def _plain_context() -> bool:
    # is_compiling first: dynamo folds it to True and never looks at the rest
    return not torch.compiler.is_compiling() and _plain_eager()


def eager_allowed(first: Tensor) -> bool:
    """Whether a call whose first tensor is `first` may bypass torch.library (the twins): plain eager
    execution (no torch.compile tracing, no dispatch or function mode, no torch.func transform, no
    torch.jit.trace) on a plain tensor (no subclass)."""
    return _plain_context() and type(first) in _PLAIN


def eager_twin(op):
    """The eager twin of custom op `op` (`op` itself when it has none)."""
    return _EAGER.get(op, op)


def body_of(op):
    """The bare body of `op`'s twin (no autograd), or its twin / `op` itself when it has none."""
    return _BODY.get(op, eager_twin(op))


def apply_of(op):
    """The autograd.Function apply of `op`'s twin (autograd records the call), or its twin / `op` itself when it
    has none."""
    return _APPLY.get(op, eager_twin(op))


def _fast(op):
    """`op`'s twin for a call made from an eager backward (same test as the forward's), else `op`."""
    return _EAGER.get(op, op) if _plain_context() else op


def _c_apply(fn):
    """`fn.apply` minus the Python layer some torch releases put in front of the C entry point (torch 2.11's
    `Function.apply`, the GPU machine's): outside torch.func transforms, that layer only passes every argument
    through functorch's `unwrap_if_dead` (for tensors that escaped a finished transform) before the C
    `_FunctionBase.apply`, a few microseconds a call (reports/logs/2026-12-07_gpu_call72.md). Twins run only in
    plain eager execution (no transform active), where the C entry point is what it calls; on releases whose
    `Function.apply` is itself C, the two are the same work."""
    return super(torch.autograd.Function, fn).apply


def _twin(op, name: str, body, setup_context=None, backward=None) -> None:
    """Register the eager twin of `op`: `body` when no input requires grad, else an autograd.Function with
    the custom op's own setup_context and backward (so both paths compute and save the same)."""
    _BODY[op] = body
    if backward is None:
        _EAGER[op] = body
        return

    def forward(ctx, *args):  # ctx-style: a separate setup_context costs an inspect.signature bind per call
        out = body(*args)
        setup_context(ctx, args, out)
        return out

    fn = type(f"{name}_eager", (torch.autograd.Function,), {
        "forward": staticmethod(forward), "backward": staticmethod(backward)})
    apply = _c_apply(fn)
    _APPLY[op] = apply

    def twin(*args):
        if torch.is_grad_enabled() and any(type(a) in _PLAIN and a.requires_grad for a in args):
            return apply(*args)
        return body(*args)

    twin.__name__ = twin.__qualname__ = fn.__name__
    _EAGER[op] = twin


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


def define_scan(backend) -> dict:
    """scan_fwd (differentiable through scan_bwd) and scan_bwd."""
    name = backend.name

    def fwd_body(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                 delta_bias: Optional[Tensor], delta_softplus: bool, out_dtype: torch.dtype
                 ) -> tuple[Tensor, Tensor, Tensor]:
        if u.numel() == 0:
            return _empty_scan(backend, u, A, out_dtype)
        return tuple(backend.impl().selective_scan_fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype))

    scan_fwd = torch.library.custom_op(f"{NAMESPACE}::selective_scan_fwd_{name}", fwd_body, mutates_args=())

    @scan_fwd.register_fake
    def _(u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype):
        return _scan_fake_outputs(backend, u, A, out_dtype)

    def bwd_body(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Optional[Tensor],
                 delta_bias: Optional[Tensor], delta_softplus: bool, dout: Tensor, aux: Tensor
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        if u.numel() == 0:
            return _empty_scan_grads(u, delta, A, B, C, D, delta_bias)
        grads = backend.impl().selective_scan_bwd(u, delta, A, B, C, D, delta_bias, delta_softplus, dout, aux)
        # custom ops cannot return None: absent D / delta_bias give empty tensors, mapped back below
        return tuple(g if g is not None else A.new_empty(0) for g in grads)

    scan_bwd = torch.library.custom_op(f"{NAMESPACE}::selective_scan_bwd_{name}", bwd_body, mutates_args=())

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
        # no zero tensors made for the outputs without a gradient (last_state, aux: two allocations and
        # fills per call in every training step)
        ctx.set_materialize_grads(False)
        # last_state is returned detached (mamba_ssm semantics): requires_grad False, so a loss through it
        # fails loudly instead of getting a silent zero gradient; aux is internal
        ctx.mark_non_differentiable(output[1], output[2])

    def backward(ctx, dout, dlast, daux):
        if dout is None:  # (autograd calls this only when y has a gradient; kept for other callers)
            return (None,) * 9
        u, delta, A, B, C, D, delta_bias, aux = ctx.saved_tensors
        du, ddelta, dA, dB, dC, dD, dbias = _fast(scan_bwd)(
            u, delta, A, B, C, D, delta_bias, ctx.delta_softplus, dout.contiguous(), aux)
        return (du, ddelta, dA, dB, dC, dD if ctx.has_D else None, dbias if ctx.has_bias else None, None, None)

    scan_fwd.register_autograd(backward, setup_context=setup_context)
    _twin(scan_fwd, f"selective_scan_fwd_{name}", fwd_body, setup_context, backward)
    _twin(scan_bwd, f"selective_scan_bwd_{name}", bwd_body)
    return {"scan_fwd": scan_fwd, "scan_bwd": scan_bwd}


def _scanned_shape(x, channels_last):
    B, C, H, W = map_dims(x, channels_last)
    return (B, 4, C, H * W)


def define_cross(backend) -> dict:
    """cross_scan and cross_merge, each the other's backward (they are adjoint)."""
    name = backend.name

    def scan_body(x: Tensor, mode: str, channels_last: bool) -> Tensor:
        if x.numel() == 0:  # no pixels, channels or images: the same empty result on every backend
            return x.new_zeros(_scanned_shape(x, channels_last))
        return backend.impl().cross_scan_fwd(x, mode, channels_last)

    cross_scan = torch.library.custom_op(f"{NAMESPACE}::cross_scan_{name}", scan_body, mutates_args=())

    @cross_scan.register_fake
    def _(x, mode, channels_last):
        return x.new_empty(_scanned_shape(x, channels_last))

    def merge_body(y: Tensor, H: int, W: int, mode: str, channels_last: bool) -> Tensor:
        if y.numel() == 0:
            return y.new_zeros(map_shape(y.shape[0], y.shape[2], H, W, channels_last))
        return backend.impl().cross_merge_fwd(y, H, W, mode, channels_last)

    cross_merge = torch.library.custom_op(f"{NAMESPACE}::cross_merge_{name}", merge_body, mutates_args=())

    @cross_merge.register_fake
    def _(y, H, W, mode, channels_last):
        return y.new_empty(map_shape(y.shape[0], y.shape[2], H, W, channels_last))

    def scan_setup(ctx, inputs, output):
        x, mode, channels_last = inputs
        ctx.mode, ctx.channels_last = mode, channels_last
        ctx.HW = map_dims(x, channels_last)[2:]

    def scan_backward(ctx, gy):
        H, W = ctx.HW
        return _fast(cross_merge)(gy.contiguous(), H, W, ctx.mode, ctx.channels_last), None, None

    def merge_setup(ctx, inputs, output):
        _, _, _, mode, channels_last = inputs
        ctx.mode, ctx.channels_last = mode, channels_last

    def merge_backward(ctx, gx):
        return _fast(cross_scan)(gx.contiguous(), ctx.mode, ctx.channels_last), None, None, None, None

    cross_scan.register_autograd(scan_backward, setup_context=scan_setup)
    cross_merge.register_autograd(merge_backward, setup_context=merge_setup)
    _twin(cross_scan, f"cross_scan_{name}", scan_body, scan_setup, scan_backward)
    _twin(cross_merge, f"cross_merge_{name}", merge_body, merge_setup, merge_backward)
    return {"cross_scan": cross_scan, "cross_merge": cross_merge}


def _empty_if_none(t: Optional[Tensor], like: Tensor) -> Tensor:
    return t if t is not None else like.new_empty(0)


_SIXTEEN = (torch.float16, torch.bfloat16)


def norm_body_native(raw_fwd, mixed: bool):
    """A backend's raw add_layer_norm_fwd with the body's branch rule (define_add_layer_norm's fwd_body) in front:
    its entry in a module's `body_ops_native` (dispatch kind "body_native"), for inputs with elements."""
    def body(x, branch, weight, bias, branch_scale, eps, channels_last, out_dtype):
        if branch is not None and branch.dtype != x.dtype and not (mixed and x.dtype == torch.float32
                                                                   and branch.dtype in _SIXTEEN):
            branch = branch.to(x.dtype)
        return raw_fwd(x, branch, weight, bias, branch_scale, eps, channels_last, out_dtype)
    return body


def define_add_layer_norm(backend) -> dict:
    """add_layer_norm_fwd (differentiable through add_layer_norm_bwd) and add_layer_norm_bwd.

    Outputs (y, s, mean, rstd); s is empty when there is no branch (a custom op may not return its input:
    the public function hands back x itself). A branch of another dtype than x (a 16-bit branch on the
    float32 residual stream under autocast) is read as is by backends that declare `mixed_branch`; any other
    dtype pair is converted to x's dtype first. The branch's gradient comes back in its own dtype."""
    name = backend.name
    mixed = getattr(backend, "mixed_branch", False)

    def fwd_body(x: Tensor, branch: Optional[Tensor], weight: Tensor, bias: Optional[Tensor],
                 branch_scale: Optional[Tensor], eps: float, channels_last: bool, out_dtype: torch.dtype
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        if branch is not None and branch.dtype != x.dtype and not (mixed and x.dtype == torch.float32):
            branch = branch.to(x.dtype)
        y, s, mean, rstd = backend.impl().add_layer_norm_fwd(x, branch, weight, bias, branch_scale, eps,
                                                             channels_last, out_dtype)
        return y, (s if branch is not None else x.new_empty(0)), mean, rstd

    ln_fwd = torch.library.custom_op(f"{NAMESPACE}::add_layer_norm_fwd_{name}", fwd_body, mutates_args=())

    @ln_fwd.register_fake
    def _(x, branch, weight, bias, branch_scale, eps, channels_last, out_dtype):
        B, C, H, W = map_dims(x, channels_last)
        stat = x.new_empty((B, H * W), dtype=torch.float32)
        return (x.new_empty(x.shape, dtype=out_dtype), x.new_empty(x.shape if branch is not None else (0,)),
                stat, torch.empty_like(stat))

    def bwd_body(dy: Tensor, ds: Optional[Tensor], s: Tensor, weight: Tensor, bias: Optional[Tensor],
                 mean: Tensor, rstd: Tensor, branch_scale: Optional[Tensor], has_branch: bool, channels_last: bool,
                 x_dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        dx, dbr, dw, db = backend.impl().add_layer_norm_bwd(dy, ds, s, weight, bias, mean, rstd, branch_scale,
                                                           has_branch, channels_last, x_dtype)
        return dx, _empty_if_none(dbr if has_branch else None, dx), dw, _empty_if_none(db if bias is not None
                                                                                       else None, dw)

    ln_bwd = torch.library.custom_op(f"{NAMESPACE}::add_layer_norm_bwd_{name}", bwd_body, mutates_args=())

    @ln_bwd.register_fake
    def _(dy, ds, s, weight, bias, mean, rstd, branch_scale, has_branch, channels_last, x_dtype):
        dx = s.new_empty(s.shape, dtype=x_dtype)
        return (dx, dx.new_empty(s.shape if has_branch else (0,)), torch.empty_like(weight),
                weight.new_empty(bias.shape if bias is not None else (0,)))

    def setup_context(ctx, inputs, output):
        x, branch, weight, bias, branch_scale, eps, channels_last, out_dtype = inputs
        s = output[1] if branch is not None else x
        ctx.save_for_backward(s, weight, bias, output[2], output[3], branch_scale)
        ctx.has_branch, ctx.has_bias, ctx.channels_last = branch is not None, bias is not None, channels_last
        ctx.x_dtype, ctx.out_dtype = x.dtype, out_dtype
        ctx.branch_dtype = None if branch is None else branch.dtype
        # the statistics are outputs for the backward, not functions to differentiate; with grads not
        # materialised, an unused s / mean / rstd costs no zero tensor (three per call in a training step)
        ctx.mark_non_differentiable(output[2], output[3])
        ctx.set_materialize_grads(False)

    def backward(ctx, dy, ds, dmean, drstd):
        s, weight, bias, mean, rstd, branch_scale = ctx.saved_tensors
        ds = ds.contiguous() if (ctx.has_branch and ds is not None) else None
        if dy is None:  # only the sum s is used downstream
            if ds is None:
                return (None,) * 8
            dy = s.new_zeros(s.shape, dtype=ctx.out_dtype)
        dx, dbr, dw, db = _fast(ln_bwd)(dy.contiguous(), ds, s, weight, bias, mean, rstd, branch_scale,
                                        ctx.has_branch, ctx.channels_last, ctx.x_dtype)
        dbr = (dbr if dbr.dtype == ctx.branch_dtype else dbr.to(ctx.branch_dtype)) if ctx.has_branch else None
        return dx, dbr, dw, (db if ctx.has_bias else None), None, None, None, None

    ln_fwd.register_autograd(backward, setup_context=setup_context)
    _twin(ln_fwd, f"add_layer_norm_fwd_{name}", fwd_body, setup_context, backward)
    _twin(ln_bwd, f"add_layer_norm_bwd_{name}", bwd_body)
    return {"add_layer_norm_fwd": ln_fwd, "add_layer_norm_bwd": ln_bwd}


def define_dwconv2d(backend) -> dict:
    """dwconv2d_fwd (differentiable through dwconv2d_bwd) and dwconv2d_bwd."""
    name = backend.name

    def fwd_body(x: Tensor, weight: Tensor, bias: Optional[Tensor], act: str, channels_last: bool) -> Tensor:
        return backend.impl().dwconv2d_fwd(x, weight, bias, act, channels_last)

    conv_fwd = torch.library.custom_op(f"{NAMESPACE}::dwconv2d_fwd_{name}", fwd_body, mutates_args=())

    @conv_fwd.register_fake
    def _(x, weight, bias, act, channels_last):
        return torch.empty_like(x)

    def bwd_body(dy: Tensor, x: Tensor, weight: Tensor, bias: Optional[Tensor], act: str, channels_last: bool
                 ) -> tuple[Tensor, Tensor, Tensor]:
        dx, dw, db = backend.impl().dwconv2d_bwd(dy, x, weight, bias, act, channels_last)
        return dx, dw, _empty_if_none(db if bias is not None else None, dw)

    conv_bwd = torch.library.custom_op(f"{NAMESPACE}::dwconv2d_bwd_{name}", bwd_body, mutates_args=())

    @conv_bwd.register_fake
    def _(dy, x, weight, bias, act, channels_last):
        return (torch.empty_like(x), torch.empty_like(weight),
                weight.new_empty(bias.shape if bias is not None else (0,)))

    def setup_context(ctx, inputs, output):
        x, weight, bias, act, channels_last = inputs
        ctx.save_for_backward(x, weight, bias)
        ctx.act, ctx.channels_last, ctx.has_bias = act, channels_last, bias is not None

    def backward(ctx, dy):
        x, weight, bias = ctx.saved_tensors
        dx, dw, db = _fast(conv_bwd)(dy.contiguous(), x, weight, bias, ctx.act, ctx.channels_last)
        return dx, dw, (db if ctx.has_bias else None), None, None

    conv_fwd.register_autograd(backward, setup_context=setup_context)
    _twin(conv_fwd, f"dwconv2d_fwd_{name}", fwd_body, setup_context, backward)
    _twin(conv_bwd, f"dwconv2d_bwd_{name}", bwd_body)
    return {"dwconv2d_fwd": conv_fwd, "dwconv2d_bwd": conv_bwd}


# ---- fused SS2D core (issue #18) --------------------------------------------------------------------
def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def _pixels(x: Tensor, channels_last: bool) -> Tensor:
    """x as (B, L, D) in pixel order (a view: channels first it is the transpose of (B, D, L))."""
    Bn, Dc, H, W = map_dims(x, channels_last)
    return x.reshape(Bn, H * W, Dc) if channels_last else x.reshape(Bn, Dc, H * W).transpose(1, 2)


def ss2d_xdbl(x: Tensor, x_proj_weight: Tensor, channels_last: bool) -> Tensor:
    """The x projection of every route at every pixel, once, in pixel order: (B, L, K, R+2N) in x's dtype,
    xdbl[b, p, k, c] = sum_d x_proj_weight[k, c, d] x[b, d, p]. The projection is per pixel, so route k
    reads row (p, k) when it visits pixel p: one GEMM replaces the K per-route ones of the unfused chain."""
    K, C, Dc = x_proj_weight.shape
    pix = _pixels(x, channels_last)
    return torch.matmul(pix, x_proj_weight.to(x.dtype).reshape(K * C, Dc).t()).view(x.shape[0], pix.shape[1], K, C)


def _ss2d_empty_grads(x, x_proj_weight, dt_w, A, D, delta_bias):
    z = torch.zeros_like
    e = A.new_empty(0)
    return (z(x), z(x_proj_weight), z(dt_w), z(A), z(D) if D is not None else e,
            z(delta_bias) if delta_bias is not None else e)


def define_ss2d_core(backend) -> dict:
    """ss2d_core_fwd (differentiable through ss2d_core_bwd) and ss2d_core_bwd: the composition every backend
    shares around its raw kernels (contract: SS2D_CORE_CONTRACT.md, dispatch.py). The forward makes xdbl
    with one pixel-order GEMM and hands it to the raw forward (it is returned too, non-differentiable, and
    saved for the backward: (B, L, K, R+2N) is small); the backward's raw kernel gives the gradient through
    the scan's u input and dxdbl, and two GEMMs here add the projection's part of dx and dx_proj_weight."""
    name = backend.name

    @torch.library.custom_op(f"{NAMESPACE}::ss2d_core_fwd_{name}", mutates_args=())
    def core_fwd(x: Tensor, x_proj_weight: Tensor, dt_w: Tensor, A: Tensor, D: Optional[Tensor],
                 delta_bias: Optional[Tensor], mode: str, channels_last: bool, delta_softplus: bool,
                 out_dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        xdbl = ss2d_xdbl(x, x_proj_weight, channels_last)
        if x.numel() == 0:  # no pixels, channels or images: the same result on every backend
            return x.new_zeros(x.shape, dtype=out_dtype), xdbl
        y = backend.impl().ss2d_core_fwd(x, xdbl, dt_w, A, D, delta_bias, mode, channels_last, delta_softplus,
                                          out_dtype)
        return y, xdbl

    @core_fwd.register_fake
    def _(x, x_proj_weight, dt_w, A, D, delta_bias, mode, channels_last, delta_softplus, out_dtype):
        Bn, _, H, W = map_dims(x, channels_last)
        K, C, _ = x_proj_weight.shape
        return x.new_empty(x.shape, dtype=out_dtype), x.new_empty((Bn, H * W, K, C))

    @torch.library.custom_op(f"{NAMESPACE}::ss2d_core_bwd_{name}", mutates_args=())
    def core_bwd(x: Tensor, xdbl: Tensor, x_proj_weight: Tensor, dt_w: Tensor, A: Tensor, D: Optional[Tensor],
                 delta_bias: Optional[Tensor], dy: Tensor, mode: str, channels_last: bool, delta_softplus: bool
                 ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
        if x.numel() == 0:
            return _ss2d_empty_grads(x, x_proj_weight, dt_w, A, D, delta_bias)
        dx, dxdbl, ddt_w, dA, dD, dbias = backend.impl().ss2d_core_bwd(
            x, xdbl, dt_w, A, D, delta_bias, dy, mode, channels_last, delta_softplus)
        ct = _compute_dtype(x)
        K, C, Dc = x_proj_weight.shape
        dxd = dxdbl.reshape(x.shape[0], -1, K * C).to(ct)  # (B, L, K*C)
        w2 = x_proj_weight.to(x.dtype).to(ct).reshape(K * C, Dc)  # the weights the forward's GEMM used
        dpix = torch.matmul(dxd, w2)  # (B, L, D): the projection's part of dx
        dx = dx.to(ct) + (dpix.view(x.shape) if channels_last else dpix.transpose(1, 2).reshape(x.shape))
        dw = torch.matmul(dxd.reshape(-1, K * C).t(), _pixels(x, channels_last).to(ct).reshape(-1, Dc))
        return (dx.to(x.dtype), dw.view(K, C, Dc).to(x_proj_weight.dtype), ddt_w.to(dt_w.dtype), dA.to(A.dtype),
                _empty_if_none(dD.to(D.dtype) if D is not None else None, A),
                _empty_if_none(dbias.to(delta_bias.dtype) if delta_bias is not None else None, A))

    @core_bwd.register_fake
    def _(x, xdbl, x_proj_weight, dt_w, A, D, delta_bias, dy, mode, channels_last, delta_softplus):
        e = A.new_empty(0)
        return (torch.empty_like(x), torch.empty_like(x_proj_weight), torch.empty_like(dt_w), torch.empty_like(A),
                torch.empty_like(D) if D is not None else e,
                torch.empty_like(delta_bias) if delta_bias is not None else e)

    def setup_context(ctx, inputs, output):
        x, x_proj_weight, dt_w, A, D, delta_bias, mode, channels_last, delta_softplus, out_dtype = inputs
        ctx.save_for_backward(x, output[1], x_proj_weight, dt_w, A, D, delta_bias)
        ctx.mode, ctx.channels_last, ctx.delta_softplus = mode, channels_last, delta_softplus
        ctx.has_D, ctx.has_bias = D is not None, delta_bias is not None
        ctx.set_materialize_grads(False)  # no zero tensor for xdbl's gradient
        ctx.mark_non_differentiable(output[1])

    def backward(ctx, dy, dxdbl):
        if dy is None:  # (autograd calls this only when y has a gradient; kept for other callers)
            return (None,) * 10
        x, xdbl, x_proj_weight, dt_w, A, D, delta_bias = ctx.saved_tensors
        dx, dw, ddt_w, dA, dD, dbias = core_bwd(x, xdbl, x_proj_weight, dt_w, A, D, delta_bias, dy.contiguous(),
                                                ctx.mode, ctx.channels_last, ctx.delta_softplus)
        return (dx, dw, ddt_w, dA, dD if ctx.has_D else None, dbias if ctx.has_bias else None,
                None, None, None, None)

    core_fwd.register_autograd(backward, setup_context=setup_context)
    return {"ss2d_core_fwd": core_fwd, "ss2d_core_bwd": core_bwd}
