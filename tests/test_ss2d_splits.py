"""The fused SS2D core backward's split count (csrc/ss2d_core/ss2d_splits.h), compiled alone as host C++.

The rule picks S (blocks per batch row) for the fewest launch waves x channel tiles per block. The cases are
worked by hand. The first is shaped like VMamba-T stage 3 at batch 128 (48 tiles of 8 channels; 264 resident
blocks is an illustration, not read from a GPU), where the old "just enough blocks for one wave" rule gives S = 3
and a mostly idle second wave: on an H100 that cost 4.90 ms against 3.87 (reports/logs/2026-12-05_gpu_calls_H100.md)."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MAIN = r"""
#include <cstdio>
#include <cstdlib>
#include "ss2d_core/ss2d_splits.h"
int main(int argc, char** argv) {
  for (int i = 1; i + 2 < argc; i += 3)
    std::printf("%lld\n", (long long)vmamba::ss2d::bwd_splits(std::atoll(argv[i]), std::atoll(argv[i + 1]),
                                                               std::atoll(argv[i + 2])));
  return 0;
}
"""

# (batch, ntiles, wave) -> S
CASES = {
    (128, 48, 264): 2,    # S=2: 256 blocks, one wave, 24 tiles each; S=3: 2 waves x 16 = 32; S=4 ties at 24
    (128, 96, 528): 4,    # 512 blocks in one wave x 24 tiles; S=5 would take 2 waves x 20
    (1, 48, 264): 48,     # batch 1: one tile per block, one wave
    (2, 3, 264): 3,       # fewer tiles than the GPU holds: every tile its own block
    (1024, 4, 132): 1,    # many waves anyway: every S costs 32 (waves x tiles), the fewest splits
    (0, 48, 264): 1,      # empty batch
    (7, 1, 264): 1,       # one tile: one split
}


@pytest.fixture(scope="module")
def exe(tmp_path_factory):
    cxx = shutil.which("c++") or shutil.which("g++")
    if cxx is None:
        pytest.skip("needs a C++ compiler (c++ / g++)")
    d = tmp_path_factory.mktemp("splits")
    (d / "main.cpp").write_text(MAIN)
    out = d / "splits"
    res = subprocess.run([cxx, "-std=c++17", "-O1", str(d / "main.cpp"), "-I", os.path.join(ROOT, "csrc"), "-o",
                          str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    return str(out)


def test_bwd_splits(exe):
    args = [str(v) for case in CASES for v in case]
    got = subprocess.run([exe, *args], capture_output=True, text=True, check=True).stdout.split()
    assert dict(zip(CASES, map(int, got))) == CASES
