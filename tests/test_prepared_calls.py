"""dispatch.prepare: a public call whose argument metadata passed its check before skips the check and the backend
choice, and normalises its arguments exactly as the check does (OpSpec.fast); anything the check reads is in the
key, so bad input is refused every time."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import vmamba_kernels as vk
from vmamba_kernels import dispatch
from vmamba_kernels.op_table import SPECS


def _scan_args(grouped=True, d=True, out=None, softplus=True):
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    B = r(2, 4, 3, 7) if grouped else r(2, 3, 7)
    C = r(2, 4, 3, 7) if grouped else r(2, 3, 7)
    return (r(2, 8, 7), r(2, 8, 7), -torch.rand(8, 3, generator=g), B, C, r(8) if d else None, r(8) if d else None,
            softplus, out)


def _cases():
    x = torch.randn(2, 3, 5, 6)
    xl = torch.randn(2, 5, 6, 3)
    ys = torch.randn(2, 4, 3, 30)
    w, b = torch.randn(3), torch.randn(3)
    yield "selective_scan", _scan_args()
    yield "selective_scan", _scan_args(grouped=False, d=False, out=torch.float64, softplus=False)
    yield "cross_scan", (x, "cross2d", False)
    yield "cross_scan", (xl, "bidi", True)
    yield "cross_merge", (ys, 5, 6, "unidi", False)
    yield "cross_merge", (ys, 5, 6, "cross2d", 1)  # a truthy non-bool layout flag: normalised to True
    yield "add_layer_norm", (x, None, w, None, 1e-5, None, False, None)
    yield "add_layer_norm", (xl, torch.randn(2, 5, 6, 3).bfloat16(), w, b, 1e-6, torch.rand(2), True, torch.float16)
    yield "add_layer_norm", (x, x.clone(), w, b, 1, None, False, None)  # an int eps: normalised to float
    yield "dwconv2d", (x, torch.randn(3, 1, 3, 3), None, "silu", False)
    yield "dwconv2d", (xl, torch.randn(3, 1, 5, 5), torch.randn(3), "gelu", True)
    yield "ss2d_core", (x, torch.randn(4, 2 + 2, 3), torch.randn(4, 3, 2), -torch.rand(12, 1), torch.randn(12),
                        torch.randn(12), "cross2d", False, True, None)
    yield "ss2d_core", (xl, torch.randn(4, 2 + 4, 3), torch.randn(4, 3, 2), -torch.rand(12, 2), None, None, "bidi",
                        True, False, torch.float32)


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.shape == b.shape and a.stride() == b.stride()
                and a.dtype == b.dtype and a.data_ptr() == b.data_ptr())
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("op,args", list(_cases()), ids=lambda v: v if isinstance(v, str) else "")
def test_fast_normalisation_equals_the_check(op, args):
    s = SPECS[op]
    checked, fast = s.check(*args), s.fast(*args)
    assert type(checked) is type(fast)
    for f in dataclasses.fields(checked):
        assert _same(getattr(checked, f.name), getattr(fast, f.name)), (op, f.name)


def test_every_public_op_has_a_fast_normalisation():
    assert all(s.fast is not None for s in SPECS.values())


def test_second_call_skips_check_and_choice(monkeypatch):
    dispatch.clear_choice_cache()
    args = _scan_args()
    vk.selective_scan(*args[:7], delta_softplus=True, impl="torch")
    calls = []
    real_check, real_choose = SPECS["selective_scan"].check, dispatch.choose
    monkeypatch.setitem(SPECS, "selective_scan", dataclasses.replace(
        SPECS["selective_scan"], check=lambda *a: calls.append("check") or real_check(*a)))
    monkeypatch.setattr(dispatch, "choose", lambda *a: calls.append("choose") or real_choose(*a))
    y = vk.selective_scan(*args[:7], delta_softplus=True, impl="torch")
    assert calls == [] and y.shape == (2, 8, 7)
    assert dispatch.last_choice("selective_scan") == "torch"
    vk.selective_scan(*args[:7], delta_softplus=False, impl="torch")  # another flag: checked again
    assert calls == ["check", "choose"]
    dispatch.clear_choice_cache()
    calls.clear()
    vk.selective_scan(*args[:7], delta_softplus=True, impl="torch")
    assert calls == ["check", "choose"]  # clear_choice_cache forgets the prepared calls too


def _refusals_after_a_good_call():
    """Calls the check refuses, each made right after an accepted call whose arguments differ only in what the
    check reads: every one must still raise."""
    dispatch.clear_choice_cache()
    args = _scan_args()
    vk.selective_scan(*args[:7], delta_softplus=True, impl="torch")
    with pytest.raises(TypeError, match="delta_softplus must be a bool"):
        vk.selective_scan(*args[:7], delta_softplus=1, impl="torch")  # 1 == True, but not a bool
    with pytest.raises(TypeError, match="delta must have u's dtype"):
        vk.selective_scan(args[0], args[1].double(), *args[2:7], delta_softplus=True, impl="torch")
    x = torch.randn(2, 3, 5, 6)
    br, w, sc = torch.randn(2, 3, 5, 6), torch.randn(3), torch.rand(2)
    with torch.no_grad():
        vk.add_layer_norm(x, br, w, branch_scale=sc.requires_grad_(), impl="torch")
    with pytest.raises(ValueError, match="takes no gradient"):  # the same metadata, now with grad enabled
        vk.add_layer_norm(x, br, w, branch_scale=sc, impl="torch")
    vk.add_layer_norm(x, br, w, branch_scale=sc.detach(), impl="torch")
    with pytest.raises(ValueError, match="takes no gradient"):  # only requires_grad differs from the last call
        vk.add_layer_norm(x, br, w, branch_scale=sc, impl="torch")
    vk.cross_merge(torch.randn(2, 4, 3, 30), 5, 6, impl="torch")
    with pytest.raises(ValueError, match="H must be a non-negative int"):
        vk.cross_merge(torch.randn(2, 4, 3, 30), 5.0, 6, impl="torch")


def test_bad_input_is_refused_after_good_input_of_the_same_shapes():
    _refusals_after_a_good_call()


def test_planted_key_without_requires_grad_is_caught(monkeypatch):
    real = dispatch._arg_meta
    monkeypatch.setattr(dispatch, "_arg_meta", lambda v: real(v)[:4] if isinstance(v, torch.Tensor) else real(v))
    with pytest.raises(pytest.fail.Exception):
        _refusals_after_a_good_call()


def test_unhashable_argument_goes_to_the_check():
    with pytest.raises(ValueError, match="mode must be one of"):
        vk.cross_scan(torch.randn(1, 2, 3, 3), mode=["cross2d"], impl="torch")
