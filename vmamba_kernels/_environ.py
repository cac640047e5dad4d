"""`getenv(name)`: os.environ.get(name) for variables read on every call; `raw_values(names)`: a cache key of several.

os.environ.get encodes the name on each call (about 1.5 us on the CI VM); on POSIX os.environ keeps its values in
a dict of encoded names, which os.environ's writes (monkeypatch.setenv included) update, and which this reads
directly (0.07 us). Elsewhere (Windows) it is os.environ.get.
"""
from __future__ import annotations

import os
from typing import Optional

_DATA = getattr(os.environ, "_data", None)
_ENCODE = getattr(os.environ, "encodekey", None)
_DECODE = getattr(os.environ, "decodevalue", None)
if not isinstance(_DATA, dict) or _ENCODE is None or _DECODE is None or os.name == "nt":
    _DATA = None
_KEYS: dict = {}  # name -> its encoded form


def getenv(name: str) -> Optional[str]:
    """The variable's value, or None when it is not set."""
    if _DATA is None:
        return os.environ.get(name)
    key = _KEYS.get(name)
    if key is None:
        key = _KEYS[name] = _ENCODE(name)
    raw = _DATA.get(key)
    return None if raw is None else _DECODE(raw)


_ENCODED: dict = {}  # names tuple -> their encoded forms


def raw_values(names: tuple) -> tuple:
    """A tuple that changes whenever one of the variables `names` changes (is set, unset or given another value):
    their undecoded values, one C-level lookup each (a fraction of nine getenv calls: d6a1556)."""
    if _DATA is None:
        return tuple(map(os.environ.get, names))
    keys = _ENCODED.get(names)
    if keys is None:
        keys = _ENCODED[names] = tuple(map(_ENCODE, names))
    return tuple(map(_DATA.get, keys))
