"""models/: variants, parameter counts, layouts, kernel policy, checkpoints, backbone mode, training features.

CPU, impl "torch" (and "torch_sequential" for the mixed-policy tests). Full-size models are built for
parameter counts and run on 32x32 inputs (stage maps 8/4/2/1), which is cheap; everything else uses
reduced-depth configs.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import models
import vmamba_kernels as vk
from models import KernelPolicy
from models import ss2d as ss2d_mod

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))

# official fvcore parameter counts (the official analyze/ scripts; m2 counted by building the official m2 builders)
PARAMS = {
    "vanilla_vmamba_tiny": 22_893_448, "vanilla_vmamba_small": 44_417_416, "vanilla_vmamba_base": 76_254_056,
    "vmamba_tiny_s2l5": 30_705_832, "vmamba_small_s2l15": 50_147_752, "vmamba_base_s2l15": 88_557_800,
    "vmamba_tiny_s1l8": 30_249_064, "vmamba_small_s1l20": 49_012_840, "vmamba_base_s1l20": 86_614_504,
    "vmamba_tiny_m2": 25_340_296, "vmamba_small_m2": 39_079_816, "vmamba_base_m2": 67_527_528,
}
V2 = [n for n in PARAMS if n.startswith("vmamba_") and not n.endswith("_m2")]
# (name, channels_last): v2 variants run both layouts; v0 and m2 are channels last only (as the official)
VARIANT_LAYOUTS = [(n, cl) for n in PARAMS for cl in ((False, True) if n in V2 else (True,))]
SMALL = dict(depths=(1, 1, 2, 1), dims=16)  # reduced config for the fast tests


def small(name="vmamba_tiny_s1l8", impl="torch", **kw):
    return models.create_model(name, impl=impl, **{**SMALL, **kw})


def nparams(m):
    return sum(p.numel() for p in m.parameters())


def copy_weights(dst, src):
    dst.load_state_dict(src.state_dict(), strict=True)
    return dst


# ---- variants -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name,channels_last", VARIANT_LAYOUTS,
                         ids=[f"{n}-{'cf' if cf else 'cl'}" for n, cf in VARIANT_LAYOUTS])
def test_variant_params_forward_backward(name, channels_last):
    m = models.create_model(name, impl="torch", channels_last=channels_last)
    assert m.channels_last == channels_last
    assert nparams(m) == PARAMS[name]
    x = torch.randn(2, 3, 32, 32)
    y = m(x)
    assert y.shape == (2, 1000) and torch.isfinite(y).all()
    y.float().square().mean().backward()
    missing = [n for n, p in m.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing, missing[:5]


def test_list_models_and_aliases():
    names = models.list_models()
    assert set(PARAMS) <= set(names)
    assert {"vmamba_t", "vmamba_s", "vmamba_b"} <= set(names)
    assert models.get_config("vmamba_t") == models.get_config("vmamba_tiny_s1l8")
    assert models.get_config("vmamba_s") == models.get_config("vmamba_small_s2l15")
    assert models.get_config("vmamba_b") == models.get_config("vmamba_base_s2l15")
    cfgs = models.model_configs()
    assert cfgs["vmamba_tiny_s1l8"]["official_params"] == 30_249_064
    assert cfgs["vmamba_tiny_s1l8"]["official_gflops"] == pytest.approx(4.905609984)
    assert cfgs["vmamba_tiny_s1l8"]["aliases"] == ["vmamba_t"]
    assert cfgs["vmamba_tiny_m2"]["official_params"] is None
    # default layouts as released: v2 channel-first (ln2d), v0 / m2 channel-last
    assert not cfgs["vmamba_tiny_s1l8"]["channels_last"] and cfgs["vanilla_vmamba_tiny"]["channels_last"]
    assert cfgs["vmamba_tiny_m2"]["channels_last"]


def test_state_dict_keys_and_shapes_official():
    # the official VSSM's state_dict: key names and shapes of the released checkpoints
    t = models.create_model("vmamba_tiny_s1l8", impl="torch").state_dict()
    assert len(t) == 276
    exp = {"patch_embed.0.weight": (48, 3, 3, 3), "patch_embed.2.weight": (48,), "patch_embed.5.weight": (96, 48, 3, 3),
           "patch_embed.7.bias": (96,), "layers.0.blocks.0.op.x_proj_weight": (4, 8, 96),
           "layers.0.blocks.0.op.A_logs": (384, 1), "layers.0.blocks.0.op.dt_projs_weight": (4, 96, 6),
           "layers.0.blocks.0.op.dt_projs_bias": (4, 96), "layers.0.blocks.0.op.Ds": (384,),
           "layers.0.blocks.0.op.in_proj.weight": (96, 96), "layers.0.blocks.0.op.conv2d.weight": (96, 1, 3, 3),
           "layers.0.blocks.0.op.out_norm.weight": (96,), "layers.0.blocks.0.op.out_proj.weight": (96, 96),
           "layers.0.blocks.0.mlp.fc1.weight": (384, 96), "layers.0.blocks.0.norm2.bias": (96,),
           "layers.0.downsample.1.weight": (192, 96, 3, 3), "layers.0.downsample.3.weight": (192,),
           "classifier.norm.weight": (768,), "classifier.head.weight": (1000, 768)}
    for k, s in exp.items():
        assert tuple(t[k].shape) == s, k
    assert "layers.0.blocks.0.op.conv2d.bias" not in t
    v = models.create_model("vanilla_vmamba_tiny", impl="torch").state_dict()
    assert len(v) == 212
    exp = {"patch_embed.0.weight": (96, 3, 4, 4), "patch_embed.2.weight": (96,),
           "layers.0.blocks.0.op.x_proj_weight": (4, 38, 192), "layers.0.blocks.0.op.A_logs": (768, 16),
           "layers.0.blocks.0.op.dt_projs_weight": (4, 192, 6), "layers.0.blocks.0.op.in_proj.weight": (384, 96),
           "layers.0.blocks.0.op.conv2d.bias": (192,), "layers.0.downsample.reduction.weight": (192, 384),
           "layers.0.downsample.norm.weight": (384,), "classifier.head.bias": (1000,)}
    for k, s in exp.items():
        assert tuple(v[k].shape) == s, k
    assert not any("mlp" in k for k in v)
    m2 = models.create_model("vmamba_tiny_m2", impl="torch").state_dict()
    assert tuple(m2["layers.0.blocks.0.op.A_logs"].shape) == (4, 6)
    assert tuple(m2["layers.0.blocks.0.op.Ds"].shape) == (4, 6, 16)
    assert tuple(m2["layers.0.blocks.0.op.conv2d.1.weight"].shape) == (96, 1, 3, 3)
    assert "layers.0.blocks.0.op.dt_projs_weight" not in m2
    # no buffers anywhere: everything in the state_dict is a parameter
    assert len(t) == len(list(models.create_model("vmamba_tiny_s1l8", impl="torch").parameters()))


def test_init_follows_mamba_init():
    m = models.create_model("vanilla_vmamba_tiny", impl="torch")
    op = m.layers[0].blocks[0].op
    N, R = 16, 6
    assert torch.allclose(op.A_logs, torch.log(torch.arange(1, N + 1).float()).expand_as(op.A_logs))
    assert torch.equal(op.Ds, torch.ones_like(op.Ds))
    dt = F.softplus(op.dt_projs_bias)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    assert op.dt_projs_weight.abs().max() <= R ** -0.5
    w = op.in_proj.weight
    assert abs(w.std().item() - 0.02) < 0.002 and w.abs().max() <= 2.0
    assert torch.equal(m.classifier.head.bias, torch.zeros(1000))
    assert torch.equal(op.out_norm.weight, torch.ones_like(op.out_norm.weight))
    # x_proj keeps nn.Linear's default init: U(+-1/sqrt(D))
    assert op.x_proj_weight.abs().max() <= 192 ** -0.5
    m2 = models.create_model("vmamba_tiny_m2", impl="torch").layers[0].blocks[0].op  # ssm_init v2
    assert torch.equal(m2.A_logs, torch.zeros_like(m2.A_logs))
    assert 0 <= m2.dt_projs_bias.min() and m2.dt_projs_bias.max() <= 0.1


# ---- layouts --------------------------------------------------------------------------------------
def test_layouts_give_same_logits():
    a = small(channels_last=False).eval()
    b = copy_weights(small(channels_last=True), a).eval()
    x = torch.randn(2, 3, 40, 24)
    torch.testing.assert_close(a(x), b(x), rtol=1e-4, atol=1e-5)


def test_v0_and_m2_refuse_channels_first():
    with pytest.raises(ValueError, match="channels last only"):
        models.create_model("vanilla_vmamba_tiny", channels_last=False)
    with pytest.raises(ValueError, match="channels last only"):
        models.create_model("vmamba_tiny_m2", channels_last=False)
    with pytest.warns(DeprecationWarning, match="channel_first=... is now channels_last"):
        assert models.create_model("vmamba_tiny_s1l8", impl="torch", channel_first=False, **SMALL).channels_last


# ---- kernel policy --------------------------------------------------------------------------------
def test_mixed_policy_matches_single_backend():
    ref = small(impl="torch").eval()
    mixed_spec = {
        "layers.0.*": "torch_sequential",
        "layers.2.blocks.*": KernelPolicy(selective_scan="torch_sequential", cross_merge="torch_sequential"),
        "layers.2.blocks.1": KernelPolicy(cross_scan="torch_sequential"),
    }
    mixed = copy_weights(small(impl=mixed_spec), ref).eval()
    table = {(r["layer"], r["op"]): r["impl"] for r in mixed.impl_table()}
    assert table[("layers.0.blocks.0", "selective_scan")] == "torch_sequential"
    assert table[("layers.1.blocks.0", "selective_scan")] == "auto"  # not matched: automatic choice
    assert table[("layers.2.blocks.0", "cross_scan")] == "auto"
    assert table[("layers.2.blocks.0", "cross_merge")] == "torch_sequential"
    assert table[("layers.2.blocks.1", "cross_scan")] == "torch_sequential"
    assert table[("layers.2.blocks.1", "selective_scan")] == "torch_sequential"
    x = torch.randn(2, 3, 32, 32)
    with vk.use_impl("torch"):  # 'auto' entries resolve to the default impl
        torch.testing.assert_close(mixed(x), ref(x), rtol=1e-5, atol=1e-5)


def test_policy_calls_the_named_backend(monkeypatch):
    """Every kernel op of every layer runs on the backend its policy names: watched at the dispatcher, which the
    public ops and the one-node chain (models.chain) both go through (the public ops' prepared calls, which skip
    it for argument metadata seen before, are not kept here, nor put in fast_call's table)."""
    from vmamba_kernels import dispatch

    class NoStore(dict):
        def __setitem__(self, key, value):
            pass

    monkeypatch.setattr(dispatch, "_PREPARED", NoStore())
    calls = []
    orig = dispatch.choose

    def spy(op, args, impl):
        call = orig(op, args, impl)
        if op in ("selective_scan", "cross_scan", "cross_merge", "ss2d_core"):
            calls.append((op, impl, call.backend.name))
        return call
    monkeypatch.setattr(dispatch, "choose", spy)
    m = small(impl={"*": "torch", "layers.3.*": KernelPolicy(selective_scan="torch_sequential")}).eval()
    was = dispatch.fast_call_on()
    dispatch.use_fast_call(False)  # nor put in fast_call's table
    try:
        m(torch.randn(1, 3, 32, 32))
    finally:
        dispatch.use_fast_call(was)
    n_layers = sum(SMALL["depths"])
    # one impl for the scan and cross ops: the fused ss2d_core on it; the stage-3 block's per-op mix: the chain
    assert len(calls) == (n_layers - 1) + 3
    assert calls.count(("ss2d_core", "torch", "torch")) == n_layers - 1
    assert calls.count(("selective_scan", "torch_sequential", "torch_sequential")) == 1  # the single stage-3 block
    assert calls.count(("cross_scan", "torch", "torch")) == calls.count(("cross_merge", "torch", "torch")) == 1


def test_impl_table_and_set_impl():
    m = small(impl="torch")
    rows = m.impl_table()
    blocks = [r for r in rows if ".blocks." in r["layer"]]
    assert len(blocks) == 6 * sum(SMALL["depths"])  # the scan, cross ops and the fused ops, per block
    norms = {r["layer"] for r in rows if ".blocks." not in r["layer"]}  # the norms outside the blocks
    assert norms == {"patch_embed.2", "patch_embed.7", "layers.0.downsample.3", "layers.1.downsample.3",
                     "layers.2.downsample.3", "classifier.norm"}
    assert {r["impl"] for r in rows if r["op"] != "dwconv2d"} == {"torch"}
    # automatic: cudnn (policy.AUTO_OFF), the fused op on small GPU maps (policy.DWCONV_AUTO)
    assert {r["impl"] for r in rows if r["op"] == "dwconv2d"} == {"auto-cudnn"}
    assert {r["op"] for r in rows} == {"selective_scan", "cross_scan", "cross_merge", "add_layer_norm", "dwconv2d",
                                       "ss2d_core"}
    assert rows[0]["layer"] == "layers.0.blocks.0"
    x = torch.randn(1, 3, 32, 32)
    m.eval()
    y = m(x)
    assert {r["ran"] for r in m.impl_table() if r["op"] == "dwconv2d"} == {"off"}  # a CPU map: cudnn's path
    m.set_impl(KernelPolicy(selective_scan="torch_sequential"))
    rows = m.impl_table()
    assert {r["impl"] for r in rows if r["op"] == "selective_scan"} == {"torch_sequential"}
    assert {r["impl"] for r in rows if r["op"] == "cross_scan"} == {"auto"}
    torch.testing.assert_close(m(x), y, rtol=1e-5, atol=1e-5)
    text = m.impl_table(as_text=True)
    assert "layers.3.blocks.0" in text and "torch_sequential" in text
    m.set_impl(None)
    assert {r["impl"] for r in m.impl_table() if r["op"] not in AUTO_OFF_OPS} == {"auto"}
    assert {r["impl"] for r in m.impl_table() if r["op"] in AUTO_OFF_OPS} == {"off", "auto-cudnn"}


def test_dwconv_auto_runs_the_fused_op_on_small_gpu_maps(monkeypatch):
    """policy.DWCONV_AUTO: cudnn's modules, except on a small CUDA map (host-bound), where the fused op runs."""
    from types import SimpleNamespace

    import models.fused as fused

    def fake(shape, device):
        return SimpleNamespace(shape=shape, device=torch.device(device))

    assert fused.small_map(fake((1, 56, 56, 96), "cuda"), channels_last=True)
    assert fused.small_map(fake((1, 96, 56, 56), "cuda"), channels_last=False)
    assert not fused.small_map(fake((2, 56, 56, 96), "cuda"), channels_last=True)  # 6272 pixels
    assert not fused.small_map(fake((2, 96, 56, 56), "cuda"), channels_last=False)
    assert not fused.small_map(fake((1, 56, 56, 96), "cpu"), channels_last=True)
    monkeypatch.setattr(fused, "SMALL_DWCONV_PIXELS", 0)
    assert not fused.small_map(fake((1, 7, 7, 96), "cuda"), channels_last=True)
    monkeypatch.undo()

    m = small(impl="torch").eval()
    x = torch.randn(1, 3, 32, 32)
    y = m(x)
    assert {r["ran"] for r in m.impl_table() if r["op"] == "dwconv2d"} == {"off"}
    monkeypatch.setattr(fused, "small_map", lambda x, channels_last: True)  # as on a GPU at batch 1
    torch.testing.assert_close(m(x), y, rtol=1e-5, atol=1e-5)
    assert {r["ran"] for r in m.impl_table() if r["op"] == "dwconv2d"} == {"torch"}
    monkeypatch.setattr(fused, "small_map", lambda x, channels_last: False)
    m(x)
    assert {r["ran"] for r in m.impl_table() if r["op"] == "dwconv2d"} == {"off"}


# ops whose automatic choice is "off" when every kernel op is automatic: dwconv2d (cudnn, policy.AUTO_OFF) and
# ss2d_core (the unfused chain: no GPU impl's fused core measured faster, policy.CORE_AUTO_OFF)
AUTO_OFF_OPS = ("dwconv2d", "ss2d_core")


def test_bad_policy_inputs():
    with pytest.raises(ValueError, match="unknown impl 'nope'"):
        small(impl="nope")
    with pytest.raises(ValueError, match="unknown impl"):
        small(impl={"layers.1.*": KernelPolicy(cross_scan="nope")})
    with pytest.raises(ValueError, match="matches no layer"):
        small(impl={"stage1.*": "torch"})
    with pytest.raises(TypeError):
        small(impl=3)


def _unusable_impl():
    """A registered backend that cannot run CPU tensors (all GPU backends refuse CPU inputs)."""
    for r in vk.list_impls("selective_scan"):
        if "cpu" not in r["devices"]:
            return r["name"]
    pytest.skip("every registered backend runs on the CPU")


def test_unusable_backend_fails_with_reasons_unless_fallback():
    name = _unusable_impl()
    available = next(r for r in vk.list_impls() if r["name"] == name)["available"]
    if available:  # e.g. cuda on a GPU machine: the model builds, and the CPU image is refused at the call
        m = small(impl=KernelPolicy(selective_scan=name))
        with pytest.raises(RuntimeError, match=f"impl '{name}' cannot run selective_scan"):
            m(torch.randn(1, 3, 32, 32))
    else:  # unavailable in this process: said at creation, with the reason and the fix
        with pytest.raises(RuntimeError, match=f"impl '{name}' .*cannot run in this process: .*fallback=True"):
            small(impl=KernelPolicy(selective_scan=name))
    ref = small(impl="torch").eval()
    fb = copy_weights(small(impl=KernelPolicy(selective_scan=name), fallback=True), ref).eval()
    rows = [r for r in fb.impl_table() if r["op"] == "selective_scan"]
    assert all(r["requested"] == name for r in rows)
    assert all(r["impl"] == ("auto" if not available else name) for r in rows)
    assert all(r["ran"] == "" for r in rows)  # nothing ran yet
    x = torch.randn(1, 3, 32, 32)
    with vk.use_impl("torch_sequential"):
        torch.testing.assert_close(fb(x), ref(x), rtol=1e-5, atol=1e-5)
    # what actually ran, per op: the fallback's choice, not the backend asked for
    assert {r["ran"] for r in fb.impl_table() if r["op"] not in AUTO_OFF_OPS} == {"torch_sequential"}
    assert "torch_sequential" in fb.impl_table(as_text=True).splitlines()[1]


def test_unavailable_backend_error_names_reason_and_fix(monkeypatch):
    from models import policy

    import dataclasses

    known = dict(policy._known_impls())
    known["torch"] = dataclasses.replace(known["torch"], _reason="no CUDA device is visible (planted)")
    monkeypatch.setattr(policy, "_known_impls", lambda: known)
    with pytest.raises(RuntimeError) as e:
        small(impl="torch")
    msg = str(e.value)
    assert "impl 'torch'" in msg and "no CUDA device is visible (planted)" in msg and "fallback=True" in msg
    assert "available here: " in msg and "torch_sequential" in msg
    m = small(impl="torch", fallback=True).eval()  # falls back silently, and says so in the table
    assert {r["impl"] for r in m.impl_table() if r["op"] not in AUTO_OFF_OPS} == {"auto"}
    assert all("torch unavailable (no CUDA device is visible (planted)); auto" == r["note"] for r in m.impl_table()
               if r["op"] not in AUTO_OFF_OPS)
    m(torch.randn(1, 3, 32, 32))
    assert {r["ran"] for r in m.impl_table() if r["op"] not in AUTO_OFF_OPS} == {"torch"}  # auto on the CPU: torch


def test_impl_table_shows_auto_choice_after_forward():
    m = small(impl=None).eval()
    assert {r["ran"] for r in m.impl_table() if r["op"] not in AUTO_OFF_OPS} == {""}
    m(torch.randn(1, 3, 32, 32))
    want = "torch_sequential"
    with vk.use_impl(want):
        m(torch.randn(1, 3, 32, 32))
    assert {r["ran"] for r in m.impl_table() if r["op"] not in AUTO_OFF_OPS} == {want}


# ---- input checks ---------------------------------------------------------------------------------
@pytest.mark.parametrize("bad,match", [
    (lambda x: x[0], r"expects images of shape \(B, 3, H, W\), got a 3-D tensor .*unsqueeze\(0\)"),
    (lambda x: x[:, :2], r"expects images of shape \(B, 3, H, W\), got shape \(1, 2, 32, 32\) with 2 channels"),
    (lambda x: x.permute(0, 2, 3, 1), r"channels-last images\? pass x.permute\(0, 3, 1, 2\)"),
    (lambda x: x.half(), r"float32 parameters expects float32 images .*got float16.*autocast\('cpu'"),
    (lambda x: (x * 100).to(torch.uint8), r"expects floating-point images .*got uint8"),
    (lambda x: x.numpy(), r"as a torch.Tensor, got ndarray"),
])
def test_bad_images_are_refused_by_name(bad, match):
    m = small().eval()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises((ValueError, TypeError), match=match):
        m(bad(x))
    feat = small(features_only=True).eval()
    with pytest.raises((ValueError, TypeError), match=match):
        feat(bad(x))


def test_half_model_on_cpu_is_refused_by_name_and_autocast_is_not():
    m = small().eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert m(x).shape == (1, 1000)  # a float32 image under autocast is fine
    with pytest.raises(TypeError, match=r"bfloat16 VMamba model .*does not run on the CPU.*float32"):
        m.to(torch.bfloat16)(x.to(torch.bfloat16))
    m2 = small("vmamba_tiny_m2").eval().to(torch.bfloat16)  # the m0 mixer does run in bf16 on the CPU
    assert m2(x.to(torch.bfloat16)).dtype == torch.bfloat16


# ---- backbone description -------------------------------------------------------------------------
def test_feature_info_describes_the_returned_maps():
    feat = small(features_only=True, out_indices=(1, 3)).eval()
    info = feat.feature_info
    assert info == [{"num_chs": 32, "reduction": 8, "module": "layers.1"},
                    {"num_chs": 128, "reduction": 32, "module": "layers.3"}]
    assert info.channels() == [32, 128] and info.reduction() == [8, 32]
    assert info.module_name() == ["layers.1", "layers.3"]
    x = torch.randn(1, 3, 64, 96)
    for o, f in zip(feat(x), info):  # each map really has those channels and that reduction
        assert o.shape[1] == f["num_chs"] and (64 // o.shape[2], 96 // o.shape[3]) == (f["reduction"],) * 2
    full = models.create_model("vmamba_t", impl="torch", features_only=True)
    assert full.feature_info.channels() == [96, 192, 384, 768] and full.feature_info.reduction() == [4, 8, 16, 32]
    assert small().feature_info.channels() == [16, 32, 64, 128]  # a classifier describes its stages too


# ---- checkpoints ----------------------------------------------------------------------------------
@pytest.mark.parametrize("entry", ["model", "model_ema", None])
def test_checkpoint_file_round_trip(tmp_path, entry):
    a = small().eval()
    sd = a.state_dict()
    obj = {entry: sd, "epoch": 3} if entry else sd
    if entry == "model_ema":
        obj["optimizer"] = {"state": {}}
    path = tmp_path / "ckpt.pth"
    torch.save(obj, path)
    b = models.create_model("vmamba_tiny_s1l8", impl="torch", pretrained=str(path), **SMALL).eval()
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)
    for k, v in b.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_checkpoint_key_selects_ema(tmp_path):
    a, e = small(), small()
    path = tmp_path / "ckpt.pth"
    torch.save({"model": a.state_dict(), "model_ema": e.state_dict()}, path)
    b = models.create_model("vmamba_tiny_s1l8", impl="torch", pretrained=path, checkpoint_key="model_ema", **SMALL)
    assert torch.equal(b.classifier.head.weight, e.classifier.head.weight)
    c = models.create_model("vmamba_tiny_s1l8", impl="torch", pretrained=path, **SMALL)  # "model" first
    assert torch.equal(c.classifier.head.weight, a.classifier.head.weight)


def test_strict_load_rejects_mismatch():
    a = small()
    sd = a.state_dict()
    sd.pop("layers.0.blocks.0.op.Ds")
    with pytest.raises(RuntimeError, match="Ds"):
        small().load_state_dict(sd, strict=True)
    with pytest.raises(RuntimeError, match="missing"):
        models.load_checkpoint(small(), {"model": sd})


def _legacy(sd: dict) -> dict:
    """Our state_dict spelled with the official legacy names (inverse of the remap)."""
    out = {}
    for k, v in sd.items():
        n = k.replace("patch_embed.0.", "patch_embed.proj.").replace("patch_embed.2.", "patch_embed.norm.")
        n = n.replace(".norm.", ".ln_1.") if ".blocks." in n else n
        n = n.replace(".op.", ".self_attention.")
        if n.startswith("classifier."):
            n = n[len("classifier."):]
        out["module." + n] = v
    return out


def test_legacy_remap_loads_strict():
    a = models.create_model("vanilla_vmamba_tiny", impl="torch", depths=(1, 1, 1, 1), dims=16).eval()
    legacy = _legacy(a.state_dict())
    assert "module.layers.0.blocks.0.ln_1.weight" in legacy and "module.head.weight" in legacy
    assert "module.patch_embed.proj.weight" in legacy and "module.norm.weight" in legacy
    b = models.create_model("vanilla_vmamba_tiny", impl="torch", depths=(1, 1, 1, 1), dims=16).eval()
    b.load_state_dict({k[len("module."):]: v for k, v in legacy.items()}, strict=True)  # plain load_state_dict
    c = models.create_model("vanilla_vmamba_tiny", impl="torch", depths=(1, 1, 1, 1), dims=16).eval()
    models.load_checkpoint(c, {"model": legacy})  # with the DDP prefix
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)
    torch.testing.assert_close(c(x), a(x), rtol=0, atol=0)


