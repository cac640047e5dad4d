"""recompute_routes of SS2Dv05 / SS2Dv0 (models/ss2d.py RouteRecompute): in eager training the unfused chain lets its route
tensors go after the forward and rebuilds them in the backward, with bitwise the same logits and gradients."""
from __future__ import annotations

import copy
import weakref

import pytest
import torch

import models
import models.ss2d as ss2d
from models import KernelPolicy
from vmamba_kernels import dispatch

UNFUSED_TORCH = KernelPolicy.all("torch").merged(KernelPolicy(ss2d_core="off"))
CROSS_SCAN = ss2d._KernelCalls._cross_scan


def _train_step(model, x, recompute, monkeypatch, kept, chain):
    monkeypatch.setattr(ss2d._KernelCalls, "recompute_routes", recompute)
    monkeypatch.setattr(ss2d._KernelCalls, "chain_autograd", chain)
    in_forward = [True]
    if chain:  # models.chain calls the backend's raw cross scan: watch that (forward calls only)
        raw = dispatch.get_backend("torch").impl()
        real = raw.cross_scan_fwd

        def raw_spy(x, mode, channels_last):
            out = real(x, mode, channels_last)
            if in_forward[0]:
                kept.append(weakref.ref(out))
            return out

        monkeypatch.setattr(raw, "cross_scan_fwd", raw_spy)
    else:
        def spy(self, x, channels_last):  # weak references to every route tensor the forward made
            out = CROSS_SCAN(self, x, channels_last)
            if torch.is_grad_enabled():
                kept.append(weakref.ref(out))
            return out

        monkeypatch.setattr(ss2d._KernelCalls, "_cross_scan", spy)
    model.zero_grad(set_to_none=True)
    torch.manual_seed(1)  # stochastic depth
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = model(x)
    in_forward[0] = False
    alive = sum(r() is not None for r in kept)
    y.float().square().sum().backward()
    return y.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}, alive


@pytest.mark.parametrize("chain", [False, True], ids=["composition", "one-node-chain"])
@pytest.mark.parametrize("name,channels_last", [("vmamba_t", True), ("vmamba_t", False),
                                               ("vanilla_vmamba_tiny", True)], ids=["v05-cl", "v05-cf", "v0"])
def test_routes_rebuilt_bitwise_and_released(name, channels_last, chain, monkeypatch):
    """Both eager paths of the unfused chain: the composition of ops (RouteRecompute's saved-tensor hooks)
    and the one-node chain (models.chain, which saves x and rebuilds the routes itself)."""
    torch.manual_seed(0)
    kw = {"channels_last": channels_last} if name == "vmamba_t" else {}
    m = models.create_model(name, impl=UNFUSED_TORCH, **kw).train()
    m2 = copy.deepcopy(m)
    x = torch.randn(2, 3, 64, 64)
    kept_off, kept_on = [], []
    y0, g0, alive_off = _train_step(m, x, False, monkeypatch, kept_off, chain)
    y1, g1, alive_on = _train_step(m2, x, True, monkeypatch, kept_on, chain)
    assert torch.equal(y0, y1)
    for n in g0:
        assert torch.equal(g0[n], g1[n]), n
    n_blocks = sum(isinstance(mod, (ss2d.SS2Dv05, ss2d.SS2Dv0)) for mod in m.modules())
    assert len(kept_off) == n_blocks and len(kept_on) == n_blocks  # no rebuild in a forward
    assert alive_off == n_blocks  # autograd keeps every block's xs
    assert alive_on == 0  # the recompute keeps none


def test_no_recompute_outside_training(monkeypatch):
    m = models.create_model("vmamba_t", impl=UNFUSED_TORCH).eval()
    blk = next(mod for mod in m.modules() if isinstance(mod, ss2d.SS2Dv05))
    x = torch.randn(1, 2, 2, blk.d_inner, requires_grad=True)
    assert not blk._recomputes(x)
    blk.train()
    assert not blk._recomputes(x)  # off by default: it costs time (VSSM.set_recompute)
    monkeypatch.setattr(ss2d._KernelCalls, "recompute_routes", True)
    assert blk._recomputes(x)
    with torch.no_grad():
        assert not blk._recomputes(x)
    monkeypatch.setattr(ss2d._KernelCalls, "recompute_routes", False)
    assert not blk._recomputes(x)


@pytest.mark.parametrize("name", ["vmamba_t", "vanilla_vmamba_tiny"])
def test_set_recompute_per_model(name):
    """VSSM.set_recompute sets every block of one model (instance attributes: other models keep the class
    default, off), and a name it does not know is refused."""
    m = models.create_model(name, impl=UNFUSED_TORCH).train()
    other = models.create_model(name, impl=UNFUSED_TORCH).train()
    mixers = [mod for mod in m.modules() if isinstance(mod, (ss2d.SS2Dv05, ss2d.SS2Dv0))]
    mlps = [mod for mod in m.modules() if isinstance(mod, models.layers.Mlp)]
    norms = [mod for mod in m.modules() if isinstance(mod, models.layers.LayerNorm)]
    assert mixers and norms and (mlps or name.startswith("vanilla"))  # vanilla v0 blocks have no MLP
    x = torch.randn(1, 2, 2, mixers[0].d_inner, requires_grad=True)
    for what, routes, mlp, norm in (("none", None, False, False), ("mlp", None, True, False),
                                    ("delta", "delta", False, False), ("norms", None, False, True),
                                    ("routes+delta", "routes", False, False), ("norms+delta", "delta", False, True),
                                    ("all", "routes", True, True)):
        assert m.set_recompute(what) is m
        assert all(mod._recomputes(x) == routes for mod in mixers), what
        assert all(mod.recompute_act == mlp for mod in mlps), what
        assert all(mod.recompute_from_output == norm for mod in norms), what
    m.set_recompute("all")
    assert not any(mod._recomputes(x) for mod in other.modules() if isinstance(mod, (ss2d.SS2Dv05, ss2d.SS2Dv0)))
    assert not any(mod.recompute_from_output for mod in other.modules() if isinstance(mod, models.layers.LayerNorm))
    for bad in ("bogus", "routes+bogus", "", "norms+", "+"):
        with pytest.raises(ValueError, match="'all', 'none' or parts of norms, delta, routes, mlp"):
            m.set_recompute(bad)
