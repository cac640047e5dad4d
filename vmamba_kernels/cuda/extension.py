"""Raw kernels of impl "cuda": thin calls into the compiled extension `vmamba_kernels._C`.

Importing `vmamba_kernels._C` registers the ops torch.ops.vmamba_cuda.{selective_scan_fwd,
selective_scan_bwd, cross_scan, cross_merge, ss2d_core_fwd, ss2d_core_bwd, build_info, set_knob, knobs}
(C++: TORCH_LIBRARY_FRAGMENT + CUDA impls, sources under csrc/). Signatures follow the raw-kernel contract in vmamba_kernels/dispatch.py;
inputs arrive validated and contiguous. This module raises ImportError when the extension is not built,
which the Backend turns into an "unavailable" reason with the install hint. Loading it hands the current
`vmamba_kernels.tuning("cuda")` knobs to the extension.
"""
from __future__ import annotations

import contextlib
from typing import Optional

import torch

from .._environ import getenv
from .._library import norm_body_native


def _skip_note() -> str:
    """Why `pip install` did not build the extension, as setup.py recorded it ("" when it did not)."""
    import os  # noqa: PLC0415

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "_build_skipped.txt")
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


try:
    from vmamba_kernels import _C  # noqa: F401  (loads the ops into torch.ops.vmamba_cuda)
except ImportError as e:  # not built, or built against another torch
    import importlib.util  # noqa: PLC0415

    if importlib.util.find_spec("vmamba_kernels._C") is None:
        _note = _skip_note()
        raise ImportError("the compiled extension vmamba_kernels._C is not built"
                          + (f" ({_note})" if _note else "")) from e
    raise ImportError(f"the compiled extension vmamba_kernels._C is built but does not load ({e}); "
                      "rebuild it against this torch") from e

_ops = torch.ops.vmamba_cuda

if hasattr(_C, "arg_key"):  # public calls keyed natively from now on (csrc/common/arg_key.h; older builds: Python)
    from vmamba_kernels import dispatch as _dispatch  # noqa: PLC0415

    _dispatch.use_native_arg_key(_C.arg_key)


def _has_op(name: str) -> bool:
    try:
        getattr(_ops, name)
        return True
    except (AttributeError, RuntimeError):
        return False


def unavailable_reason() -> Optional[str]:
    """None when the extension is loaded and a CUDA device is visible; else why not."""
    if not torch.cuda.is_available():
        return ("no CUDA device is visible (the extension vmamba_kernels._C is built, but its kernels run on NVIDIA "
                "GPUs only: use it on a machine with one; the torch impl runs on the CPU)")
    missing = [op for op in ("cross_scan", "cross_merge", "set_knob") if not _has_op(op)]
    if missing:
        return f"the extension vmamba_kernels._C was built without {', '.join(missing)}"
    if _SCAN_CHUNK is None:
        return "the extension vmamba_kernels._C was built from older sources (no scan_chunk in build_info)"
    return None


# The ops' entry points bound directly into vmamba_kernels._C (csrc/module.cpp, csrc/ops.h): the same C++ functions as
# torch.ops.vmamba_cuda.*, without the dispatcher's per-call argument parsing (reports/logs/
# 2026-12-06_direct_bindings.md). An extension built before them (or without an op's sources) has none: those calls
# go through torch.ops.
_DIRECT = {name: getattr(_C, name) for name in (
    "selective_scan_fwd", "selective_scan_bwd", "cross_scan", "cross_merge", "add_layer_norm_fwd",
    "add_layer_norm_infer", "add_layer_norm_bwd", "dwconv2d_fwd", "dwconv2d_bwd", "ss2d_core_fwd", "ss2d_core_bwd")
    if hasattr(_C, name)}
_ENTRY = dict(_DIRECT)  # name -> the callable the raw functions below use (filled lazily from torch.ops)

# Ops whose autograd the extension records in C++ (csrc/autograd/autograd.cpp), by library key: dispatch's prepared
# calls with inputs that require grad take `autograd_ops` instead of the Python autograd.Function, whose per-call cost
# exceeded the small kernels' (reports/logs/2026-12-07_gpu_call71.md). tests/test_cuda_native_autograd.py checks them
# bitwise against the Python formulas; VMAMBA_CUDA_NATIVE_AUTOGRAD=0 turns them off.
NATIVE_AUTOGRAD_OPS = {key: getattr(_C, name) for key, name in (
    ("scan_fwd", "selective_scan_fwd_autograd"), ("cross_scan", "cross_scan_autograd"),
    ("cross_merge", "cross_merge_autograd"), ("dwconv2d_fwd", "dwconv2d_fwd_autograd"),
    ("add_layer_norm_fwd", "add_layer_norm_fwd_autograd")) if hasattr(_C, name)}
