"""The unfused SS2D chain as one autograd node: the same kernels, a fraction of the host work.

In eager training a VMamba step waits on the host, not on the GPU (reports/logs/2026-12-03_training_memory_H200.md).
The unfused chain between the depthwise conv and out_norm
(cross scan, the x and dt projections, the selective scan, cross merge) is about 20 torch operators per
block, each an autograd node with its own dispatch, cast and view bookkeeping, forward and backward.
`ss2d_chain` runs the same chain as one torch.autograd.Function: the forward calls the three ops' raw
kernels (the backends the layer's policy resolved, validated and chosen through the dispatcher once per
shape: cached plans) and two batched GEMMs; the backward is written out: cross scan of dy (cross merge's adjoint),
the scan's backward kernel, four GEMMs, cross merge (cross scan's adjoint). The weight GEMMs are the ones
autograd would run for the composition (a broadcast weight's gradient summed over the batch in the GEMM dtype,
then cast to the weight's dtype). x's gradient, cross_merge(du + xw^T dx_dbl), is taken as cross_merge(du) plus
the projection term computed in pixel order: merge is linear, and the projection's output gradient dx_dbl has
C = R + 2N << D rows, so it is moved to pixel order (a gather) and one GEMM adds xw^T of it into the merged du,
instead of forming the (B, K, D, L) route-order product, adding it to du and merging the sum (about 2/3 of the
bytes of that step). Values and gradients equal the composition's to rounding (tests/test_ss2d_chain.py).

`recompute="routes"` saves x instead of the route tensors (B, 4D, L) and rebuilds them in the backward (one
cross scan, one dt projection): the memory of the old saved-tensor hooks (RouteRecompute) without their
per-tensor host cost. `recompute="delta"` keeps xs and rebuilds delta alone from the small dts_low (one dt
projection GEMM).

Used in plain eager execution only (vmamba_kernels._library.eager_allowed); torch.compile, fake tensors,
FLOP counters and torch.func see the composition of the custom ops, as before.
"""
from __future__ import annotations

from typing import Optional

import torch

from reference.cross_scan import route_index
from vmamba_kernels import dispatch, validate
from vmamba_kernels.layout import map_dims

from . import weight_cache
from .fused import as_dtype as _as, autocast_dtype

K = 4  # routes


class _Plan:
    """What one call runs: the raw-kernel modules of the three ops' backends, and the shapes and dtypes."""

    __slots__ = ("cross", "scan", "merge", "names", "mode", "cl", "gemm", "scan_dtype", "wt", "out_dtype",
                 "dims", "R", "N", "bc_view")


def _consts(x_proj_weight, dt_projs_weight, A_logs, Ds, dt_bias, gemm: torch.dtype, wt: torch.dtype):
    """The GEMM weights in the GEMM dtype, A = -exp(A_logs), D and the flat delta bias in the scan's weight dtype."""
    return (_as(x_proj_weight, gemm), _as(dt_projs_weight, gemm), torch.exp(_as(A_logs, wt)).neg_(),
            _as(Ds, wt), _as(dt_bias, wt).reshape(-1))


def scan_consts(x_proj_weight, dt_projs_weight, A_logs, Ds, dt_bias, gemm: torch.dtype, wt: torch.dtype, cache=None):
    """The chain's inference constants (x_proj and dt_projs weights in the GEMM dtype `gemm`, A = -exp(A_logs), D and
    the flat delta bias in the scan's weight dtype `wt`), kept in module `cache`'s weight cache entry when one is
    given (models.weight_cache: reused while the parameters are unchanged). models.cpp_stages reads the same entry."""
    args = (x_proj_weight, dt_projs_weight, A_logs, Ds, dt_bias)
    if cache is None:
        return _consts(*args, gemm, wt)
    return weight_cache.cached(cache, args, (gemm, wt), lambda *t: _consts(*t, gemm, wt))


