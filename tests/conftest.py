"""Shared test setup: GPU markers with reasons, per-test seeding."""
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