autograd_ops = NATIVE_AUTOGRAD_OPS if getenv("VMAMBA_CUDA_NATIVE_AUTOGRAD") != "0" else {}
# The entry points that are the ops' bodies as they stand (same arguments and outputs as the custom ops' bodies in
# _library.py, for inputs with elements), by library key: dispatch's prepared calls without grad call them straight
# away instead of the body, its Python checks and the wrappers below (two to four Python frames a call).
body_ops_native = {key: _DIRECT[name] for key, name in (
    ("scan_fwd", "selective_scan_fwd"), ("cross_scan", "cross_scan"), ("cross_merge", "cross_merge"),
    ("dwconv2d_fwd", "dwconv2d_fwd")) if name in _DIRECT}
if "add_layer_norm_fwd" in _DIRECT:
    body_ops_native["add_layer_norm_fwd"] = norm_body_native(_DIRECT["add_layer_norm_fwd"], mixed=True)
    # the same rule and kernels as the C++ add + LayerNorm with kernel set -1 (the cuda entry points), which
    # dispatch's fast_call runs for this body's prepared calls
    body_ops_native["add_layer_norm_fwd"].fast_kernel_set = -1
# models/norm_node.py's add + LayerNorm node with its from_y choice, recorded in C++ (taken where autograd_ops holds
# the add + LayerNorm's): (x, branch, weight, bias, branch_scale, eps, channels_last, out_dtype, from_y) -> (y, s,
# mean, rstd), s empty without a branch
NATIVE_ADD_NORM_NODE = getattr(_C, "add_layer_norm_node_autograd", None)


def _call(name: str):
    f = _ENTRY.get(name)
    if f is None:
        f = _ENTRY[name] = _op(name)
    return f


@contextlib.contextmanager
def dispatcher_calls():
    """Within: the raw functions call torch.ops.vmamba_cuda.* (the dispatcher) instead of the direct bindings
    (bench.overhead's path "raw_dispatcher" compares the two; tests compare their results)."""
    saved = dict(_ENTRY)
    _ENTRY.clear()
    try:
        yield
    finally:
        _ENTRY.clear()
        _ENTRY.update(saved)


def has_direct_bindings() -> bool:
    """Whether the extension has the direct bindings (built from sources with csrc/ops.h)."""
    return bool(_DIRECT)


def _op(name: str):
    if not _has_op(name):
        raise RuntimeError(f"vmamba_kernels._C was built without torch.ops.vmamba_cuda.{name} (an older build, or "
                           "VMAMBA_KERNELS_ONLY excluded its sources); rebuild with all sources: "
                           "`pip install --no-build-isolation -e .`")
    return getattr(_ops, name)


def build_info() -> dict:
    """What the extension was compiled with: archs, builder, CUDA runtime version, scan chunk."""
    return dict(_C.build_info())


_SCAN_CHUNK = build_info().get("scan_chunk")  # None: built from sources older than this module
_SCAN_CHUNK = None if _SCAN_CHUNK is None else int(_SCAN_CHUNK)


def scan_chunk() -> int:
    """Time steps per chunk of the scan kernels (csrc/selective_scan/selective_scan.h, kChunk): the aux
    tensor is (batch, KD, ceil(L / scan_chunk), N)."""
    if _SCAN_CHUNK is None:
        raise RuntimeError("vmamba_kernels._C was built from older sources (no scan_chunk in build_info); rebuild it: "
                           "`pip install -e . --no-build-isolation`")
    return _SCAN_CHUNK


def set_knobs(new, old=None) -> None:
    """Hand a CudaTuning's knobs to the extension (only those that differ from `old`)."""
    from . import knob_values  # noqa: PLC0415

    if not _has_op("set_knob"):
        raise RuntimeError("vmamba_kernels._C was built from older sources (no set_knob op); rebuild it: "
                           "`pip install -e . --no-build-isolation`")
    before = knob_values(old) if old is not None else {}
    for name, value in knob_values(new).items():
        if before.get(name) != value:
            _ops.set_knob(name, value)