def _forward(x, xw, dtw, A, Dv, bias, p: _Plan):
    """y and what the backward keeps: (y, xs, u, dts_low, Bs, Cs, delta, aux)."""
    Bn, D, H, W = p.dims
    R, N, L = p.R, p.N, H * W
    cross, scan, merge = p.cross.impl(), p.scan.impl(), p.merge.impl()  # the backends' raw kernels
    xs = _as(cross.cross_scan_fwd(x, p.mode, p.cl), p.gemm)  # (B, K, D, L)
    x_dbl = torch.matmul(xw, xs)  # (B, K, R + 2N, L)
    # slices of x_dbl, read in place: the GEMMs take strided operands, and so does a scan backend with
    # `strided_bc` (three copy kernels fewer per call, each a launch of host time at small batches)
    dts_low = x_dbl[:, :, :R]  # (B, K, R, L)
    delta = torch.matmul(dtw, dts_low)  # (B, K, D, L)
    Bs, Cs = x_dbl[:, :, R:R + N], x_dbl[:, :, R + N:]
    if not p.bc_view:
        Bs, Cs = Bs.contiguous(), Cs.contiguous()
    u = xs
    if p.scan_dtype is not None:  # v0: float32 scan inputs whatever the GEMM dtype
        u, delta, Bs, Cs = (_as(t, p.scan_dtype) for t in (xs, delta, Bs, Cs))
    ys, _, aux = scan.selective_scan_fwd(u.view(Bn, K * D, L), delta.view(Bn, K * D, L), A, Bs, Cs, Dv, bias,
                                           True, p.out_dtype)
    y = merge.cross_merge_fwd(ys.view(Bn, K, D, L), H, W, p.mode, p.cl)
    return y, xs, u, dts_low, Bs, Cs, delta, aux


class _Chain(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, x_proj_weight, dt_projs_weight, A_logs, Ds, dt_bias, p: _Plan, recompute: Optional[str]):
        xw, dtw, A, Dv, bias = _consts(x_proj_weight, dt_projs_weight, A_logs, Ds, dt_bias, p.gemm, p.wt)
        y, xs, u, dts_low, Bs, Cs, delta, aux = _forward(x, xw, dtw, A, Dv, bias, p)
        ctx.recompute = recompute
        if recompute == "routes":  # the route tensors go; x (a quarter of xs) and the small dts_low rebuild them
            ctx.save_for_backward(x, None, None, xw, dtw, dts_low, Bs, Cs, A, Dv, bias, aux)
        elif recompute == "delta":  # delta goes; dts_low rebuilds it
            ctx.save_for_backward(None, xs, u if u is not xs else None, xw, dtw, dts_low, Bs, Cs, A, Dv, bias, aux)
        else:
            ctx.save_for_backward(None, xs, u if u is not xs else None, xw, dtw,
                                  dts_low, Bs, Cs, A, Dv, bias, delta, aux)
        ctx.p = p
        ctx.dtypes = (x.dtype, x_proj_weight.dtype, dt_projs_weight.dtype, A_logs.dtype, Ds.dtype, dt_bias.dtype)
        ctx.bias_shape = dt_bias.shape
        return y

    @staticmethod
    def backward(ctx, dy):
        p = ctx.p
        Bn, D, H, W = p.dims
        L = H * W
        saved = ctx.saved_tensors
        x, xs, u, xw, dtw, dts_low, Bs, Cs, A, Dv, bias = saved[:11]
        aux = saved[-1]
        cross, scan, merge = p.cross.impl(), p.scan.impl(), p.merge.impl()
        if ctx.recompute == "routes":
            xs = _as(cross.cross_scan_fwd(x, p.mode, p.cl), p.gemm)
            delta = torch.matmul(dtw, dts_low)
            u = xs
            if p.scan_dtype is not None:
                u, delta = _as(xs, p.scan_dtype), _as(delta, p.scan_dtype)
        elif ctx.recompute == "delta":
            delta = torch.matmul(dtw, dts_low)
            if p.scan_dtype is not None:
                delta = _as(delta, p.scan_dtype)
            u = xs if u is None else u
        else:
            delta = saved[11]
            u = xs if u is None else u
        dys = merge.cross_scan_fwd(dy.contiguous(), p.mode, p.cl)  # cross merge's adjoint, (B, K, D, L)
        du, ddelta, dA, dB, dC, dD, dbias = scan.selective_scan_bwd(
            u.view(Bn, K * D, L), delta.view(Bn, K * D, L), A, Bs, Cs, Dv, bias, True, dys.view(Bn, K * D, L), aux)
        du, ddelta = du.view(Bn, K, D, L), ddelta.view(Bn, K, D, L)
        if p.scan_dtype is not None:  # the casts' backward: gradients back in the GEMM dtype
            du, ddelta, dB, dC = (_as(t, p.gemm) for t in (du, ddelta, dB, dC))
        # delta = dtw @ dts_low (dtw broadcast over the batch)
        g_dtw = torch.matmul(ddelta, dts_low.transpose(-1, -2)).sum(0)
        d_low = torch.matmul(dtw.transpose(-1, -2), ddelta)
        # x_dbl = xw @ xs, split into (dts_low, Bs, Cs)
        dx_dbl = torch.cat([d_low, dB, dC], dim=2)
        g_xw = torch.matmul(dx_dbl, xs.transpose(-1, -2)).sum(0)
        x_dt, xw_dt, dtw_dt, alog_dt, ds_dt, db_dt = ctx.dtypes
        # dx = cross_merge(du + xw^T dx_dbl), with the projection term taken to pixel order first (module docstring)
        dx = cross.cross_merge_fwd(_as(du, x_dt), H, W, p.mode, p.cl)  # cross scan's adjoint
        dx = _add_projection_grad(dx, xw, dx_dbl, p)
        # A = -exp(A_logs): dA_logs = dA * A (autograd's (-dA) * exp(A_logs), the same bits)
        return (dx, _as(g_xw, xw_dt), _as(g_dtw, dtw_dt), _as(dA * A, alog_dt), _as(dD, ds_dt),
                _as(dbias.view(ctx.bias_shape), db_dt), None, None)


