"""The CuPy backend's launch geometry (`CupyTuning`), shared by the Backend declaration (aux shape,
importable without CuPy) and launch.py. One warp scans one (batch, channel) row in chunks of
32 * items(L) steps; the forward saves each chunk's starting state for the backward.

Change values with `vmamba_kernels.tuning("cupy", field=value)`.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..tunables import register

# steps per lane with a template instantiation in csrc/selective_scan.cu (each compiled module holds them
# all; tests/test_cupy.py checks the file's CI block lists the same)
INSTANTIATED_ITEMS = (2, 4, 8)


@dataclass(frozen=True)
class CupyTuning:
    # steps per lane: the smallest of these whose chunk covers L, else the last (a subset of INSTANTIATED_ITEMS)
    items_choices: tuple = INSTANTIATED_ITEMS
    bwd_max_warps: int = 8  # channels per backward block (one B/C group per block)
    fwd_warps_short: int = 8  # rows per forward block when items <= 4
    fwd_warps_long: int = 4  # rows per forward block when items is 8

    def __post_init__(self):
        if not self.items_choices or not set(self.items_choices) <= set(INSTANTIATED_ITEMS):
            raise ValueError(f"items_choices must be a non-empty subset of {INSTANTIATED_ITEMS}, got {self.items_choices}")


TUNING = register("cupy", CupyTuning())


def items_for(L: int) -> int:
    """Steps per lane for sequence length L: the smallest chunk that covers L, at most 32 * 8."""
    choices = TUNING.get().items_choices
    for it in choices:
        if L <= 32 * it:
            return it
    return choices[-1]


def chunk_len(L: int) -> int:
    return 32 * items_for(L)


def n_chunks(L: int) -> int:
    return max(1, -(-L // chunk_len(L)))


def scan_aux_shape(batch, KD, L, N, dtype):
    """aux = the state at the start of every chunk: (batch, KD, n_chunks, N) float32."""
    import torch

    return (batch, KD, n_chunks(L), N), torch.float32


def bwd_warps(G: int) -> int:
    """Channels (warps) per backward block: the largest power of two <= bwd_max_warps dividing the group
    size G, so a block never straddles two B/C groups and the dB/dC block sum stays inside one group."""
    w = TUNING.get().bwd_max_warps
    while w > 1 and G % w:
        w //= 2
    return w


def fwd_warps(items: int) -> int:
    t = TUNING.get()
    return t.fwd_warps_short if items <= 4 else t.fwd_warps_long
