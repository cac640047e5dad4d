"""Uninitialised output and scratch tensors for the Python backends' raw kernels (triton, cupy).

`empty_many(like, (shape, dtype), ...)` -> a tuple of contiguous tensors on `like`'s device, one per (shape, dtype)
pair, made in one call of the compiled extension's host helper (csrc/common/empty_many.h). torch.empty parses its
arguments in Python for every tensor, and a raw kernel makes two to seven of them per call; one call of the helper
costs less than half as much (reports/logs/2026-12-07_empty_many_cpu.md).
Where the extension is missing or predates the helper, torch.empty per tensor does the same.
"""
from __future__ import annotations

import torch


def torch_empty_many(like: torch.Tensor, *specs) -> tuple:
    """empty_many through torch.empty (the fallback, and the reference the tests compare with)."""
    dev = like.device
    return tuple(torch.empty(shape, dtype=dtype, device=dev) for shape, dtype in specs)


def _native():
    try:
        from vmamba_kernels import _C  # noqa: PLC0415
    except Exception:  # noqa: BLE001 (not built, built for another torch, a CPU torch without the library)
        return None
    return getattr(_C, "empty_many", None)


def empty_many(like: torch.Tensor, *specs) -> tuple:
    """Tensors of the given (shape, dtype) pairs on like's device, contiguous, not initialised. The first call finds
    the extension's helper and rebinds this module's name to it (callers use `_alloc.empty_many`)."""
    global empty_many
    fn = _native() or torch_empty_many
    empty_many = fn
    return fn(like, *specs)
