"""GPU: torch.compile(fullgraph=True) of whole VMamba models on each GPU backend's default policy.

Why on the GPU: a graph break can hide in a path only a GPU impl takes (the fused norms and depthwise
conv, the backends' own limits) and in the GPU machine's torch version. On torch 2.11 `(call or direct)(...)`
in models/fused.py broke the graph at every fused norm (43 breaks in VMamba-T, 2026-12-03 `bench.profile
--compile --explain`); torch 2.13 on the CPU traced it. Each case checks that dynamo finds no break, and
that the compiled forward and backward of a training step (drop path turned off; aot_eager: the traced
graph, without inductor's compile time) equal eager execution.
"""
from __future__ import annotations

import pytest
import torch

import models
import vmamba_kernels as vk
from models.layers import DropPath

pytestmark = pytest.mark.gpu

MODELS = [("vmamba_t", True), ("vmamba_t", False), ("vanilla_vmamba_tiny", True), ("vmamba_tiny_m2", True)]


def _cases():
    """Every model on impl cuda; VMamba-T channels-last on the other GPU backends."""
    impls = sorted(r["name"] for r in vk.list_impls()
                   if not r["name"].startswith("torch") and r["available"] and "cuda" in r["devices"])
    return [(i, n, cl) for i in impls for n, cl in MODELS if i == "cuda" or (n, cl) == MODELS[0]]


def _step(model, x):
    with torch.autocast("cuda", dtype=torch.float16):
        y = model(x)
    return y.float().square().mean()


@pytest.mark.parametrize("impl,name,channels_last", _cases())
@pytest.mark.parametrize("train", [False, True], ids=["infer", "train"])
def test_fullgraph_compile(impl, name, channels_last, train):
    torch.manual_seed(0)
    kw = {"channels_last": channels_last} if not name.startswith("vanilla") else {}
    model = models.create_model(name, impl=impl, depths=(1, 1, 2, 1), dims=32, num_classes=10, **kw).cuda()
    model.train(train)  # train: the default drop-path rate (0.2), so the traced graph samples masks
    x = torch.randn(2, 3, 64, 64, device="cuda")
    torch._dynamo.reset()
    e = torch._dynamo.explain(lambda t: _step(model, t))(x)
    reasons = [f"{r.user_stack[-1].filename}:{r.user_stack[-1].lineno}: {r.reason.splitlines()[0]}"
               for r in e.break_reasons if r.user_stack]
    assert e.graph_break_count == 0, f"{e.graph_break_count} graph break(s): {reasons[:3]}"
    if not train:
        return
    for m in model.modules():  # no sampled masks from here: eager and compiled must give the same numbers
        if isinstance(m, DropPath):
            m.p = 0.0
    ref = _step(model, x)
    ref.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    torch._dynamo.reset()
    out = torch.compile(lambda t: _step(model, t), fullgraph=True, backend="aot_eager")(x)
    out.backward()
    torch.testing.assert_close(out, ref, rtol=1e-3, atol=1e-5)
    for n, p in model.named_parameters():
        if n in grads:
            torch.testing.assert_close(p.grad, grads[n], rtol=2e-2, atol=1e-4, msg=lambda m: f"{n}: {m}")
