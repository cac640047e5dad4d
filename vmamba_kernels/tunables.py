"""Each backend's tuned constants and test knobs: one frozen dataclass per backend, changed only through
a context manager (sweeps, tests), never by assigning module globals.

    import vmamba_kernels as vk
    vk.get_tuning("triton")                                  # TritonTuning(fwd_tile=512, ...)
    with vk.tuning("triton", fwd_tile=256, hw_first=False):  # another value inside the block
        ...
    with vk.tuning("cuda", scan_poison=True): ...            # the extension's knobs, through an op

The dataclasses live with their backends (vmamba_kernels/<backend>/tuning.py, cuda/__init__.py);
each field says what it sets, and reports/tuning.md says how the defaults were measured. The kernels
read their backend's current value on every call. The context manager is process-wide (not
thread-local), nests (changes apply on top of the current value) and restores the previous value on
exit. A backend may attach an `apply` hook that pushes a new value somewhere else (the cuda backend
hands its knobs to the compiled extension).
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
from types import MappingProxyType
from typing import Callable, Optional


class Tunable:
    """The current tuning of one backend (a frozen dataclass instance)."""

    def __init__(self, name: str, default, apply: Optional[Callable] = None):
        if not (dataclasses.is_dataclass(default) and type(default).__dataclass_params__.frozen):
            raise TypeError(f"the tuning of {name!r} must be a frozen dataclass instance, got {type(default).__name__}")
        self.name, self.default, self._apply = name, default, apply
        self._value = default

    def get(self):
        return self._value

    def set(self, value) -> None:
        old, self._value = self._value, value
        if self._apply is not None and value != old:
            self._apply(value, old)


_TUNABLES: dict = {}
_LOCK = threading.Lock()


def register(name: str, default, apply: Optional[Callable] = None) -> Tunable:
    """Declare backend `name`'s tuning (done by the backend package; returns the holder its kernels read)."""
    if name in _TUNABLES:
        raise ValueError(f"a tuning for {name!r} is already registered")
    t = _TUNABLES[name] = Tunable(name, default, apply)
    return t


def frozen_mapping(value) -> MappingProxyType:
    """A read-only view of a dict (for mapping fields of the frozen dataclasses)."""
    return value if isinstance(value, MappingProxyType) else MappingProxyType(dict(value))


def _find(name: str) -> Tunable:
    if name not in _TUNABLES:
        from . import dispatch  # noqa: PLC0415 (the backend packages register their tunings when loaded)

        dispatch.backends()
    if name not in _TUNABLES:
        raise ValueError(f"no tuning for {name!r}; backends with one: {', '.join(sorted(_TUNABLES))}")
    return _TUNABLES[name]


def get_tuning(name: str):
    """The current tuning (a frozen dataclass) of backend `name`."""
    return _find(name).get()


@contextlib.contextmanager
def tuning(name: str, **changes):
    """Context manager: backend `name`'s tuning with `changes` applied, restored on exit. Yields the new value."""
    t = _find(name)
    with _LOCK:
        old = t.get()
        fields = {f.name for f in dataclasses.fields(old)}
        unknown = sorted(set(changes) - fields)
        if unknown:
            raise TypeError(f"{type(old).__name__} has no field(s) {', '.join(unknown)}; "
                            f"fields: {', '.join(sorted(fields))}")
        new = dataclasses.replace(old, **changes)
        t.set(new)
    try:
        yield new
    finally:
        with _LOCK:
            t.set(old)
