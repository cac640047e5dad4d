"""models.norm_node: the lean eager add + LayerNorm node gives the public op's values and gradients bitwise,
validates and chooses once per shape, raises the public op's errors, and leaves refusals to the layer's policy."""
from __future__ import annotations

import dataclasses
import itertools

import pytest
import torch

import vmamba_kernels as vk
from models import norm_node
from models.norm_node import add_norm_node
from vmamba_kernels import dispatch
from vmamba_kernels.op_table import SPECS

CASES = list(itertools.product(
    ["f64", "f32", "bf16_branch"],  # x / branch dtypes: the residual stream under autocast has a 16-bit branch
    [False, True],  # branch
    [False, True],  # branch_scale
    [False, True],  # channels_last
    [False, True],  # bias
))


def _inputs(kind, has_branch, has_scale, cl, has_bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    xdt = torch.float64 if kind == "f64" else torch.float32
    wdt = xdt
    bdt = torch.bfloat16 if kind == "bf16_branch" else xdt
    shape = (2, 5, 3, 6) if cl else (2, 6, 5, 3)  # C = 6, H x W = 5 x 3
    C = 6
    x = torch.randn(shape, generator=g, dtype=xdt)
    br = torch.randn(shape, generator=g, dtype=xdt).to(bdt) if has_branch else None
    w = 1 + 0.1 * torch.randn(C, generator=g, dtype=wdt)
    b = 0.1 * torch.randn(C, generator=g, dtype=wdt) if has_bias else None
    sc = (torch.rand(2, generator=g, dtype=wdt) * 2) if (has_scale and has_branch) else None
    out_dtype = torch.bfloat16 if kind == "bf16_branch" else xdt
    return x, br, w, b, sc, out_dtype


def _leaves(ts):
    return [None if t is None else (t.clone().requires_grad_() if t.is_floating_point() else t) for t in ts]


def _run(fn, x, br, w, b, sc, out_dtype, cl, seed=1):
    leaves = _leaves([x, br, w, b])
    y, s = fn(*leaves, sc, out_dtype, cl)
    g = torch.Generator().manual_seed(seed)
    dy = torch.randn(y.shape, generator=g).to(y.dtype)
    ds = torch.randn(s.shape, generator=g).to(s.dtype)
    loss = (y.float() * dy.float()).sum() + (s.float() * ds.float()).sum()
    loss.backward()
    return [y.detach(), s.detach()] + [None if t is None else t.grad for t in leaves]


def _public(x, br, w, b, sc, out_dtype, cl):
    return vk.add_layer_norm(x, br, w, b, 1e-5, branch_scale=sc, channels_last=cl, out_dtype=out_dtype, impl="torch")


def _node(x, br, w, b, sc, out_dtype, cl):
    out, ran = add_norm_node(x, br, w, b, 1e-5, sc, cl, out_dtype, "torch")
    assert ran == "torch"
    return out


def _assert_same(a, b):
    for i, (p, q) in enumerate(zip(a, b)):
        assert (p is None) == (q is None), i
        if p is not None:
            assert p.dtype == q.dtype and torch.equal(p, q), (i, (p.double() - q.double()).abs().max())


@pytest.mark.parametrize("kind,has_branch,has_scale,cl,has_bias", CASES)
def test_node_equals_the_public_op_bitwise(kind, has_branch, has_scale, cl, has_bias):
    ins = _inputs(kind, has_branch, has_scale, cl, has_bias)
    _assert_same(_run(_node, *ins, cl), _run(_public, *ins, cl))
    with torch.no_grad():  # inference: the raw kernel alone, no autograd node
        y, s = _node(*ins, cl)
        yp, sp = _public(*ins, cl)
    assert y.grad_fn is None and torch.equal(y, yp) and torch.equal(s, sp)
    if not has_branch:
        assert s is ins[0]  # s is x itself, as the public op returns it


def test_planted_gradient_error_is_caught(monkeypatch):
    ins = _inputs("f32", True, True, True, True)
    good = _run(_public, *ins, True)
    orig = norm_node._AddNorm.backward

    def bad_backward(ctx, dy, ds=None):
        g = list(orig(ctx, dy, ds))
        g[2] = g[2] * (1 + 1e-6)  # the weight gradient off by one part in a million
        return tuple(g)

    monkeypatch.setattr(norm_node._AddNorm, "backward", staticmethod(bad_backward))
    with pytest.raises(AssertionError):
        _assert_same(_run(_node, *ins, True), good)


def test_validates_and_chooses_once_per_shape(monkeypatch):
    dispatch.clear_choice_cache()
    calls = []
    real = SPECS["add_layer_norm"].check
    monkeypatch.setitem(SPECS, "add_layer_norm", dataclasses.replace(
        SPECS["add_layer_norm"], check=lambda *a: calls.append(1) or real(*a)))
    ins = _inputs("f32", True, False, True, True)
    for _ in range(3):
        _node(*ins, True)
    assert len(calls) == 1
    with torch.no_grad():  # grad mode is part of the key (the backend choice depends on it)
        _node(*ins, True)
    assert len(calls) == 2
    x, br, w, b, sc, od = _inputs("f32", True, False, True, True)
    _node(x[:1].contiguous(), br[:1].contiguous(), w, b, sc, od, True)  # a new shape
    assert len(calls) == 3


def test_bad_inputs_raise_the_public_errors():
    x, br, w, b, sc, od = _inputs("f32", True, True, True, True)
    dispatch.clear_choice_cache()
    with pytest.raises(TypeError, match="weight must be torch.float32"):
        add_norm_node(x, br, w.double(), b, 1e-5, sc, True, od, "torch")
    with pytest.raises(ValueError, match="branch must have x's shape"):
        add_norm_node(x, br[:1], w, b, 1e-5, sc, True, od, "torch")
    with pytest.raises(ValueError, match=r"branch_scale must be \(B=2,\)"):
        add_norm_node(x, br, w, b, 1e-5, sc[:1], True, od, "torch")
    with pytest.raises(ValueError, match="eps must be a positive float"):
        add_norm_node(x, br, w, b, 0.0, sc, True, od, "torch")
    with pytest.raises(ValueError, match="takes no gradient"):
        add_norm_node(x, br, w, b, 1e-5, sc.clone().requires_grad_(), True, od, "torch")


def test_refusal_reaches_the_layer_policy():
    """A named impl that refuses (cuda without a GPU) raises ImplRefused from the node; the LayerNorm module then
    falls back to the automatic choice when its policy allows, else raises the refusal with the reasons."""
    from models.layers import LayerNorm  # noqa: PLC0415

    if torch.cuda.is_available():
        pytest.skip("needs an impl that refuses CPU tensors")
    x = torch.randn(2, 3, 4, 8)
    with pytest.raises(vk.ImplRefused):
        add_norm_node(x, None, torch.ones(8), None, 1e-5, None, True, x.dtype, "cuda")
    norm = LayerNorm(8)
    norm.impl, norm.fallback = "cuda", True
    y = norm(x)
    assert norm.ran == "torch"
    torch.testing.assert_close(y, torch.nn.functional.layer_norm(x, (8,), norm.weight, norm.bias), atol=1e-5, rtol=1e-5)
    norm.fallback = False
    with pytest.raises(vk.ImplRefused, match="cuda"):
        norm(x)


def test_model_records_what_ran_and_matches_the_public_op_path():
    import models  # noqa: PLC0415
    from models import fused  # noqa: PLC0415

    torch.manual_seed(0)
    m = models.create_model("vmamba_t", impl="torch", depths=(1, 1, 1, 1), dims=8, num_classes=5, channels_last=True)
    x = torch.randn(1, 3, 32, 32)
    m.train()
    before = {(r["layer"], r["op"]): r["ran"] for r in m.impl_table()}
    assert before[("layers.0.blocks.0", "add_layer_norm")] == "" and before[("classifier.norm", "add_layer_norm")] == ""
    torch.manual_seed(1)
    y_new = m(x)
    y_new.sum().backward()
    g_new = {n: p.grad.clone() for n, p in m.named_parameters()}
    m.zero_grad(set_to_none=True)
    ran = {(r["layer"], r["op"]): r["ran"] for r in m.impl_table()}
    assert ran[("layers.0.blocks.0", "add_layer_norm")] == "torch"
    assert ran[("classifier.norm", "add_layer_norm")] == "torch"
    old = fused.lean_norms
    fused.lean_norms = False
    try:
        torch.manual_seed(1)
        y_old = m(x)
        y_old.sum().backward()
    finally:
        fused.lean_norms = old
    assert torch.equal(y_new, y_old)
    for n, p in m.named_parameters():
        assert torch.equal(g_new[n], p.grad), n


def test_inference_takes_the_backend_entry_without_statistics(monkeypatch):
    """Without gradients the node calls the backend's `add_layer_norm_infer` when it has one (cuda: no mean / rstd
    allocated), with the same arguments and results as the full forward; with gradients the full forward."""
    raw = dispatch.get_backend("torch").impl()
    calls = []

    def infer(x, br, w, b, sc, eps, cl, out_dtype):
        calls.append("infer")
        y, s, _, _ = raw.add_layer_norm_fwd(x, br, w, b, sc, eps, cl, out_dtype)
        return y, s

    monkeypatch.setattr(raw, "add_layer_norm_infer", infer, raising=False)
    x, br, w, b, sc, out_dtype = _inputs("f32", True, True, True, True)
    with torch.no_grad():
        (y, s), _ = add_norm_node(x, br, w, b, 1e-5, sc, True, out_dtype, "torch")
    assert calls == ["infer"]
    y_ref, s_ref = vk.add_layer_norm(x, br, w, b, 1e-5, branch_scale=sc, channels_last=True, out_dtype=out_dtype,
                                     impl="torch")
    assert torch.equal(y, y_ref) and torch.equal(s, s_ref)
    (y2, _), _ = add_norm_node(x.requires_grad_(), br, w, b, 1e-5, sc, True, out_dtype, "torch")
    assert calls == ["infer"] and y2.requires_grad  # training: the full forward (statistics for the backward)
