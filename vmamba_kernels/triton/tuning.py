"""The Triton backend's tuned constants and test knobs (`TritonTuning`), and the Triton-free sizing that
depends on them (importing this module must not import triton): the scan's chunk length is a function
of (L, N) only, so the aux tensor of chunk-end states that the forward writes has a shape the backward
(and torch.compile's fake tensors) can know in advance.

Change values with `vmamba_kernels.tuning("triton", field=value)`; how the defaults were measured:
reports/tuning.md ("Triton"), the sweeps `python -m bench.tuning.triton`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

import torch

from .._environ import getenv
from ..tunables import frozen_mapping, register

# banded channels-last cross2d scan: rows (columns) per program, channels per program, whole maps up to
# small_side (small_block_c channels), at most max_elems elements per program, warps
_BAND_SCAN = {"band": 4, "block_c": 32, "small_side": 16, "small_block_c": 16, "max_elems": 8192, "warps": 4}


@dataclass(frozen=True)
class TritonTuning:
    # ---- selective scan (selective_scan.py) ----
    # elements of one (BLOCK_D, NP, T) fp32 register tile when d_state > 1: small tiles won the sweeps
    fwd_tile: int = 512
    bwd_tile: int = 256
    # software-pipelining depth of the chunk loops (tl.range num_stages); None: 3 from 8 chunks on, else 1
    pipeline_fwd: Optional[int] = None
    pipeline_bwd: Optional[int] = None
    # measured winners for given shapes (GPU only; empty: the rules in chunk_len / _fwd_config / _bwd_config)
    tuned_chunk: Mapping = field(default_factory=dict)   # (L, N) -> chunk length T
    tuned_blocks: Mapping = field(default_factory=dict)  # (G, N, L) -> ((BLOCK_D, warps) fwd, (BLOCK_D, warps) bwd)
    # pins for sweeps and tests (also under the interpreter)
    chunk_override: Mapping = field(default_factory=dict)  # (L, N) -> T
    # ("fwd" | "bwd", G, N, L) -> (BLOCK_D, warps); ("fwd_sub" | "bwd_sub", N, L) -> chunks per loop iteration
    block_override: Mapping = field(default_factory=dict)
    # ---- cross scan / merge (cross_scan.py) ----
    band_scan: Optional[Mapping] = field(default_factory=lambda: dict(_BAND_SCAN))  # None: the tiled kernel only
    hw_first: bool = True  # grid with one image's tiles side by side (images last): shared sectors stay in L2
    reverse_groups: bool = True  # backwards reads done forwards in aligned groups, reversed in registers
    # (channels_last, merge, C, H, W) -> (BLOCK_H, BLOCK_W, BLOCK_C, warps) pinned (sweeps, tests)
    cross_block_override: Mapping = field(default_factory=dict)
    # ---- launches (fast_launch.py) ----
    # a configuration launched before calls the compiled kernel's launcher directly (False: every launch goes
    # through JITFunction.run)
    fast_launch: bool = True

    def __post_init__(self):
        for name in ("tuned_chunk", "tuned_blocks", "chunk_override", "block_override", "cross_block_override"):
            object.__setattr__(self, name, frozen_mapping(getattr(self, name)))
        if self.band_scan is not None:
            object.__setattr__(self, "band_scan", frozen_mapping(self.band_scan))


TUNING = register("triton", TritonTuning())


def interpret() -> bool:
    """Triton's interpreter is on (read at each call: tests may set it after this import)."""
    return getenv("TRITON_INTERPRET") == "1"


_PLANS: dict = {}


def launch_plan(kind: str, fn, *key):
    """fn(*key), computed once per (kind, key, tuning value, interpreter flag): the launch configuration of
    a shape is plain-int arithmetic that need not run at every call. A new tuning value (vk.tuning(...))
    or TRITON_INTERPRET gets its own entries (the value is held, so its id is never reused while cached)."""
    t = TUNING.get()
    k = (kind, id(t), interpret(), key)
    hit = _PLANS.get(k)
    if hit is not None and hit[0] is t:
        return hit[1]
    value = fn(*key)
    if len(_PLANS) >= 4096:
        _PLANS.clear()
    _PLANS[k] = (t, value)
    return value


_SMS: dict = {}


def sm_count(device) -> int:
    """Streaming multiprocessors of a CUDA device (asked once per device: the query is not free)."""
    idx = torch.device(device).index
    idx = torch.cuda.current_device() if idx is None else idx
    if idx not in _SMS:
        _SMS[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _SMS[idx]


def cdiv(a: int, b: int) -> int:
    """ceil(a / b) for the launch code on the host, where triton.cdiv (a constexpr_function in Triton 3.6 and 3.8)
    costs about 25 times more (reports/logs/2026-12-07_host_cdiv.md). Kernels keep tl.cdiv."""
    return -(-a // b)


def np2(x: int) -> int:
    """Next power of two >= x (1 for x <= 1)."""
    return 1 << max(0, int(x) - 1).bit_length()


def chunk_len(L: int, N: int) -> int:
    """Steps per chunk (a power of two >= 16); fwd and bwd must agree.

    64 on the GPU (small tiles keep the scan in registers; the backward's best), 256 for N = 1 rows of
    one 256-step chunk (129..256 steps), 32 under the interpreter so the CPU tests cross chunk
    boundaries at small L (reports/tuning.md, "Triton chunk length"). The aux of chunk states is then
    N / 16 bytes per (channel, step) in fp32 (N / 64 at T = 256).
    """
    t = TUNING.get()
    if (L, N) in t.chunk_override:
        return t.chunk_override[(L, N)]
    if (L, N) in t.tuned_chunk and not interpret():
        return t.tuned_chunk[(L, N)]
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
