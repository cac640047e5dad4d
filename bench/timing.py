"""Timing primitives shared by the CLIs, and plain-text progress output.

- `time_official`: the official VMamba method: warm-up calls, synchronise, wall-clock `iters` calls,
  synchronise. Returns ms per iteration.
- `time_robust`: CUDA events around each of `repeats` groups of `inner` calls; percentiles over the
  groups (perf_counter on the CPU).
- `time_kernel`: CUDA events around single calls of `fn(i)` (the caller rotates input sets by i so
  memory-bound kernels never run from L2); percentiles.
- `time_wall`: host-inclusive wall clock per call of back-to-back calls `fn(i)` (one sync at the end).
- `copy_bandwidth`: the card's practical memory bandwidth: a large device-to-device copy, bytes read +
  written, median; measured once per process and device.
"""
from __future__ import annotations

import statistics
import sys
import time
from typing import Callable, Optional

import torch


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def percentiles(values, qs=(0.2, 0.5, 0.8)) -> list:
    """Linear-interpolated quantiles of `values` (list of floats)."""
    v = sorted(values)
    if not v:
        return [float("nan")] * len(qs)
    out = []
    for q in qs:
        pos = q * (len(v) - 1)
        lo = int(pos)
        hi = min(lo + 1, len(v) - 1)
        out.append(v[lo] + (v[hi] - v[lo]) * (pos - lo))
    return out


def time_official(step: Callable, device, warmup: int = 50, iters: int = 30) -> dict:
    """Official method: `warmup` calls, sync, wall clock over `iters` calls, sync."""
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.time()
    for _ in range(iters):
        step()
    sync(device)
    ms = (time.time() - t0) * 1000.0 / max(iters, 1)
    return {"ms_p50": ms, "ms_p20": float("nan"), "ms_p80": float("nan"), "samples": [ms]}


def time_robust(step: Callable, device, warmup: int = 10, repeats: int = 10, inner: int = 3) -> dict:
    """Robust method: per group of `inner` calls, CUDA events (GPU) or perf_counter (CPU); median and
    20/80 percentiles over `repeats` groups, in ms per call."""
    for _ in range(warmup):
        step()
    sync(device)
    samples = []
    cuda = torch.device(device).type == "cuda"
    for _ in range(repeats):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(inner):
                step()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end) / inner)
        else:
            t0 = time.perf_counter()
            for _ in range(inner):
                step()
            samples.append((time.perf_counter() - t0) * 1000.0 / inner)
    p20, p50, p80 = percentiles(samples)
    return {"ms_p50": p50, "ms_p20": p20, "ms_p80": p80, "samples": samples}


def pad_cycles(host_us_per_call: float, calls: int) -> int:
    """GPU spin cycles (torch.cuda._sleep) to queue ahead of `calls` event-timed calls so that the GPU is
    still busy when the host has queued the last one: twice their host time at ~2 GHz, at least 0.1 ms a
    call (a fixed 0.1 ms let cupy's slower host side into its short kernels' times on the H200:
    reports/logs/2026-12-03_training_memory_H200.md)."""
    return int(min(max(2e5, 4000.0 * host_us_per_call), 4e7) * calls)  # capped at ~20 ms a call


def time_kernel(fn: Callable[[int], object], device, warmup: int = 10, reps: int = 50,
                min_ms: Optional[float] = None) -> dict:
    """Per-call timing of fn(i), i = 0, 1, 2, ... (rotate inputs with i). On the GPU each call is
    bracketed by CUDA events recorded on the current stream, queued behind a spin long enough to cover
    the host's queuing of all of them (pad_cycles); on the CPU perf_counter."""
    host = []  # host time of each warm-up call (its median sizes the GPU-side padding; a first call's
    for i in range(warmup):  # compile or autotuning must not)
        t0 = time.perf_counter()
        fn(i)
        host.append((time.perf_counter() - t0) * 1e6)
    sync(device)
    cuda = torch.device(device).type == "cuda"
    samples = []
    if cuda:
        events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
        if hasattr(torch.cuda, "_sleep"):
            torch.cuda._sleep(pad_cycles(statistics.median(host) if host else 0.0, reps))
        for i, (s, e) in enumerate(events):
            s.record()
            fn(warmup + i)
            e.record()
        torch.cuda.synchronize(device)
        samples = [s.elapsed_time(e) for s, e in events]
    else:
        for i in range(reps):
            t0 = time.perf_counter()
            fn(warmup + i)
            samples.append((time.perf_counter() - t0) * 1000.0)
    p20, p50, p80 = percentiles(samples)
    return {"ms_p50": p50, "ms_p20": p20, "ms_p80": p80, "samples": samples, "reps": reps}


def time_wall(fn: Callable[[int], object], device, reps: int = 50, warmup: int = 3) -> float:
    """Host-inclusive ms per call: `reps` back-to-back calls fn(i) (no sync between them, no CUDA graph),
    synchronised wall clock / reps. Against time_kernel's device time it shows what the host adds: when
    the host issues calls more slowly than the GPU runs them, this is the larger number."""
    for i in range(warmup):
        fn(i)
    sync(device)
    t0 = time.perf_counter()
    for i in range(reps):
        fn(warmup + i)
    sync(device)
    return (time.perf_counter() - t0) * 1000.0 / max(reps, 1)


_COPY_BW: dict = {}


def copy_bandwidth(device="cuda", nbytes: int = 1 << 30, reps: int = 20) -> float:
    """GB/s of a device-to-device copy of `nbytes` (counting bytes read + written), median of `reps`.
    Cached per device for the process. NaN on the CPU (no meaningful roofline there)."""
    dev = torch.device(device)
    if dev.type != "cuda":
        return float("nan")
    key = (str(dev), nbytes)
    if key not in _COPY_BW:
        src = torch.randint(0, 255, (nbytes,), dtype=torch.uint8, device=dev)
        dst = torch.empty_like(src)
        r = time_kernel(lambda i: dst.copy_(src), dev, warmup=5, reps=reps)
        _COPY_BW[key] = 2 * nbytes / (r["ms_p50"] * 1e-3) / 1e9
        del src, dst
        torch.cuda.empty_cache()
    return _COPY_BW[key]


class Progress:
    """Plain progress line: '\\r' updates on a terminal, one line per step otherwise (logs)."""

    def __init__(self, total: int, label: str = "", stream=None):
        self.total, self.label, self.n = total, label, 0
        self.stream = stream or sys.stderr
        self.t0 = time.perf_counter()
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def update(self, what: str = "") -> None:
        self.n += 1
        el = time.perf_counter() - self.t0
        eta = el / self.n * (self.total - self.n) if self.n else 0.0
        msg = f"[{self.label}] {self.n}/{self.total} {el:6.1f}s eta {eta:5.0f}s {what}"
        if self.tty:
            self.stream.write("\r" + msg[:150].ljust(150))
        else:
            self.stream.write(msg + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()


def median(values) -> float:
    return statistics.median(values) if values else float("nan")