def knobs() -> dict:
    """{knob: value} as the extension has them now ("" = unset)."""
    return dict(kv.split("=", 1) for kv in _ops.knobs().split(";"))


def selective_scan_fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype):
    out, last_state, aux = _call("selective_scan_fwd")(u, delta, A, B, C, D, delta_bias, bool(delta_softplus), out_dtype)
    return out, last_state, aux


def selective_scan_bwd(u, delta, A, B, C, D, delta_bias, delta_softplus, dout, aux):
    du, ddelta, dA, dB, dC, dD, ddelta_bias = _call("selective_scan_bwd")(
        u, delta, A, B, C, D, delta_bias, bool(delta_softplus), dout, aux)
    # the op returns empty tensors for absent D / delta_bias; the contract wants None
    return (du, ddelta, dA, dB, dC, dD if D is not None else None,
            ddelta_bias if delta_bias is not None else None)


def cross_scan_fwd(x, mode, channels_last):
    return _call("cross_scan")(x, mode, bool(channels_last))


def cross_merge_fwd(y, H, W, mode, channels_last):
    return _call("cross_merge")(y, int(H), int(W), mode, bool(channels_last))


def add_layer_norm_fwd(x, branch, weight, bias, branch_scale, eps, channels_last, out_dtype):
    return tuple(_call("add_layer_norm_fwd")(x, branch, weight, bias, branch_scale, float(eps),
                                                bool(channels_last), out_dtype))


def add_layer_norm_infer(x, branch, weight, bias, branch_scale, eps, channels_last, out_dtype):
    """(y, s) of add_layer_norm_fwd without the statistics (not computed into memory, not allocated): for calls
    that will not run the backward (models.norm_node in inference)."""
    return tuple(_call("add_layer_norm_infer")(x, branch, weight, bias, branch_scale, float(eps), bool(channels_last),
                                             out_dtype))


def add_layer_norm_bwd(dy, ds, s, weight, bias, mean, rstd, branch_scale, has_branch, channels_last, x_dtype,
                       from_y=False):
    """from_y: `s` is the norm's output y (dy's dtype) and xhat = (y - bias) / weight (mean unused)."""
    dx, dbranch, dweight, dbias = _call("add_layer_norm_bwd")(
        dy, ds, s, weight, bias, None if from_y else mean, rstd, branch_scale, bool(has_branch), bool(channels_last),
        x_dtype, bool(from_y))
    # the op returns empty tensors for an absent branch / bias; the contract wants None
    return dx, (dbranch if has_branch else None), dweight, (dbias if bias is not None else None)


def dwconv2d_fwd(x, weight, bias, act, channels_last):
    return _call("dwconv2d_fwd")(x, weight, bias, act, bool(channels_last))


def dwconv2d_bwd(dy, x, weight, bias, act, channels_last):
    dx, dweight, dbias = _call("dwconv2d_bwd")(dy, x, weight, bias, act, bool(channels_last))
    return dx, dweight, (dbias if bias is not None else None)


def ss2d_core_fwd(x, xdbl, dt_w, A, D, delta_bias, mode, channels_last, delta_softplus, out_dtype):
    """The fused SS2D core's forward (csrc/ss2d_core/): y in x's layout, dtype out_dtype."""
    return _call("ss2d_core_fwd")(x, xdbl, dt_w, A, D, delta_bias, mode, bool(channels_last), bool(delta_softplus),
                                out_dtype)


def ss2d_core_bwd(x, xdbl, dt_w, A, D, delta_bias, dy, mode, channels_last, delta_softplus):
    """(dx through the scan's u only, dxdbl, ddt_w, dA, dD, ddelta_bias), all float32; deterministic."""
    dx, dxdbl, ddt_w, dA, dD, ddelta_bias = _call("ss2d_core_bwd")(
        x, xdbl, dt_w, A, D, delta_bias, dy, mode, bool(channels_last), bool(delta_softplus))
    # the op returns empty tensors for absent D / delta_bias; the contract wants None
    return (dx, dxdbl, ddt_w, dA, dD if D is not None else None,
            ddelta_bias if delta_bias is not None else None)


def _apply_current_tuning() -> None:
    from . import TUNING, CudaTuning  # noqa: PLC0415

    if TUNING.get() != CudaTuning() and _has_op("set_knob"):
        set_knobs(TUNING.get())


_apply_current_tuning()
