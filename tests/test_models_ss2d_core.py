"""The models with the fused SS2D core (vmamba_kernels.ss2d_core) against the same models with it "off" (the
unfused chain cross scan -> projections -> scan -> cross merge): logits and every parameter's gradient,
the kernel policy's resolution of the new field, impl_table, state_dicts, parameter and FLOP counts.
CPU, impl "torch", reduced-depth configs."""
from __future__ import annotations

import pytest
import torch

import models
import vmamba_kernels as vk
from models import KernelPolicy
from models import ss2d as ss2d_mod

SMALL = dict(depths=(1, 1, 2, 1), dims=16)
CASES = [("vmamba_tiny_s1l8", True), ("vmamba_tiny_s1l8", False), ("vmamba_tiny_s2l5", True),
         ("vanilla_vmamba_tiny", False)]
OFF = KernelPolicy.all("torch").merged(KernelPolicy(ss2d_core="off"))


def pair(name, channel_first, dtype=torch.float64):
    kw = {**SMALL, "channels_last": not channel_first}
    on = models.create_model(name, impl="torch", **kw).to(dtype).eval()
    off = models.create_model(name, impl=OFF, **kw).to(dtype).eval()
    off.load_state_dict(on.state_dict())
    return on, off


@pytest.mark.parametrize("name,channel_first,dtype,tol", [
    *[(n, c, torch.float64, (1e-10, 1e-10)) for n, c in CASES], ("vmamba_tiny_s1l8", True, torch.float32, (2e-5, 2e-5))],
    ids=[f"{n}-{'cf' if c else 'cl'}-f64" for n, c in CASES] + ["vmamba_tiny_s1l8-cf-f32"])
def test_fused_core_matches_the_unfused_chain(name, channel_first, dtype, tol):
    torch.manual_seed(0)
    on, off = pair(name, channel_first, dtype)
    assert {r["impl"] for r in on.impl_table() if r["op"] == "ss2d_core"} == {"torch"}
    assert {r["impl"] for r in off.impl_table() if r["op"] == "ss2d_core"} == {"off"}
    x = torch.randn(1, 3, 40, 24, dtype=dtype)  # 10 x 6 after the stem, odd maps later
    y_on, y_off = on(x), off(x)
    torch.testing.assert_close(y_on, y_off, rtol=tol[0], atol=tol[1])
    g = torch.randn_like(y_on)
    y_on.backward(g)
    y_off.backward(g)
    g_off = dict(off.named_parameters())
    for n, p in on.named_parameters():
        scale = max(1.0, g_off[n].grad.abs().max().item())
        torch.testing.assert_close(p.grad, g_off[n].grad, rtol=tol[0] * 10, atol=tol[1] * 10 * scale,
                                   msg=lambda m, n=n: f"{n}: {m}")
    ran = {r["ran"] for r in on.impl_table() if r["op"] == "ss2d_core"}
    assert ran == {"torch"}


def test_fused_core_is_called_and_state_params_flops_unchanged(monkeypatch):
    calls = []
    real = vk.ss2d_core

    def spy(*a, **k):
        calls.append(k.get("impl"))
        return real(*a, **k)

    monkeypatch.setattr(ss2d_mod.vk, "ss2d_core", spy)
    on, off = pair("vmamba_tiny_s1l8", True, torch.float32)
    on(torch.randn(1, 3, 32, 32))
    assert calls == ["torch"] * sum(SMALL["depths"])
    assert list(on.state_dict()) == list(off.state_dict())
    assert sum(p.numel() for p in on.parameters()) == sum(p.numel() for p in off.parameters())
    from bench import flops as FL  # noqa: PLC0415

    total_on, by_on = FL.model_flops(on, img_size=32, by_op=True)
    total_off, by_off = FL.model_flops(off, img_size=32, by_op=True)
    assert total_on == total_off and by_on["ss2d_core"] > 0 and "selective_scan" not in by_on


