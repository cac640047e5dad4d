"""pytest setup for the kernel sweeps in bench/ (`pytest bench --benchmark-only`).

- `--full-sweep`: the whole grid (VMamba T/S/B, fp32/fp16/bf16) instead of the few-minute default.
- The header says up front when there is no CUDA device (every benchmark is then skipped), a line per
  finished benchmark shows its result as the sweep goes, and the end of the run counts the skips by
  reason (pytest shows skip reasons only with -rs).
"""
from collections import Counter

import pytest
import torch


def pytest_addoption(parser):
    parser.addoption("--full-sweep", action="store_true", default=False,
                     help="bench/: sweep VMamba T/S/B in fp32/fp16/bf16 (648 cases; default: VMamba-T fp16, 72)")


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped with a reason where there is none)")


def _ours(nodeid: str) -> bool:
    return nodeid.startswith("bench/") or "/bench/" in nodeid


def pytest_report_header(config):
    if not torch.cuda.is_available():
        return ["bench: no CUDA device is visible: every kernel benchmark will be skipped "
                "(they time GPU kernels; run them on a machine with an NVIDIA GPU)"]
    full = config.getoption("full_sweep", default=False)
    return [f"bench: {'full sweep (--full-sweep)' if full else 'default sweep: VMamba-T fp16 (--full-sweep for all)'} "
            f"on {torch.cuda.get_device_name(0)}"]


def pytest_runtest_logreport(report):
    """One line per finished benchmark with its result: progress a person can read."""
    if report.when != "call" or not report.passed or not _ours(report.nodeid):
        return
    result = dict(report.user_properties).get("result")
    tr = _reporter()
    if result and tr is not None:
        tr.ensure_newline()
        tr.write_line(f"{report.nodeid.split('::')[-1]}: {result}")


_CONFIG = []


@pytest.hookimpl(trylast=True)
def pytest_sessionstart(session):
    _CONFIG[:] = [session.config]


def _reporter():
    return _CONFIG[0].pluginmanager.get_plugin("terminalreporter") if _CONFIG else None


def pytest_terminal_summary(terminalreporter):
    """Skip reasons, counted, without -rs (hundreds of silent 's' say nothing)."""
    reasons = Counter()
    for rep in terminalreporter.stats.get("skipped", []):
        if _ours(rep.nodeid) and isinstance(rep.longrepr, tuple) and len(rep.longrepr) == 3:
            reasons[rep.longrepr[2].removeprefix("Skipped: ")] += 1
    if reasons:
        terminalreporter.section("bench: skipped benchmarks by reason")
        for why, n in reasons.most_common():
            terminalreporter.write_line(f"{n:5d} x {why}")
