"""The C++ inference stages (models/cpp_stages.py, csrc/vss_stage/vss_stage.cpp).

On any machine: `vss_stage_twin` below is the C++ function written out in Python, line for line, on a backend's raw
kernels. With it standing in for the extension (and the torch backend for cuda), a model's logits with the C++ stages
on must equal the Python path's bit for bit: the plan (which stages, which flags), the packed weights (order, casts,
A = -exp(A_logs)) and the reuse of the pack are checked without a GPU. On the GPU: the real extension against the
Python path, bit for bit, on VMamba-T/S at several batch sizes and dtypes.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import models
from models import KernelPolicy, cpp_stages
from vmamba_kernels import dispatch

SLOT = {name: i for i, name in enumerate(
    ["norm_w", "norm_b", "in_w", "in_b", "conv_w32", "conv_b32", "conv_w", "conv_b", "xproj_w", "dtproj_w", "A", "Ds",
     "dt_bias", "out_norm_w", "out_norm_b", "out_w", "out_b", "norm2_w", "norm2_b", "fc1_w", "fc1_b", "fc2_w",
     "fc2_b"])}
assert len(SLOT) == cpp_stages.SLOTS


def make_twin(backend: str):
    """vss_stage_infer (csrc/vss_stage/vss_stage.cpp) in Python on `backend`'s raw kernels."""
    raw = dispatch.get_backend(backend).impl()

    def add_norm(x, branch, w, b, eps, out_dtype):
        br = branch
        if br is not None and br.dtype != x.dtype and x.dtype != torch.float32:
            br = br.to(x.dtype)
        y, s = raw.add_layer_norm_fwd(x, br, w, b, None, eps, True, out_dtype)[:2]
        return y, (s if branch is not None else x)

    def twin(x, p, eps, flags, act, approximate, ct):
        assert len(p) == len(flags) * cpp_stages.SLOTS and len(eps) == 3 * len(flags)
        x = x.contiguous()
        Bn, H, W, _ = x.shape
        L = H * W
        pending = None
        for i, f in enumerate(flags):
            P = {k: p[i * cpp_stages.SLOTS + s] for k, s in SLOT.items()}
            y, x = add_norm(x, pending, P["norm_w"], P["norm_b"], eps[3 * i], ct)
            h = F.linear(y, P["in_w"], P["in_b"])
            if f & 1:
                h = raw.dwconv2d_fwd(h.contiguous(), P["conv_w32"], P["conv_b32"], act, True)
            else:
                k = P["conv_w"].shape[-1]
                h = F.conv2d(h.permute(0, 3, 1, 2), P["conv_w"], P["conv_b"], 1, k // 2, 1, P["conv_w"].shape[0])
                h = (F.silu(h) if act == "silu" else F.gelu(h)).permute(0, 2, 3, 1)
            h = h.contiguous()
            D = h.shape[3]
            R, N = P["dtproj_w"].shape[2], P["A"].shape[1]
            xs = raw.cross_scan_fwd(h, "cross2d", True)
            xs = xs.to(P["xproj_w"].dtype)
            xdbl = torch.matmul(P["xproj_w"], xs)
            delta = torch.matmul(P["dtproj_w"], xdbl[:, :, :R])
            ys = raw.selective_scan_fwd(xs.view(Bn, 4 * D, L), delta.view(Bn, 4 * D, L), P["A"], xdbl[:, :, R:R + N],
                                        xdbl[:, :, R + N:], P["Ds"], P["dt_bias"], True, torch.float32)[0]
            ym = raw.cross_merge_fwd(ys.view(Bn, 4, D, L), H, W, "cross2d", True)
            yn = add_norm(ym, None, P["out_norm_w"], P["out_norm_b"], eps[3 * i + 1], h.dtype)[0]
            h = F.linear(yn, P["out_w"], P["out_b"])
            if f & 2:
                y2, x = add_norm(x, h, P["norm2_w"], P["norm2_b"], eps[3 * i + 2], ct)
                h = F.linear(F.gelu(F.linear(y2, P["fc1_w"], P["fc1_b"]), approximate=approximate),
                             P["fc2_w"], P["fc2_b"])
            pending = h
        return x + pending

    twin.calls = 0

    def counted(*args):
        twin.calls += 1
        return twin(*args)
    counted.twin = twin
    return counted


@pytest.fixture
def torch_twin(monkeypatch):
    """The torch backend stands in for cuda, the twin for the extension's function."""
    run = make_twin("torch")
    monkeypatch.setattr(cpp_stages, "BACKEND", "torch")
    monkeypatch.setattr(cpp_stages, "runner", lambda: run)
    return run


def _model(dwconv="torch", name="vmamba_t", **kw):
    torch.manual_seed(0)
    policy = KernelPolicy.all("torch").merged(KernelPolicy(ss2d_core="off", dwconv2d=dwconv))
    m = models.create_model(name, impl=policy, dims=16, num_classes=10, **kw).eval()
    for p in m.parameters():  # away from the init's ones / zeros: a swapped norm weight / bias must show
        with torch.no_grad():
            p.add_(0.05 * torch.randn_like(p))
    return m


def _logits(m, x, amp):
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        return m(x)


@pytest.mark.parametrize("dwconv", ["torch", "off"])  # the fused depthwise conv (flag 1) and cudnn's (torch) path
@pytest.mark.parametrize("amp", [False, True])
def test_twin_equals_python_path(torch_twin, dwconv, amp):
    m = _model(dwconv)
    x = torch.randn(2, 3, 52, 60)
    want = _logits(m, x, amp)
    m.set_cpp_stages(True)
    first = _logits(m, x, amp)  # makes the plans (Python path)
    assert torch_twin.twin.calls == 0 and torch.equal(first, want)
    assert all(v.startswith("first call") for v in cpp_stages.why_not(m).values())
    got = _logits(m, x, amp)
    assert cpp_stages.why_not(m) == {0: "cpp", 1: "cpp", 2: "cpp", 3: "cpp"}
    assert torch_twin.twin.calls == 4
    assert torch.equal(got, want)
    plan = next(iter(m.layers[0].__dict__["_cpp_plans"].values()))
    assert plan.flags == [(1 if dwconv == "torch" else 0) | 2] * len(m.layers[0].blocks)


def test_inference_mode_and_backbone_outputs(torch_twin):
    """torch.inference_mode counts as grad disabled; a features_only backbone's stage maps come from the C++ stages."""
    m = _model(features_only=True).set_cpp_stages(True)
    x = torch.randn(1, 3, 48, 48)
    with torch.inference_mode():
        want = m.set_cpp_stages(False)(x)
        m.set_cpp_stages(True)
        m(x)
        got = m(x)
    assert torch_twin.twin.calls == 4
    assert len(got) == len(want) == 4 and all(torch.equal(a, b) for a, b in zip(got, want))


def test_pack_shares_the_weight_cache(torch_twin):
    """Under autocast the packed 16-bit weights are the weight cache's own casts (held once, whichever path runs)."""
    m = _model().set_weight_cache(True).set_cpp_stages(True)
    x = torch.randn(1, 3, 48, 48)
    _logits(m, x, True)
    _logits(m, x, True)
    assert cpp_stages.why_not(m)[0] == "cpp"
    pack = m.layers[0].__dict__["_cpp_pack"][1]
    op = m.layers[0].blocks[0].op
    kept = {name: mod.__dict__["_weight_cache_entry"][1] for name, mod in
            (("in", op.in_proj), ("out", op.out_proj), ("chain", op), ("fc1", m.layers[0].blocks[0].mlp.fc1))}
    assert pack[SLOT["in_w"]] is kept["in"][0] and pack[SLOT["out_w"]] is kept["out"][0]
    assert pack[SLOT["xproj_w"]] is kept["chain"][0] and pack[SLOT["A"]] is kept["chain"][2]
    assert pack[SLOT["fc1_w"]] is kept["fc1"][0] and pack[SLOT["fc1_w"]].dtype == torch.bfloat16
    assert pack[SLOT["norm_w"]] is m.layers[0].blocks[0].norm.weight  # float32 already: the parameter itself


def test_pack_follows_parameter_changes(torch_twin):
    m = _model().set_cpp_stages(True)
    x = torch.randn(1, 3, 48, 48)
    _logits(m, x, False)
    _logits(m, x, False)
    with torch.no_grad():  # an in-place change (an optimizer step, load_state_dict): the version counter moves
        m.layers[1].blocks[0].op.A_logs.add_(0.3)
        m.layers[2].blocks[1].mlp.fc1.weight.mul_(1.5)
    got = _logits(m, x, False)
    assert cpp_stages.why_not(m)[1] == "cpp"
    m.set_cpp_stages(False)
    assert torch.equal(got, _logits(m, x, False))


def test_training_grad_and_other_inputs_run_python(torch_twin):
    m = _model().set_cpp_stages(True)
    x = torch.randn(1, 3, 48, 48)
    _logits(m, x, False)
    m.train()
    with torch.no_grad():
        m(x)  # stochastic depth samples in training mode: Python
    m.eval()
    m(x)  # grad enabled: Python (the C++ stage has no backward)
    assert torch_twin.twin.calls == 0
    m.layers[1].blocks[0].train()  # one block in training mode (its drop path would sample): that stage in Python
    _logits(m, x, False)
    assert torch_twin.twin.calls == 3
    m.eval()
    torch_twin.twin.calls = 0
    _logits(m, torch.randn(1, 3, 32, 48), False)  # new signatures at every stage: Python first, plans made
    assert torch_twin.twin.calls == 0
    _logits(m, x, False)
    assert torch_twin.twin.calls == 4


def test_refusals_name_the_reason(torch_twin):
    x = torch.randn(1, 3, 48, 48)
    m = models.create_model("vmamba_t", impl=KernelPolicy.all("torch"), dims=16, num_classes=10).eval()
    m.set_cpp_stages(True)  # the fused ss2d_core left on where it runs
    _logits(m, x, False)
    _logits(m, x, False)
    core = cpp_stages.why_not(m)
    assert torch_twin.twin.calls == 0 and all("unfused chain" in v for v in core.values()), core
    m = _model(name="vanilla_vmamba_tiny").set_cpp_stages(True)
    _logits(m, x, False)
    _logits(m, x, False)
    assert torch_twin.twin.calls == 0
    assert all("v05_noz" in v for v in cpp_stages.why_not(m).values())
    m = _model().set_cpp_stages(True)
    m.layers[2].blocks[1].mlp.act.approximate = "tanh"  # one value per stage in the C++ call
    _logits(m, x, False)
    _logits(m, x, False)
    assert torch_twin.twin.calls == 3 and "activations differ" in cpp_stages.why_not(m)[2]
    torch_twin.twin.calls = 0
    m = _model().set_cpp_stages(True)
    m.set_impl(KernelPolicy.all("torch").merged(KernelPolicy(ss2d_core="off", cross_scan="torch_sequential")))
    _logits(m, x, False)
    _logits(m, x, False)
    assert all("cross_scan ran on 'torch_sequential'" in v for v in cpp_stages.why_not(m).values())


def test_set_impl_forgets_plans(torch_twin):
    m = _model().set_cpp_stages(True)
    x = torch.randn(1, 3, 48, 48)
    _logits(m, x, False)
    assert m.layers[0].__dict__.get("_cpp_plans")
    m.set_impl(m.impl)
    assert not m.layers[0].__dict__.get("_cpp_plans")


def test_without_the_extension_function_the_reason_says_rebuild(monkeypatch):
    monkeypatch.setattr(cpp_stages, "BACKEND", "torch")
    monkeypatch.setattr(cpp_stages, "runner", lambda: None)
    m = _model().set_cpp_stages(True)
    x = torch.randn(1, 3, 48, 48)
    want = _logits(m, x, False)
    assert torch.equal(_logits(m, x, False), want)
    assert all("rebuild" in v for v in cpp_stages.why_not(m).values())


# ---- GPU: the extension's function against the Python path -------------------------------------------------------
def _cuda_runner():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    if cpp_stages.runner() is None:
        pytest.skip("the extension is not built with csrc/vss_stage")
    return cpp_stages.runner()


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["vmamba_t", "vmamba_s", "vmamba_b"])
@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16", "half_model"])
# batch 1 at 224: the fused depthwise conv at every stage (small maps); batch 2: cudnn's at stage 1; 208: 13 x 13 at
# stage 3; 160 x 192: non-square maps down to 5 x 6
@pytest.mark.parametrize("shape", [(1, 224, 224), (2, 224, 224), (1, 208, 208), (3, 160, 192)])
def test_cpp_stages_equal_python_gpu(name, dtype, shape):
    _cuda_runner()
    torch.manual_seed(0)
    m = models.create_model(name, impl="cuda", num_classes=100).cuda().eval()
    if dtype == "half_model":
        m = m.half()
    m.set_weight_cache(True)
    B, H, W = shape
    x = torch.randn(B, 3, H, W, device="cuda", dtype=torch.float16 if dtype == "half_model" else torch.float32)
    amp = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(dtype)

    def logits():
        with torch.no_grad(), torch.autocast("cuda", dtype=amp or torch.float16, enabled=amp is not None):
            return m(x)
    want = logits()
    m.set_cpp_stages(True)
    logits()
    got = logits()
    assert cpp_stages.why_not(m) == {0: "cpp", 1: "cpp", 2: "cpp", 3: "cpp"}, cpp_stages.why_not(m)
    assert torch.equal(got, want), (got - want).abs().max().item()