def test_policy_resolution_of_ss2d_core():
    m = models.create_model("vmamba_tiny_s1l8", impl={
        "*": "torch",  # (a name leaves ss2d_core automatic: it follows the three ops it replaces)
        "layers.1.*": KernelPolicy(selective_scan="torch_sequential"),  # a per-op mix: the fused op is off
        "layers.2.blocks.0": "torch_sequential",  # one impl for all: it follows
        "layers.3.*": KernelPolicy(ss2d_core="off"),
    }, **SMALL)
    rows = {(r["layer"], r["op"]): r for r in m.impl_table()}
    assert rows[("layers.0.blocks.0", "ss2d_core")]["impl"] == "torch"
    assert rows[("layers.1.blocks.0", "ss2d_core")]["impl"] == "off"
    assert "different impls" in rows[("layers.1.blocks.0", "ss2d_core")]["note"]
    assert rows[("layers.2.blocks.0", "ss2d_core")]["impl"] == "torch_sequential"
    assert rows[("layers.3.blocks.0", "ss2d_core")]["impl"] == "off"
    m.eval()(torch.randn(1, 3, 32, 32))
    rows = {(r["layer"], r["op"]): r for r in m.impl_table()}
    assert rows[("layers.2.blocks.0", "selective_scan")]["ran"] == "torch_sequential"  # inside the fused op
    assert rows[("layers.1.blocks.0", "selective_scan")]["ran"] == "torch_sequential"  # the chain
    assert rows[("layers.3.blocks.0", "ss2d_core")]["ran"] == "off"
    # an impl without the fused op keeps its own unfused chain (not another impl's fused op)
    from models import policy  # noqa: PLC0415

    import dataclasses  # noqa: PLC0415

    known = dict(policy._known_impls())
    known["cupy"] = dataclasses.replace(known["cupy"], _reason=None)  # as on a GPU machine
    known["cuda"] = dataclasses.replace(known["cuda"], _reason=None)
    cupy = policy.resolve("cupy", "layers.0.blocks.0", known=known)
    assert cupy["selective_scan"].impl == "cupy" and cupy["ss2d_core"].impl == "off"
    assert "cupy does not implement ss2d_core" in cupy["ss2d_core"].note
    explicit = policy.resolve(KernelPolicy(ss2d_core="cupy"), "layers.0.blocks.0", known=known)
    assert explicit["ss2d_core"].impl == "off"
    # GPU impls whose fused core measured slower in the whole model (policy.CORE_AUTO_OFF): the chain unless named
    auto_cuda = policy.resolve("cuda", "layers.0.blocks.0", known=known)["ss2d_core"]
    assert auto_cuda.impl == "off" and "KernelPolicy(ss2d_core='cuda')" in auto_cuda.note
    named = policy.resolve(KernelPolicy.all("cuda").merged(KernelPolicy(ss2d_core="cuda")), "layers.0.blocks.0",
                           known=known)
    assert named["ss2d_core"].impl == "cuda"
    everything_auto = policy.resolve(None, "layers.0.blocks.0", known=known)
    assert everything_auto["selective_scan"].impl is None and everything_auto["ss2d_core"].impl == "off"
    # the Mamba2-style mixer has no SS2D core chain: always off
    m0 = models.create_model("vmamba_tiny_m2", impl="torch", **SMALL)
    assert {r["impl"] for r in m0.impl_table() if r["op"] == "ss2d_core"} == {"off"}


def test_unfused_policy_turns_ss2d_core_off():
    assert KernelPolicy.unfused("torch").ss2d_core == "off"
    m = models.create_model("vmamba_tiny_s1l8", impl=KernelPolicy.unfused("torch"), **SMALL)
    assert {r["impl"] for r in m.impl_table() if r["op"] == "ss2d_core"} == {"off"}


@pytest.mark.parametrize("name", ["vanilla_vmamba_tiny", "vmamba_tiny_s1l8"])
def test_fused_core_dtypes_under_autocast(name, monkeypatch):
    """the fused op gets the autocast dtype's x with the float32 parameters and writes float32 (as the chain's
    scan and merge), and the logits stay close to the chain's"""
    seen = []
    real = vk.ss2d_core

    def spy(x, xpw, dtw, A, D, bias, **k):
        seen.append((x.dtype, xpw.dtype, dtw.dtype, A.dtype, k.get("out_dtype")))
        return real(x, xpw, dtw, A, D, bias, **k)

    monkeypatch.setattr(ss2d_mod.vk, "ss2d_core", spy)
    torch.manual_seed(0)
    on, off = pair(name, False if name.startswith("vanilla") else True, torch.float32)
    x = torch.randn(2, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y_on, y_off = on(x), off(x)
    y_on.float().sum().backward()
    f32, bf = torch.float32, torch.bfloat16
    assert seen and all(s == (bf, f32, f32, f32, f32) for s in seen)
    torch.testing.assert_close(y_on.float(), y_off.float(), rtol=0.05, atol=0.05)
