"""Mlp.recompute_act: fc2(GELU(h)) that recomputes GELU(h) in the backward gives the same output and the same
gradients as plain autograd, and keeps fewer bytes for the backward (models/layers.py _GeluLinear)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from models import layers
from models.layers import Mlp


def _run(mlp, x, dtype, autocast):
    mlp.zero_grad(set_to_none=True)
    xx = x.detach().clone().requires_grad_(True)
    saved = []

    def pack(t):  # parameters kept for the backward cost no memory of their own
        if not isinstance(t, nn.Parameter):
            saved.append(t.numel() * t.element_size())
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        if autocast:
            with torch.autocast("cpu", dtype=dtype):
                y = mlp(xx)
        else:
            y = mlp(xx)
    g = torch.randn_like(y, dtype=torch.float32).to(y.dtype)
    y.backward(g)
    grads = {n: p.grad.clone() for n, p in mlp.named_parameters()}
    return y.detach(), xx.grad.clone(), grads, sum(saved)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype,autocast", [(torch.float64, False), (torch.float32, False), (torch.bfloat16, True)],
                         ids=["fp64", "fp32", "bf16-autocast"])
def test_recompute_matches_autograd(dtype, autocast, approximate):
    torch.manual_seed(0)
    ref = Mlp(24, 96, act_layer=lambda: nn.GELU(approximate=approximate)).train()
    if not autocast:
        ref = ref.to(dtype)
    ref.recompute_act = False
    fast = copy.deepcopy(ref)
    fast.recompute_act = True
    assert fast._recomputes() and not ref._recomputes()
    x = torch.randn(2, 5, 7, 24, dtype=torch.float32 if autocast else dtype)
    torch.manual_seed(1)
    y0, dx0, g0, b0 = _run(ref, x, dtype, autocast)
    torch.manual_seed(1)
    y1, dx1, g1, b1 = _run(fast, x, dtype, autocast)
    assert y1.dtype == y0.dtype and torch.equal(y1, y0)
    tol = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(dx1, dx0, rtol=tol, atol=tol)
    for n in g0:
        assert g1[n].dtype == g0[n].dtype, n
        torch.testing.assert_close(g1[n], g0[n], rtol=tol, atol=tol, msg=lambda m, n=n: f"{n}: {m}")
    # autograd keeps h and GELU(h) (plus fc1's input); the recompute keeps h alone: 2 * 5 * 7 * 96 elements fewer
    assert b0 - b1 >= 2 * 5 * 7 * 96 * y0.element_size(), (b0, b1)


def test_recompute_off_in_eval_with_dropout_or_other_activation():
    def on(m):
        m.recompute_act = True
        return m

    assert not Mlp(8, 16).train()._recomputes()  # off unless asked for (VSSM.set_recompute)
    m = on(Mlp(8, 16)).train()
    assert m._recomputes()
    assert not on(Mlp(8, 16)).eval()._recomputes()
    assert not on(Mlp(8, 16, drop=0.1)).train()._recomputes()
    assert not on(Mlp(8, 16, act_layer=nn.SiLU)).train()._recomputes()
    assert not on(Mlp(8, 16, channels_last=False)).train()._recomputes()  # Linear2d
    with torch.no_grad():
        assert not m._recomputes()


@pytest.mark.parametrize("dtype,autocast", [(torch.float64, False), (torch.bfloat16, True)],
                         ids=["fp64", "bf16-autocast"])
def test_one_node_without_recompute_matches_autograd(dtype, autocast, monkeypatch):
    """Mlp.one_node (off by default): the MLP as one autograd node keeping GELU(h) (no recompute) gives
    autograd's values and gradients."""
    torch.manual_seed(0)
    ref = Mlp(24, 96).train()
    if not autocast:
        ref = ref.to(dtype)
    fast = copy.deepcopy(ref)
    x = torch.randn(2, 5, 7, 24, dtype=torch.float32 if autocast else dtype)
    torch.manual_seed(1)  # the output gradient
    y0, dx0, g0, b0 = _run(ref, x, dtype, autocast)
    calls = []
    real = layers._MlpFn.apply
    monkeypatch.setattr(layers._MlpFn, "apply", lambda *a: calls.append(a[-1]) or real(*a))
    monkeypatch.setattr(Mlp, "one_node", True)
    torch.manual_seed(1)
    y1, dx1, g1, b1 = _run(fast, x, dtype, autocast)
    assert calls == [False]  # the node ran, without its recompute
    assert torch.equal(y1, y0)
    tol = {torch.float64: 1e-12, torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(dx1, dx0, rtol=tol, atol=tol)
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], rtol=tol, atol=tol, msg=lambda m, n=n: f"{n}: {m}")
