"""Input validation shared by every backend: one place, messages that name the argument.

Backends never re-check what is checked here; they receive the normalised arguments
(`ScanArgs`, `CrossArgs`) and may add only their own limits through `Backend.why_not`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

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


@dataclass
class ScanArgs:
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

    @property
    def dtype(self) -> torch.dtype:
        return self.u.dtype

    @property
    def device(self) -> torch.device:
        return self.u.device

    def tensors(self):
        return [t for t in (self.u, self.delta, self.A, self.B, self.C, self.D, self.delta_bias) if t is not None]

    def requires_grad(self) -> bool:
        return torch.is_grad_enabled() and any(t.requires_grad for t in self.tensors())

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
    if tuple(delta.shape) != tuple(u.shape):
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
        if tuple(t.shape) != (KD,):
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
    for name, t in (("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.device != u.device:
            raise ValueError(f"{name} is on {t.device} but u is on {u.device}; all inputs must be on one device")
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
class CrossArgs:
    """Normalised cross-scan / cross-merge arguments."""

    x: torch.Tensor
    H: int
    W: int
    mode: str
    channels_last: bool

    @property
    def dtype(self) -> torch.dtype:
        return self.x.dtype

    @property
    def device(self) -> torch.device:
        return self.x.device

    def tensors(self):
        return [self.x]

    def requires_grad(self) -> bool:
        return torch.is_grad_enabled() and self.x.requires_grad

    def describe(self) -> str:
        return f"x {tuple(self.x.shape)} {self.x.dtype} on {self.x.device}, H={self.H}, W={self.W}, mode {self.mode}"


def check_cross_scan(x, mode="cross2d", channels_last=False) -> CrossArgs:
    x = _need_tensor("x", x)
    check_mode(mode)
    layout = "(B, H, W, C)" if channels_last else "(B, C, H, W)"
    _need_rank("x", x, (4,), f"a 4-D map {layout}")
    H, W = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[3])
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
