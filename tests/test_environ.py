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


@pytest.mark.parametrize("read", ["posix_dict", "os_environ_get"])
def test_raw_values_change_with_every_variable(monkeypatch, read):
    """raw_values is a cache key (the cupy knobs'): it must differ after any of the variables is set, changed or
    unset, and be equal while none changes."""
    if read == "os_environ_get":
        monkeypatch.setattr(_environ, "_DATA", None)
    elif _environ._DATA is None:
        pytest.skip("os.environ has no POSIX data dict here")
    names = ("VMAMBA_TEST_RAW_A", "VMAMBA_TEST_RAW_B")
    for n in names:
        monkeypatch.delenv(n, raising=False)
    seen = [_environ.raw_values(names)]
    assert seen[0] == _environ.raw_values(names) == (None, None)
    for change in (("VMAMBA_TEST_RAW_B", "1"), ("VMAMBA_TEST_RAW_A", "1"), ("VMAMBA_TEST_RAW_B", "2"),
                   ("VMAMBA_TEST_RAW_B", ""), ("VMAMBA_TEST_RAW_A", None)):
        if change[1] is None:
            monkeypatch.delenv(change[0])
        else:
            monkeypatch.setenv(*change)
        now = _environ.raw_values(names)
        assert now not in seen, change
        seen.append(now)
