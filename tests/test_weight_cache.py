"""VSSM.set_weight_cache (models/weight_cache.py): inference keeps the weight casts across forwards with the same
logits bitwise, makes them again after any torch-visible change of a parameter, never acts in training or under
dispatch modes, and drops everything when turned off."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import models
from models import KernelPolicy, weight_cache

# the cuda default policy's composition (one-node chain, fused add + norm, cudnn-style conv) on the torch backend
POLICY = KernelPolicy.all("torch").merged(KernelPolicy(ss2d_core="off"))
AMP = dict(device_type="cpu", dtype=torch.bfloat16)


def _model(name="vmamba_t", channels_last=True):
    torch.manual_seed(0)
    kw = dict(depths=(1, 1, 2, 1), dims=16) if name == "vmamba_t" else dict(depths=(1, 1, 1, 1), dims=16)
    return models.create_model(name, impl=POLICY, num_classes=7, channels_last=channels_last, drop_path_rate=0.0,
                               **kw).eval()


def _infer(m, x):
    with torch.no_grad(), torch.autocast(**AMP):
        return m(x)


def _entries(m):
    return sum(1 for mod in m.modules() if weight_cache._SLOT in mod.__dict__)


def _casts(m, x):
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        _infer(m, x)
    return sum(1 for e in prof.events() if e.name in ("aten::to", "aten::_to_copy")
               and (e.cpu_parent is None or not e.cpu_parent.name.startswith("aten::")))


@pytest.mark.parametrize("name,cl", [("vmamba_t", True), ("vmamba_t", False), ("vanilla_vmamba_tiny", True)])
def test_cached_inference_equals_plain_bitwise_with_fewer_casts(name, cl):
    m = _model(name, cl)
    x = torch.randn(2, 3, 64, 64)
    plain = _infer(m, x)
    casts_plain = _casts(m, x)
    m.set_weight_cache(True)
    first, second = _infer(m, x), _infer(m, x)
    assert torch.equal(first, plain) and torch.equal(second, plain)
    assert _entries(m) > 0
    casts_cached = _casts(m, x)
    assert casts_cached < casts_plain, (casts_cached, casts_plain)


def _changes_are_seen(m, x):
    """Every torch-visible way of changing weights makes the cache cast again: the cached model's logits equal a
    fresh uncached computation after each."""
    m.set_weight_cache(True)
    _infer(m, x)
    ref = _model()  # the same initial weights
    with torch.no_grad():  # an in-place write
        for p, q in zip(m.parameters(), ref.parameters()):
            p.mul_(1.5)
            q.mul_(1.5)
    assert torch.equal(_infer(m, x), _infer(ref, x))
    sd = {k: v * 0.5 for k, v in ref.state_dict().items()}  # load_state_dict
    m.load_state_dict(sd)
    ref.load_state_dict(sd)
    assert torch.equal(_infer(m, x), _infer(ref, x))
    for mod in (m, ref):  # an optimizer step
        mod.train()
        opt = torch.optim.SGD(mod.parameters(), lr=0.1)
        with torch.autocast(**AMP):
            mod(x).float().square().mean().backward()
        opt.step()
        mod.eval()
    assert torch.equal(_infer(m, x), _infer(ref, x))


def test_parameter_changes_are_seen():
    _changes_are_seen(_model(), torch.randn(1, 3, 64, 64))


def test_planted_cache_that_ignores_versions_is_caught(monkeypatch):
    real = weight_cache.cached

    def stale(owner, tensors, dtype, make=None):  # keyed on the storage alone: misses in-place writes
        hit = owner.__dict__.get(weight_cache._SLOT)
        if hit is not None:
            return hit[1]
        return real(owner, tensors, dtype, make)

    monkeypatch.setattr(weight_cache, "cached", stale)
    with pytest.raises(AssertionError):
        _changes_are_seen(_model(), torch.randn(1, 3, 64, 64))


def test_not_used_in_training_or_under_dispatch_modes_and_off_drops_everything():
    m = _model().set_weight_cache(True)
    x = torch.randn(1, 3, 64, 64)
    m.train()
    with torch.autocast(**AMP):
        m(x).float().sum().backward()
    assert _entries(m) == 0  # grad enabled: autograd must see the casts
    m.eval()
    with FlopCounterMode(display=False) as fc, torch.no_grad(), torch.autocast(**AMP):
        m(x)
    assert _entries(m) == 0 and fc.get_total_flops() > 0
    _infer(m, x)
    assert _entries(m) > 0
    m.set_weight_cache(False)
    assert _entries(m) == 0
    _infer(m, x)
    assert _entries(m) == 0


def test_data_writes_are_the_documented_exception():
    """Writes through p.data bump no version counter: the cache keeps the old casts until set_weight_cache(False)
    (models/weight_cache.py states this contract)."""
    m = _model().set_weight_cache(True)
    x = torch.randn(1, 3, 64, 64)
    before = _infer(m, x)
    m.classifier.head.weight.data.mul_(2)
    assert torch.equal(_infer(m, x), before)  # stale, as documented
    m.set_weight_cache(False)
    assert not torch.equal(_infer(m, x), before)
