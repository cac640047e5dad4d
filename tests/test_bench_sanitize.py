"""bench/sanitize.py on the CPU: every case group runs with impl "torch" against the float64 reference, a wrong
output or gradient fails its group, and the tool and group lists are checked (compute-sanitizer itself needs the
GPU machine)."""
from __future__ import annotations

import subprocess

import pytest

from bench import sanitize


@pytest.mark.parametrize("group", sanitize.OPS)
def test_every_group_passes_with_the_torch_impl(group, capsys):
    assert sanitize.run_cases(impl="torch", device="cpu", ops=group) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(ln.endswith(" ok") for ln in lines), [ln for ln in lines if not ln.endswith(" ok")]


def test_group_sizes():
    """one line per case: each new group's list is what the docstring promises to cover"""
    assert {c[8] for c in sanitize.SS2D_CASES} == {"fp32", "fp16", "bf16"}
    assert {c[6] for c in sanitize.SS2D_CASES} == {"cross2d", "unidi", "bidi"}
    assert {c[4] for c in sanitize.SS2D_CASES} == {1, 4, 16} and {c[0] for c in sanitize.SS2D_CASES} == {1, 2}
    assert {(c[2], c[3]) for c in sanitize.SS2D_CASES} >= {(1, 1), (7, 7), (5, 13), (13, 1), (1, 9)}
    assert {c[7] for c in sanitize.SS2D_CASES} == {False, True}
    knobs = set().union(*[set(c[-1] or ()) for c in sanitize.SS2D_CASES])
    assert knobs == {"ss2d_warps", "ss2d_global_acc", "ss2d_bwd_splits", "ss2d_fwd_seg", "ss2d_bwd_seg",
                     "ss2d_fwd_sweep", "ss2d_sweep_mma"}
    for cases, dt, cl in ((sanitize.NORM_CASES, 5, 4), (sanitize.DWCONV_CASES, 6, 5)):
        assert {(c[dt], c[cl]) for c in cases} == {(d, layout) for d in ("fp32", "fp16", "bf16")
                                                   for layout in (False, True)}
    assert {c[6] for c in sanitize.NORM_CASES} == {"none", "add", "scaled"}
    assert {c[7] for c in sanitize.DWCONV_CASES} == {"none", "silu", "gelu"}
    assert {c[4] for c in sanitize.DWCONV_CASES} == {3, 5, 7}


def _grad_scaled(t, factor):
    """t's value, with its gradient multiplied by factor"""
    return t if t is None else t + (factor - 1.0) * (t - t.detach())


def _value_scaled(t, factor):
    """t's value multiplied by factor, with t's gradient"""
    return t + (factor - 1.0) * t.detach()


def _plant(name):
    """(group, op name, replacement factory) of one planted bug: a 1 % wrong output or a 3 % wrong gradient of one
    input."""
    def ss2d_out(real):
        return lambda *a, **k: _value_scaled(real(*a, **k), 1.01)

    def ss2d_grad(real):  # dt_projs_weight's gradient only
        return lambda x, xpw, dtw, *a, **k: real(x, xpw, _grad_scaled(dtw, 1.03), *a, **k)

    def norm_out(real):
        def f(*a, **k):
            y, s = real(*a, **k)
            return _value_scaled(y, 1.01), s
        return f

    def norm_grad(real):  # the branch's gradient only (the forward sees the same branch)
        return lambda x, branch=None, *a, **k: real(x, _grad_scaled(branch, 1.03), *a, **k)

    def dwconv_out(real):
        return lambda *a, **k: _value_scaled(real(*a, **k), 1.01)

    def dwconv_grad(real):  # the weight's gradient only
        return lambda x, weight, *a, **k: real(x, _grad_scaled(weight, 1.03), *a, **k)

    return {"ss2d_core-y": ("ss2d_core", "ss2d_core", ss2d_out),
            "ss2d_core-ddt_projs_weight": ("ss2d_core", "ss2d_core", ss2d_grad),
            "norm-y": ("norm", "add_layer_norm", norm_out),
            "norm-dbranch": ("norm", "add_layer_norm", norm_grad),
            "dwconv-y": ("dwconv", "dwconv2d", dwconv_out),
            "dwconv-dweight": ("dwconv", "dwconv2d", dwconv_grad)}[name]


