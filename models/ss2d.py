"""SS2D: VMamba's 2-D selective-scan mixer, on the vmamba_kernels ops.

Three forward types (those of the official SS2D), each an nn.Module with the official parameter names:

- "v0"  (Vanilla VMamba): channels last only; in_proj to 2D (x, z), depthwise conv (bias) + SiLU,
  cross scan, the official's einsum projections (as batched GEMMs, `route_proj`), u/delta/B/C cast to
  float32 before the scan, cross merge, LayerNorm, gate with SiLU(z), out_proj.
- "v05" / "v05_noz" (VMamba v2): channels first (Linear2d / LayerNorm2d) or channels last; the
  per-direction projections (the official's grouped conv1d) as one batched GEMM (`route_proj`); the scan
  keeps the autocast dtype of its inputs and writes float32 (out_dtype=torch.float32); cross merge and LayerNorm in float32, then cast back to the dtype of
  the scan input. "_noz" drops the gate.
- "m0_noz" (Mamba2-style heads): channels last; heads = dt_rank, head dim P = d_inner / heads; one
  scalar A, dt and dt-bias per head; D per channel; B/C shared per direction. The official runs
  Mamba2's chunked SSD here. With a scalar A per head the SSD recurrence of every channel p of head h,
      s_t = exp(dt_h,t * A_h) s_{t-1} + dt_h,t * B_t u_p,t ,   y_p,t = C_t . s_t + D_p u_p,t
  is exactly a selective scan whose delta / A / delta_bias are the head's values broadcast over the
  head's P channels (and A over d_state), so it runs through vmamba_kernels.selective_scan; chunking
  is only an evaluation order (tests compare with an independent chunked SSD in torch).

Every kernel call passes `impl=` from the layer's resolved KernelPolicy (see models/policy.py). The
layout argument is `channels_last` throughout, as in vmamba_kernels: (B, H, W, C) when True.
"""
from __future__ import annotations

import contextlib
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

import vmamba_kernels as vk
from vmamba_kernels import dispatch
from vmamba_kernels._library import eager_allowed
from vmamba_kernels.layout import map_dims

from .chain import ss2d_chain
from .fused import add_norm, dwconv_act
from .layers import (Conv2d, LayerNorm, LayerNorm2d, Linear, Linear2d, Permute, a_log_init, dt_proj_init,
                     linear_stack_init)
from .policy import OFF, OPS, SS2D_CORE_REPLACES, ResolvedOp

K = 4  # scan directions
# the per-direction projections as batched GEMMs (cuBLAS) rather than the official's grouped conv1d (cudnn),
# which in training converted layouts around every call: "conv1d" restores it (same math and FLOPs) for timing
ROUTE_PROJ = "matmul"


def _replay(fn, *args):
    """fn(*args) again later, under the autocast state in force now (a rebuilt tensor must be bitwise the
    forward's: the same GEMM in the same dtype)."""
    dev = args[0].device.type
    on = torch.is_autocast_enabled(dev)
    dtype = torch.get_autocast_dtype(dev)

    def run():
        with torch.autocast(dev, dtype=dtype, enabled=on):
            return fn(*args)
    return run


