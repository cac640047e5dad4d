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


# Elements of one (BLOCK_D, NP, T) fp32 register tile. The H100 sweeps preferred small tiles:
# forward BLOCK_D 8 x T 64 with 2 warps; backward 8 x 64 with 4 warps before its chunk loop was
# pipelined, 4 x 64 with 2 warps after (2.49 vs 2.74 ms on VMamba-T stage 1, 2026-11-27). The N = 1
# backward has its own shape (BLOCK_D 2, one warp: selective_scan._bwd_config), so BWD_TILE sizes
# the d_state > 1 backward only.
FWD_TILE = 512
BWD_TILE = 256


def np2(x: int) -> int:
    """Next power of two >= x (1 for x <= 1)."""
    return 1 << max(0, int(x) - 1).bit_length()


CHUNK_OVERRIDE: dict = {}  # (L, N) -> T, for the tuning bench only
# Measured best chunk length for VMamba stage shapes (L, N) -> T (H100 sweep of bench/tune_triton.py)
TUNED_T: dict = {}


def chunk_len(L: int, N: int) -> int:
    """Steps per chunk (a power of two >= 16); fwd and bwd must agree.

    64 on the GPU: the H100 sweeps (VMamba-T stage shapes, N = 1, bench/tune_triton.py --sweep) found
    T = 64 best for the backward (stage 1: 2.49 ms vs 3.12 / 3.39 at T = 128 / 256, 2026-11-27) and
    its forward within 15% of the best; small tiles keep the scan in registers. Rows of one 256-step
    chunk (128 < L <= 256, stage 3) take T = 256: fwd 0.220 vs 0.297 ms, bwd 0.878 vs 0.883 at T = 64.
    The aux of chunk states is then N / 16 bytes per (channel, step) in fp32 (N / 64 at T = 256).
    32 under the interpreter, so the CPU tests cross chunk boundaries at small L.
    """
    if (L, N) in CHUNK_OVERRIDE:
        return CHUNK_OVERRIDE[(L, N)]
    if (L, N) in TUNED_T and not interpret():
        return TUNED_T[(L, N)]
    if interpret():
        return max(16, min(np2(L), 32))
    if N == 1 and 128 < L <= 256:
        return 256
    return max(16, min(np2(L), 64))


def n_chunks(L: int, N: int) -> int:
    T = chunk_len(L, N)
    return max(1, (int(L) + T - 1) // T)


def scan_aux_shape(batch, KD, L, N, dtype):
    """aux = state at the end of every chunk, (batch, KD, n_chunks, N) fp32."""
    return (batch, KD, n_chunks(L, N), N), torch.float32
