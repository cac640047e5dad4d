"""The backend contract, the registry, and the choice of a backend for a call.

A backend is a `Backend` record (what it supports, how to load it) plus an implementation
module exporting the *raw* kernels below. Everything else (validation, op registration with
torch.library, autograd, fake tensors for torch.compile, choosing, explaining) is done once,
generically, from the op table (op_table.py), so adding a backend means: write the kernels, declare
a `Backend`, add its package to `BACKEND_PACKAGES`. Registering a backend builds its torch.library
ops and keeps them on the Backend (`Backend.library_ops`; `vmamba_kernels.ops(name)`), and
`choose()` hands back an `OpCall` that runs them.

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

    ss2d_core_fwd(x, xdbl, dt_w, A, D, delta_bias, mode, channels_last, delta_softplus, out_dtype) -> y
    ss2d_core_bwd(x, xdbl, dt_w, A, D, delta_bias, dy, mode, channels_last, delta_softplus)
        -> (dx, dxdbl, ddt_w, dA, dD, ddelta_bias)
        the fused SS2D core (SS2D_CORE_CONTRACT.md): xdbl (B, L, K, R+2N) is the x projection of every
        route at every pixel, made once by the op's composition (_library.define_ss2d_core), which also
        adds the projection's part of dx and dx_proj_weight; dx here is the gradient through the scan's
        u only, fp32. A backend's ss2d_core d_state limit: `Backend.ss2d_max_dstate`.
"""
from __future__ import annotations

import contextlib
import functools
import importlib
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

import torch

from . import native_nodes
from ._environ import getenv
from ._library import _PLAIN, _plain_context, _plain_eager, apply_of, body_of, eager_allowed, eager_twin
from .op_table import BASE_OPS, OPS, define_library_ops, spec

# Packages that declare backends (each exports BACKENDS: list[Backend]). Order is irrelevant:
# Backend.priority decides (lower wins).
BACKEND_PACKAGES = (
    "vmamba_kernels.cuda",
    "vmamba_kernels.triton",
    "vmamba_kernels.cupy",
    "vmamba_kernels.pytorch",
)

_F32 = torch.float32
_HALF = (torch.float32, torch.float16, torch.bfloat16)


class ImplRefused(RuntimeError):
    """A backend cannot run an op on these inputs.

    impl: the backend that was asked for (None when the automatic choice found none); op: the op;
    reasons: why not (one string each; for impl None, one line per backend); can: the impls that can
    run these inputs."""

    def __init__(self, impl: Optional[str], op: str, reasons: Sequence[str], can: Sequence[str], where: str):
        self.impl, self.op, self.reasons, self.can, self.where = impl, op, list(reasons), list(can), where
        if impl is None:
            msg = f"no impl can run {op} on {where}:\n" + "\n".join(f"  {r}" for r in self.reasons)
        else:
            msg = (f"impl {impl!r} cannot run {op} on {where}: {'; '.join(self.reasons)}. "
                   f"Impls that can: {', '.join(self.can) if self.can else 'none'}.")
        super().__init__(msg)

    def __reduce__(self):
        return type(self), (self.impl, self.op, self.reasons, self.can, self.where)


