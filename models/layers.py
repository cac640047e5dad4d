"""Building blocks shared by the VMamba variants (layout helpers, MLP, stochastic depth, init)."""
from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import vmamba_kernels as vk
from vmamba_kernels import dispatch
from vmamba_kernels._library import eager_allowed

from . import weight_cache as wc
from .fused import add_norm, as_dtype as _as, autocast_dtype


class Linear(nn.Linear):
    """nn.Linear (same parameters, same result) that can keep its autocast weight casts across inference
    calls: `weight_cache` (VSSM.set_weight_cache; models/weight_cache.py says when that is safe).

    A checkpoint holding the 1x1-conv shape (out, in, 1, 1), as the official channels-first code's Linear2d
    saves it in one of its spellings, also loads (reshaped on load), so either layout takes either checkpoint."""

    weight_cache = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._project(x, *wc.params(self, x))

    def _project(self, x, weight, bias):
        return F.linear(x, weight, bias)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        key = prefix + "weight"
        w = state_dict.get(key)
        if w is not None and w.dim() == 4 and w.shape[2:] == (1, 1):
            state_dict[key] = w.reshape(w.shape[0], w.shape[1])
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


class Linear2d(Linear):
    """A Linear applied to the channel axis of a (B, C, H, W) map as a 1x1 convolution. The weight keeps the
    Linear shape (out, in), so state_dicts match nn.Linear's."""

    def _project(self, x, weight, bias):
        return F.conv2d(x, weight[:, :, None, None], bias)


