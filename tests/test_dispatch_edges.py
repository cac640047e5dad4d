"""dispatch.py's less travelled paths: the prepared-call cache under every key state (untried, a key that declines,
the extension's), its bounds and clearing, a backend's own autograd functions, the default impl's sources, forward-only
backends, extra reasons, ties in priority, and what happens while torch.compile traces. Found by mutation testing
(tests/tools/mutants/dispatch.py: 15 of its 46 mutants survived the suite before these tests)."""
from __future__ import annotations

import dataclasses
import sys

import pytest
import torch

import vmamba_kernels as vk
from vmamba_kernels import dispatch
from vmamba_kernels.dispatch import Backend
from vmamba_kernels.op_table import SPECS


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.setattr(dispatch, "_NATIVE_KEY", list(dispatch._NATIVE_KEY))
    dispatch.clear_choice_cache()
    yield
    dispatch.clear_choice_cache()


def _count_checks(monkeypatch, op):
    calls = []
    real = SPECS[op].check
    monkeypatch.setitem(SPECS, op, dataclasses.replace(SPECS[op], check=lambda *a: calls.append(1) or real(*a)))
    return calls


def _scan_args():
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return (r(2, 8, 7), r(2, 8, 7), -torch.rand(8, 3, generator=g), r(2, 4, 3, 7), r(2, 4, 3, 7), r(8), r(8))


def _spy_cross_scan(monkeypatch, module_attr: str, twin_ops: str, tag: str):
    """The torch backend's module given `module_attr` = {"cross_scan": a spy on the twin from `twin_ops`}: (module,
    twin, the tags of the spy's calls)."""
    b = dispatch.get_backend("torch")
    mod, real, seen = b.impl(), getattr(b, twin_ops)["cross_scan"], []
    monkeypatch.setattr(mod, module_attr, {"cross_scan": lambda *a: seen.append(tag) or real(*a)}, raising=False)
    dispatch.clear_choice_cache()
    return mod, real, seen


# the backend's own autograd functions (Backend.prepared, kind "grad_native")
def test_backend_autograd_ops_are_taken_for_grad_calls_and_forgotten_on_clear(monkeypatch):
    b = dispatch.get_backend("torch")
    mod, real, seen = _spy_cross_scan(monkeypatch, "autograd_ops", "grad_ops", "A")
    x = torch.randn(1, 3, 5, 4, requires_grad=True)
    y = vk.cross_scan(x, impl="torch")
    assert seen == ["A"]  # the native function wins over the Python autograd Function
    y.sum().backward()
    seen.clear()
    vk.cross_scan(torch.randn(0, 3, 5, 4, requires_grad=True), impl="torch")
    assert seen == []  # empty inputs: the Python autograd
    # the backend's functions change; clear_choice_cache (documented for changing a backend by hand) must drop the
    # prepared calls that captured the old ones
    monkeypatch.setattr(mod, "autograd_ops", {"cross_scan": lambda *a: seen.append("B") or real(*a)})
    dispatch.clear_choice_cache()
    assert not b.prepared
    vk.cross_scan(x, impl="torch")
    assert seen == ["B"]


# the backend's own bodies for calls without grad (Backend.prepared, kind "body_native")
def test_backend_native_bodies_are_taken_for_calls_without_grad(monkeypatch):
    _, real, seen = _spy_cross_scan(monkeypatch, "body_ops_native", "body_ops", "N")
    x = torch.randn(1, 3, 5, 4)
    torch.testing.assert_close(vk.cross_scan(x, impl="torch"), real(x, "cross2d", False), rtol=0, atol=0)
    assert seen == ["N"]
    vk.cross_scan(torch.randn(0, 3, 5, 4), impl="torch")  # empty inputs: the body, which handles them
    assert seen == ["N"]
    y = vk.cross_scan(x.requires_grad_(), impl="torch")  # with grad: the autograd path
    assert seen == ["N"] and y.requires_grad
    with torch.no_grad():
        vk.cross_scan(x, impl="torch")
    assert seen == ["N", "N"]
    # an op the module has no body for keeps the Python body
    z = vk.cross_merge(torch.randn(1, 4, 3, 20), 5, 4, impl="torch")
    assert seen == ["N", "N"] and z.shape == (1, 3, 5, 4)


# installing a key function forgets the calls prepared under the old one
def test_use_native_arg_key_forgets_prepared_calls(monkeypatch):
    dispatch.use_native_arg_key(None)
    x = torch.randn(1, 3, 5, 4)
    vk.cross_scan(x, impl="torch")
    assert dispatch._PREPARED
    dispatch.use_native_arg_key(None)
    assert not dispatch._PREPARED
    checks = _count_checks(monkeypatch, "cross_scan")
    vk.cross_scan(x, impl="torch")
    assert checks == [1]


