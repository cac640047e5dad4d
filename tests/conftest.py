"""Shared test setup: GPU markers with reasons, per-test seeding.

Test files are named test_<subject>[_<aspect>].py, <subject> being what they test as the repository
names it: a package (bench, models, reference), a vmamba_kernels module (dispatch, validate, tuning;
backends = several or all registered backends at once), a backend (cuda, triton, cupy), or the
repository itself (repo: its layout, its build). <aspect> narrows it (test_cuda_selective_scan.py,
test_bench_cli.py); a file whose every test needs a GPU ends in _gpu (test_models_gpu.py). Shared
helpers live in modules without the test_ prefix (scan_cases.py).
"""
import os
import random
import zlib

import pytest
import torch


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped with a reason where there is none)")
    config.addinivalue_line("markers", "slow: long-running; deselect with -m 'not slow'")
    config.addinivalue_line("markers", "tuning_pin: pins a tuning table or launch plan: detects a change, not an "
                                       "error (kept, but not counted as a correctness test)")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device: run on the GPU machine (see README, GPU tests)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _seed(request):
    # a fresh, reproducible seed per test (derived from its id) so inputs differ between tests
    seed = zlib.crc32(request.node.nodeid.encode())
    random.seed(seed)
    torch.manual_seed(seed)
    yield


requires_cuda = pytest.mark.gpu
IN_CI = os.environ.get("CI") == "true"