@dataclass
class Backend:
    """What one implementation supports, and where its raw kernels live."""

    name: str
    priority: int  # lower is preferred when impl=None
    module: str  # implementation module exporting the raw kernels (imported lazily)
    install_hint: str  # how to make it available when it is not
    ops: tuple = BASE_OPS  # ops it implements (op_table.py); a new op is opt-in
    dtypes: tuple = _HALF
    devices: tuple = ("cuda",)
    min_dstate: int = 1
    max_dstate: int = 64
    supports_backward: bool = True
    supports_compile: bool = True  # checked: refused while torch.compile traces when False
    deterministic: bool = True  # backward bitwise reproducible; checked under torch.use_deterministic_algorithms
    # aux tensor the scan backward needs: (batch, KD, L, N, dtype) -> (shape, dtype)
    scan_aux_shape: Callable = lambda batch, KD, L, N, dtype: ((0,), _F32)
    # optional extra limits: (op, args) -> list of reasons
    extra_reasons: Optional[Callable] = None
    # add_layer_norm: reads a 16-bit branch on a float32 x as is (else it is converted to x's dtype first)
    mixed_branch: bool = False
    # selective_scan's raw kernels read B and C with any batch and group strides (dense (N, L) planes, the same
    # strides for both): models.chain passes its x projection's slices in place instead of copying them
    strided_bc: bool = False
    # dwconv2d: the odd kernel sizes it implements (None: any)
    dwconv_kernel_sizes: Optional[tuple] = None
    # ss2d_core: the largest d_state it runs (None: max_dstate, the scan's)
    ss2d_max_dstate: Optional[int] = None
    # its prepared calls look for the compiled extension's argument key at the process's first one (`_find_native_key`):
    # GPU backends other than cuda (which installs the key when it loads); False keeps a process that uses only
    # this backend (torch) from loading the extension
    native_key: bool = False
    doc: str = ""
    # filled by register_backend: {key: torch.library custom op}, {key: its eager twin}, {key: the twin's bare
    # body}, {key: the twin's autograd apply} and {op: OpCall}; `prepared` caches PreparedCalls per (op, kind)
    library_ops: dict = field(default_factory=dict, repr=False)
    eager_ops: dict = field(default_factory=dict, repr=False)
    body_ops: dict = field(default_factory=dict, repr=False)
    grad_ops: dict = field(default_factory=dict, repr=False)
    calls: dict = field(default_factory=dict, repr=False)
    prepared: dict = field(default_factory=dict, repr=False)
    _impl: object = field(default=None, repr=False)
    _reason: object = field(default="unprobed", repr=False)
    _native: Optional[dict] = field(default=None, repr=False)

    # ---- availability -------------------------------------------------------------------
    def unavailable_reason(self) -> Optional[str]:
        """None when the backend can be used in this process, else why not and how to fix it.

        The module imports: its own probe names the blocker and the fix (the install hint would be
        wrong advice, the package being installed). It does not: the import error and the install
        hint, preceded by "no CUDA device is visible" for a GPU-only backend on a machine without one
        (installing the package would not be enough there)."""
        if self._reason == "unprobed":
            if _REGISTRY.get(self.name) is self:
                return _probe_registered(self.name)  # safe while torch.compile traces
            self._probe()
        return self._reason

    def _probe(self) -> Optional[str]:
        try:
            mod = importlib.import_module(self.module)
            probe = getattr(mod, "unavailable_reason", None)
            reason = probe() if probe is not None else None
            missing = [k for op in self.ops for k in spec(op).kernels if not hasattr(mod, k)]
            if reason is None and missing:  # a declaration error, not an install problem: no hint
                self._reason = f"{self.module} does not define the raw kernel(s) {', '.join(dict.fromkeys(missing))}"
            else:
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

    def native_autograd(self) -> dict:
        """{library key: function recording the op's autograd node in C++}: the module's own `autograd_ops` where it
        exports them (the cuda extension's; {} when turned off), else, for a backend with `native_key`, the compiled
        extension's nodes around its raw kernels (native_nodes.py, made once), else {}."""
        own = getattr(self.impl(), "autograd_ops", None)
        if own is not None:
            return own
        if self._native is None:
            self._native = native_nodes.autograd_ops(self) if self.native_key else {}
        return self._native

    def native_bodies(self) -> dict:
        """{library key: compiled function that is the op's body for inputs with elements}: the module's
        `body_ops_native` (the cuda extension's entry points, called without the body's Python wrappers), else {}.
        Dispatch's prepared calls without grad take them."""
        return getattr(self.impl(), "body_ops_native", None) or {}

    # ---- support check for given inputs ----------------------------------------------------
    def why_not(self, op: str, args) -> list:
        """Reasons this backend cannot run `op` on these (validated) inputs, in this context (grad,
        torch.compile tracing, deterministic mode); empty when it can."""
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
        reasons.extend(spec(op).limits(self, args))
        grad = args.requires_grad()
        if grad and not self.supports_backward:
            reasons.append("has no backward, and these inputs require grad")
        if grad and not self.deterministic and torch.are_deterministic_algorithms_enabled():
            reasons.append("its backward is not deterministic, and torch.use_deterministic_algorithms(True) is set")
        if not self.supports_compile and torch.compiler.is_compiling():
            reasons.append("does not support torch.compile, which is tracing this call")
        if self.extra_reasons is not None and not reasons:
            reasons.extend(self.extra_reasons(op, args))
        return reasons