_PIXEL_ORDER: dict = {}  # (mode, H, W, device) -> (K, L) long: route position of each pixel, per route


def _pixel_order(mode: str, H: int, W: int, device) -> torch.Tensor:
    """inv[k, pixel] = the position at which route k reads that pixel (the inverse of reference.route_index)."""
    key = (mode, H, W, device)
    inv = _PIXEL_ORDER.get(key)
    if inv is None:
        ri = route_index(mode, H, W)
        inv = torch.empty_like(ri).scatter_(1, ri, torch.arange(H * W).expand_as(ri)).to(device)
        if len(_PIXEL_ORDER) >= _PLANS_MAX:
            _PIXEL_ORDER.clear()
        _PIXEL_ORDER[key] = inv
    return inv


def _add_projection_grad(dx: torch.Tensor, xw: torch.Tensor, dx_dbl: torch.Tensor, p: "_Plan") -> torch.Tensor:
    """dx + cross_merge(xw^T @ dx_dbl), as one GEMM in pixel order: the (B, K, C, L) gradient of the x
    projection's output goes to pixel order per route (a gather of C = R + 2N rows, C << D), then
    dx[b, pixel, :] += sum_(k, c) dx_dbl_px[b, k, c, pixel] xw[k, c, :]. The route-order product (B, K, D, L),
    its sum with du and the merge's read of it are gone: 14 of 21 (B, D, L)-sized passes of the old path."""
    Bn, D, H, W = p.dims
    L, KC = H * W, dx_dbl.shape[1] * dx_dbl.shape[2]
    inv = _pixel_order(p.mode, H, W, dx_dbl.device)
    px = torch.gather(dx_dbl, 3, inv.view(1, K, 1, L).expand(dx_dbl.shape)).view(Bn, KC, L)
    w = xw.reshape(KC, D)
    if p.cl:  # dx (B, H, W, D): (B, L, KC) @ (KC, D)
        a, b, out = px.transpose(1, 2), w.expand(Bn, KC, D), dx.view(Bn, L, D)
    else:  # dx (B, D, H, W): (D, KC) @ (B, KC, L)
        a, b, out = w.t().expand(Bn, D, KC), px, dx.view(Bn, D, L)
    if out.dtype == px.dtype:
        out.baddbmm_(a, b)
    else:  # x in another dtype than the GEMMs (not the models' case): the product in the GEMM dtype, then added
        out.add_(torch.bmm(a, b))
    return dx


_PLANS: dict = {}  # plan key -> _Plan: validation and backend choice once per shape (like dispatch's cache)
_PLANS_MAX = 1024


def clear_plans() -> None:
    """Forget the cached plans (after changing a registered backend's availability or limits by hand)."""
    _PLANS.clear()
    _PIXEL_ORDER.clear()


def _plan(x, R, N, channels_last, mode, gemm, scan_dtype, out_dtype, need_grad, impls) -> _Plan:
    """Validate the chain's op calls and choose their backends, as the public ops would: on stand-ins of the
    tensors the chain will make (the checks and the choice read shapes, dtypes, devices and grad only:
    expanded scalars, nothing large allocated)."""
    Bn, D, H, W = map_dims(x, channels_last)
    L = H * W
    sdt = scan_dtype or gemm
    wt = torch.float64 if sdt == torch.float64 else torch.float32  # A, D, delta_bias: the scan's weight dtype

    def like(shape, dtype):
        return x.new_empty((), dtype=dtype).requires_grad_(need_grad).expand(shape)

    u = like((Bn, K * D, L), sdt)
    bc = like((Bn, K, N, L), sdt)
    dv = like((K * D,), wt)
    args = {"cross_scan": validate.check_cross_scan(x, mode, channels_last),
            "selective_scan": validate.check_selective_scan(u, u, like((K * D, N), wt), bc, bc, dv, dv, True,
                                                            out_dtype),
            "cross_merge": validate.check_cross_merge(like((Bn, K, D, L), out_dtype), H, W, mode, channels_last)}
    chosen = {op: dispatch.choose(op, a, impls.get(op)).backend for op, a in args.items()}
    p = _Plan()
    p.cross, p.scan, p.merge = chosen["cross_scan"], chosen["selective_scan"], chosen["cross_merge"]
    p.names = {op: b.name for op, b in chosen.items()}
    p.mode, p.cl, p.gemm, p.scan_dtype, p.out_dtype = mode, bool(channels_last), gemm, scan_dtype, out_dtype
    p.dims, p.R, p.N, p.wt = (Bn, D, H, W), R, N, wt
    p.bc_view = bool(p.scan.strided_bc)
    return p


