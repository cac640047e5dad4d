"""Inference casts of the parameters, kept across forwards (opt-in: VSSM.set_weight_cache(True)).

Under autocast every forward casts each float32 weight to the autocast dtype again (autocast's own cache
lives for one autocast region), and every SS2D layer computes A = -exp(A_logs) again: 70 of a VMamba-T
inference forward's 636 top-level operators (bench.host_step), each a dispatch and, on the GPU, a kernel
launch; at batch 1 the forward waits on that host work (reports/logs/2026-12-03_host_work_H200.md). With the
cache on, a module keeps the casts it made in its last inference call and reuses them while every source
tensor keeps its version counter and storage: an optimizer step, load_state_dict, `with torch.no_grad():
p.copy_(...)` or moving the model all make it cast again.

The contract, and why the cache is opt-in: writes through `p.data` (`p.data.copy_(...)`) do not bump the
version counter, so a model whose weights are changed that way *while the cache is on* keeps computing with
the old casts. Turn the cache on for serving and evaluation; `set_weight_cache(False)` drops every cast.
Only inference (grad disabled) under plain eager execution uses it; training, torch.compile, fake tensors
and FLOP counters never see it.
"""
from __future__ import annotations

from typing import Callable, Optional

import torch

from vmamba_kernels._library import eager_allowed

from .fused import autocast_dtype

_SLOT = "_weight_cache_entry"


def usable(x: torch.Tensor) -> bool:
    """Whether a call on input x may use cached casts: inference (grad disabled), plain eager execution."""
    return not torch.is_grad_enabled() and eager_allowed(x)


def cached(owner, tensors: tuple, dtype: torch.dtype, make: Optional[Callable] = None) -> tuple:
    """make(*tensors) (default: each tensor cast to dtype, None kept), computed once and kept on `owner` while
    every tensor keeps its version counter and storage (and dtype is the same)."""
    key = (dtype,) + tuple(None if t is None else (t._version, t.data_ptr(), t.device) for t in tensors)
    hit = owner.__dict__.get(_SLOT)
    if hit is not None and hit[0] == key:
        return hit[1]
    with torch.no_grad():
        val = make(*tensors) if make is not None else tuple(None if t is None else t.to(dtype) for t in tensors)
    owner.__dict__[_SLOT] = (key, val)
    return val


def params(module, x: torch.Tensor) -> tuple:
    """(weight, bias) for a call of `module` on x: the kept autocast casts when its `weight_cache` is on and
    the call may use them, else the parameters themselves (autocast then casts them as usual)."""
    if module.weight_cache:
        dt = autocast_dtype(x)
        if dt is not None and dt != module.weight.dtype and usable(x):
            return cached(module, (module.weight, module.bias), dt)
    return module.weight, module.bias


def clear(owner) -> None:
    """Drop the casts kept on `owner`."""
    owner.__dict__.pop(_SLOT, None)