class OpCall:
    """One backend's op, ready to run validated arguments: what `choose()` returns.
    `OpCall(args)` runs the op (op_table.OpSpec.run on the backend's torch.library ops, or in plain eager
    execution on their eager twins, which skip torch.library's per-call cost: _library.py)."""

    __slots__ = ("backend", "spec")

    def __init__(self, backend: Backend, op_spec):
        self.backend, self.spec = backend, op_spec

    @property
    def name(self) -> str:
        return self.backend.name

    def __call__(self, args):
        b = self.backend
        return self.spec.run(b.eager_ops if eager_allowed(args.tensors()[0]) else b.library_ops, args)

    def __repr__(self) -> str:
        return f"OpCall({self.spec.name!r} on {self.backend.name!r})"

    def prepared(self, args) -> "PreparedCall":
        """This op for calls whose arguments have the metadata of `args` (dispatch.prepare's key: tensor types,
        requires_grad, grad mode): the eager path it will take is decided here, once."""
        b = self.backend
        first = args.tensors()[0]
        if type(first) not in _PLAIN:
            kind = "library"  # a tensor subclass: torch.library's ops always
        elif not args.requires_grad():
            kind = "body_native" if first.numel() > 0 and b.native_bodies() else "body"
        elif first.numel() > 0 and b.native_autograd():
            kind = "grad_native"  # the ops' autograd recorded in C++ (inputs with elements)
        else:
            kind = "grad"
        # contiguous inputs (the key holds every tensor's contiguity): the run without .contiguous() calls
        dense = (self.spec.run_dense is not None and all(t.is_contiguous() for t in args.tensors())
                 and key_encodes_contiguity())
        call = b.prepared.get((self.spec.name, kind, dense))
        if call is None:
            if kind == "grad_native":  # its native functions where it has them, the Python formulas elsewhere
                ops = {**b.grad_ops, **b.native_autograd()}
            elif kind == "body_native":
                ops = {**b.body_ops, **b.native_bodies()}
            else:
                ops = {"library": b.library_ops, "grad": b.grad_ops, "body": b.body_ops}[kind]
            call = b.prepared[(self.spec.name, kind, dense)] = PreparedCall(
                b, self.spec, ops, self.spec.run_dense if dense else self.spec.run, kind, dense)
        return call


class PreparedCall(OpCall):
    """An OpCall for the arguments of one prepared key (dispatch.prepare): in plain eager execution it runs the
    twins' bodies (no input requires grad) or their autograd applies straight away, skipping the per-call
    test of the twins (which reads every input's requires_grad), or, with grad, the backend's own autograd
    functions where its module exports them (`autograd_ops`: {library key: function with the custom op's
    arguments and outputs}, e.g. the cuda extension's, recorded in C++); else torch.library's ops."""

    __slots__ = ("ops", "run", "kind", "dense")

    def __init__(self, backend: Backend, op_spec, ops: dict, run=None, kind: str = "", dense: bool = False):
        super().__init__(backend, op_spec)
        self.ops = ops
        self.run = op_spec.run if run is None else run  # OpSpec.run, or run_dense for a key of contiguous inputs
        self.kind, self.dense = kind, dense  # OpCall.prepared's kind; whether run is run_dense

    def __call__(self, args):
        # only dispatch.prepare hands out prepared calls, after its torch.compile check in the same public call
        return self.run(self.ops if _plain_eager() else self.backend.library_ops, args)

    def prepared(self, args) -> "PreparedCall":
        return self.backend.calls[self.spec.name].prepared(args)


# ---- registry --------------------------------------------------------------------------------
_REGISTRY: dict = {}
_LOADED = False
_LOCK = threading.Lock()


