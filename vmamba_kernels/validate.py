"""Input validation shared by every backend: one place, messages that name the argument.

Backends never re-check what is checked here; they receive the normalised arguments
(`ScanArgs`, `CrossArgs`) and may add only their own limits through `Backend.why_not`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from .layout import map_dims

FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)
CROSS_MODES = ("cross2d", "unidi", "bidi")


def _fmt(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def _need_tensor(name: str, t) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(
            f"{name} must be a floating tensor (float32, float16, bfloat16 or float64), got {t.dtype}"
        )
    return t


def _need_rank(name: str, t: torch.Tensor, ranks: tuple, meaning: str) -> None:
    if t.dim() not in ranks:
        raise ValueError(f"{name} must be {meaning}; got {t.dim()}-D tensor with {_fmt(t)}")


class _Args:
    """What dispatch reads from every op's normalised arguments: the input dtype and device (of the first
    tensor), whether a backward will be needed, and `describe()` for messages."""

    def tensors(self) -> list:
        raise NotImplementedError

    @property
    def dtype(self) -> torch.dtype:
        return self.tensors()[0].dtype

    @property
    def device(self) -> torch.device:
        return self.tensors()[0].device

    def requires_grad(self) -> bool:
        return torch.is_grad_enabled() and any(t.requires_grad for t in self.tensors())

    def choice_key(self) -> tuple:
        """What a backend's support check may read (dispatch caches choices by it): every tensor field's
        shape and dtype, the other fields as they are, and the device (of the first tensor)."""
        key = [(v.shape, v.dtype) if isinstance(v, torch.Tensor) else v for v in self.__dict__.values()]
        key.append(self.device)
        return tuple(key)


@dataclass
class ScanArgs(_Args):
    """Normalised selective-scan arguments: B and C are always 4-D (batch, K, N, L)."""

    u: torch.Tensor
    delta: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor
    D: Optional[torch.Tensor]
    delta_bias: Optional[torch.Tensor]
    delta_softplus: bool
    out_dtype: torch.dtype
    B_was_3d: bool
    C_was_3d: bool

    @property
    def batch(self) -> int:
        return self.u.shape[0]

    @property
    def KD(self) -> int:
        return self.u.shape[1]

    @property
    def L(self) -> int:
        return self.u.shape[2]

    @property
    def K(self) -> int:
        return self.B.shape[1]

    @property
    def N(self) -> int:
        return self.A.shape[1]

    def tensors(self):
        return [t for t in (self.u, self.delta, self.A, self.B, self.C, self.D, self.delta_bias) if t is not None]

    def choice_key(self) -> tuple:
        # the generic key, shortened by what check_selective_scan guarantees: delta is u's shape and dtype,
        # C is B's, A / D / delta_bias have the weight dtype u's dtype implies and shapes (KD, N) / (KD,)
        u = self.u
        return (u.shape, u.dtype, u.device, self.B.shape, self.A.shape, self.D is None, self.delta_bias is None,
                self.delta_softplus, self.out_dtype, self.B_was_3d, self.C_was_3d)

    def describe(self) -> str:
        return (
            f"u {tuple(self.u.shape)} {self.u.dtype} on {self.u.device}, "
            f"B/C groups K={self.K}, d_state N={self.N}, L={self.L}, out_dtype {self.out_dtype}"
        )


def check_selective_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                         out_dtype=None) -> ScanArgs:
    """Check shapes, dtypes and devices; return normalised `ScanArgs` (no copies made)."""
    u = _need_tensor("u", u)
    delta = _need_tensor("delta", delta)
    A = _need_tensor("A", A)
    B = _need_tensor("B", B)
    C = _need_tensor("C", C)
    _need_rank("u", u, (3,), "(batch, KD, L)")
    if delta.shape != u.shape:
        raise ValueError(f"delta must have the shape of u {tuple(u.shape)}; got {_fmt(delta)}")
    batch, KD, L = u.shape
    _need_rank("A", A, (2,), "(KD, N)")
    if A.shape[0] != KD:
        raise ValueError(f"A must be (KD={KD}, N) to match u's channels; got {_fmt(A)}")
    N = A.shape[1]
    if N < 1:
        raise ValueError(f"A must have d_state N >= 1; got {_fmt(A)}")
    was3 = {}
    norm = {}
    for name, t in (("B", B), ("C", C)):
        _need_rank(name, t, (3, 4), "(batch, N, L) or grouped (batch, K, N, L)")
        was3[name] = t.dim() == 3
        t4 = t.unsqueeze(1) if t.dim() == 3 else t
        if t4.shape[0] != batch or t4.shape[2] != N or t4.shape[3] != L:
            raise ValueError(
                f"{name} must be (batch={batch}, K, N={N}, L={L}) or (batch={batch}, N={N}, L={L}); got {_fmt(t)}"
            )
        norm[name] = t4
    B4, C4 = norm["B"], norm["C"]
    if B4.shape[1] != C4.shape[1]:
        raise ValueError(f"B and C must have the same number of groups K; got B {_fmt(B)} and C {_fmt(C)}")
    K = B4.shape[1]
    if K < 1 or KD % K != 0:
        raise ValueError(f"the number of B/C groups K={K} must divide the channels KD={KD} of u")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is None:
            continue
        _need_tensor(name, t)
        if t.shape != (KD,):
            raise ValueError(f"{name} must be (KD={KD},); got {_fmt(t)}")
    # dtypes: u/delta/B/C share one input dtype; A, D, delta_bias are fp32 (fp64 allowed for the reference)
    if delta.dtype != u.dtype:
        raise TypeError(f"delta must have u's dtype {u.dtype}; got {delta.dtype}")
    for name, t in (("B", B), ("C", C)):
        if t.dtype != u.dtype:
            raise TypeError(f"{name} must have u's dtype {u.dtype} (u, delta, B, C share one input dtype); got {t.dtype}")
    wt = torch.float64 if u.dtype == torch.float64 else torch.float32
    for name, t in (("A", A), ("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.dtype != wt:
            raise TypeError(f"{name} must be {wt} (the state and weights stay in fp32); got {t.dtype}")
    # devices
    dev = u.device
    for name, t in (("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.device != dev:
            raise ValueError(f"{name} is on {t.device} but u is on {dev}; all inputs must be on one device")
    if out_dtype is None:
        out_dtype = u.dtype
    if not isinstance(out_dtype, torch.dtype) or out_dtype not in FLOAT_DTYPES:
        raise TypeError(f"out_dtype must be a floating torch.dtype or None; got {out_dtype!r}")
    if not isinstance(delta_softplus, bool):
        raise TypeError(f"delta_softplus must be a bool; got {type(delta_softplus).__name__}")
    return ScanArgs(u, delta, A, B4, C4, D, delta_bias, delta_softplus, out_dtype, was3["B"], was3["C"])


def check_mode(mode) -> str:
    if mode not in CROSS_MODES:
        raise ValueError(f"mode must be one of {CROSS_MODES}; got {mode!r}")
    return mode


@dataclass
class CrossArgs(_Args):
    """Normalised cross-scan / cross-merge arguments."""

    x: torch.Tensor
    H: int
    W: int
    mode: str
    channels_last: bool

    def tensors(self):
        return [self.x]

    def describe(self) -> str:
        return f"x {tuple(self.x.shape)} {self.x.dtype} on {self.x.device}, H={self.H}, W={self.W}, mode {self.mode}"


def check_cross_scan(x, mode="cross2d", channels_last=False) -> CrossArgs:
    x = _need_tensor("x", x)
    check_mode(mode)
    layout = "(B, H, W, C)" if channels_last else "(B, C, H, W)"
    _need_rank("x", x, (4,), f"a 4-D map {layout}")
    _, _, H, W = map_dims(x, channels_last)
    return CrossArgs(x, H, W, mode, bool(channels_last))


def check_cross_merge(y, H, W, mode="cross2d", channels_last=False) -> CrossArgs:
    y = _need_tensor("y", y)
    check_mode(mode)
    _need_rank("y", y, (4,), "(B, 4, C, H*W)")
    for name, v in (("H", H), ("W", W)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            raise ValueError(f"{name} must be a non-negative int; got {v!r}")
    if y.shape[1] != 4 or y.shape[3] != H * W:
        raise ValueError(f"y must be (B, 4, C, H*W={H * W}) for H={H}, W={W}; got {_fmt(y)}")
    return CrossArgs(y, H, W, mode, bool(channels_last))


# ---- fused ops of the fast path -------------------------------------------------------------------
DWCONV_ACTS = ("none", "silu", "gelu")


def _need_channel_vector(name: str, t, C: int, device, optional: bool = True):
    if t is None:
        if optional:
            return None
        raise TypeError(f"{name} must be a ({C},) float tensor, got None")
    _need_tensor(name, t)
    if tuple(t.shape) != (C,):
        raise ValueError(f"{name} must be ({C},) (one value per channel); got {_fmt(t)}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device} but x is on {device}; all inputs must be on one device")
    return t


def _weight_dtype(x: torch.Tensor) -> torch.dtype:
    return torch.float64 if x.dtype == torch.float64 else torch.float32


@dataclass
class NormArgs(_Args):
    """Normalised add_layer_norm arguments."""

    x: torch.Tensor
    branch: Optional[torch.Tensor]
    weight: torch.Tensor
    bias: Optional[torch.Tensor]
    eps: float
    branch_scale: Optional[torch.Tensor]
    channels_last: bool
    out_dtype: torch.dtype

    def tensors(self):
        return [t for t in (self.x, self.branch, self.weight, self.bias, self.branch_scale) if t is not None]

    def describe(self) -> str:
        br = "no branch" if self.branch is None else f"branch {self.branch.dtype}"
        return (f"x {tuple(self.x.shape)} {self.x.dtype} on {self.x.device} "
                f"({'channels last' if self.channels_last else 'channels first'}), {br}, out_dtype {self.out_dtype}")


def check_add_layer_norm(x, branch=None, weight=None, bias=None, eps=1e-5, branch_scale=None, channels_last=False,
                         out_dtype=None) -> NormArgs:
    """s = x + branch_scale[b] * branch; y = LayerNorm over the channel axis of s."""
    x = _need_tensor("x", x)
    layout = "(B, H, W, C)" if channels_last else "(B, C, H, W)"
    _need_rank("x", x, (4,), f"a 4-D map {layout}")
    Bn, C, _, _ = map_dims(x, channels_last)
    if branch is not None:
        _need_tensor("branch", branch)
        if tuple(branch.shape) != tuple(x.shape):
            raise ValueError(f"branch must have x's shape {tuple(x.shape)}; got {_fmt(branch)}")
        if branch.device != x.device:
            raise ValueError(f"branch is on {branch.device} but x is on {x.device}; all inputs must be on one device")
        if (branch.dtype == torch.float64) != (x.dtype == torch.float64):
            raise TypeError(f"branch and x must both be float64 or neither; got {branch.dtype} and {x.dtype}")
    wt = _weight_dtype(x)
    weight = _need_channel_vector("weight", weight, C, x.device, optional=False)
    bias = _need_channel_vector("bias", bias, C, x.device)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != wt:
            raise TypeError(f"{name} must be {wt} (the LayerNorm's parameters); got {t.dtype}")
    if branch_scale is not None:
        if branch is None:
            raise ValueError("branch_scale scales the branch: pass a branch, or no branch_scale")
        _need_tensor("branch_scale", branch_scale)
        if tuple(branch_scale.shape) != (Bn,):
            raise ValueError(f"branch_scale must be (B={Bn},) (one factor per sample); got {_fmt(branch_scale)}")
        if branch_scale.device != x.device:
            raise ValueError(f"branch_scale is on {branch_scale.device} but x is on {x.device}")
        if branch_scale.dtype != wt:
            raise TypeError(f"branch_scale must be {wt}; got {branch_scale.dtype}")
        if branch_scale.requires_grad and torch.is_grad_enabled():
            raise ValueError("branch_scale is a sampled drop-path factor: it takes no gradient (detach it)")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps must be a positive float; got {eps!r}")
    if out_dtype is None:
        out_dtype = x.dtype
    if not isinstance(out_dtype, torch.dtype) or out_dtype not in FLOAT_DTYPES:
        raise TypeError(f"out_dtype must be a floating torch.dtype or None; got {out_dtype!r}")
    return NormArgs(x, branch, weight, bias, float(eps), branch_scale, bool(channels_last), out_dtype)


@dataclass
class DwconvArgs(_Args):
    """Normalised dwconv2d arguments."""

    x: torch.Tensor
    weight: torch.Tensor
    bias: Optional[torch.Tensor]
    act: str
    channels_last: bool

    @property
    def K(self) -> int:
        return self.weight.shape[-1]

    def tensors(self):
        return [t for t in (self.x, self.weight, self.bias) if t is not None]

    def describe(self) -> str:
        return (f"x {tuple(self.x.shape)} {self.x.dtype} on {self.x.device} "
                f"({'channels last' if self.channels_last else 'channels first'}), {self.K}x{self.K} taps, "
                f"act {self.act}")


def check_dwconv2d(x, weight, bias=None, act="none", channels_last=False) -> DwconvArgs:
    """act(depthwise KxK conv (stride 1, zero padding K // 2) of x + bias)."""
    x = _need_tensor("x", x)
    layout = "(B, H, W, C)" if channels_last else "(B, C, H, W)"
    _need_rank("x", x, (4,), f"a 4-D map {layout}")
    _, C, _, _ = map_dims(x, channels_last)
    weight = _need_tensor("weight", weight)
    if weight.dim() != 4 or weight.shape[0] != C or weight.shape[1] != 1 or weight.shape[2] != weight.shape[3] \
            or weight.shape[2] % 2 == 0:
        raise ValueError(f"weight must be a depthwise conv weight (C={C}, 1, K, K) with K odd; got {_fmt(weight)}")
    if weight.device != x.device:
        raise ValueError(f"weight is on {weight.device} but x is on {x.device}; all inputs must be on one device")
    bias = _need_channel_vector("bias", bias, C, x.device)
    wt = _weight_dtype(x)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != wt:
            raise TypeError(f"{name} must be {wt} (the conv's parameters; the op computes in float32); got {t.dtype}")
    if act not in DWCONV_ACTS:
        raise ValueError(f"act must be one of {DWCONV_ACTS}; got {act!r}")
    return DwconvArgs(x, weight, bias, act, bool(channels_last))


# ---- fused SS2D core (issue #18) ------------------------------------------------------------------
SS2D_ROUTES = 4  # cross_scan gives four routes in every mode (unidi / bidi repeat routes), so K = 4


@dataclass
class Ss2dCoreArgs(_Args):
    """Normalised ss2d_core arguments: the unfused chain cross_scan -> x / dt projections -> selective scan
    -> cross_merge of SS2Dv05.forward_core, up to out_norm."""

    x: torch.Tensor
    x_proj_weight: torch.Tensor
    dt_projs_weight: torch.Tensor
    A: torch.Tensor
    D: Optional[torch.Tensor]
    delta_bias: Optional[torch.Tensor]
    mode: str
    channels_last: bool
    delta_softplus: bool
    out_dtype: torch.dtype

    @property
    def dims(self) -> tuple:
        """(batch, channels, H, W) of x."""
        return map_dims(self.x, self.channels_last)

    @property
    def K(self) -> int:
        return self.x_proj_weight.shape[0]

    @property
    def R(self) -> int:
        return self.dt_projs_weight.shape[2]

    @property
    def N(self) -> int:
        return self.A.shape[1]

    def tensors(self):
        return [t for t in (self.x, self.x_proj_weight, self.dt_projs_weight, self.A, self.D, self.delta_bias)
                if t is not None]

    def describe(self) -> str:
        Bn, Dc, H, W = self.dims
        return (f"x {tuple(self.x.shape)} {self.x.dtype} on {self.x.device} "
                f"({'channels last' if self.channels_last else 'channels first'}), mode {self.mode}, "
                f"d_state N={self.N}, dt_rank R={self.R}, out_dtype {self.out_dtype}")


def check_ss2d_core(x, x_proj_weight, dt_projs_weight, A, D=None, delta_bias=None, mode="cross2d",
                    channels_last=False, delta_softplus=True, out_dtype=None) -> Ss2dCoreArgs:
    """x (B, D, H, W) / (B, H, W, D); x_proj_weight (K, R + 2N, D) and dt_projs_weight (K, D, R) in float32 or
    x's dtype; A (K*D, N), D and delta_bias (K*D,) float32 (float64 with float64 x); K = 4."""
    x = _need_tensor("x", x)
    check_mode(mode)
    layout = "(B, H, W, D)" if channels_last else "(B, D, H, W)"
    _need_rank("x", x, (4,), f"a 4-D map {layout}")
    _, Dc, _, _ = map_dims(x, channels_last)
    K = SS2D_ROUTES
    xpw = _need_tensor("x_proj_weight", x_proj_weight)
    dtw = _need_tensor("dt_projs_weight", dt_projs_weight)
    A = _need_tensor("A", A)
    _need_rank("dt_projs_weight", dtw, (3,), f"(K={K}, D={Dc}, R)")
    if dtw.shape[0] != K or dtw.shape[1] != Dc:
        raise ValueError(f"dt_projs_weight must be (K={K}, D={Dc}, R) (one (D, R) dt projection per route, D = "
                         f"x's channels); got {_fmt(dtw)}")
    R = dtw.shape[2]
    if R < 1:
        raise ValueError(f"dt_projs_weight must have dt_rank R >= 1; got {_fmt(dtw)}")
    _need_rank("A", A, (2,), f"(K*D={K * Dc}, N)")
    if A.shape[0] != K * Dc or A.shape[1] < 1:
        raise ValueError(f"A must be (K*D={K * Dc}, N) with d_state N >= 1; got {_fmt(A)}")
    N = A.shape[1]
    _need_rank("x_proj_weight", xpw, (3,), f"(K={K}, R+2N={R + 2 * N}, D={Dc})")
    if tuple(xpw.shape) != (K, R + 2 * N, Dc):
        raise ValueError(f"x_proj_weight must be (K={K}, R+2N={R + 2 * N}, D={Dc}) for dt_rank R={R} "
                         f"(dt_projs_weight) and d_state N={N} (A); got {_fmt(xpw)}")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is None:
            continue
        _need_tensor(name, t)
        if tuple(t.shape) != (K * Dc,):
            raise ValueError(f"{name} must be (K*D={K * Dc},); got {_fmt(t)}")
    wt = _weight_dtype(x)
    for name, t in (("x_proj_weight", xpw), ("dt_projs_weight", dtw)):
        if t.dtype not in (wt, x.dtype):
            raise TypeError(f"{name} must be {wt} (the model's parameter) or x's dtype {x.dtype}; got {t.dtype}")
    for name, t in (("A", A), ("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.dtype != wt:
            raise TypeError(f"{name} must be {wt} (the state and its weights stay in fp32); got {t.dtype}")
    for name, t in (("x_proj_weight", xpw), ("dt_projs_weight", dtw), ("A", A), ("D", D),
                    ("delta_bias", delta_bias)):
        if t is not None and t.device != x.device:
            raise ValueError(f"{name} is on {t.device} but x is on {x.device}; all inputs must be on one device")
    if out_dtype is None:
        out_dtype = x.dtype
    if not isinstance(out_dtype, torch.dtype) or out_dtype not in FLOAT_DTYPES:
        raise TypeError(f"out_dtype must be a floating torch.dtype or None; got {out_dtype!r}")
    if not isinstance(delta_softplus, bool):
        raise TypeError(f"delta_softplus must be a bool; got {type(delta_softplus).__name__}")
    return Ss2dCoreArgs(x, xpw, dtw, A, D, delta_bias, mode, bool(channels_last), delta_softplus, out_dtype)


# ---- accepted before: the normalised arguments without the checks --------------------------------
# dispatch.prepare calls these for arguments whose metadata (tensor types, shapes, dtypes, devices and
# requires_grad, the other arguments' types and values, grad mode) equals that of a call the check_* above
# accepted: the checks would pass again, only the normalisation remains. Each returns exactly what its
# check returns for such arguments (tests/test_prepared_calls.py compares them).
def args_selective_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False, out_dtype=None) -> ScanArgs:
    b3, c3 = B.dim() == 3, C.dim() == 3
    return ScanArgs(u, delta, A, B.unsqueeze(1) if b3 else B, C.unsqueeze(1) if c3 else C, D, delta_bias,
                    delta_softplus, u.dtype if out_dtype is None else out_dtype, b3, c3)


def args_cross_scan(x, mode="cross2d", channels_last=False) -> CrossArgs:
    _, _, H, W = map_dims(x, channels_last)
    return CrossArgs(x, H, W, mode, bool(channels_last))


def args_cross_merge(y, H, W, mode="cross2d", channels_last=False) -> CrossArgs:
    return CrossArgs(y, H, W, mode, bool(channels_last))


def args_add_layer_norm(x, branch=None, weight=None, bias=None, eps=1e-5, branch_scale=None, channels_last=False,
                        out_dtype=None) -> NormArgs:
    return NormArgs(x, branch, weight, bias, float(eps), branch_scale, bool(channels_last),
                    x.dtype if out_dtype is None else out_dtype)


def args_dwconv2d(x, weight, bias=None, act="none", channels_last=False) -> DwconvArgs:
    return DwconvArgs(x, weight, bias, act, bool(channels_last))


def args_ss2d_core(x, x_proj_weight, dt_projs_weight, A, D=None, delta_bias=None, mode="cross2d",
                   channels_last=False, delta_softplus=True, out_dtype=None) -> Ss2dCoreArgs:
    return Ss2dCoreArgs(x, x_proj_weight, dt_projs_weight, A, D, delta_bias, mode, bool(channels_last),
                        delta_softplus, x.dtype if out_dtype is None else out_dtype)
