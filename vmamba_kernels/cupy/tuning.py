"""The cupy backend's knobs (`CupyTuning`): the cuda extension's tuning / test knobs (csrc/common/knobs.h,
same names and meaning), since the cupy backend launches the extension's kernels by the same rules
(plan.py). Importable without CuPy (the Backend declaration reads the aux shape here).

Change values with `vmamba_kernels.tuning("cupy", field=value)`; None leaves a knob as the environment
sets it (VMAMBA_<FIELD>, read at each call), and an unset one takes the built-in rule.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Optional

from .._environ import getenv, raw_values
from ..tunables import register
from . import plan


@dataclass(frozen=True)
class CupyTuning:
    scan_seq_min_rows: Optional[int] = None  # rows from which 1 < d_state <= 16 takes the row-per-thread kernels
    scan_bwd_splits: Optional[int] = None  # force the backward's channel split count
    scan_packed_rows: Optional[int] = None  # rows per warp of the lane-packed d_state = 1 forward (L <= 256)
    cross_max_vec: Optional[int] = None  # cap on the cross kernels' vector width (elements)
    cross_smem_kb: Optional[int] = None  # shared memory per block the cross planner may use
    cross_path: Optional[str] = None  # "direct" forces the direct cross kernels
    cross_cl_tiled: Optional[str] = None  # channels-last: "0" plane kernels, "1" tiled, "b" banded scan
    cross_cl_band: Optional[int] = None  # rows (columns) per band of the banded scan
    cross_cl_tile: Optional[str] = None  # "THxTW" or "THxTWxPC": fixed tile (and channels per block)


TUNING = register("cupy", CupyTuning())


_NAMES = tuple(f.name for f in fields(CupyTuning))
_ENV_KEYS = tuple("VMAMBA_" + n.upper() for n in _NAMES)
_KNOBS: dict = {}


def _environment() -> tuple:
    # every raw call asks for the knobs: the variables' raw values as the cache key (vmamba_kernels._environ)
    return raw_values(_ENV_KEYS)


def knobs() -> plan.Knobs:
    """The current knobs as the extension would see them (strings; "" = unset): the tuning's value where it
    sets one, else the environment's, read at each call; the Knobs record is cached per tuning value and
    environment (every raw call asks)."""
    t = TUNING.get()
    env = _environment()
    key = (id(t), env)
    hit = _KNOBS.get(key)
    if hit is not None and hit[0] is t:
        return hit[1]
    out = {}
    for name, ekey in zip(_NAMES, _ENV_KEYS):
        v = getattr(t, name)
        out[name] = (getenv(ekey) or "") if v is None else str(v)
    k = plan.Knobs(**out)
    if len(_KNOBS) >= 256:
        _KNOBS.clear()
    _KNOBS[key] = (t, k)
    return k


def scan_aux_shape(batch, KD, L, N, dtype):
    """aux = the state entering every chunk of the extension's kernels: (batch, KD, ceil(L / kChunk), N) fp32."""
    import torch

    return (batch, KD, plan.num_chunks(L), N), torch.float32