def register_backend(backend: Backend) -> Backend:
    if backend.name in _REGISTRY:
        raise ValueError(f"a backend named {backend.name!r} is already registered")
    unknown = [op for op in backend.ops if op not in OPS]
    if unknown:
        raise ValueError(f"backend {backend.name!r} declares unknown op(s) {', '.join(unknown)}; ops are {', '.join(OPS)}")
    backend.library_ops = define_library_ops(backend)
    backend.eager_ops = {k: eager_twin(op) for k, op in backend.library_ops.items()}
    backend.body_ops = {k: body_of(op) for k, op in backend.library_ops.items()}
    backend.grad_ops = {k: apply_of(op) for k, op in backend.library_ops.items()}
    backend.calls = {op: OpCall(backend, spec(op)) for op in backend.ops}
    _REGISTRY[backend.name] = backend
    clear_choice_cache()
    return backend


def _probe_registered(name: str) -> Optional[str]:
    """Probe a registered backend once (imports its module). Under torch.compile this runs at trace time
    and its answer is a constant: dynamo does not trace the import (a first probe during tracing would
    otherwise break the graph)."""
    return _REGISTRY[name]._probe()


# torch.compiler.assume_constant_result(_probe_registered), minus its `import torch._dynamo` (which
# imports triton: building a model with impl="torch" must not); tests check the attribute is still it
_probe_registered._dynamo_marked_constant = True


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
class _ThreadDefault(threading.local):
    def __init__(self):
        self.stack = []  # use_impl's names, innermost last (an attribute always present: a cheap per-call read)


_DEFAULT = _ThreadDefault()


def _env_default() -> Optional[str]:
    """$VMAMBA_KERNELS_IMPL ("auto" or empty = automatic choice); a name no backend has is an error
    that names the variable (it is set far from the call that fails). Read at every public call."""
    name = (getenv("VMAMBA_KERNELS_IMPL") or "").strip()
    if not name or name == "auto":
        return None
    regs = _load_registry()
    if name not in regs:
        raise ValueError(f"$VMAMBA_KERNELS_IMPL={name!r} names no impl; known impls: {', '.join(sorted(regs))} "
                         f"(or 'auto'); fix or unset the variable")
    return name


def get_default_impl() -> Optional[str]:
    """The process-wide default (set_default_impl / use_impl / $VMAMBA_KERNELS_IMPL), or None = auto."""
    stack = _DEFAULT.stack
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
    stack = _DEFAULT.stack
    stack.append(name)
    try:
        yield
    finally:
        stack.pop()


# ---- choosing ------------------------------------------------------------------------------------
class _ThreadChoices(threading.local):
    def __init__(self):
        self.choice = {}


_LAST = _ThreadChoices()


def last_choice(op: str) -> Optional[str]:
    """The backend `choose` picked for `op` most recently in this thread (eager calls only: nothing is
    recorded while torch.compile traces), or None. Models use it to show what actually ran."""
    return _LAST.choice.get(op)


def _record(op: str, backend: Backend) -> OpCall:
    if not torch.compiler.is_compiling():
        _LAST.choice[op] = backend.name
    return backend.calls[op]


# Choices made, per everything a choice depends on (`_choice_key`): a call with shapes seen before skips
# the backends' support checks. Backends' limits (why_not, OpSpec.limits, extra_reasons) must therefore
# read only what the key holds: the args' shapes, dtypes, device and non-tensor fields, grad, the
# deterministic flag (never tensor values or strides). Not used while torch.compile traces.
_CHOICES: dict = {}
_CHOICES_MAX = 4096


def clear_choice_cache() -> None:
    """Forget the cached choices (registering a backend does; call it after changing a registered
    backend's availability or limits by hand)."""
    _CHOICES.clear()
    _forget_prepared()
    for b in _REGISTRY.values():
        b.prepared.clear()


# Public calls prepared before, per the metadata of their arguments (`arg_key`): a call whose arguments have
# the same tensor types, shapes, dtypes, devices and requires_grad, the same other arguments (type and value),
# the same grad mode, deterministic flag, impl and registry as one that passed its check and found a backend
# skips both (its check reads nothing else) and only normalises its arguments (OpSpec.fast).
_PREPARED: dict = {}


def _arg_meta(v):
    if isinstance(v, torch.Tensor):
        return type(v), v.shape, v.dtype, v.device, v.requires_grad, v.is_contiguous()
    return type(v), v