class Conv2d(nn.Conv2d):
    """nn.Conv2d (same parameters, same result) with the weight cache of `Linear`."""

    weight_cache = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv_forward(x, *wc.params(self, x))


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm over the last (channel) axis of a (B, H, W, C) map; `impl` (set by the model's kernel
    policy) runs it as the fused add_layer_norm op, "off" as nn.LayerNorm. Same parameters and result."""

    channels_last = True
    impl = None  # the policy's add_layer_norm entry: a backend, None (automatic) or "off"
    fallback = False  # a named backend that refuses the inputs gives way to the automatic choice
    ran = None  # the backend that ran at the last eager call ("off": the torch module)
    # eager training keeps the 16-bit output instead of the input for the backward (VSSM.set_recompute "norms")
    recompute_from_output = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.impl == "off":
            self.ran = "off"
            return self._reference(x)
        return add_norm(self, x, channels_last=self.channels_last, impl=self.impl, call=self._call,
                        note=self._note_ran)[0]

    def _note_ran(self, backend: str) -> None:
        self.ran = backend

    def _call(self, fn, impl, *args, **kwargs):
        try:
            out = fn(*args, impl=impl, **kwargs)
        except vk.ImplRefused:
            if not self.fallback or impl is None:
                raise
            out = fn(*args, impl=None, **kwargs)
        if not torch.compiler.is_compiling():
            self.ran = dispatch.last_choice(fn.__name__)
        return out

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x)


class LayerNorm2d(LayerNorm):
    """LayerNorm over the channel axis of a (B, C, H, W) map (same parameters as nn.LayerNorm(C))."""

    channels_last = False

    def _reference(self, x: torch.Tensor) -> torch.Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


class Permute(nn.Module):
    def __init__(self, *dims: int):
        super().__init__()
        self.dims = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.dims)

    def extra_repr(self) -> str:
        return f"dims={self.dims}"


class DropPath(nn.Module):
    """Stochastic depth: zero the whole residual branch of a sample with probability p, scale the
    kept ones by 1/(1-p). Every call draws a fresh per-sample mask."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def sample_scale(self, x: torch.Tensor):
        """The per-sample factor forward() would apply to x, as a (B,) float32 tensor (float64 for a float64 x:
        the fused add + norm takes factors in its weight dtype) for ops that fuse the residual add; None when
        it is the identity."""
        if self.p == 0.0 or not self.training:
            return None
        keep = 1.0 - self.p
        dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        return torch.empty(x.shape[0], device=x.device, dtype=dtype).bernoulli_(keep).div_(keep)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class _MlpFn(torch.autograd.Function):
    """fc2(GELU(fc1(x))) of nn.Linear layers as one autograd node, with the backward written out.

    Autograd records about a dozen nodes for the composition (weight and bias casts, transposes, views, two
    addmm, GELU), each with host work in the forward and the backward: in eager training that host work is
    what a VMamba step waits on (models/chain.py says more). Same arithmetic as autograd, autocast included:
    the GEMMs in the autocast dtype (else x's) with the weights cast to it, the weight and bias gradients
    cast back to the parameters' dtype. recompute: keep h = fc1(x) alone and recompute GELU(h) in the
    backward (one hidden-width activation fewer kept per block; VSSM.set_recompute "mlp")."""

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, approximate, recompute):
        dt = autocast_dtype(x) or x.dtype  # what F.linear would compute in
        w1c, w2c = _as(w1, dt), _as(w2, dt)
        x2 = _as(x.reshape(-1, x.shape[-1]), dt)
        h = F.linear(x2, w1c, None if b1 is None else _as(b1, dt))
        a = F.gelu(h, approximate=approximate)
        out = F.linear(a, w2c, None if b2 is None else _as(b2, dt))
        ctx.save_for_backward(x2, w1c, w2c, h, None if recompute else a)
        ctx.approximate = approximate
        ctx.meta = (x.shape, x.dtype, w1.dtype, w2.dtype, None if b1 is None else b1.dtype,
                    None if b2 is None else b2.dtype)
        return out.view(*x.shape[:-1], out.shape[-1])

    @staticmethod
    def backward(ctx, dout):
        x2, w1c, w2c, h, a = ctx.saved_tensors
        x_shape, x_dt, w1_dt, w2_dt, b1_dt, b2_dt = ctx.meta
        if a is None:
            a = F.gelu(h, approximate=ctx.approximate)
        d2 = _as(dout.reshape(-1, dout.shape[-1]), h.dtype)
        dw2 = _as(torch.matmul(d2.t(), a), w2_dt)
        db2 = _as(d2.sum(0), b2_dt) if b2_dt is not None else None
        dh = torch.ops.aten.gelu_backward(torch.matmul(d2, w2c), h, approximate=ctx.approximate)
        dw1 = _as(torch.matmul(dh.t(), x2), w1_dt)
        db1 = _as(dh.sum(0), b1_dt) if b1_dt is not None else None
        dx = _as(torch.matmul(dh, w1c).view(x_shape), x_dt)
        return dx, dw1, db1, dw2, db2, None, None