@pytest.mark.parametrize("plant", ["ss2d_core-y", "ss2d_core-ddt_projs_weight", "norm-y", "norm-dbranch", "dwconv-y",
                                   "dwconv-dweight"])
def test_a_planted_bug_fails_its_group(plant, monkeypatch, capsys):
    import vmamba_kernels as vk

    group, op, make = _plant(plant)
    monkeypatch.setattr(vk, op, make(getattr(vk, op)))
    assert sanitize.run_cases(impl="torch", device="cpu", ops=group) == 1
    fails = [ln for ln in capsys.readouterr().out.splitlines() if "FAIL" in ln]
    # the float32 cases fail on the planted tensor (the 16-bit ones may tolerate 1 - 3 %)
    fp32 = [ln for ln in fails if " fp32" in ln]
    want = plant.split("-", 1)[1]
    assert fp32 and all(ln.endswith(f"FAIL ({want})") for ln in fp32), fails


def test_cases_catch_a_wrong_result(monkeypatch):
    import vmamba_kernels as vk

    real = vk.cross_merge
    monkeypatch.setattr(vk, "cross_merge", lambda *a, **k: real(*a, **k) * 1.01)
    assert sanitize.run_cases(impl="torch", device="cpu", ops="cross") == 1


def test_an_error_fails_the_case_and_the_rest_still_run(monkeypatch, capsys):
    import vmamba_kernels as vk

    def refuse(*a, **k):
        raise vk.ImplRefused("cuda", "dwconv2d", ["a planted refusal"], ["torch"], "these inputs")

    monkeypatch.setattr(vk, "dwconv2d", refuse)
    assert sanitize.run_cases(impl="torch", device="cpu", ops="dwconv") == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(sanitize.DWCONV_CASES)
    assert all("FAIL (refused: impl 'cuda' cannot run dwconv2d" in ln and "a planted refusal" in ln for ln in lines)


def test_unknown_tool_is_an_error(capsys):
    with pytest.raises(SystemExit):
        sanitize.main(["--tools", "memcheck,leakcheck"])
    assert "leakcheck" in capsys.readouterr().err


def test_unknown_group_is_an_error(capsys):
    with pytest.raises(SystemExit):
        sanitize.main(["--ops", "scan,convs", "--cases"])
    err = capsys.readouterr().err
    assert "unknown case group(s) convs" in err and "groups are scan, cross, ss2d_core, norm, dwconv" in err
    with pytest.raises(ValueError, match="unknown case group.*ss2d"):
        sanitize.run_cases(impl="torch", device="cpu", ops=["ss2d"])
    assert sanitize.parse_ops(" norm, scan ,") == ("scan", "norm") and sanitize.parse_ops(None) == sanitize.OPS


def test_groups_pass_through_to_the_cases_run(monkeypatch):
    """--cases runs the chosen groups; each tool's subprocess gets them with --ops"""
    seen = {}

    def run_cases(**kw):
        seen["cases"] = kw
        return 0

    monkeypatch.setattr(sanitize, "run_cases", run_cases)
    assert sanitize.main(["--cases", "--ops", "dwconv,ss2d_core"]) == 0
    assert seen["cases"] == {"ops": ("ss2d_core", "dwconv")}

    cmds = []
    monkeypatch.setattr(sanitize.shutil, "which", lambda name: sanitize.sys.executable)
    monkeypatch.setattr(sanitize.subprocess, "run",
                        lambda cmd, **k: cmds.append(cmd) or subprocess.CompletedProcess(cmd, 0, "", ""))
    assert sanitize.main(["--tools", "memcheck,racecheck", "--ops", "norm"]) == 0
    assert len(cmds) == 2 and all(c[-4:] == ["bench.sanitize", "--cases", "--ops", "norm"] for c in cmds)
    cmds.clear()
    assert sanitize.main(["--tools", "initcheck"]) == 0
    assert cmds[0][-2:] == ["--ops", ",".join(sanitize.OPS)]
