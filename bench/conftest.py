"""pytest setup for the kernel sweeps in bench/ (`pytest bench --benchmark-only`)."""
import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped with a reason where there is none)")
