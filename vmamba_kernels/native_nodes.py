"""C++ autograd nodes around a Python backend's raw kernels (issue #20, item 1).

A call whose inputs require grad records one graph node. Through Python's torch.autograd.Function (the eager twins of
_library.py) that node cost more host time than the kernels at VMamba's small stages run
(reports/logs/2026-12-07_gpu_call71.md, reports/logs/2026-12-07_gpu_call74.md). The compiled
extension records the cuda backend's nodes in C++ (csrc/autograd/autograd.cpp); the same C++ nodes also take a Python
backend's raw kernels (dispatch.py's contract), registered once per backend with `_C.register_py_kernels`, and call
them with the GIL held, forward and backward. The node does what the Python formulas do (same tensors saved, outputs
marked non-differentiable, gradients not materialised; tests/test_native_autograd_py.py compares them bitwise).

`autograd_ops(backend)` -> {library key: function with the custom op's arguments and outputs}, as the cuda module's
`autograd_ops`: dispatch's prepared calls with grad take them (Backend.native_autograd). Empty where the compiled
extension is missing or predates register_py_kernels, and with VMAMBA_NATIVE_AUTOGRAD=0 (read once per backend).
"""
from __future__ import annotations

import functools

from ._environ import getenv

# library key -> (the extension's function, the raw kernels it needs)
_NODES = {
    "scan_fwd": ("selective_scan_fwd_pyautograd", ("selective_scan_fwd", "selective_scan_bwd")),
    "cross_scan": ("cross_scan_pyautograd", ("cross_scan_fwd", "cross_merge_fwd")),
    "cross_merge": ("cross_merge_pyautograd", ("cross_scan_fwd", "cross_merge_fwd")),
    "add_layer_norm_fwd": ("add_layer_norm_fwd_pyautograd", ("add_layer_norm_fwd", "add_layer_norm_bwd")),
    "dwconv2d_fwd": ("dwconv2d_fwd_pyautograd", ("dwconv2d_fwd", "dwconv2d_bwd")),
}
# register_py_kernels' arguments, in order
_KERNELS = ("selective_scan_fwd", "selective_scan_bwd", "cross_scan_fwd", "cross_merge_fwd", "add_layer_norm_fwd",
            "add_layer_norm_bwd", "dwconv2d_fwd", "dwconv2d_bwd")


def _extension():
    try:
        from vmamba_kernels import _C  # noqa: PLC0415
    except Exception:  # noqa: BLE001 (not built, built for another torch, a CPU torch without the library)
        return None
    return _C if hasattr(_C, "register_py_kernels") else None


def _kernel(backend, name: str):
    """A caller of the backend's raw kernel `name` that looks the module up at each call, so that a module swapped in
    later (bench.overhead's mock kernels) is the one called, as the Python formulas' bodies do."""
    def call(*args):
        return getattr(backend._impl or backend.impl(), name)(*args)

    call.__name__ = call.__qualname__ = f"{backend.name}.{name}"
    return call


def autograd_ops(backend, force: bool = False) -> dict:
    """The C++ nodes around `backend`'s raw kernels, for every op of it whose raw kernels its module exports; {} where
    unavailable or turned off (force: regardless of VMAMBA_NATIVE_AUTOGRAD, for tests)."""
    if not force and getenv("VMAMBA_NATIVE_AUTOGRAD") == "0":
        return {}
    C = _extension()
    if C is None:
        return {}
    mod = backend.impl()
    keys = [k for k in backend.library_ops if k in _NODES and all(hasattr(mod, n) for n in _NODES[k][1])]
    if not keys:
        return {}
    ks = C.register_py_kernels(*(_kernel(backend, n) if hasattr(mod, n) else None for n in _KERNELS),
                               bool(getattr(backend, "mixed_branch", False)))
    return {k: functools.partial(getattr(C, _NODES[k][0]), ks) for k in keys}
