"""Triton-free sizing shared by the Backend declaration and the kernels (importing this module
must not import triton): the scan's chunk length is a function of (L, N) only, so the aux tensor
of chunk-end states that the forward writes has a shape the backward (and torch.compile's fake
tensors) can know in advance."""
from __future__ import annotations

import os

import torch



def interpret() -> bool:
    """Triton's interpreter is on (read at each call: tests may set it after this import)."""
    return os.environ.get("TRITON_INTERPRET") == "1"


FWD_TILE = 4096  # elements of one (BLOCK_D, NP, T) fp32 register tile, forward
BWD_TILE = 2048  # backward (more live tiles)


def np2(x: int) -> int:
    """Next power of two >= x (1 for x <= 1)."""
    return 1 << max(0, int(x) - 1).bit_length()


CHUNK_OVERRIDE: dict = {}  # (L, N) -> T, for the tuning bench only
# Measured best chunk length for VMamba stage shapes (L, N) -> T (H100 sweep of _bench.py)
TUNED_T: dict = {}


def chunk_len(L: int, N: int) -> int:
    """Steps per chunk (a power of two >= 16); fwd and bwd must agree."""
    if (L, N) in CHUNK_OVERRIDE:
        return CHUNK_OVERRIDE[(L, N)]
    if (L, N) in TUNED_T and not interpret():
        return TUNED_T[(L, N)]
    cap = 32 if interpret() else 256
    return max(16, min(np2(L), cap, FWD_TILE // np2(N)))


def n_chunks(L: int, N: int) -> int:
    T = chunk_len(L, N)
    return max(1, (int(L) + T - 1) // T)


def scan_aux_shape(batch, KD, L, N, dtype):
    """aux = state at the end of every chunk, (batch, KD, n_chunks, N) fp32."""
    return (batch, KD, n_chunks(L, N), N), torch.float32