class Mlp(nn.Module):
    """fc1 -> act -> dropout -> fc2 -> dropout; Linear2d when channels first.

    In eager training with Linear layers, a GELU activation and no dropout, the MLP can run as one autograd
    node with its backward written out (_MlpFn: the same values and gradients): with recompute_act (default
    False; VSSM.set_recompute), where the node keeps fc1's output alone and recomputes GELU in the backward
    (one hidden-width activation fewer kept per block), or with the class attribute `one_node` (off: it was
    not measured faster than autograd's nodes)."""

    recompute_act = False
    one_node = False  # not measured faster on the H200 host (reports/logs/2026-12-03_host_work_H200.md)

    def __init__(self, dim: int, hidden: int, act_layer=nn.GELU, drop: float = 0.0, channels_last: bool = True):
        super().__init__()
        Lin = Linear if channels_last else Linear2d
        self.fc1 = Lin(dim, hidden)
        self.act = act_layer()
        self.fc2 = Lin(hidden, dim)
        self.drop = nn.Dropout(drop)

    def _one_node_ok(self) -> bool:
        return (self.training and torch.is_grad_enabled() and type(self.act) is nn.GELU
                and type(self.fc1) is Linear and type(self.fc2) is Linear and self.drop.p == 0.0)

    def _recomputes(self) -> bool:
        return self.recompute_act and self._one_node_ok()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (self.one_node or self.recompute_act) and self._one_node_ok() and eager_allowed(x):
            return _MlpFn.apply(x, self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias,
                                self.act.approximate, self.recompute_act)
        if self.drop.p == 0.0:  # the official's Dropout(0): an identity, skipped (two operator calls fewer)
            return self.fc2(self.act(self.fc1(x)))
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class PatchMerging2D(nn.Module):
    """Downsample "v1": concatenate the four 2x2 phases (even/even, odd/even, even/odd, odd/odd in
    (h, w)), norm, then a bias-free Linear 4C -> 2C. Odd sizes are zero-padded at the bottom/right."""

    def __init__(self, dim: int, out_dim: int, norm_layer=nn.LayerNorm, channels_last: bool = True):
        super().__init__()
        self.channels_last = channels_last
        self.reduction = (Linear if channels_last else Linear2d)(4 * dim, out_dim, bias=False)
        self.norm = norm_layer(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.channels_last:
            H, W = x.shape[-2:]
            if H % 2 or W % 2:
                x = F.pad(x, (0, W % 2, 0, H % 2))
            parts = [x[..., 0::2, 0::2], x[..., 1::2, 0::2], x[..., 0::2, 1::2], x[..., 1::2, 1::2]]
            x = torch.cat(parts, 1)
        else:
            H, W = x.shape[-3:-1]
            if H % 2 or W % 2:
                x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
            parts = [x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]]
            x = torch.cat(parts, -1)
        return self.reduction(self.norm(x))


ACTS = {"silu": nn.SiLU, "gelu": nn.GELU, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}
NORMS = {"ln": LayerNorm, "ln2d": LayerNorm2d}


def act_layer(name: str):
    try:
        return ACTS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTS)}") from None


def norm_layer(name: str):
    try:
        return NORMS[name.lower()]
    except KeyError:
        raise ValueError(f"unknown norm_layer {name!r}; choose 'ln' (channels last) or 'ln2d' (channels first)") from None


# ---- mamba-style initialisation (as the official SS2D's dt / A / D init) ------------------------
def dt_proj_init(dt_rank: int, d_inner: int, k: int, dt_scale: float = 1.0, dt_init: str = "random",
                 dt_min: float = 1e-3, dt_max: float = 0.1, dt_floor: float = 1e-4):
    """(weight (k, d_inner, dt_rank), bias (k, d_inner)) for k stacked dt projections.

    weight ~ U(-s, s) with s = dt_rank^-0.5 * dt_scale ("constant": all s); the bias is the inverse
    softplus of dt sampled log-uniformly in [dt_min, dt_max] (floored at dt_floor)."""
    s = dt_rank ** -0.5 * dt_scale
    if dt_init == "constant":
        w = torch.full((k, d_inner, dt_rank), s)
    elif dt_init == "random":
        w = torch.empty(k, d_inner, dt_rank).uniform_(-s, s)
    else:
        raise ValueError(f"dt_init must be 'random' or 'constant', got {dt_init!r}")
    dt = torch.exp(torch.rand(k, d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
    dt = dt.clamp(min=dt_floor)
    bias = dt + torch.log(-torch.expm1(-dt))  # softplus(bias) == dt
    return w, bias


def a_log_init(d_state: int, channels: int) -> torch.Tensor:
    """S4D-real: A = -[1..N] for every channel, stored as log -> (channels, N) fp32."""
    return torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(channels, 1).contiguous()


def linear_stack_init(k: int, out_f: int, in_f: int) -> torch.Tensor:
    """k stacked weights with nn.Linear's default init (kaiming-uniform a=sqrt(5): U(+-1/sqrt(in)))."""
    w = torch.empty(k, out_f, in_f)
    for i in range(k):
        nn.init.kaiming_uniform_(w[i], a=math.sqrt(5))
    return w