# The compiled extension's arg_key (csrc/common/arg_key.h): the same metadata as `_arg_meta` over all the
# arguments, as one bytes object (None for an argument it does not encode: then `_arg_meta` keys the call).
# Building and hashing the Python tuples costs about 5 us of a public call; the bytes about 0.5 (bench.overhead,
# path "prepare": 2.0 against 7.1 us for the scan on the CI VM). vmamba_kernels/cuda/extension.py installs it when
# it loads; a process calling triton or cupy looks for it at their first prepared call (`_find_native_key`,
# Backend.native_key). `_untried`: not looked for yet; None: the Python key.
def _untried(args):
    return None


_NATIVE_KEY: list = [_untried]


def extension_function(name: str):
    """The compiled extension's host helper `name` (arg_key, launch_key), or None where the extension is not built,
    does not load (built for another torch, a CPU torch) or predates it. Importing the extension registers
    torch.ops.vmamba_cuda, as loading the cuda backend does."""
    try:
        return getattr(importlib.import_module("vmamba_kernels._C"), name, None)
    except Exception:  # noqa: BLE001
        return None


def _find_native_key() -> None:
    """Key calls of every backend natively once the compiled extension is there, even where the cuda backend is
    never used (impl="triton" or "cupy" only); else the Python key from now on. Tried once, at the first prepared
    call of a backend with `native_key`."""
    fn = extension_function("arg_key")
    if _NATIVE_KEY[0] is _untried:  # the cuda backend may have installed it meanwhile
        _NATIVE_KEY[0] = fn
        if fn is not None:
            use_fast_call(getenv("VMAMBA_FAST_CALL") != "0")


def _keys_contiguity(fn) -> bool:
    """Whether native key `fn` tells a contiguous tensor from a non-contiguous one of the same shape (an extension
    built before its key held contiguity does not: its prepared calls then keep the .contiguous() calls)."""
    t = torch.empty(2, 2)
    try:
        return fn((t,)) != fn((t.t(),))
    except Exception:  # noqa: BLE001
        return False


_KEY_CONTIGUITY: dict = {}  # native key function -> whether it encodes contiguity


def key_encodes_contiguity() -> bool:
    """Whether the key of prepared calls now holds every tensor's contiguity (the Python key does)."""
    fn = _NATIVE_KEY[0]
    if fn in (None, _untried):
        return True
    got = _KEY_CONTIGUITY.get(fn)
    if got is None:
        got = _KEY_CONTIGUITY[fn] = _keys_contiguity(fn)
    return got


def native_arg_key() -> bool:
    """Whether prepared calls are keyed by the compiled extension's arg_key now."""
    return _NATIVE_KEY[0] not in (None, _untried)


def use_native_arg_key(fn) -> None:
    """Key prepared calls by `fn(args) -> bytes | None` (None: the Python key) from now on."""
    _NATIVE_KEY[0] = fn
    _forget_prepared()
    if fn is not None:
        use_fast_call(getenv("VMAMBA_FAST_CALL") != "0")


def arg_key(args: tuple):
    """The argument part of a prepared call's key: the native bytes key when the extension is loaded and encodes
    every argument, else a tuple of `_arg_meta`."""
    fn = _NATIVE_KEY[0]
    if fn is not None:
        k = fn(args)
        if k is not None:
            return k
    return tuple(map(_arg_meta, args))


_deterministic = torch._C._get_deterministic_algorithms  # torch.are_deterministic_algorithms_enabled, minus its wrapper


def prepare(op: str, impl: Optional[str], args: tuple):
    """(OpCall, normalised args) for a public call of `op` with positional `args` (those of the op's check):
    the check and the backend choice once per argument metadata in eager execution; every call under
    torch.compile. Raises what the check and `choose` raise (refusals are never cached)."""
    s = spec(op)
    if s.fast is None or torch.compiler.is_compiling():
        a = s.check(*args)
        return choose(op, a, impl), a
    name = impl if impl is not None else get_default_impl()
    try:
        key = (op, name, len(_REGISTRY), torch.is_grad_enabled(), _deterministic(),
               arg_key(args))
        call = _PREPARED.get(key)
    except TypeError:  # an unhashable argument: nothing cached (the check decides what it is)
        a = s.check(*args)
        return choose(op, a, impl), a
    if call is None:
        a = s.check(*args)
        call = choose(op, a, impl).prepared(a)
        if _NATIVE_KEY[0] is _untried and call.backend.native_key:  # stored under the key found now
            _find_native_key()
            key = key[:-1] + (arg_key(args),)
        if len(_PREPARED) >= _CHOICES_MAX:
            _forget_prepared()
        _PREPARED[key] = call
        if _FAST_PUT[0] is not None:
            _fast_put(op, name, args, call)
        return call, a
    _LAST.choice[op] = call.backend.name
    return call, s.fast(*args)


