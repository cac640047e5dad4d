"""VSSM.set_recompute parts ("norms", "delta", "routes", "mlp", joined by "+"): each part keeps less for the
backward than "none" (counted over the tensors autograd saves, one count per storage), and the gradients stay
those of "none": bitwise for routes, delta and mlp (the same kernels rebuild the same values), to the rounding
of the norm output over |weight| for norms (its backward rebuilds xhat from y)."""
from __future__ import annotations

import copy

import pytest
import torch

import models
import models.ss2d as ss2d
from models import KernelPolicy
from models.vmamba import VSSM

UNFUSED_TORCH = KernelPolicy.all("torch").merged(KernelPolicy(ss2d_core="off"))
CASES = [("vmamba_t", True), ("vmamba_t", False), ("vanilla_vmamba_tiny", True)]
IDS = ["v05-cl", "v05-cf", "v0"]


def _model(name, channels_last):
    torch.manual_seed(0)
    cl = {"channels_last": channels_last} if name == "vmamba_t" else {}
    m = models.create_model(name, impl=UNFUSED_TORCH, depths=(1, 1, 2, 1), dims=16, num_classes=10, **cl)
    return m.train()


def _step(m, x, what, autocast, chain=True, monkeypatch=None):
    """One training step under `what`: (logits, grads, bytes of the distinct storages autograd saved)."""
    if monkeypatch is not None:
        monkeypatch.setattr(ss2d._KernelCalls, "chain_autograd", chain)
    m.set_recompute(what)
    m.zero_grad(set_to_none=True)
    storages = {}

    def pack(t):
        st = t.untyped_storage()
        storages[st.data_ptr()] = st.nbytes()
        return t

    torch.manual_seed(1)  # stochastic depth
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            y = m(x)
    (y.float() * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    params = {p.untyped_storage().data_ptr() for p in m.parameters()}
    saved = sum(n for ptr, n in storages.items() if ptr not in params and ptr != x.untyped_storage().data_ptr())
    return y.detach(), {n: p.grad.detach().clone() for n, p in m.named_parameters() if p.grad is not None}, saved


def test_parts_parse():
    assert VSSM.recompute_parts("all") == frozenset(VSSM.RECOMPUTE_PARTS)
    assert VSSM.recompute_parts("none") == frozenset()
    assert VSSM.recompute_parts("norms+delta") == {"norms", "delta"}
    assert VSSM.recompute_parts("mlp") == {"mlp"}
    for bad in ("bogus", "norms+bogus", "", "+", "all+mlp", None, True):
        with pytest.raises(ValueError, match="joined by"):
            VSSM.recompute_parts(bad)


@pytest.mark.parametrize("autocast", [True, False], ids=["bf16-autocast", "fp32"])
@pytest.mark.parametrize("chain", [True, False], ids=["one-node-chain", "composition"])
@pytest.mark.parametrize("name,channels_last", CASES, ids=IDS)
def test_each_part_saves_memory_and_keeps_gradients(name, channels_last, chain, autocast, monkeypatch):
    base = _model(name, channels_last)
    x = torch.randn(2, 3, 56, 40)  # stage maps 14x10, 7x5, 4x3 (padded), 2x2
    y0, g0, saved0 = _step(copy.deepcopy(base), x, "none", autocast, chain, monkeypatch)
    # the MLP's recompute is for channels-last GEMMs (models/layers.py Mlp); v0 blocks have no MLP
    parts = [p for p in VSSM.RECOMPUTE_PARTS if not (p == "mlp" and (name.startswith("vanilla") or not channels_last))]
    saved = {}
    for what in parts + ["norms+delta", "all"]:
        y1, g1, saved[what] = _step(copy.deepcopy(base), x, what, autocast, chain, monkeypatch)
        assert saved[what] < saved0, (what, saved[what], saved0)
        if "norms" not in VSSM.recompute_parts(what):
            assert torch.equal(y1, y0), what
            for n in g0:
                assert torch.equal(g1[n], g0[n]), (what, n)
        else:  # the forward is the same; the backward sees xhat rebuilt from the bfloat16 output
            assert torch.equal(y1, y0), what
            assert g1.keys() == g0.keys()
            for n in g0:
                scale = g0[n].abs().max().item() or 1.0
                torch.testing.assert_close(g1[n], g0[n], rtol=3e-2, atol=3e-2 * scale,
                                           msg=lambda m, n=n, w=what: f"{w} {n}: {m}")
    assert saved["norms+delta"] < min(saved["norms"], saved["delta"])
    assert saved["all"] == min(saved.values())
    # routes rebuild delta too: "routes" keeps no more than "delta"
    assert saved["routes"] <= saved["delta"]


def test_norms_gradients_close_in_float64():
    """Without autocast the norm output is float64: the rebuilt xhat is exact to rounding, so the norms part's
    gradients match "none" tightly (a wrong rebuild, e.g. a bias left out, is far outside this)."""
    base = _model("vmamba_t", True).double()
    x = torch.randn(2, 3, 56, 40, dtype=torch.float64)
    y0, g0, saved0 = _step(copy.deepcopy(base), x, "none", False)
    y1, g1, saved1 = _step(copy.deepcopy(base), x, "norms", False)
    assert torch.equal(y1, y0) and saved1 < saved0
    for n in g0:
        scale = g0[n].abs().max().item() or 1.0
        torch.testing.assert_close(g1[n], g0[n], rtol=1e-9, atol=1e-9 * scale, msg=lambda m, n=n: f"{n}: {m}")


def test_norms_part_with_nonunit_norm_parameters():
    """Trained norms have weights far from 1 and nonzero biases (a freshly made model has 1 and 0, which would
    hide a rebuild that ignores them)."""
    base = _model("vmamba_t", True).double()
    torch.manual_seed(3)
    with torch.no_grad():
        for mod in base.modules():
            if isinstance(mod, models.layers.LayerNorm):
                mod.weight.uniform_(0.2, 2.0).mul_(torch.randint(0, 2, mod.weight.shape) * 2 - 1)
                mod.bias.normal_(0, 0.5)
    x = torch.randn(1, 3, 40, 56, dtype=torch.float64)
    y0, g0, _ = _step(copy.deepcopy(base), x, "none", False)
    y1, g1, _ = _step(copy.deepcopy(base), x, "norms", False)
    for n in g0:
        scale = g0[n].abs().max().item() or 1.0
        torch.testing.assert_close(g1[n], g0[n], rtol=1e-9, atol=1e-9 * scale, msg=lambda m, n=n: f"{n}: {m}")
