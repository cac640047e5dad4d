"""vmamba_kernels._environ.getenv: os.environ.get's answer, including after os.environ's writes."""
from __future__ import annotations

import os

from vmamba_kernels._environ import getenv


def test_getenv_follows_os_environ(monkeypatch):
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
