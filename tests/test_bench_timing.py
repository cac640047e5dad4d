"""bench.timing.time_kernel's GPU padding, on the CPU with torch.cuda's events and spin faked: the spin queued
ahead of the event-timed calls must cover the host's time to queue them, or a call whose host side is slower
than its kernel times its own launch (cupy on the H200, 2026-12-03: 0.30 ms for a 0.08 ms kernel)."""
from __future__ import annotations

import time

import torch

from bench import timing


class _FakeEvent:
    def __init__(self, enable_timing=False):
        self.t = None

    def record(self):
        self.t = time.perf_counter()

    def elapsed_time(self, end):
        return (end.t - self.t) * 1e3


def test_pad_covers_host_time(monkeypatch):
    spins = []
    monkeypatch.setattr(torch.cuda, "Event", _FakeEvent)
    monkeypatch.setattr(torch.cuda, "_sleep", lambda cycles: spins.append(cycles))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(timing, "sync", lambda device: None)
    calls = []

    def slow_host(i):  # 2 ms of host work a call (a call whose kernel would take far less)
        calls.append(i)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < 2e-3:
            pass

    r = timing.time_kernel(slow_host, "cuda", warmup=3, reps=10)
    assert calls == list(range(13)) and len(r["samples"]) == 10
    assert len(spins) == 1
    # at a 2 GHz SM clock the spin lasts spins / 2e9 s: at least the host's 10 x 2 ms
    assert spins[0] / 2e9 >= 10 * 2e-3


def test_pad_cycles_bounds():
    assert timing.pad_cycles(0.0, 10) == 10 * 2e5  # at least ~0.1 ms a call
    assert timing.pad_cycles(250.0, 30) >= 2 * 2e9 * 250e-6 * 30  # twice the host time at 2 GHz
    assert timing.pad_cycles(5e6, 2) == 2 * 4e7  # a pathological host time does not spin for minutes
