"""Record what the SS2D mixers hand their selective scan, for analysis tools (bench.attnmap).

    with models.record_scans(model, ["layers.2.blocks.1"]) as records:
        model(x)
    r = records[0]          # ScanRecord: u, delta, A, B, C, D, delta_bias, delta_softplus, y, H, W, mode

Every SS2D forward type routes its kernel calls through one method (`_KernelCalls._call`); inside the
`with` block that method is shadowed, on the chosen module instances only, by one that also keeps
(detached) the selective scan's arguments and output and the map size of the cross merge that
follows. A chosen block that runs the fused ss2d_core op is switched to its unfused chain inside the
`with` block (the fused op never materialises the scan's inputs); the chain computes the same
function on the same backends, and the fused op is restored on exit, also when the forward raises.
"""
from __future__ import annotations

import contextlib
import fnmatch
import inspect
from dataclasses import dataclass
from typing import Iterable, Optional

import torch
import torch.nn as nn

import vmamba_kernels as vk

from .policy import OFF
from .ss2d import _KernelCalls

_SCAN_SIG = inspect.signature(vk.selective_scan)
_MERGE_SIG = inspect.signature(vk.cross_merge)


@dataclass
class ScanRecord:
    """One selective-scan call of one SS2D module (tensors detached, as the kernel received them).

    layer: block name, e.g. 'layers.2.blocks.1'. u, delta (batch, K*D, L); A (K*D, N); B, C
    (batch, K, N, L); D, delta_bias (K*D,) or None; y the kernel's output (batch, K*D, L). Route k
    holds channels k*D .. (k+1)*D - 1; H, W, mode: the map and route layout of the cross merge that
    folded y back (reference.route_index(mode, H, W) gives the pixel each route position reads)."""

    layer: str
    u: torch.Tensor
    delta: torch.Tensor
    A: torch.Tensor
    B: torch.Tensor
    C: torch.Tensor
    D: Optional[torch.Tensor]
    delta_bias: Optional[torch.Tensor]
    delta_softplus: bool
    y: torch.Tensor
    H: Optional[int] = None
    W: Optional[int] = None
    mode: Optional[str] = None


def _detach(t):
    return t.detach() if isinstance(t, torch.Tensor) else t


def _recorder(op: _KernelCalls, name: str, records: list):
    inner = op._call  # the bound method of the class

    def call(fn, impl, *args, **kwargs):
        out = inner(fn, impl, *args, **kwargs)
        if fn is vk.selective_scan:
            a = _SCAN_SIG.bind(*args, **kwargs)
            a.apply_defaults()
            g = {k: _detach(v) for k, v in a.arguments.items()}
            y = out[0] if g["return_last_state"] else out
            records.append(ScanRecord(name, g["u"], g["delta"], g["A"], g["B"], g["C"], g["D"], g["delta_bias"],
                                      bool(g["delta_softplus"]), y.detach()))
        elif fn is vk.cross_merge and records and records[-1].layer == name and records[-1].H is None:
            a = _MERGE_SIG.bind(*args, **kwargs)
            a.apply_defaults()
            records[-1].H, records[-1].W, records[-1].mode = int(a.arguments["H"]), int(a.arguments["W"]), \
                a.arguments["mode"]
        return out

    return call


def ss2d_modules(model: nn.Module):
    """(block name, SS2D module) for every mixer in `model` (the '.op' suffix dropped: 'layers.0.blocks.1')."""
    for name, m in model.named_modules():
        if isinstance(m, _KernelCalls):
            yield (name[: -len(".op")] if name.endswith(".op") else name), m


@contextlib.contextmanager
def record_scans(model: nn.Module, layers: Optional[Iterable[str]] = None):
    """Context manager yielding a list that fills with one ScanRecord per selective-scan call of the
    SS2D modules named in `layers` (fnmatch patterns on block names such as 'layers.2.blocks.1';
    None = every mixer). A pattern that matches no mixer is an error naming the existing ones."""
    found = list(ss2d_modules(model))
    if not found:
        raise ValueError(f"{type(model).__name__} has no SS2D mixer to record")
    patterns = None if layers is None else ([layers] if isinstance(layers, str) else list(layers))
    chosen = []
    for name, op in found:
        if patterns is None or any(fnmatch.fnmatchcase(name, p) for p in patterns):
            chosen.append((name, op))
    for p in patterns or ():
        if not any(fnmatch.fnmatchcase(n, p) for n, _ in found):
            names = [n for n, _ in found]
            raise ValueError(f"layers pattern {p!r} matches no SS2D block; blocks are {names[0]!r} .. {names[-1]!r}")
    records: list = []
    fused = {}
    try:
        for name, op in chosen:
            op._call = _recorder(op, name, records)  # instance attribute shadows the method
            op.chain_autograd = False  # the composition of public ops, whose calls the recorder sees
            if getattr(op, "impl_ss2d_core", OFF) != OFF:
                fused[name] = op.impl_ss2d_core
                op.impl_ss2d_core = OFF
        yield records
    finally:
        for name, op in chosen:
            op.__dict__.pop("_call", None)
            op.__dict__.pop("chain_autograd", None)
            if name in fused:
                op.impl_ss2d_core = fused[name]