# the prepared-call cache is bounded like the choice cache
def test_prepared_cache_is_bounded(monkeypatch):
    monkeypatch.setattr(dispatch, "_CHOICES_MAX", 3)
    for w in range(1, 9):
        vk.cross_scan(torch.randn(1, 2, 3, w), impl="torch")
        assert len(dispatch._PREPARED) <= 3


# a key function that does not encode the arguments (None) must fall back to the Python key, not key every such
# call the same (the compiled arg_key returns None for tensor subclasses, big ints, other objects)
def test_native_key_none_falls_back_to_the_python_key(monkeypatch):
    dispatch.use_native_arg_key(lambda args: None)
    args = _scan_args()
    vk.selective_scan(*args, delta_softplus=True, impl="torch")
    with pytest.raises(TypeError, match="delta_softplus must be a bool"):
        vk.selective_scan(*args, delta_softplus=1, impl="torch")
    y = vk.cross_scan(torch.randn(1, 3, 5, 4), impl="torch")
    with pytest.raises(ValueError, match="mode must be one of"):
        vk.cross_scan(torch.randn(1, 3, 5, 4), mode="nope", impl="torch")
    assert y.shape == (1, 4, 3, 20)


def _built_key():
    try:
        from vmamba_kernels import _C  # noqa: PLC0415
    except ImportError:
        pytest.skip("the compiled extension vmamba_kernels._C is not built")
    return _C.arg_key


def test_native_key_none_for_subclasses_falls_back(monkeypatch):
    class Sub(torch.Tensor):
        pass

    dispatch.use_native_arg_key(_built_key())
    y = torch.randn(2, 4, 3, 30).as_subclass(Sub)
    assert dispatch._NATIVE_KEY[0]((y, 5, 6, "cross2d", False)) is None  # what the extension does not encode
    vk.cross_merge(y, 5, 6, impl="torch")
    with pytest.raises(ValueError, match="H must be a non-negative int"):
        vk.cross_merge(y, 5.0, 6, impl="torch")


# the first prepared call that finds the native key is stored under it, so the second call is a hit
def test_first_call_that_finds_the_native_key_is_stored_under_it(monkeypatch):
    key = _built_key()
    monkeypatch.setattr(dispatch.get_backend("torch"), "native_key", True)
    monkeypatch.setattr(dispatch, "_NATIVE_KEY", [dispatch._untried])
    dispatch.clear_choice_cache()
    x = torch.randn(1, 3, 5, 4)
    vk.cross_scan(x, impl="torch")
    assert dispatch._NATIVE_KEY[0] is key
    assert dispatch._PREPARED and all(isinstance(k[-1], bytes) for k in dispatch._PREPARED)
    checks = _count_checks(monkeypatch, "cross_scan")
    vk.cross_scan(x, impl="torch")
    assert checks == []


# _find_native_key keeps a key installed meanwhile (the cuda backend's), also when the extension import fails
def test_find_native_key_keeps_an_installed_key(monkeypatch):
    mine = lambda args: None  # noqa: E731
    dispatch.use_native_arg_key(mine)
    dispatch._find_native_key()
    assert dispatch._NATIVE_KEY[0] is mine
    monkeypatch.setitem(sys.modules, "vmamba_kernels._C", None)
    dispatch._find_native_key()
    assert dispatch._NATIVE_KEY[0] is mine


# the variable is read with surrounding whitespace stripped
def test_env_impl_is_stripped(monkeypatch):
    monkeypatch.setenv("VMAMBA_KERNELS_IMPL", " torch_sequential\n")
    assert vk.get_default_impl() == "torch_sequential"
    monkeypatch.setenv("VMAMBA_KERNELS_IMPL", " auto ")
    assert vk.get_default_impl() is None


# set_default_impl beats the environment variable
def test_set_default_impl_beats_the_env(monkeypatch):
    monkeypatch.setenv("VMAMBA_KERNELS_IMPL", "torch_sequential")
    vk.set_default_impl("torch")
    try:
        assert vk.get_default_impl() == "torch"
        vk.cross_scan(torch.randn(1, 2, 3, 3))
        assert dispatch.last_choice("cross_scan") == "torch"
    finally:
        vk.set_default_impl(None)
    assert vk.get_default_impl() == "torch_sequential"


