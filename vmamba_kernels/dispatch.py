"""The backend contract and the registry that chooses a backend.

A backend is a `Backend` record (what it supports, how to load it) plus an implementation
module exporting the *raw* kernels below. Everything else (validation, op registration with
torch.library, autograd, fake tensors for torch.compile, choosing, explaining) is done here once,
so adding a backend means: write the kernels, declare a `Backend`, add its package to
`BACKEND_PACKAGES`.

Raw kernel contract (inputs already validated and made contiguous):

    selective_scan_fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype)
        -> (out, last_state, aux)
        u, delta: (batch, KD, L) input dtype; A: (KD, N) fp32; B, C: (batch, K, N, L) input dtype;
        D, delta_bias: (KD,) fp32 or None.  out: (batch, KD, L) out_dtype; last_state: (batch, KD, N)
        fp32; aux: whatever fp32 tensor the backward needs (shape from `Backend.scan_aux_shape`).
    selective_scan_bwd(u, delta, A, B, C, D, delta_bias, delta_softplus, dout, aux)
        -> (du, ddelta, dA, dB, dC, dD, ddelta_bias)
        dout: (batch, KD, L) contiguous; du/ddelta/dB/dC in the input dtype; dA/dD/ddelta_bias fp32;
        dD / ddelta_bias are None when D / delta_bias are None.
    cross_scan_fwd(x, mode, channels_last) -> (B, 4, C, H*W)
    cross_merge_fwd(y, H, W, mode, channels_last) -> (B, C, H, W), or (B, H, W, C) if channels_last

The backward of cross_scan is cross_merge and vice versa (they are adjoint), so a backend
provides only the two forward kernels.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from . import validate

OPS = ("selective_scan", "cross_scan", "cross_merge")

# Packages that declare backends (each exports BACKENDS: list[Backend]). Order is irrelevant:
# Backend.priority decides (lower wins).
BACKEND_PACKAGES = (
    "vmamba_kernels.cuda",
    "vmamba_kernels.triton",
    "vmamba_kernels.cupy",
    "vmamba_kernels.torch_ref",
)

_F32 = torch.float32
_HALF = (torch.float32, torch.float16, torch.bfloat16)


@dataclass
class Backend:
    """What one implementation supports, and where its raw kernels live."""

    name: str
    priority: int  # lower is preferred when impl=None
    module: str  # implementation module exporting the raw kernels (imported lazily)
    install_hint: str  # how to make it available when it is not
    ops: tuple = OPS
    dtypes: tuple = _HALF
    devices: tuple = ("cuda",)
    min_dstate: int = 1
    max_dstate: int = 64
    supports_backward: bool = True
    supports_compile: bool = True
    deterministic: bool = True
    # aux tensor the scan backward needs: (batch, KD, L, N, dtype) -> (shape, dtype)
    scan_aux_shape: Callable = lambda batch, KD, L, N, dtype: ((0,), _F32)
    # optional extra limits: (op, args) -> list of reasons
    extra_reasons: Optional[Callable] = None
    doc: str = ""
    _impl: object = field(default=None, repr=False)
    _reason: object = field(default="unprobed", repr=False)

    # ---- availability -------------------------------------------------------------------
    def unavailable_reason(self) -> Optional[str]:
        """None when the backend can be used in this process, else why not and how to fix it.

        The module imports: its own probe names the blocker and the fix (the install hint would be
        wrong advice, the package being installed). It does not: the import error and the install
        hint, preceded by "no CUDA device is visible" for a GPU-only backend on a machine without one
        (installing the package would not be enough there)."""
        if self._reason == "unprobed":
            try:
                mod = importlib.import_module(self.module)
                probe = getattr(mod, "unavailable_reason", None)
                reason = probe() if probe is not None else None
                self._impl = mod if reason is None else None
                self._reason = reason
            except ImportError as e:  # missing package or compiled extension
                reason = f"cannot import {self.module} ({e}); {self.install_hint}"
                if "cpu" not in self.devices and not torch.cuda.is_available():
                    reason = (f"no CUDA device is visible (impl {self.name!r} runs on NVIDIA GPUs only: use it on "
                              f"a machine with one); besides, {reason}")
                self._reason = reason
        return self._reason

    def available(self) -> bool:
        return self.unavailable_reason() is None

    def impl(self):
        reason = self.unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"impl {self.name!r} is not available: {reason}")
        return self._impl

    # ---- support check for given inputs ----------------------------------------------------
    def why_not(self, op: str, args) -> list:
        """Reasons this backend cannot run `op` on these (validated) inputs; empty when it can."""
        reasons = []
        if op not in self.ops:
            return [f"does not implement {op}"]
        reason = self.unavailable_reason()
        if reason is not None:
            reasons.append(f"unavailable: {reason}")
        if args.device.type not in self.devices:
            reasons.append(f"runs on {'/'.join(self.devices)} tensors, not {args.device.type}")
        if args.dtype not in self.dtypes:
            names = ", ".join(str(d).replace("torch.", "") for d in self.dtypes)
            reasons.append(f"supports dtypes {names}, not {str(args.dtype).replace('torch.', '')}")
        if op == "selective_scan":
            if not (self.min_dstate <= args.N <= self.max_dstate):
                reasons.append(f"supports d_state {self.min_dstate}..{self.max_dstate}, not N={args.N}")
            if args.out_dtype not in self.dtypes:
                reasons.append(f"cannot write out_dtype {args.out_dtype}")
        if args.requires_grad() and not self.supports_backward:
            reasons.append("has no backward, and these inputs require grad")
        if self.extra_reasons is not None and not reasons:
            reasons.extend(self.extra_reasons(op, args))
        return reasons


# ---- registry --------------------------------------------------------------------------------
_REGISTRY: dict = {}
_LOADED = False
_LOCK = threading.Lock()


def register_backend(backend: Backend) -> Backend:
    if backend.name in _REGISTRY:
        raise ValueError(f"a backend named {backend.name!r} is already registered")
    _REGISTRY[backend.name] = backend
    from . import _library  # noqa: PLC0415 (cycle: _library needs the registry types)

    _library.define_ops(backend)
    return backend


def _load_registry() -> dict:
    global _LOADED
    if not _LOADED:
        with _LOCK:
            if not _LOADED:
                for pkg in BACKEND_PACKAGES:
                    for b in importlib.import_module(pkg).BACKENDS:
                        register_backend(b)
                _LOADED = True
    return _REGISTRY


def backends(op: Optional[str] = None) -> list:
    """All registered backends (for `op`, if given), best priority first."""
    regs = sorted(_load_registry().values(), key=lambda b: (b.priority, b.name))
    return [b for b in regs if op is None or op in b.ops]


def get_backend(name: str) -> Backend:
    regs = _load_registry()
    if name not in regs:
        raise ValueError(f"unknown impl {name!r}; known impls: {', '.join(sorted(regs))}")
    return regs[name]


# ---- default impl ------------------------------------------------------------------------------
_DEFAULT = threading.local()


def _env_default() -> Optional[str]:
    """$VMAMBA_KERNELS_IMPL ("auto" or empty = automatic choice); a name no backend has is an error
    that names the variable (it is set far from the call that fails)."""
    name = os.environ.get("VMAMBA_KERNELS_IMPL", "").strip()
    if not name or name == "auto":
        return None
    regs = _load_registry()
    if name not in regs:
        raise ValueError(f"$VMAMBA_KERNELS_IMPL={name!r} names no impl; known impls: {', '.join(sorted(regs))} "
                         f"(or 'auto'); fix or unset the variable")
    return name


def get_default_impl() -> Optional[str]:
    """The process-wide default (set_default_impl / use_impl / $VMAMBA_KERNELS_IMPL), or None = auto."""
    stack = getattr(_DEFAULT, "stack", None)
    if stack:
        return stack[-1]
    return _GLOBAL_DEFAULT[0] or _env_default()


_GLOBAL_DEFAULT = [None]


def set_default_impl(name: Optional[str]) -> None:
    """Set the impl used when a call passes impl=None (None restores automatic choice)."""
    if name is not None:
        get_backend(name)
    _GLOBAL_DEFAULT[0] = name


@contextlib.contextmanager
def use_impl(name: Optional[str]):
    """Context manager: calls with impl=None inside use `name` (thread-local)."""
    if name is not None:
        get_backend(name)
    stack = getattr(_DEFAULT, "stack", None)
    if stack is None:
        stack = _DEFAULT.stack = []
    stack.append(name)
    try:
        yield
    finally:
        stack.pop()


# ---- choosing ------------------------------------------------------------------------------------
_LAST = threading.local()


def last_choice(op: str) -> Optional[str]:
    """The backend `choose` picked for `op` most recently in this thread (eager calls only: nothing is
    recorded while torch.compile traces), or None. Models use it to show what actually ran."""
    return getattr(_LAST, "choice", {}).get(op)


def _record(op: str, backend: Backend) -> Backend:
    if not torch.compiler.is_compiling():
        if not hasattr(_LAST, "choice"):
            _LAST.choice = {}
        _LAST.choice[op] = backend.name
    return backend


def _reason_table(op: str, args, candidates: Sequence[Backend]) -> str:
    lines = []
    for b in candidates:
        r = b.why_not(op, args)
        lines.append(f"  {b.name}: " + ("can run" if not r else "; ".join(r)))
    return "\n".join(lines)


def choose(op: str, args, impl: Optional[str]) -> Backend:
    """The backend that runs `op` on `args`: `impl` if named (error with reasons if it can't),
    else the default impl if one is set, else the best-priority backend with no reasons."""
    name = impl if impl is not None else get_default_impl()
    if name is not None:
        b = get_backend(name)
        reasons = b.why_not(op, args)
        if reasons:
            ok = [c.name for c in backends(op) if not c.why_not(op, args)]
            raise RuntimeError(
                f"impl {name!r} cannot run {op} on {args.describe()}: {'; '.join(reasons)}. "
                f"Impls that can: {', '.join(ok) if ok else 'none'}."
            )
        return _record(op, b)
    for b in backends(op):
        if not b.why_not(op, args):
            return _record(op, b)
    raise RuntimeError(f"no impl can run {op} on {args.describe()}:\n{_reason_table(op, args, backends(op))}")
