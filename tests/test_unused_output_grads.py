"""Ops with several outputs (selective_scan: y, last_state, aux; add_layer_norm: y, s, mean, rstd; ss2d_core: y,
xdbl) do not let autograd materialise zero gradients for the outputs a training step leaves unused: each was
a tensor allocated and filled per call (about 150 per VMamba-T training step), host time in a host-bound step.
And a loss through one output alone still gets the right gradients."""
from __future__ import annotations

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import vmamba_kernels as vk

# autograd materialises a missing output gradient with at::zeros (the torch backend's own backward bodies use
# zeros_like for their state, which these tests do not count)
ZERO_FILLS = ("aten::zeros",)


def _fills(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return sum(e.name in ZERO_FILLS for e in prof.events())


def _ln_inputs(branch: bool):
    torch.manual_seed(0)
    x = torch.randn(2, 5, 3, 8, requires_grad=True)
    br = torch.randn(2, 5, 3, 8, requires_grad=True) if branch else None
    w = (1 + 0.1 * torch.randn(8)).requires_grad_()
    b = (0.1 * torch.randn(8)).requires_grad_()
    return x, br, w, b


@pytest.mark.parametrize("branch", [False, True])
def test_layer_norm_backward_makes_no_zeros(branch):
    x, br, w, b = _ln_inputs(branch)
    y, s = vk.add_layer_norm(x, br, w, b, channels_last=True, impl="torch")
    loss = y.square().sum()  # s unused, and the statistics never have a gradient
    assert _fills(lambda: loss.backward()) == 0


def test_layer_norm_sum_alone_gets_its_gradient():
    x, br, w, b = _ln_inputs(True)
    y, s = vk.add_layer_norm(x, br, w, b, channels_last=True, impl="torch")
    (s * 3).sum().backward()  # y unused: s = x + branch, so both get 3
    torch.testing.assert_close(x.grad, torch.full_like(x, 3.0))
    torch.testing.assert_close(br.grad, torch.full_like(br, 3.0))
    assert w.grad is None or not w.grad.any()


def test_scan_backward_makes_no_zeros():
    torch.manual_seed(0)
    b, KD, L, N = 2, 8, 13, 1
    u = torch.randn(b, KD, L, requires_grad=True)
    delta = torch.randn(b, KD, L, requires_grad=True)
    A = -torch.rand(KD, N).requires_grad_()
    B = torch.randn(b, 4, N, L, requires_grad=True)
    C = torch.randn(b, 4, N, L, requires_grad=True)
    y = vk.selective_scan(u, delta, A, B, C, delta_softplus=True, impl="torch")
    loss = y.sum()
    assert _fills(lambda: loss.backward()) == 0
    assert u.grad is not None and torch.isfinite(u.grad).all()