@pytest.mark.gpu
def test_cpp_stages_peak_memory_gpu():
    """The C++ stage releases each intermediate where the Python path does: its peak is not above the Python path's
    (call 66 measured 3157 against 2297 MB at batch 128 while the chain's route tensors lived through the MLP)."""
    _cuda_runner()
    torch.manual_seed(0)
    m = models.create_model("vmamba_t", impl="cuda", num_classes=100).cuda().eval().set_weight_cache(True)
    x = torch.randn(16, 3, 224, 224, device="cuda")

    def peak():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
            m(x)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            m(x)
            torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    python = peak()
    m.set_cpp_stages(True)
    peak()  # makes the plans
    cpp = peak()
    assert cpp_stages.why_not(m)[0] == "cpp"
    assert cpp <= python, (cpp, python)


@pytest.mark.gpu
def test_bad_pack_is_refused_gpu():
    """Each argument check of vss_stage_infer raises with its message, before any kernel runs, never a crash."""
    run = _cuda_runner()
    x = torch.randn(1, 7, 7, 16, device="cuda")
    full = [torch.ones(1, device="cuda")] * cpp_stages.SLOTS
    cases = [
        ((x, [None] * 5, [1e-5] * 3, [3], "silu", "none"), "weight slots"),
        ((x, [], [], [], "silu", "none"), "at least one block"),
        ((x, full, [1e-5] * 2, [3], "silu", "none"), "eps values"),
        ((x, [None] * cpp_stages.SLOTS, [1e-5] * 3, [3], "silu", "none"), "no tensor in slot 0"),
        ((x, full[:SLOT["fc1_w"]] + [None] * 4, [1e-5] * 3, [3], "silu", "none"), f"no tensor in slot {SLOT['fc1_w']}"),
        ((x, full, [1e-5] * 3, [3], "relu", "none"), "act must be"),
        ((x, full, [1e-5] * 3, [3], "silu", "fast"), "approximate must be"),
        ((x.cpu(), full, [1e-5] * 3, [3], "silu", "none"), "CUDA map"),
        ((x[0], full, [1e-5] * 3, [3], "silu", "none"), "CUDA map"),
    ]
    for args, match in cases:
        with pytest.raises(RuntimeError, match=match):
            run(*args, torch.float32)