def ss2d_chain(x: torch.Tensor, x_proj_weight: torch.Tensor, dt_projs_weight: torch.Tensor, A_logs: torch.Tensor,
               Ds: torch.Tensor, dt_projs_bias: torch.Tensor, *, channels_last: bool, impls: dict,
               out_dtype: torch.dtype, scan_dtype: Optional[torch.dtype] = None, recompute=None,
               mode: str = "cross2d", ran: Optional[dict] = None, const_cache=None) -> torch.Tensor:
    """cross_merge(selective_scan(...)) of SS2D's unfused chain in one autograd node (see the module docstring).

    x: the conv output, (B, D, H, W), or (B, H, W, D) with channels_last; the weights as the layer holds them
    (x_proj_weight (K, R+2N, D), dt_projs_weight (K, D, R), A_logs (K*D, N), Ds (K*D,), dt_projs_bias (K, D));
    impls: {"cross_scan", "selective_scan", "cross_merge": backend name or None}; out_dtype: the scan's
    output dtype (float32 in the models); scan_dtype: cast u, delta, B, C to it before the scan (v0's
    float32), None to keep the GEMM dtype; ran: a dict given the backend name each op ran on; const_cache: a
    module on which inference calls keep the weight casts and A = -exp(A_logs) across calls
    (models/weight_cache.py; None: computed per call). Without gradients no autograd node is made. Returns y in
    x's layout and out_dtype. recompute: None (keep the route tensors), "routes" or "delta" (module docstring;
    True means "routes"). Raises vmamba_kernels.ImplRefused as the public ops do."""
    Kw, C, Dw = x_proj_weight.shape
    R = dt_projs_weight.shape[2]
    N = A_logs.shape[1]
    gemm = autocast_dtype(x) or x.dtype  # what torch.matmul computes the route projections in
    need_grad = torch.is_grad_enabled() and (x.requires_grad or x_proj_weight.requires_grad
                                             or dt_projs_weight.requires_grad or A_logs.requires_grad
                                             or Ds.requires_grad or dt_projs_bias.requires_grad)
    key = (x.shape, x.dtype, x.device, channels_last, mode, gemm, scan_dtype, out_dtype, need_grad, Kw, C, Dw, R, N,
           impls.get("cross_scan"), impls.get("selective_scan"), impls.get("cross_merge"),
           dispatch.get_default_impl(), len(dispatch._REGISTRY), torch.are_deterministic_algorithms_enabled())
    p = _PLANS.get(key)
    if p is None:
        D = map_dims(x, channels_last)[1]
        if Kw != K or Dw != D or C != R + 2 * N or dt_projs_weight.shape[:2] != (K, D):
            raise ValueError(f"ss2d_chain: x has {D} channels; x_proj_weight {tuple(x_proj_weight.shape)} and "
                             f"dt_projs_weight {tuple(dt_projs_weight.shape)} must be (4, R+2N, {D}) and "
                             f"(4, {D}, R) with N={N} (A_logs {tuple(A_logs.shape)})")
        p = _plan(x, R, N, channels_last, mode, gemm, scan_dtype, out_dtype, need_grad, impls)
        if len(_PLANS) >= _PLANS_MAX:
            _PLANS.clear()
        _PLANS[key] = p
    if ran is not None:
        ran.update(p.names)
    if not x.is_contiguous():
        x = x.contiguous()
    if not need_grad:  # inference: the forward alone, no node
        cache = const_cache if const_cache is not None and weight_cache.usable(x) else None
        consts = scan_consts(x_proj_weight, dt_projs_weight, A_logs, Ds, dt_projs_bias, p.gemm, p.wt, cache=cache)
        return _forward(x, *consts, p)[0]
    if recompute is True:
        recompute = "routes"
    elif recompute not in (None, False, "routes", "delta"):
        raise ValueError(f"ss2d_chain: recompute must be None, 'routes' or 'delta', got {recompute!r}")
    return _Chain.apply(x, x_proj_weight, dt_projs_weight, A_logs, Ds, dt_projs_bias, p, recompute or None)
