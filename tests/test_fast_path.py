"""The fast path (fused residual add + LayerNorm, fused depthwise conv + activation, channel-last cores)
computes the reference path's function: same logits and gradients for every forward type and layout.

CPU, float64, reduced-depth configs. The reference path is the same model with its fused ops "off"
(KernelPolicy.unfused), i.e. the official module-by-module computation.
"""
from __future__ import annotations

import pytest
import torch

import models
from models import KernelPolicy
from models.layers import DropPath

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

SMALL = dict(depths=(1, 1, 2, 1), dims=16)
CASES = [("vmamba_tiny_s1l8", True), ("vmamba_tiny_s1l8", False), ("vmamba_tiny_s2l5", True),
         ("vanilla_vmamba_tiny", False), ("vmamba_tiny_m2", False)]


def pair(name, channel_first, **kw):
    kw = {**SMALL, "channels_last": not channel_first, **kw}
    fast = models.create_model(name, impl=KernelPolicy("torch", "torch", "torch", "torch", "torch"), **kw).double()
    ref = models.create_model(name, impl=KernelPolicy.unfused("torch"), **kw).double()
    ref.load_state_dict(fast.state_dict())
    return fast, ref


def grads(m):
    return {n: p.grad for n, p in m.named_parameters()}


@pytest.mark.parametrize("name,channel_first", CASES, ids=[f"{n}-{'cf' if c else 'cl'}" for n, c in CASES])
def test_fast_path_matches_reference(name, channel_first):
    torch.manual_seed(0)
    fast, ref = pair(name, channel_first, drop_path_rate=0.0)
    x = torch.randn(2, 3, 40, 56, dtype=torch.float64)  # 10 x 14 after the stem, odd maps later
    yf, yr = fast(x), ref(x)
    torch.testing.assert_close(yf, yr, rtol=1e-10, atol=1e-10)
    g = torch.randn_like(yf)
    yf.backward(g)
    yr.backward(g)
    gf, gr = grads(fast), grads(ref)
    for n in gr:
        torch.testing.assert_close(gf[n], gr[n], rtol=1e-9, atol=1e-10, msg=lambda m, n=n: f"{n}: {m}")


def test_fast_path_drop_path_scales_the_right_branch(monkeypatch):
    """Train mode with stochastic depth: the fused path applies each branch's per-sample factor to that
    branch only (masks made deterministic so both paths draw the same ones)."""
    masks = iter([])

    def next_scale():
        return next(masks)

    def forward(self, x):  # the reference DropPath with a scripted mask
        return x * next_scale().to(x.dtype).view(-1, *([1] * (x.dim() - 1)))

    def sample_scale(self, x):
        return next_scale()

    monkeypatch.setattr(DropPath, "forward", forward)
    monkeypatch.setattr(DropPath, "sample_scale", sample_scale)
    fast, ref = pair("vmamba_tiny_s1l8", True, drop_path_rate=0.5)
    fast.train(), ref.train()
    x = torch.randn(3, 3, 32, 32, dtype=torch.float64)
    scripted = [torch.tensor(v, dtype=torch.float64) for v in
                ([0.0, 2.0, 2.0], [2.0, 0.0, 2.0], [2.0, 2.0, 0.0], [0.0, 0.0, 2.0]) * 10]
    masks = iter(scripted)
    yr = ref(x)
    masks = iter(scripted)
    yf = fast(x)
    torch.testing.assert_close(yf, yr, rtol=1e-10, atol=1e-10)


def test_policy_can_turn_fused_ops_off_per_layer():
    m = models.create_model("vmamba_tiny_s1l8", impl={"*": "torch", "layers.1.*": "off",
                                                      "layers.2.*": KernelPolicy(dwconv2d="off")}, **SMALL)
    rows = {(r["layer"], r["op"]): r["impl"] for r in m.impl_table()}
    assert rows[("layers.1.blocks.0", "add_layer_norm")] == "off"
    assert rows[("layers.1.blocks.0", "dwconv2d")] == "off"
    assert rows[("layers.1.blocks.0", "selective_scan")] == "torch"  # "off" leaves the kernels alone
    assert rows[("layers.2.blocks.0", "dwconv2d")] == "off"
    assert rows[("layers.2.blocks.0", "add_layer_norm")] != "off"
    assert rows[("layers.1.downsample.3", "add_layer_norm")] == "off"
    assert rows[("classifier.norm", "add_layer_norm")] != "off"
    assert m.layers[1].blocks[0].norm.impl == "off" and m.layers[1].blocks[0].op.out_norm.impl == "off"
    with pytest.raises(ValueError, match="off"):
        models.create_model("vmamba_tiny_s1l8", impl=KernelPolicy(selective_scan="off"), **SMALL)


def test_fast_path_dtypes_under_autocast(monkeypatch):
    """Under autocast the residual stream stays float32 (as the reference) while the block norms write the
    autocast dtype their projections read."""
    seen = []
    from models import fused

    real = fused.add_norm

    def spy(norm, x, branch=None, branch_scale=None, **kw):
        y, s = real(norm, x, branch, branch_scale, **kw)
        seen.append((x.dtype, None if branch is None else branch.dtype, y.dtype, s.dtype))
        return y, s

    monkeypatch.setattr(fused, "add_norm", spy)
    import models.vmamba as vm

    monkeypatch.setattr(vm, "add_norm", spy)
    m = models.create_model("vmamba_tiny_s1l8", impl="torch", **SMALL).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(torch.randn(1, 3, 32, 32))
    assert torch.isfinite(y).all()
    block = [t for t in seen if t[1] is not None]
    assert block and all(t == (torch.float32, torch.bfloat16, torch.bfloat16, torch.float32) for t in block)
