"""bench/sanitize.py on the CPU: its cases run with impl "torch" against the reference, a wrong result
fails them, and the tool list is checked (compute-sanitizer itself needs the GPU machine)."""
from __future__ import annotations

import pytest

from bench import sanitize


def test_cases_pass_with_the_torch_impl():
    assert sanitize.run_cases(impl="torch", device="cpu") == 0


def test_cases_catch_a_wrong_result(monkeypatch):
    import vmamba_kernels as vk

    real = vk.cross_merge
    monkeypatch.setattr(vk, "cross_merge", lambda *a, **k: real(*a, **k) * 1.01)
    assert sanitize.run_cases(impl="torch", device="cpu") == 1


def test_unknown_tool_is_an_error(capsys):
    with pytest.raises(SystemExit):
        sanitize.main(["--tools", "memcheck,leakcheck"])
    assert "leakcheck" in capsys.readouterr().err