def test_grouped_linear_and_conv_spellings_load():
    a = small().eval()
    sd = a.state_dict()
    # root vmamba.py spelling: grouped Linear modules; Linear2d weights stored as (out, in, 1, 1) convs
    k = "layers.1.blocks.0.op."
    D = sd[k + "in_proj.weight"].shape[0]
    sd[k + "x_proj.weight"] = sd.pop(k + "x_proj_weight").reshape(-1, D)
    sd[k + "dt_projs.weight"] = sd.pop(k + "dt_projs_weight").flatten(0, 1)
    sd[k + "in_proj.weight"] = sd[k + "in_proj.weight"][:, :, None, None]
    b = small()
    b.load_state_dict(sd, strict=True)
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(b.eval()(x), a(x), rtol=0, atol=0)


def test_pretrained_true_and_bad_names():
    with pytest.raises(ValueError, match=r"releases/download/%23v2cls/vssm1_tiny_0230s_ckpt_epoch_264\.pth"):
        models.create_model("vmamba_t", pretrained=True)
    with pytest.raises(ValueError, match=r"%23v0cls/vssmtiny_dp01_ckpt_epoch_292"):
        models.create_model("vanilla_vmamba_tiny", pretrained=True)
    with pytest.raises(ValueError, match="no checkpoint"):
        models.create_model("vmamba_tiny_m2", pretrained=True)
    with pytest.raises(ValueError, match="unknown model 'vmamba_huge'.*vmamba_tiny_s1l8"):
        models.create_model("vmamba_huge")
    with pytest.raises(TypeError, match="unknown override"):
        models.create_model("vmamba_t", d_stat=4)
    with pytest.raises(ValueError, match="forward_type"):
        models.create_model("vmamba_t", forward_type="v9")
    with pytest.raises(FileNotFoundError):
        models.create_model("vmamba_t", pretrained="/nonexistent/ckpt.pth", **SMALL)