def _forget_prepared() -> None:
    _PREPARED.clear()
    if _FAST_CLEAR[0] is not None:
        _FAST_CLEAR[0]()


# ---- the prepared call in one C++ call -------------------------------------------------------------------------------
# csrc/autograd/fast_call.cpp: `fast_call(op id, impl name, *args)` runs a public call whose argument metadata
# `prepare` checked before (the same key: op, name, registry size, grad mode, deterministic flag, arg_key), or returns
# NotImplemented; the public functions (api.py) try it first, outside torch.compile. `prepare` puts every prepared
# call in its table: natively (the extension's C++ entry, no Python) where the prepared call runs the extension's own
# functions (`_fast_kernel_set`), else as the prepared call's run on its eager ops of `OpSpec.fast(*args)` (a Python
# backend's raw kernels as bodies, the Python formulas, a mock module's kernels: the Python path minus the key and its
# lookup). Host time it saves: reports/logs/2026-12-08_fast_call.md.
FAST_OPS = ("selective_scan", "cross_scan", "cross_merge", "add_layer_norm", "dwconv2d",
            "ss2d_core")  # op ids: fast_call.cpp's order
_FAST_IDS = {op: i for i, op in enumerate(FAST_OPS)}
# argument positions that must be a bool for a native entry (its C++ reads a flag as `is True`; a call with an int flag
# gets a Python entry, whose normaliser converts it)
_FAST_FLAGS = {"selective_scan": (7,), "cross_scan": (2,), "cross_merge": (4,), "add_layer_norm": (6,),
               "dwconv2d": (4,)}


def _no_fast_call(op, impl, *args):
    return NotImplemented


FAST_CALL = [_no_fast_call]  # the public functions call FAST_CALL[0]
_FAST_PUT: list = [None]
_FAST_CLEAR: list = [None]  # the extension's fast_call_clear, once fast_call was on


def _thread_choices() -> dict:
    """The calling thread's dict of last choices (fast_call records its hits in it)."""
    return _LAST.choice


def use_fast_call(on: bool = True) -> bool:
    """Public calls prepared before run in one C++ call (on, where the compiled extension has fast_call) or through
    the Python dispatch (off; also VMAMBA_FAST_CALL=0 when the extension's key is installed). Returns whether it is
    on now."""
    fast, put = extension_function("fast_call"), extension_function("fast_call_put")
    _forget_prepared()
    if on and fast is not None and put is not None:
        extension_function("fast_call_setup")(_REGISTRY, _thread_choices)
        FAST_CALL[0], _FAST_PUT[0], _FAST_CLEAR[0] = fast, put, extension_function("fast_call_clear")
        return True
    FAST_CALL[0], _FAST_PUT[0] = _no_fast_call, None
    return False


def fast_call_on() -> bool:
    return _FAST_PUT[0] is not None


def fast_call_stats() -> tuple:
    """(native hits, Python hits, misses) of the extension's fast_call since the process started; (0, 0, 0) without
    it."""
    fn = extension_function("fast_call_stats")
    return tuple(fn()) if fn is not None else (0, 0, 0)


def _fast_kernel_set(call: PreparedCall, key: str):
    """The kernel set (ops.h) of the extension's function that `call` runs for library key `key`, or None where it
    runs something else: the cuda module's native autograd ops and entry points as bodies (-1), a Python backend's
    C++ nodes (the set its partial carries)."""
    if not call.dense or call.kind not in ("grad_native", "body_native"):
        return None
    f = call.ops.get(key)
    ks = getattr(f, "fast_kernel_set", None)  # a Python wrapper that declares it (the cuda add + LayerNorm body)
    if ks is not None:
        return ks
    if isinstance(f, functools.partial) and len(f.args) == 1 and type(f.args[0]) is int and not f.keywords:
        return f.args[0] if f.func in _py_node_functions() else None
    return -1 if f in _cuda_functions() else None


