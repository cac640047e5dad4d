"""Launch geometry of the CuPy backend's scan kernels, shared by the Backend declaration (aux shape,
importable without CuPy) and kernels.py. One warp scans one (batch, channel) row in chunks of
32 * items(L) steps; the forward saves each chunk's starting state for the backward."""
from __future__ import annotations

ITEMS_CHOICES = (2, 4, 8)  # steps per lane; every value here has a template instantiation
BWD_MAX_WARPS = 8          # channels per backward block (one B/C group per block)


def items_for(L: int) -> int:
    """Steps per lane for sequence length L: the smallest chunk that covers L, at most 32 * 8."""
    for it in ITEMS_CHOICES:
        if L <= 32 * it:
            return it
    return ITEMS_CHOICES[-1]


def chunk_len(L: int) -> int:
    return 32 * items_for(L)


def n_chunks(L: int) -> int:
    return max(1, -(-L // chunk_len(L)))


def scan_aux_shape(batch, KD, L, N, dtype):
    """aux = the state at the start of every chunk: (batch, KD, n_chunks, N) float32."""
    import torch

    return (batch, KD, n_chunks(L), N), torch.float32


def bwd_warps(G: int) -> int:
    """Channels (warps) per backward block: the largest power of two <= 8 dividing the group size G,
    so a block never straddles two B/C groups and the dB/dC block sum stays inside one group."""
    w = BWD_MAX_WARPS
    while w > 1 and G % w:
        w //= 2
    return w


def fwd_warps(items: int) -> int:
    return 8 if items <= 4 else 4