def route_proj(xs: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-direction projection: xs (B, K*Cin, L), weight (K, Cout, Cin) -> (B, K*Cout, L), out[b, k] =
    weight[k] @ xs[b, k] (the official F.conv1d(xs, weight.view(-1, Cin, 1), groups=K))."""
    Kw, Cout, Cin = weight.shape
    if ROUTE_PROJ == "conv1d":
        return F.conv1d(xs, weight.reshape(-1, Cin, 1), groups=Kw)
    Bn, L = xs.shape[0], xs.shape[-1]
    return torch.matmul(weight, xs.view(Bn, Kw, Cin, L)).view(Bn, Kw * Cout, L)


def _wt(u: torch.Tensor) -> torch.dtype:
    """dtype of A / D / delta_bias for the scan: float32, or float64 when the inputs are float64."""
    return torch.float64 if u.dtype == torch.float64 else torch.float32


class _KernelCalls(nn.Module):
    """Mixin holding the resolved backend per op and calling vmamba_kernels with it.

    recompute_routes (default False; VSSM.set_recompute; v0 and v05): in eager training, the unfused chain
    keeps its route tensors (the cross scan's xs, the scan's delta, and v0's float32 copies of both) out of
    the autograd graph and rebuilds them in the backward (inside models.chain's node when the chain runs as
    one, else by RouteRecompute's saved-tensor hooks): same values and gradients, less activation memory, one
    cross scan and one dt projection more per block. recompute_delta: delta alone (and v0's float32 copy of
    it), rebuilt from the small dts_low by one dt projection GEMM."""

    recompute_routes = False
    recompute_delta = False
    # eager: the unfused chain as one autograd node (models.chain; same kernels and values, less host work)
    chain_autograd = True
    weight_cache = False  # inference keeps the chain's weight casts and A across calls (VSSM.set_weight_cache)

    def _recomputes(self, x: torch.Tensor) -> Optional[str]:
        """What this call rebuilds in the backward: "routes" (xs and delta), "delta", or None."""
        if not ((self.recompute_routes or self.recompute_delta) and self.training and torch.is_grad_enabled()
                and x.requires_grad and not torch.compiler.is_compiling()):
            return None
        return "routes" if self.recompute_routes else "delta"

    def _init_kernels(self):
        self._impl = {op: ResolvedOp(None, None, "auto") for op in OPS}
        self._ran = {}  # op -> the backend the dispatcher chose at the last eager call
        self._chain_impls = {op: None for op in SS2D_CORE_REPLACES}
        self.fallback = False

    def set_resolved(self, resolved: dict, fallback: bool) -> None:
        self._impl = dict(resolved)
        self.fallback = bool(fallback)
        # plain string attributes: constants for torch.compile
        self.impl_selective_scan = resolved["selective_scan"].impl
        self.impl_cross_scan = resolved["cross_scan"].impl
        self.impl_cross_merge = resolved["cross_merge"].impl
        self.impl_dwconv2d = resolved["dwconv2d"].impl
        self.impl_ss2d_core = resolved["ss2d_core"].impl
        self._chain_impls = {op: resolved[op].impl for op in SS2D_CORE_REPLACES}
        out_norm = getattr(self, "out_norm", None)
        if isinstance(out_norm, LayerNorm):
            out_norm.impl = resolved["add_layer_norm"].impl

    def _call(self, fn, impl, *args, **kwargs):
        out = self._call_with_fallback(fn, impl, *args, **kwargs)
        if not torch.compiler.is_compiling():  # what ran, for impl_table (auto and fallback included)
            ran = dispatch.last_choice(fn.__name__)
            self._ran[fn.__name__] = ran
            if fn is vk.ss2d_core:  # the ops it replaces ran inside it, on that backend
                self._ran.update({op: ran for op in SS2D_CORE_REPLACES})
        return out

    def _note_norm(self, backend: str) -> None:
        self._ran["add_layer_norm"] = backend

    def _note_dwconv(self, backend: str) -> None:
        if not torch.compiler.is_compiling():
            self._ran["dwconv2d"] = backend

    def _ss2d_core(self, x, As, Ds, delta_bias, channels_last, out_dtype):
        """The fused chain (vmamba_kernels.ss2d_core): cross scan, x / dt projections, scan, cross merge."""
        return self._call(vk.ss2d_core, self.impl_ss2d_core, x, self.x_proj_weight, self.dt_projs_weight, As, Ds,
                          delta_bias, channels_last=channels_last, out_dtype=out_dtype)

    def _chains(self, x: torch.Tensor) -> bool:
        """Whether the unfused chain runs as one autograd node (models.chain): plain eager execution only."""
        return self.chain_autograd and x.numel() > 0 and eager_allowed(x)

    def _chain(self, x, channels_last, out_dtype, scan_dtype=None):
        """models.chain.ss2d_chain with this layer's impls; None when a named impl refuses the inputs (the
        caller then runs the composition, which falls back or raises as a public call would)."""
        try:
            y = ss2d_chain(x, self.x_proj_weight, self.dt_projs_weight, self.A_logs, self.Ds, self.dt_projs_bias,
                           channels_last=channels_last, impls=self._chain_impls, out_dtype=out_dtype,
                           scan_dtype=scan_dtype, recompute=self._recomputes(x), ran=self._ran,
                           const_cache=self if self.weight_cache else None)
        except vk.ImplRefused:
            return None
        return y

    def _call_with_fallback(self, fn, impl, *args, **kwargs):
        if not self.fallback or impl is None:
            return fn(*args, impl=impl, **kwargs)
        try:
            return fn(*args, impl=impl, **kwargs)
        except vk.ImplRefused:  # the named backend refused these inputs: automatic choice
            return fn(*args, impl=None, **kwargs)

    def _cross_scan(self, x, channels_last):
        return self._call(vk.cross_scan, self.impl_cross_scan, x, channels_last=channels_last)

    def _cross_merge(self, y, H, W, channels_last):
        return self._call(vk.cross_merge, self.impl_cross_merge, y, H, W, channels_last=channels_last)

    def _scan(self, u, delta, A, B, C, D, delta_bias, out_dtype=None):
        return self._call(vk.selective_scan, self.impl_selective_scan, u, delta, A, B, C, D, delta_bias,
                          delta_softplus=True, out_dtype=out_dtype)


def _ssm_params(module, d_state, dt_rank, d_inner, ssm_init, dt_kwargs):
    """A_logs (K*D, N), Ds (K*D), dt_projs_weight (K, D, R), dt_projs_bias (K, D) per ssm_init."""
    if ssm_init == "v0":
        w, b = dt_proj_init(dt_rank, d_inner, K, **dt_kwargs)
        A_logs, Ds = a_log_init(d_state, K * d_inner), torch.ones(K * d_inner)
    elif ssm_init == "v1":
        w, b = 0.1 * torch.randn(K, d_inner, dt_rank), 0.1 * torch.randn(K, d_inner)
        A_logs, Ds = torch.randn(K * d_inner, d_state), torch.ones(K * d_inner)
    elif ssm_init == "v2":
        w, b = 0.1 * torch.rand(K, d_inner, dt_rank), 0.1 * torch.rand(K, d_inner)
        A_logs, Ds = torch.zeros(K * d_inner, d_state), torch.ones(K * d_inner)
    else:
        raise ValueError(f"ssm_init must be 'v0', 'v1' or 'v2', got {ssm_init!r}")
    module.A_logs = nn.Parameter(A_logs)
    module.Ds = nn.Parameter(Ds)
    module.A_logs._no_weight_decay = True
    module.Ds._no_weight_decay = True
    module.dt_projs_weight = nn.Parameter(w)
    module.dt_projs_bias = nn.Parameter(b)


class SS2Dv0(_KernelCalls):
    """Vanilla VMamba mixer (forward type "v0"); input/output (B, H, W, C)."""

    def __init__(self, d_model, d_state=16, ssm_ratio=2.0, dt_rank="auto", dropout=0.0, ssm_init="v0",
                 dt_kwargs=None, **_ignored):
        super().__init__()
        self._init_kernels()
        D = int(ssm_ratio * d_model)
        R = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.d_inner, self.d_state, self.dt_rank = D, int(d_state), R
        self.in_proj = Linear(d_model, 2 * D, bias=False)
        self.act = nn.SiLU()
        self.conv2d = Conv2d(D, D, 3, padding=1, groups=D, bias=True)
        self.x_proj_weight = nn.Parameter(linear_stack_init(K, R + 2 * d_state, D))
        _ssm_params(self, d_state, R, D, ssm_init, dt_kwargs or {})
        self.out_norm = LayerNorm(D)
        self.out_proj = Linear(D, d_model, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(x).chunk(2, dim=-1)
        z = self.act(z)
        x = dwconv_act(self.conv2d, self.act, x, channels_last=True, impl=self.impl_dwconv2d, call=self._call,
                       note=self._note_dwconv)
        Bn, D, H, W = map_dims(x, channels_last=True)
        N, R, L = self.d_state, self.dt_rank, H * W
        if self.impl_ss2d_core != OFF:  # the chain below in one op; float32 state and output as below
            f32 = _wt(x)
            y = self._ss2d_core(x, -torch.exp(self.A_logs.to(f32)), self.Ds.to(f32),
                                self.dt_projs_bias.to(f32).reshape(-1), True, f32)
            return self.dropout(self.out_proj(self.out_norm(y) * z))
        if self._chains(x):
            y = self._chain(x, True, _wt(x), scan_dtype=_wt(x))
            if y is not None:
                return self.dropout(self.out_proj(self.out_norm(y) * z))
        what = self._recomputes(x)
        rec = RouteRecompute() if what else None
        xs = self._cross_scan(x, channels_last=True).view(Bn, K * D, L)  # (B, K*D, L)
        if what == "routes":
            rec.keep(xs, lambda: self._cross_scan(x, channels_last=True))
        with rec.hooks() if rec is not None else contextlib.nullcontext():  # the official's einsums, as GEMMs
            x_dbl = route_proj(xs, self.x_proj_weight)
        dts, Bs, Cs = torch.split(x_dbl.view(Bn, K, -1, L), [R, N, N], dim=2)
        dts_low = dts.reshape(Bn, K * R, L)
        dts = route_proj(dts_low, self.dt_projs_weight)
        # v0 feeds the scan float32 inputs (and gets float32 out) whatever the autocast dtype
        f32 = _wt(xs)
        u, delta = xs.to(f32), dts.to(f32)
        if rec is not None:  # the float32 copies the scan keeps (when the cast made one)
            if u is not xs and what == "routes":
                rec.keep(u, lambda: self._cross_scan(x, channels_last=True).view(Bn, K * D, L).to(f32))
            dt_again = _replay(route_proj, dts_low, self.dt_projs_weight)  # autocast as now
            rec.keep(delta, dt_again if delta is dts else lambda: dt_again().to(f32))
        As = -torch.exp(self.A_logs.to(f32))
        with rec.hooks() if rec is not None else contextlib.nullcontext():
            ys = self._scan(u, delta, As, Bs.contiguous().to(f32), Cs.contiguous().to(f32), self.Ds.to(f32),
                            self.dt_projs_bias.to(f32).reshape(-1))
        y = self._cross_merge(ys.view(Bn, K, D, L), H, W, channels_last=True)  # (B, H, W, D) fp32
        y = self.out_norm(y) * z
        return self.dropout(self.out_proj(y))


class RouteRecompute:
    """Saved-tensor hooks that keep the route tensors of the unfused SS2D chain out of the autograd graph.

    The cross scan's xs (B, 4D, L) and the dt projection's delta (B, 4D, L) are each saved by the ops that
    consume them (the x projection and the scan keep xs, the scan keeps delta): four times the block's
    activation each. Registered with `keep(t, fn)`, a saved tensor that shares t's storage is packed as a
    token, and `fn()` (the same op on the same, small or already kept, inputs: bitwise the same values)
    rebuilds it at its first unpack in the backward; the rebuilt copy is dropped after the last unpack."""

    def __init__(self):
        # per kept tensor: [storage pointer, dtype, storage offset, fn, packs outstanding, rebuilt or None]
        # (no reference to the tensor itself: the point is to let it go)
        self._slots = []

    def keep(self, t: torch.Tensor, fn) -> None:
        self._slots.append([t.untyped_storage().data_ptr(), t.dtype, t.storage_offset(), fn, 0, None])

    def pack(self, t: torch.Tensor):
        ptr = t.untyped_storage().data_ptr()
        for i, slot in enumerate(self._slots):
            if slot[0] == ptr and slot[1] == t.dtype:
                slot[4] += 1
                return (self, i, t.shape, t.stride(), t.storage_offset() - slot[2])
        return t

    @staticmethod
    def unpack(packed):
        if isinstance(packed, torch.Tensor):
            return packed
        self, i, shape, stride, offset = packed
        slot = self._slots[i]
        if slot[5] is None:
            with torch.no_grad():
                slot[5] = slot[3]()
        out = slot[5].as_strided(shape, stride, slot[5].storage_offset() + offset)
        slot[4] -= 1
        if slot[4] <= 0:  # every saved copy handed back: the graph's uses of the rebuilt tensor own it now
            slot[5] = None
        return out

    def hooks(self):
        return torch.autograd.graph.saved_tensors_hooks(self.pack, RouteRecompute.unpack)


class SS2Dv05(_KernelCalls):
    """VMamba v2 mixer (forward types "v05" / "v05_noz"); (B, H, W, C) if channels_last else (B, C, H, W)."""

    def __init__(self, d_model, d_state=1, ssm_ratio=2.0, dt_rank="auto", act_layer=nn.SiLU, d_conv=3,
                 conv_bias=False, dropout=0.0, ssm_init="v0", with_z=False, channels_last=False, dt_kwargs=None,
                 **_ignored):
        super().__init__()
        self._init_kernels()
        D = int(ssm_ratio * d_model)
        R = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        self.d_inner, self.d_state, self.dt_rank = D, int(d_state), R
        self.channels_last, self.with_z = channels_last, with_z
        # created first: the official registers out_norm before in_proj (same state_dict key order)
        self.out_norm = (LayerNorm if channels_last else LayerNorm2d)(D)
        Lin = Linear if channels_last else Linear2d
        self.in_proj = Lin(d_model, 2 * D if with_z else D, bias=False)
        self.act = act_layer()
        self.with_dconv = d_conv > 1
        if self.with_dconv:
            self.conv2d = Conv2d(D, D, d_conv, padding=(d_conv - 1) // 2, groups=D, bias=conv_bias)
        self.x_proj_weight = nn.Parameter(linear_stack_init(K, R + 2 * d_state, D))
        self.out_act = nn.Identity()
        self.out_proj = Lin(D, d_model, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        _ssm_params(self, d_state, R, D, ssm_init, dt_kwargs or {})

    def forward_core(self, x: torch.Tensor) -> torch.Tensor:
        """x after conv/act, in the model layout ((B, D, H, W), or (B, H, W, D) when channels_last) ->
        the LayerNormed scan output in x's dtype and layout."""
        cl = self.channels_last
        Bn, D, H, W = map_dims(x, channels_last=cl)
        N, R, L = self.d_state, self.dt_rank, H * W
        wt = _wt(x)
        y = None
        if self.impl_ss2d_core != OFF:  # the chain below in one op (no route tensors)
            y = self._ss2d_core(x, -torch.exp(self.A_logs.to(wt)), self.Ds.to(wt),
                                self.dt_projs_bias.to(wt).reshape(-1), cl, wt)
        elif self._chains(x):
            y = self._chain(x, cl, wt)
        if y is None:
            As = -torch.exp(self.A_logs.to(wt))
            what = self._recomputes(x)
            rec = RouteRecompute() if what else None
            xs = self._cross_scan(x, channels_last=cl).view(Bn, K * D, L)
            if what == "routes":
                rec.keep(xs, lambda: self._cross_scan(x, channels_last=cl))
            with rec.hooks() if rec is not None else contextlib.nullcontext():
                x_dbl = route_proj(xs, self.x_proj_weight)
            dts, Bs, Cs = torch.split(x_dbl.view(Bn, K, -1, L), [R, N, N], dim=2)
            dts_low = dts.reshape(Bn, K * R, L)
            dts = route_proj(dts_low, self.dt_projs_weight)
            if rec is not None:
                rec.keep(dts, _replay(route_proj, dts_low, self.dt_projs_weight))
            with rec.hooks() if rec is not None else contextlib.nullcontext():
                ys = self._scan(xs, dts, As, Bs.contiguous(), Cs.contiguous(), self.Ds.to(wt),
                                self.dt_projs_bias.to(wt).reshape(-1), out_dtype=wt)
            y = self._cross_merge(ys.view(Bn, K, D, L), H, W, channels_last=cl)
        return add_norm(self.out_norm, y, channels_last=cl, out_dtype=x.dtype, impl=self.out_norm.impl,
                        call=self._call, note=self._note_norm)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.in_proj(x)
        cl = self.channels_last
        if self.with_z:
            x, z = x.chunk(2, dim=-1 if cl else 1)
            z = self.act(z)
        if self.with_dconv:
            x = dwconv_act(self.conv2d, self.act, x, channels_last=cl, impl=self.impl_dwconv2d, call=self._call,
                           note=self._note_dwconv)
        else:
            x = self.act(x)
        y = self.out_act(self.forward_core(x))
        if self.with_z:
            y = y * z
        return self.dropout(self.out_proj(y))


class SS2Dm0(_KernelCalls):
    """Mamba2-style mixer (forward type "m0_noz"); channels last (B, H, W, C) only."""

    def set_resolved(self, resolved: dict, fallback: bool) -> None:
        # per-head dt / A (no dt projection): not the SS2D core's chain, so always the separate ops
        resolved = dict(resolved, ss2d_core=ResolvedOp(resolved["ss2d_core"].requested, OFF,
                                                        "m0: per-head dt and A, not ss2d_core's chain"))
        super().set_resolved(resolved, fallback)

    def __init__(self, d_model, d_state=64, ssm_ratio=1.0, dt_rank="auto", act_layer=nn.GELU, d_conv=3,
                 conv_bias=False, dropout=0.0, ssm_init="v2", **_ignored):
        super().__init__()
        self._init_kernels()
        D = int(ssm_ratio * d_model)
        R = math.ceil(d_model / 16) if dt_rank == "auto" else int(dt_rank)
        if D % R:
            raise ValueError(f"m0: d_inner {D} must be a multiple of the number of heads (dt_rank) {R}")
        self.d_inner, self.d_state, self.dt_rank, self.head_dim = D, int(d_state), R, D // R
        self.out_norm = LayerNorm(D)  # first, as the official (state_dict key order)
        self.in_proj = Linear(d_model, D, bias=False)
        self.act = act_layer()
        self.with_dconv = d_conv > 1
        if self.with_dconv:
            self.conv2d = nn.Sequential(
                Permute(0, 3, 1, 2),
                Conv2d(D, D, d_conv, padding=(d_conv - 1) // 2, groups=D, bias=conv_bias),
                Permute(0, 2, 3, 1))
        self.x_proj_weight = nn.Parameter(linear_stack_init(K, R + 2 * d_state, D))
        self.out_act = nn.Identity()
        self.out_proj = Linear(D, d_model, bias=False)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        if ssm_init == "v2":
            Ds, A_logs, dtb = torch.ones(K, R, D // R), torch.zeros(K, R), 0.1 * torch.rand(K, R)
        elif ssm_init == "v1":
            Ds, A_logs, dtb = torch.ones(K, R, D // R), torch.randn(K, R), 0.1 * torch.randn(K, R)
        else:
            raise ValueError(f"m0 supports ssm_init 'v1' or 'v2', got {ssm_init!r}")
        self.Ds, self.A_logs, self.dt_projs_bias = nn.Parameter(Ds), nn.Parameter(A_logs), nn.Parameter(dtb)

    def scan_inputs(self, x: torch.Tensor, channels_last: bool = False):
        """x (B, D, H, W), or (B, H, W, D) when channels_last -> the selective-scan arguments (u, delta, A, B,
        C, D, delta_bias) with per-head values broadcast over the head's channels (and A over d_state)."""
        Bn, D, H, W = map_dims(x, channels_last)
        N, R, P, L = self.d_state, self.dt_rank, self.head_dim, H * W
        xs = self._cross_scan(x, channels_last=channels_last).view(Bn, K * D, L)
        x_dbl = route_proj(xs, self.x_proj_weight)
        dts, Bs, Cs = torch.split(x_dbl.view(Bn, K, -1, L), [R, N, N], dim=2)
        delta = dts.unsqueeze(3).expand(Bn, K, R, P, L).reshape(Bn, K * D, L)
        wt = _wt(xs)
        A = -torch.exp(self.A_logs.to(wt))
        A = A.view(K, R, 1, 1).expand(K, R, P, N).reshape(K * D, N)
        dbias = self.dt_projs_bias.to(wt).view(K, R, 1).expand(K, R, P).reshape(K * D)
        return xs, delta, A, Bs.contiguous(), Cs.contiguous(), self.Ds.to(wt).reshape(K * D), dbias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.in_proj(x)
        if self.with_dconv:  # conv2d = (Permute, Conv2d, Permute), as the official (state_dict keys)
            x = dwconv_act(self.conv2d[1], self.act, x, channels_last=True, impl=self.impl_dwconv2d,
                           call=self._call, note=self._note_dwconv)
        else:
            x = self.act(x)  # (B, H, W, D)
        Bn, D, H, W = map_dims(x, channels_last=True)
        # out dtype = input dtype, as the official SSD kernel
        ys = self._scan(*self.scan_inputs(*as_laid_out(x)))
        y = self._cross_merge(ys.view(Bn, K, D, H * W), H, W, channels_last=True)
        y = self.out_norm(y).to(x.dtype)
        return self.dropout(self.out_proj(self.out_act(y)))


def as_laid_out(x: torch.Tensor) -> tuple:
    """(map, channels_last) for a (B, H, W, D) activation: itself when its memory is (B, H, W, D), else the
    (B, D, H, W) view its memory has, so the cross scan (which reads either layout) needs no copy."""
    if x.is_contiguous() or not x.permute(0, 3, 1, 2).is_contiguous():
        return x, True
    return x.permute(0, 3, 1, 2), False


def make_ss2d(forward_type: str, channels_last: bool, **kw) -> nn.Module:
    if forward_type == "v0":
        if not channels_last:
            raise ValueError("forward_type 'v0' runs channels last only (norm_layer='ln'); the official asserts this")
        return SS2Dv0(**kw)
    if forward_type in ("v05", "v05_noz"):
        return SS2Dv05(with_z=forward_type == "v05", channels_last=channels_last, **kw)
    if forward_type == "m0_noz":
        if not channels_last:
            raise ValueError("forward_type 'm0_noz' runs channels last only (norm_layer='ln'), as the official")
        return SS2Dm0(**kw)
    raise ValueError(f"unsupported forward_type {forward_type!r}; supported: 'v0', 'v05', 'v05_noz', 'm0_noz'")