@functools.lru_cache(maxsize=1)
def _py_node_functions() -> tuple:
    C = importlib.import_module("vmamba_kernels._C")
    return tuple(getattr(C, n) for n in ("selective_scan_fwd_pyautograd", "cross_scan_pyautograd",
                                         "cross_merge_pyautograd", "add_layer_norm_fwd_pyautograd",
                                         "dwconv2d_fwd_pyautograd") if hasattr(C, n))


@functools.lru_cache(maxsize=1)
def _cuda_functions() -> tuple:
    C = importlib.import_module("vmamba_kernels._C")
    return tuple(getattr(C, n) for n in ("selective_scan_fwd_autograd", "cross_scan_autograd", "cross_merge_autograd",
                                         "add_layer_norm_fwd_autograd", "dwconv2d_fwd_autograd", "selective_scan_fwd",
                                         "cross_scan", "cross_merge", "dwconv2d_fwd") if hasattr(C, n))


_FAST_KEYS = {"selective_scan": "scan_fwd", "cross_scan": "cross_scan", "cross_merge": "cross_merge",
              "add_layer_norm": "add_layer_norm_fwd", "dwconv2d": "dwconv2d_fwd"}


def _fast_put(op: str, name: Optional[str], args: tuple, call: PreparedCall) -> None:
    i = _FAST_IDS.get(op)
    if i is None:
        return
    ks = None
    if (op in _FAST_KEYS and all(type(args[j]) is bool for j in _FAST_FLAGS[op])
            and not (op == "selective_scan" and (args[3].dim() != 4 or args[4].dim() != 4))):  # 3-D B / C: a view
        ks = _fast_kernel_set(call, _FAST_KEYS[op])
    # a Python entry runs the prepared call's run on its eager ops (fast_call has checked plain eager execution,
    # which is all PreparedCall.__call__ adds)
    _FAST_PUT[0](i, name, args, ks, call.backend.name, call.spec.fast, functools.partial(call.run, call.ops))


def _choice_key(op: str, name: Optional[str], args):
    # len(_REGISTRY): tests add and remove backends by hand; the default impl is in `name`
    return (op, name, len(_REGISTRY), args.requires_grad(), torch.are_deterministic_algorithms_enabled(),
            args.choice_key())


def choose(op: str, args, impl: Optional[str]) -> OpCall:
    """The backend op that runs `op` on `args` (call it with `args`): `impl` if named (ImplRefused with
    the reasons if it can't), else the default impl if one is set, else the best-priority backend with
    no reasons. Eager calls cache the choice per `_choice_key` (shapes, dtypes, device, flags, grad,
    deterministic mode, impl); refusals are never cached."""
    name = impl if impl is not None else get_default_impl()
    if torch.compiler.is_compiling():
        return _choose(op, args, name)
    key = _choice_key(op, name, args)
    try:
        call = _CHOICES.get(key)
    except TypeError:  # an args record with an unhashable field: no caching
        return _choose(op, args, name)
    if call is None:
        call = _choose(op, args, name)
        if len(_CHOICES) >= _CHOICES_MAX:
            _CHOICES.clear()
        _CHOICES[key] = call
    _LAST.choice[op] = call.backend.name
    return call


def _choose(op: str, args, name: Optional[str]) -> OpCall:
    if name is not None:
        b = get_backend(name)
        reasons = b.why_not(op, args)
        if reasons:
            can = [c.name for c in backends(op) if not c.why_not(op, args)]
            raise ImplRefused(name, op, reasons, can, args.describe())
        return _record(op, b)
    table = []
    for b in backends(op):
        reasons = b.why_not(op, args)
        if not reasons:
            return _record(op, b)
        table.append(f"{b.name}: {'; '.join(reasons)}")
    raise ImplRefused(None, op, table, [], args.describe())