def test_num_classes_and_head_mismatch_skips_head(tmp_path):
    a = small()
    path = tmp_path / "c.pth"
    torch.save({"model": a.state_dict()}, path)
    with pytest.warns(UserWarning, match=r"1000 classes, the model 7 .*dropped classifier.head.weight, "
                                         r"classifier.head.bias"):
        b = models.create_model("vmamba_tiny_s1l8", impl="torch", pretrained=path, num_classes=7, **SMALL)
    assert b.classifier.head.weight.shape == (7, 128)
    assert torch.equal(b.layers[0].blocks[0].op.A_logs, a.layers[0].blocks[0].op.A_logs)
    assert b.eval()(torch.randn(2, 3, 32, 32)).shape == (2, 7)


class _Config:  # stands for the training config official checkpoints pickle next to the weights
    lr = 1e-3


def test_pickled_checkpoint_needs_explicit_opt_in(tmp_path):
    import pickle
    import warnings

    a = small().eval()
    path = tmp_path / "official_like.pth"
    torch.save({"model": a.state_dict(), "config": _Config()}, path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no silent retry, no warning: a refusal that names the opt-in
        with pytest.raises(pickle.UnpicklingError, match=r"allow_pickle=True"):
            models.create_model("vmamba_tiny_s1l8", impl="torch", pretrained=str(path), **SMALL)
    with pytest.warns(UserWarning, match=r"weights_only=False\) .*files you trust"):
        b = models.create_model("vmamba_tiny_s1l8", impl="torch", pretrained=str(path), allow_pickle=True,
                                **SMALL).eval()
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(b(x), a(x), rtol=0, atol=0)
    c = small()
    with pytest.warns(UserWarning, match="weights_only=False"):
        models.load_checkpoint(c, path, allow_pickle=True)


# ---- backbone -------------------------------------------------------------------------------------
def _expected_hw(name, H, W):
    cfg = models.get_config(name)
    if cfg.patchembed_version == "v1":  # conv k4 s4
        h, w = H // 4, W // 4
    else:  # two convs k3 s2 p1
        h, w = math.ceil(math.ceil(H / 2) / 2), math.ceil(math.ceil(W / 2) / 2)
    out = []
    for _ in range(4):
        out.append((h, w))
        h, w = math.ceil(h / 2), math.ceil(w / 2)  # v1 pads odd sizes; v3 is k3 s2 p1
    return out


@pytest.mark.parametrize("name,channels_last", [("vmamba_tiny_s1l8", False), ("vmamba_tiny_s1l8", True),
                                                ("vanilla_vmamba_tiny", True), ("vmamba_tiny_m2", True)])
@pytest.mark.parametrize("hw", [(64, 64), (37, 50), (50, 29)])
def test_features_only_shapes(name, channels_last, hw):
    m = models.create_model(name, impl="torch", features_only=True, channels_last=channels_last,
                            depths=(1, 1, 1, 1), dims=16).eval()
    assert not hasattr(m, "classifier")
    assert {f"outnorm{i}.weight" for i in range(4)} <= set(m.state_dict())
    x = torch.randn(2, 3, *hw)
    outs = m(x)
    assert len(outs) == 4
    for i, (o, (h, w)) in enumerate(zip(outs, _expected_hw(name, *hw))):
        assert o.shape == (2, 16 * 2 ** i, h, w), (i, o.shape)
        assert o.is_contiguous()


def test_default_layout(monkeypatch):
    """create_model runs every model channels last unless told otherwise; model_configs keeps the released layout;
    with DEFAULT_CHANNELS_LAST off the released layouts come back (v0 / m2 stay channels last: their only one)."""
    import models.registry as R

    assert small().channels_last and small("vanilla_vmamba_tiny", depths=(1, 1, 1, 1)).channels_last
    assert not small(channels_last=False).channels_last and not small(norm_layer="ln2d").channels_last
    assert not models.model_configs()["vmamba_tiny_s1l8"]["channels_last"]
    monkeypatch.setattr(R, "DEFAULT_CHANNELS_LAST", False)
    assert not small().channels_last
    assert small("vanilla_vmamba_tiny", depths=(1, 1, 1, 1)).channels_last
    assert small("vmamba_tiny_m2", depths=(1, 1, 1, 1)).channels_last


@pytest.mark.parametrize("cl", [True, False], ids=["channels-last", "channels-first"])
def test_features_only_out_indices_and_consistency(cl):
    cls = small(channels_last=cl).eval()
    feat = models.create_model("vmamba_tiny_s1l8", impl="torch", features_only=True, out_indices=(1, 3),
                               channels_last=cl, **SMALL)
    models.load_checkpoint(feat, {"model": cls.state_dict()})  # classifier ignored, outnorms may be missing
    feat.eval()
    assert sorted(k for k in feat.state_dict() if k.startswith("outnorm")) == [
        "outnorm1.bias", "outnorm1.weight", "outnorm3.bias", "outnorm3.weight"]
    x = torch.randn(1, 3, 45, 32)
    o1, o3 = feat(x)
    # the last stage's map before its (Identity) downsample is forward_features' output
    last = cls.forward_features(x)  # in the model's layout; the features come out NCHW in both
    want = feat.outnorm3(last)
    torch.testing.assert_close(o3, want.permute(0, 3, 1, 2) if cl else want, rtol=1e-6, atol=1e-6)
    none = models.create_model("vmamba_tiny_s1l8", impl="torch", features_only=True, out_indices=(),
                               channels_last=cl, **SMALL)
    copy = {k: v for k, v in cls.state_dict().items() if not k.startswith("classifier")}
    none.load_state_dict(copy, strict=True)
    torch.testing.assert_close(none.eval()(x), last.permute(0, 3, 1, 2) if cl else last, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="out_indices"):
        models.create_model("vmamba_t", features_only=True, out_indices=(4,), **SMALL)


def test_forward_features_head_split():
    m = small(channels_last=True).eval()
    x = torch.randn(2, 3, 32, 48)
    f = m.forward_features(x)
    assert f.shape == (2, 1, 2, 128)  # channel-last inside the model
    torch.testing.assert_close(m.forward_head(f), m(x))
    assert m.forward_head(f, pre_logits=True).shape == (2, 128)


# ---- training features ----------------------------------------------------------------------------
def test_grad_checkpointing_equal():
    a = small(drop_path_rate=0.0).train()
    b = copy_weights(small(drop_path_rate=0.0), a).train().set_grad_checkpointing(True)
    assert all(s.grad_checkpointing for s in b.layers)
    x = torch.randn(2, 3, 32, 32)
    ya, yb = a(x), b(x)
    torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    ya.square().sum().backward()
    yb.square().sum().backward()
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-7, msg=lambda m, n=n: f"{n}: {m}")


