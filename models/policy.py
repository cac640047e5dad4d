"""Per-layer kernel policy: which `vmamba_kernels` backend runs each op of each SS2D layer.

    KernelPolicy(selective_scan="cuda", cross_scan="triton", cross_merge="triton")

`impl` given to a model may be
- None: every op uses the dispatcher's automatic choice (or the default set with
  `vmamba_kernels.use_impl` / `set_default_impl`);
- a backend name ("cuda", "triton", "cupy", "torch", "torch_sequential"): all ops of all layers;
- a KernelPolicy: all layers; a None field means automatic choice for that op;
- a dict {glob pattern: name | KernelPolicy | None}: patterns (fnmatch) are matched against each
  SS2D layer's block name, e.g. "layers.2.blocks.3" (the op module "layers.2.blocks.3.op" also
  matches). Entries apply in dict order; a later match overrides the fields it sets (a name sets
  all three ops, a KernelPolicy sets its non-None fields). "*" matches every layer.

Resolution happens once (at construction and on `set_impl`) and yields one `ResolvedOp` per (layer,
op): the backend name passed as `impl=` to the vmamba_kernels call (None = automatic). Only the
backends the policy names are probed (imported), so impl="torch" loads neither triton, nor CuPy, nor
the compiled extension. A named backend that is unavailable in this process (no GPU, package not
installed, extension not built) is an error right there, naming the reason and the fix, unless
`fallback=True`, which replaces it by the automatic choice (and at call time retries with the
automatic choice when the named backend refuses the inputs, `vmamba_kernels.ImplRefused`);
`impl_table()` shows what ran.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass, fields
from typing import Mapping, Optional, Union

KERNEL_OPS = ("selective_scan", "cross_scan", "cross_merge")
FUSED_OPS = ("add_layer_norm", "dwconv2d", "ss2d_core")  # the fast path's fused ops; "off": reference modules
# ss2d_core replaces these three (cross scan, scan, cross merge and the projections between them) in one op
SS2D_CORE_REPLACES = ("cross_scan", "selective_scan", "cross_merge")
OPS = KERNEL_OPS + FUSED_OPS
OFF = "off"
# fused ops whose automatic choice is "off" (the torch modules), because those measured faster on the
# H200 (reports/README.md, 2026-12-02: cudnn's channels-last depthwise conv 0.21 / 0.27 ms fwd / bwd at
# VMamba-T stage 1 against 0.26 / 0.68 for the cuda kernel); naming a backend for the op still runs it
AUTO_OFF = ("dwconv2d",)
# dwconv2d left automatic resolves to this: cudnn (as AUTO_OFF says), except on small GPU maps, where the
# fused kernel runs (models.fused.dwconv_act, SMALL_DWCONV_PIXELS): there the step waits on the host, and
# cudnn's call costs more host time than the fused op's
DWCONV_AUTO = "auto-cudnn"
# impls whose fused SS2D core, left automatic, stays off (the unfused chain on that impl runs): the whole model
# measured slower with it (reports/logs/2026-12-03_issue18_core_policy_H200.md), or it is not yet measured
# there; naming the impl for ss2d_core still runs the fused op
CORE_AUTO_OFF = {"cuda": "measured slower in the whole model (reports/logs/2026-12-03_issue18_core_policy_H200.md)",
                 "triton": "not yet measured faster in the whole model"}


@dataclass(frozen=True)
class KernelPolicy:
    """Backend name per op; None = automatic choice (dispatcher priority / default impl).

    The fused ops of the fast path (add_layer_norm: residual add + LayerNorm; dwconv2d: depthwise conv +
    activation; ss2d_core: cross scan + projections + scan + cross merge, vmamba_kernels.ss2d_core) also take
    "off": the layer then runs the reference torch modules (for ss2d_core: the unfused chain of the three
    kernel ops above) for that part. ss2d_core left None is on where it can honour the three ops it
    replaces (they resolve to one impl that implements it) and that impl's fused core is not slower in the
    whole model (CORE_AUTO_OFF: today cuda and triton, so it is opt-in on the GPU)."""

    selective_scan: Optional[str] = None
    cross_scan: Optional[str] = None
    cross_merge: Optional[str] = None
    add_layer_norm: Optional[str] = None
    dwconv2d: Optional[str] = None
    ss2d_core: Optional[str] = None

    @classmethod
    def all(cls, name: Optional[str]) -> "KernelPolicy":
        """`name` for every op but dwconv2d, which stays automatic: cudnn (see AUTO_OFF), and ss2d_core, which
        stays automatic: on where `name` implements it (it follows the ops it replaces)."""
        return cls(*[None if op in AUTO_OFF or op == "ss2d_core" else name for op in OPS])

    @classmethod
    def unfused(cls, name: Optional[str] = None) -> "KernelPolicy":
        """`name` for the scan and cross ops, every fused op "off" (the reference path)."""
        return cls(name, name, name, OFF, OFF, OFF)

    def merged(self, other: "KernelPolicy") -> "KernelPolicy":
        """self overridden by the non-None fields of other."""
        return KernelPolicy(**{f.name: (getattr(other, f.name) if getattr(other, f.name) is not None
                                        else getattr(self, f.name)) for f in fields(self)})


ImplSpec = Union[None, str, KernelPolicy, Mapping[str, Union[None, str, KernelPolicy]]]


def _known_impls() -> dict:
    """{name: vmamba_kernels Backend}: the registry, no backend probed (imported) yet."""
    from vmamba_kernels import dispatch

    return {b.name: b for b in dispatch.backends()}


def _check_name(name: Optional[str], known: dict, where: str, op: Optional[str] = None) -> None:
    if name == OFF and op is not None and op not in KERNEL_OPS:
        return
    if name is not None and name not in known:
        off = f", or {OFF!r} for the fused ops {', '.join(FUSED_OPS)}" if name == OFF or op is None else ""
        raise ValueError(f"unknown impl {name!r} in {where}; known impls: {', '.join(sorted(known))} "
                         f"(or None for automatic choice{off})")


def _as_policy(value, known: dict, where: str) -> KernelPolicy:
    if value == OFF:  # a whole layer "off": its fused ops unfused, its kernels untouched
        return KernelPolicy(**{op: OFF for op in FUSED_OPS})
    if value is None or isinstance(value, str):
        _check_name(value, known, where)
        return KernelPolicy.all(value)
    if isinstance(value, KernelPolicy):
        for op in OPS:
            _check_name(getattr(value, op), known, where, op)
        return value
    raise TypeError(f"{where}: expected a backend name, a KernelPolicy or None, got {type(value).__name__}")


def policy_for_layer(spec: ImplSpec, layer: str, known: Optional[dict] = None) -> KernelPolicy:
    """The KernelPolicy that `spec` gives the SS2D layer named `layer` (e.g. 'layers.2.blocks.3')."""
    known = _known_impls() if known is None else known
    if spec is None or isinstance(spec, (str, KernelPolicy)):
        return _as_policy(spec, known, "impl")
    if not isinstance(spec, Mapping):
        raise TypeError(f"impl must be None, a backend name, a KernelPolicy or a dict of layer patterns, "
                        f"got {type(spec).__name__}")
    pol = KernelPolicy()
    for pattern, value in spec.items():
        if not isinstance(pattern, str):
            raise TypeError(f"impl dict keys must be glob patterns (str), got {pattern!r}")
        if fnmatch.fnmatchcase(layer, pattern) or fnmatch.fnmatchcase(layer + ".op", pattern):
            p = _as_policy(value, known, f"impl[{pattern!r}]")
            pol = KernelPolicy.all(value) if value is None else pol.merged(p)
    return pol


@dataclass(frozen=True)
class ResolvedOp:
    requested: Optional[str]  # what the policy asked for (None = auto)
    impl: Optional[str]  # what the call passes as impl=
    note: str = ""  # e.g. why a fallback happened


def resolve(spec: ImplSpec, layer: str, fallback: bool = False, known: Optional[dict] = None) -> dict:
    """{op: ResolvedOp} for one layer."""
    known = _known_impls() if known is None else known
    pol = policy_for_layer(spec, layer, known)
    out = {}
    for op in OPS:
        name = getattr(pol, op)
        if name is None and op in AUTO_OFF:
            out[op] = ResolvedOp(None, DWCONV_AUTO, "auto: the torch modules (cudnn), measured faster; the fused "
                                 "op on small GPU maps (host-bound)")
            continue
        if name is None:
            out[op] = ResolvedOp(None, None, "auto")
            continue
        if name == OFF:
            out[op] = ResolvedOp(OFF, OFF, "unfused: reference torch modules")
            continue
        backend = known[name]
        if op == "ss2d_core" and op not in backend.ops:  # the chain on the named impl, not another's fused op
            out[op] = ResolvedOp(name, OFF, f"{name} does not implement ss2d_core: the unfused chain")
            continue
        if op not in backend.ops and op in FUSED_OPS:  # e.g. impl="cupy": its scan, the best fused op
            out[op] = ResolvedOp(name, None, f"{name} does not implement {op}; auto")
            continue
        if op not in backend.ops:
            if fallback:
                out[op] = ResolvedOp(name, None, f"{name} does not implement {op}; auto")
                continue
            raise ValueError(f"impl {name!r} does not implement {op} (layer {layer}); "
                             f"pass fallback=True to use the automatic choice instead")
        reason = backend.unavailable_reason()  # probes (imports) this backend only
        if reason is not None and fallback:
            out[op] = ResolvedOp(name, None, f"{name} unavailable ({reason}); auto")
        elif reason is not None:
            here = [n for n, b in known.items() if op in b.ops and b.available()]  # the error path probes all
            raise RuntimeError(f"impl {name!r} (asked for {op} of layer {layer}) cannot run in this process: "
                               f"{reason}. Pass fallback=True to let the automatic choice run instead "
                               f"(model.impl_table() shows what ran), or choose an impl that is available here: "
                               f"{', '.join(here) or 'none'}")
        else:
            out[op] = ResolvedOp(name, name, "")
    if getattr(pol, "ss2d_core") is None:
        out["ss2d_core"] = _auto_ss2d_core(out, known)
    return out


def _auto_ss2d_core(out: dict, known: dict) -> ResolvedOp:
    """ss2d_core left automatic: on when the three ops it replaces resolved to one impl that implements it and
    is not in CORE_AUTO_OFF, else off (it could not honour a per-op mix, or the chain measured faster). All
    three left to the automatic choice (the dispatcher picks per call, on GPU machines the compiled one): off,
    as the GPU impls' fused cores are in CORE_AUTO_OFF."""
    impls = {out[op].impl for op in SS2D_CORE_REPLACES}
    if len(impls) != 1:
        return ResolvedOp(None, OFF, "auto: the layer's scan and cross ops run on different impls")
    (impl,) = impls
    if impl is None:
        return ResolvedOp(None, OFF, "auto: the unfused chain (no GPU impl's fused core measured faster yet; "
                                     "name one, e.g. KernelPolicy(ss2d_core='cuda'))")
    if "ss2d_core" not in known[impl].ops:
        return ResolvedOp(None, OFF, f"auto: {impl} does not implement ss2d_core (the unfused chain on {impl})")
    if impl in CORE_AUTO_OFF:
        return ResolvedOp(None, OFF, f"auto: the unfused chain on {impl}; its fused core {CORE_AUTO_OFF[impl]} "
                                     f"(KernelPolicy(ss2d_core={impl!r}) runs it)")
    return ResolvedOp(None, impl, "auto: the impl of the ops it replaces")