def _fake(**kw):
    return Backend(name="fake", priority=1, module="vmamba_kernels.pytorch.parallel", install_hint="n/a",
                   devices=("cpu",), **kw)


# a backend with no backward runs inputs that do not require grad
def test_no_backward_backend_runs_inputs_without_grad():
    ins = _scan_args()
    b = _fake(supports_backward=False)
    assert b.why_not("selective_scan", vk.validate.check_selective_scan(*ins)) == []
    grad = vk.validate.check_selective_scan(ins[0].requires_grad_(), *ins[1:])
    assert b.why_not("selective_scan", grad) == ["has no backward, and these inputs require grad"]


# extra_reasons is asked only when the generic checks pass (it may assume supported inputs)
def test_extra_reasons_only_asked_when_the_rest_passes():
    asked = []
    b = _fake(extra_reasons=lambda op, args: asked.append(op) or ["extra limit"])
    ins = _scan_args()
    wrong = vk.validate.check_selective_scan(*(t.double() for t in ins))
    reasons = b.why_not("selective_scan", wrong)
    assert asked == [] and "extra limit" not in reasons and reasons
    assert b.why_not("selective_scan", vk.validate.check_selective_scan(*ins)) == ["extra limit"]


# equal priorities are ordered by name
def test_equal_priorities_ordered_by_name(monkeypatch):
    dispatch.backends()
    torch_prio = dispatch.get_backend("torch").priority
    monkeypatch.setitem(dispatch._REGISTRY, "a_tie", Backend(name="a_tie", priority=torch_prio,
                                                             module="vmamba_kernels.pytorch.parallel",
                                                             install_hint="n/a", devices=("cpu",)))
    names = [b.name for b in dispatch.backends() if b.priority == torch_prio]
    assert names == ["a_tie", "torch"]


# a prepared (cached) call records its backend for last_choice
def test_last_choice_after_prepared_hits():
    x = torch.randn(1, 2, 3, 3)
    for _ in range(2):
        vk.cross_scan(x, impl="torch")
        vk.cross_scan(x, impl="torch_sequential")
    vk.cross_scan(x, impl="torch")  # a prepared hit
    assert dispatch.last_choice("cross_scan") == "torch"


# while torch.compile traces, every call is checked (no prepared calls)
def test_no_prepared_calls_while_compiling(monkeypatch):
    checks = _count_checks(monkeypatch, "cross_scan")
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    x = torch.randn(1, 2, 3, 3)
    vk.cross_scan(x, impl="torch")
    vk.cross_scan(x, impl="torch")
    assert checks == [1, 1] and not dispatch._PREPARED


# the state of a fresh process that never loaded the extension (_NATIVE_KEY untried: the Python key);
# the suite's which_key fixture covers None and the extension's key, but by then test_dispatch has loaded the cuda
# backend's module, which installs the extension's key, so the untried state is never exercised
def test_refusals_after_good_calls_before_the_native_key_is_looked_for(monkeypatch):
    monkeypatch.setattr(dispatch, "_NATIVE_KEY", [dispatch._untried])
    args = _scan_args()
    vk.selective_scan(*args, delta_softplus=True, impl="torch")
    with pytest.raises(TypeError, match="delta_softplus must be a bool"):
        vk.selective_scan(*args, delta_softplus=1, impl="torch")
    vk.cross_merge(torch.randn(2, 4, 3, 30), 5, 6, impl="torch")
    with pytest.raises(ValueError, match="H must be a non-negative int"):
        vk.cross_merge(torch.randn(2, 4, 3, 30), 5.0, 6, impl="torch")
    assert dispatch._NATIVE_KEY[0] is dispatch._untried


# nothing is recorded for last_choice while torch.compile traces
def test_last_choice_not_recorded_while_compiling(monkeypatch):
    x = torch.randn(1, 2, 3, 3)
    vk.cross_scan(x, impl="torch")
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    vk.cross_scan(x, impl="torch_sequential")
    assert dispatch.last_choice("cross_scan") == "torch"


# inputs that do not require grad take the bare body even with grad mode on (no autograd Function)
def test_no_grad_inputs_take_the_bare_body_under_grad_mode():
    b = dispatch.get_backend("torch")
    x = torch.randn(1, 2, 3, 3)
    assert torch.is_grad_enabled()
    call, _ = dispatch.prepare("cross_scan", "torch", (x, "cross2d", False))
    assert call.ops is b.body_ops
    call, _ = dispatch.prepare("cross_scan", "torch", (x.requires_grad_(), "cross2d", False))
    assert call.ops is b.grad_ops
