"""vmamba_kernels._environ.getenv: os.environ.get's answer, including after os.environ's writes."""
from __future__ import annotations

import os

import pytest

from vmamba_kernels import _environ
from vmamba_kernels._environ import getenv


@pytest.mark.parametrize("read", ["posix_dict", "os_environ_get"])
def test_getenv_follows_os_environ(monkeypatch, read):
    if read == "os_environ_get":
        monkeypatch.setattr(_environ, "_DATA", None)
    elif _environ._DATA is None:
        pytest.skip("os.environ has no POSIX data dict here")
    name = "VMAMBA_TEST_GETENV_VAR"
    monkeypatch.delenv(name, raising=False)
    assert getenv(name) is None
    monkeypatch.setenv(name, "triton")
    assert getenv(name) == "triton" == os.environ.get(name)
    os.environ[name] = "é ünïcode"
    assert getenv(name) == os.environ[name]
    monkeypatch.setenv(name, "")
    assert getenv(name) == ""
    monkeypatch.delenv(name)
    assert getenv(name) is None