def test_drop_path_per_block():
    m = small(drop_path_rate=0.5)
    dps = [blk.drop_path.p for s in m.layers for blk in s.blocks]
    assert dps == pytest.approx(torch.linspace(0, 0.5, sum(SMALL["depths"])).tolist())
    x = torch.randn(8, 3, 32, 32)
    m.train()
    assert not torch.allclose(m(x), m(x))  # fresh masks per call
    m.eval()
    torch.testing.assert_close(m(x), m(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", ["vanilla_vmamba_tiny", "vmamba_tiny_s1l8", "vmamba_tiny_m2"])
def test_autocast_scan_dtypes(name, monkeypatch):
    seen = []
    raw = vk.dispatch.get_backend("torch").impl()  # what the public op and the one-node chain both call
    orig = raw.selective_scan_fwd

    def spy(u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype):
        seen.append((u.dtype, delta.dtype, B.dtype, A.dtype, out_dtype))
        return orig(u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype)
    monkeypatch.setattr(raw, "selective_scan_fwd", spy)
    # the unfused chain, whose scan call this inspects (test_models_ss2d_core.py checks the fused op's dtypes)
    chain = KernelPolicy.all("torch").merged(KernelPolicy(ss2d_core="off"))
    m = models.create_model(name, impl=chain, depths=(1, 1, 1, 1), dims=16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = m(torch.randn(2, 3, 32, 32))
    y.float().sum().backward()
    u, d, b, a, out = seen[0]
    assert a == torch.float32
    if name.startswith("vanilla"):  # v0: float32 scan inputs
        assert (u, d, b) == (torch.float32,) * 3
    elif name.endswith("m2"):  # m0: autocast dtype in and out
        assert (u, d, b, out) == (torch.bfloat16,) * 4
    else:  # v05: autocast dtype in, float32 out
        assert (u, d, b, out) == (torch.bfloat16,) * 3 + (torch.float32,)
    assert torch.isfinite(y.float()).all()


def test_torch_compile():
    m = models.create_model("vmamba_tiny_s1l8", impl="torch", depths=(1, 1, 1, 1), dims=16).eval()
    x = torch.randn(1, 3, 32, 32)
    ref = m(x)
    torch._dynamo.reset()
    out = torch.compile(m, fullgraph=True, backend="aot_eager")(x)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch._dynamo.reset()
    out = torch.compile(m, fullgraph=False)(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-4)


# ---- m0 (Mamba2-style) ----------------------------------------------------------------------------
def _ssd_chunked(x, dt, A, B, C, D, chunk):
    """Independent chunked SSD (Mamba2 'minimal' formulation) in float64.
    x (b, l, h, p); dt (b, l, h) after softplus; A (h,); B, C (b, l, h, n); D (h, p)."""
    b, L, h, p = x.shape
    n = B.shape[-1]
    pad = (-L) % chunk
    if pad:
        x, dt = F.pad(x, (0, 0, 0, 0, 0, pad)), F.pad(dt, (0, 0, 0, pad))
        B, C = F.pad(B, (0, 0, 0, 0, 0, pad)), F.pad(C, (0, 0, 0, 0, 0, pad))
    c = x.shape[1] // chunk
    xr, dtr = x.view(b, c, chunk, h, p), dt.view(b, c, chunk, h)
    Br, Cr = B.view(b, c, chunk, h, n), C.view(b, c, chunk, h, n)
    a = dtr * A  # (b, c, s, h) log decay per step
    acs = a.cumsum(2)
    # intra-chunk: y_t = sum_{s<=t} C_t.B_s exp(acs_t - acs_s) dt_s x_s
    seg = acs.unsqueeze(3) - acs.unsqueeze(2)  # (b, c, t, s, h)
    causal = torch.tril(torch.ones(chunk, chunk, dtype=torch.bool))
    decay = torch.where(causal[None, None, :, :, None], seg.clamp(max=0).exp(), torch.zeros_like(seg))
    cb = torch.einsum("bcthn,bcshn->bctsh", Cr, Br)
    y = torch.einsum("bctsh,bcsh,bcshp->bcthp", cb * decay, dtr, xr)
    # chunk states and their propagation
    to_end = (acs[:, :, -1:] - acs).exp()  # (b, c, s, h)
    states = torch.einsum("bcshn,bcsh,bcsh,bcshp->bchpn", Br, to_end, dtr, xr)
    carry = torch.zeros(b, h, p, n, dtype=x.dtype)
    for i in range(c):
        y[:, i] += torch.einsum("bthn,bhpn,bth->bthp", Cr[:, i], carry, acs[:, i].exp())
        carry = carry * acs[:, i, -1].exp()[:, :, None, None] + states[:, i]
    y = y.reshape(b, c * chunk, h, p)[:, :L]
    return y + D[None, None] * x[:, :L]


@pytest.mark.parametrize("hw", [(8, 8), (7, 5)])
def test_m0_scan_equals_chunked_ssd(hw):
    op = models.create_model("vmamba_tiny_m2", impl="torch", depths=(1, 1, 1, 1), dims=32).layers[0].blocks[0].op
    op = op.double()
    with torch.no_grad():
        op.A_logs.normal_(0, 0.5)
        op.Ds.normal_(1, 0.3)
        op.dt_projs_bias.normal_(0, 0.5)
    H, W = hw
    x = torch.randn(2, op.d_inner, H, W, dtype=torch.float64)
    u, delta, A, Bs, Cs, D, dbias = op.scan_inputs(x)
    y = vk.selective_scan(u, delta, A, Bs, Cs, D, dbias, delta_softplus=True, impl="torch")
    # the same math as Mamba2 SSD: heads = K * R, head dim P, B/C shared per direction
    b, L, K, R, P, N = 2, H * W, 4, op.dt_rank, op.head_dim, op.d_state
    xs = u.view(b, K * R, P, L).permute(0, 3, 1, 2)
    dt = F.softplus(delta.view(b, K * R, P, L)[:, :, 0].permute(0, 2, 1) + op.dt_projs_bias.view(-1))
    Ah = -torch.exp(op.A_logs.view(-1))
    Bh = Bs.permute(0, 3, 1, 2).repeat_interleave(R, dim=2)
    Ch = Cs.permute(0, 3, 1, 2).repeat_interleave(R, dim=2)
    ref = _ssd_chunked(xs, dt, Ah, Bh, Ch, op.Ds.view(K * R, P), chunk=16)
    torch.testing.assert_close(y.view(b, K * R, P, L).permute(0, 3, 1, 2), ref, rtol=1e-9, atol=1e-10)


def test_vanilla_weights_load_into_v05_channels_first():
    # as in the official code: vanilla weights also run as forward_type v05 (gated) + ln2d
    kw = dict(depths=(1, 1, 2, 1), dims=16)
    v0 = models.create_model("vanilla_vmamba_tiny", impl="torch", **kw).eval()
    v05 = models.create_model("vanilla_vmamba_tiny", impl="torch", forward_type="v05", channels_last=False, **kw)
    v05.load_state_dict(v0.state_dict(), strict=True)
    x = torch.randn(2, 3, 36, 44)
    torch.testing.assert_close(v05.eval()(x), v0(x), rtol=1e-4, atol=1e-5)


def test_building_a_torch_model_probes_no_other_backend():
    """create_model(impl="torch") imports neither triton, nor CuPy, nor the compiled extension: only the
    backends a policy names are probed; running it loads none of our other backends' modules either
    (torch itself may import triton when a custom op first runs)."""
    import subprocess
    import sys
    from pathlib import Path

    heavy = ["triton", "cupy", "vmamba_kernels._C", "vmamba_kernels.cuda.extension",
             "vmamba_kernels.triton.launch", "vmamba_kernels.cupy.launch"]
    code = ("import sys, torch, models\n"
            "m = models.create_model('vmamba_t', impl='torch', depths=(1, 1, 1, 1), dims=8)\n"
            f"heavy = {heavy!r}\n"
            "print('BUILD', [k for k in heavy if k in sys.modules])\n"
            "m(torch.randn(1, 3, 32, 32)).sum().backward()\n"
            "print('RUN', [k for k in heavy[1:] if k in sys.modules])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr[-3000:]
    assert "BUILD []" in r.stdout and "RUN []" in r.stdout, r.stdout


@pytest.mark.parametrize("d_conv", [1, 3])
def test_m0_hands_the_cross_scan_its_activation_as_laid_out(monkeypatch, d_conv):
    """SS2Dm0's (B, H, W, D) activation reaches the cross scan without a copy (with the depthwise conv too:
    it runs on the channels-last memory format and its output, permuted back, is (B, H, W, D) in memory),
    with the scan inputs of the channels-first copy; an activation laid out (B, D, H, W) in memory goes
    channels first."""
    m = models.create_model("vmamba_tiny_m2", impl="torch", depths=(1, 1, 1, 1), dims=32, ssm_conv=d_conv).eval()
    op = m.layers[0].blocks[0].op
    seen, real = [], vk.cross_scan

    def spy(x, *args, **kw):
        seen.append((x.is_contiguous(), kw.get("channels_last")))
        return real(x, *args, **kw)

    monkeypatch.setattr(vk, "cross_scan", spy)
    x = torch.randn(2, 6, 5, 32)
    with torch.no_grad():
        op(x)
        assert seen == [(True, True)]
        act = op.act(op.conv2d(op.in_proj(x)) if op.with_dconv else op.in_proj(x))
        ours = op.scan_inputs(*ss2d_mod.as_laid_out(act))
        copied = op.scan_inputs(act.permute(0, 3, 1, 2).contiguous())
    for a, b in zip(ours, copied):
        assert torch.equal(a, b)
    nchw = torch.randn(2, 32, 6, 5)
    got, cl = ss2d_mod.as_laid_out(nchw.permute(0, 2, 3, 1))
    assert not cl and got.is_contiguous() and got.data_ptr() == nchw.data_ptr()
