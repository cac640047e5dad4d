"""models.chain: the unfused SS2D chain as one autograd node gives the composition's values and gradients.

The composition (public ops, each its own autograd node) is the reference: the chain runs the same raw kernels
and GEMMs with a written-out backward, so outputs and every parameter gradient must match it to rounding, in
float64, float32 and under bfloat16 autocast, with and without the recompute (routes, delta), on maps with odd sides.
"""
from __future__ import annotations

import copy

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import models
import models.chain as chain
import models.ss2d as ss2d
import vmamba_kernels as vk
from models import KernelPolicy
from vmamba_kernels import dispatch

UNFUSED_TORCH = KernelPolicy.all("torch").merged(KernelPolicy(ss2d_core="off"))
CASES = [("vmamba_t", True), ("vmamba_t", False), ("vanilla_vmamba_tiny", True)]
IDS = ["v05-cl", "v05-cf", "v0"]


def _model(name, channels_last, dtype=torch.float32, **kw):
    torch.manual_seed(0)
    cl = {"channels_last": channels_last} if name == "vmamba_t" else {}
    m = models.create_model(name, impl=UNFUSED_TORCH, depths=(1, 1, 2, 1), dims=16, num_classes=10, **cl, **kw)
    return m.to(dtype).train()


def _step(m, x, on, recompute, autocast, monkeypatch):
    monkeypatch.setattr(ss2d._KernelCalls, "chain_autograd", on)
    m.set_recompute(recompute)
    m.zero_grad(set_to_none=True)
    torch.manual_seed(1)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = m(x)
    # a loss whose gradient differs per logit, so every path of the backward carries information
    (y.float() * torch.linspace(-1, 1, y.numel()).view_as(y)).sum().backward()
    return y.detach(), {n: p.grad.detach().clone() for n, p in m.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("recompute", ["none", "delta", "all"])
@pytest.mark.parametrize("dtype,autocast", [(torch.float64, False), (torch.float32, False), (torch.float32, True)],
                         ids=["fp64", "fp32", "bf16-autocast"])
@pytest.mark.parametrize("name,channels_last", CASES, ids=IDS)
def test_chain_matches_composition(name, channels_last, dtype, autocast, recompute, monkeypatch):
    ref = _model(name, channels_last, dtype)
    one = copy.deepcopy(ref)
    calls = []
    real = chain._Chain.apply
    monkeypatch.setattr(chain._Chain, "apply", lambda *a: calls.append(1) or real(*a))
    x = torch.randn(2, 3, 56, 40, dtype=dtype)  # stage maps 14x10, 7x5, 4x3 (padded), 2x2
    y0, g0 = _step(ref, x, False, recompute, autocast, monkeypatch)
    assert not calls
    y1, g1 = _step(one, x, True, recompute, autocast, monkeypatch)
    assert len(calls) == 5  # every SS2D block ran the one-node chain
    assert g1.keys() == g0.keys() and len(g0) == len(list(ref.parameters()))
    if autocast:
        # the two round in different places (the chain merges du before adding the projection term), so under
        # bfloat16 each is held to the float64 truth: the chain's error at most twice the composition's (plus a
        # floor of bf16 rounding on near-zero elements), per tensor (flash-attn's rule, as tests/test_models_gpu.py)
        y64, g64 = _step(_model(name, channels_last, torch.float64), x.double(), False, recompute, False,
                         monkeypatch)
        err = lambda a, b: (a.double() - b).abs().max().item()  # noqa: E731
        assert err(y1, y64) <= 2 * err(y0, y64) + 1e-3 * y64.abs().max().item()
        for n in g0:
            assert g1[n].dtype == g0[n].dtype, n
            floor = 1e-3 * g64[n].abs().max().item()
            assert err(g1[n], g64[n]) <= 2 * err(g0[n], g64[n]) + floor, (n, err(g1[n], g64[n]), err(g0[n], g64[n]))
        return
    tol = {torch.float64: 1e-12, torch.float32: 1e-5}[dtype]
    torch.testing.assert_close(y1, y0, rtol=tol, atol=tol)
    for n in g0:
        assert g1[n].dtype == g0[n].dtype, n
        scale = g0[n].abs().max().item() or 1.0
        torch.testing.assert_close(g1[n], g0[n], rtol=tol, atol=tol * scale, msg=lambda m, n=n: f"{n}: {m}")


def test_chain_not_used_under_flop_counter_or_compile_tracing(monkeypatch):
    """FLOP counting and torch.compile see the composition of custom ops (their FLOP formulas, fake tensors)."""
    m = _model("vmamba_t", True).eval()
    calls = []
    real = chain._Chain.apply
    monkeypatch.setattr(chain._Chain, "apply", lambda *a: calls.append(1) or real(*a))
    x = torch.randn(1, 3, 32, 32)
    with FlopCounterMode(display=False) as fc:
        m(x)
    assert not calls and fc.get_total_flops() > 0
    m(x)
    assert len(calls) == 5


def test_plan_cached_per_shape_and_flags(monkeypatch):
    """Validation and backend choice run once per (shapes, dtypes, grad, deterministic mode, impls)."""
    m = _model("vmamba_t", True).eval()
    chain.clear_plans()
    made = []
    real = chain._plan
    monkeypatch.setattr(chain, "_plan", lambda *a: made.append(a[0].shape) or real(*a))
    with torch.no_grad():
        m(torch.randn(1, 3, 32, 32))
        n = len(made)
        assert n == 4  # one plan per stage shape (the two stage-3 blocks share one)
        m(torch.randn(1, 3, 32, 32))
        assert len(made) == n
        m(torch.randn(2, 3, 32, 32))  # new batch: new plans
        assert len(made) == 2 * n
    prev = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(True, warn_only=True)
        with torch.no_grad():
            m(torch.randn(2, 3, 32, 32))
        assert len(made) == 3 * n
    finally:
        torch.use_deterministic_algorithms(prev)


@pytest.mark.parametrize("strided", [True, False])
def test_B_C_in_place_only_for_backends_that_read_strides(strided, monkeypatch):
    """A scan backend with `strided_bc` gets B and C as slices of the x projection (no copy kernels); any other
    gets contiguous copies (its kernels assume the contiguous layout), with the same values."""
    m = _model("vmamba_t", True).eval()
    backend = dispatch.get_backend("torch")
    monkeypatch.setattr(backend, "strided_bc", strided)
    chain.clear_plans()
    raw = backend.impl()
    seen = []
    real = raw.selective_scan_fwd

    def spy(u, delta, A, B, C, *rest):
        seen.append((B.is_contiguous(), C.is_contiguous(), B.stride(), C.stride()))
        return real(u, delta, A, B, C, *rest)

    monkeypatch.setattr(raw, "selective_scan_fwd", spy)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        y = m(x)
    assert len(seen) == 5
    for b_contig, c_contig, bs, cs in seen:
        assert b_contig is not strided and c_contig is not strided
        assert bs == cs  # the kernels address both with one offset
    monkeypatch.setattr(backend, "strided_bc", not strided)
    chain.clear_plans()
    with torch.no_grad():
        torch.testing.assert_close(m(x), y, rtol=0, atol=0)
    chain.clear_plans()


def test_chain_records_what_ran_and_refusals_reach_the_user(monkeypatch):
    m = _model("vmamba_t", True).eval()
    with torch.no_grad():
        m(torch.randn(1, 3, 32, 32))
    table = {(r["layer"], r["op"]): r for r in m.impl_table()}
    row = table[("layers.0.blocks.0", "selective_scan")]
    assert row["impl"] == "torch" and row["ran"] == "torch"
    # the named backend refuses: the chain steps aside and the composition raises the public op's error
    b = dispatch.get_backend("torch")
    real = b.why_not

    def refuse(op, args):
        return ["planted refusal"] if op == "selective_scan" else real(op, args)
    monkeypatch.setattr(b, "why_not", refuse)
    dispatch.clear_choice_cache()
    chain.clear_plans()
    try:
        with pytest.raises(vk.ImplRefused, match="planted refusal"):
            with torch.no_grad():
                m(torch.randn(1, 3, 32, 32))
    finally:
        monkeypatch.undo()
        dispatch.clear_choice_cache()
        chain.clear_plans()


def test_bad_weights_are_named():
    x = torch.randn(1, 8, 4, 4)
    kw = dict(channels_last=False, impls={"cross_scan": "torch", "selective_scan": "torch", "cross_merge": "torch"},
              out_dtype=torch.float32)
    good = (torch.randn(4, 5, 8), torch.randn(4, 8, 1), -torch.rand(32, 2), torch.randn(32), torch.randn(4, 8))
    assert chain.ss2d_chain(x, *good, **kw).shape == x.shape  # a plan for this shape is now cached
    with pytest.raises(ValueError, match="x_proj_weight"):  # same x, C, R, N; weights for 7 channels, not 8
        chain.ss2d_chain(x, torch.randn(4, 5, 7), torch.randn(4, 8, 1), torch.randn(32, 2), torch.randn(32),
                         torch.randn(4, 8), **kw)


@pytest.mark.gpu
@pytest.mark.parametrize("impl", ["cuda", "triton"])
@pytest.mark.parametrize("recompute", ["none", "norms+delta", "all"])
def test_gpu_chain_matches_composition(impl, recompute, monkeypatch):
    """On the GPU backends (fp16 autocast, VMamba-T's v05 blocks, channels last, odd maps): the one-node chain
    against the composition of the same backend's public ops."""
    if impl not in {r["name"] for r in vk.list_impls() if r["available"]}:
        pytest.skip(f"impl {impl} is not available here")
    torch.manual_seed(0)
    pol = KernelPolicy.all(impl).merged(KernelPolicy(ss2d_core="off"))
    ref = models.create_model("vmamba_t", impl=pol, channels_last=True, depths=(1, 1, 2, 1), num_classes=10)
    ref = ref.cuda().train()
    one = copy.deepcopy(ref)
    x = torch.randn(3, 3, 104, 88, device="cuda")  # stage maps 26x22, 13x11, 7x6, 4x3

    def step(m, on):
        monkeypatch.setattr(ss2d._KernelCalls, "chain_autograd", on)
        m.set_recompute(recompute)
        torch.manual_seed(1)
        with torch.autocast("cuda", dtype=torch.float16):
            y = m(x)
        # the loss scaled by 2^10, as GradScaler does: unscaled, the dt projection's gradients here lie among fp16
        # subnormals (steps of 2^-24), where two paths that round x's gradient differently part by whole steps
        loss = (y.float() * torch.linspace(-1, 1, y.numel(), device="cuda").view_as(y)).sum() * 1024.0
        loss.backward()
        return y.detach().float(), {n: p.grad.float() for n, p in m.named_parameters() if p.grad is not None}

    y0, g0 = step(ref, False)
    y1, g1 = step(one, True)
    torch.testing.assert_close(y1, y0, rtol=2e-3, atol=2e-3)
    assert g1.keys() == g0.keys()
    for n in g0:  # the same kernels; x's gradient rounds in another place (models.chain docstring): rounding only
        scale = g0[n].abs().max().item() or 1.0
        torch.testing.assert_close(g1[n], g0[n], rtol=2e-2, atol=2e-2 * scale, msg=lambda m, n=n: f"{n}: {m}")


@pytest.mark.parametrize("mode", ["cross2d", "unidi", "bidi"])
@pytest.mark.parametrize("channels_last", [True, False])
@pytest.mark.parametrize("H,W", [(7, 7), (13, 13), (14, 14), (1, 9), (5, 1), (6, 11)])
def test_projection_grad_in_pixel_order_equals_the_route_order_merge(mode, channels_last, H, W):
    """models.chain's dx term: dx + cross_merge(xw^T @ dx_dbl), computed in pixel order, equals the route-order
    product merged (the composition's way), in float64, on square, odd and one-sided maps, every mode and layout."""
    from reference.cross_scan import cross_merge_ref

    g = torch.Generator().manual_seed(H * 100 + W)
    Bn, D, C, L = 2, 12, 5, H * W
    xw = torch.randn(chain.K, C, D, generator=g, dtype=torch.float64)
    dx_dbl = torch.randn(Bn, chain.K, C, L, generator=g, dtype=torch.float64)
    shape = (Bn, H, W, D) if channels_last else (Bn, D, H, W)
    base = torch.randn(shape, generator=g, dtype=torch.float64)
    p = chain._Plan()
    p.dims, p.mode, p.cl = (Bn, D, H, W), mode, channels_last
    want = base + cross_merge_ref(torch.matmul(xw.transpose(-1, -2), dx_dbl), H, W, mode, channels_last)
    got = chain._add_projection_grad(base.clone(), xw, dx_dbl, p)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_projection_grad_when_x_has_another_dtype_than_the_gemms():
    """x in float32 with the GEMMs in bfloat16 (an fp32 x called under autocast): the projection term is formed in
    the GEMM dtype and added to the float32 gradient, so it matches the float64 formula to bfloat16 rounding."""
    from reference.cross_scan import cross_merge_ref

    g = torch.Generator().manual_seed(7)
    Bn, D, C, H, W = 2, 12, 5, 6, 11
    xw = torch.randn(chain.K, C, D, generator=g, dtype=torch.float64)
    dx_dbl = torch.randn(Bn, chain.K, C, H * W, generator=g, dtype=torch.float64)
    base = torch.randn(Bn, H, W, D, generator=g, dtype=torch.float64)
    p = chain._Plan()
    p.dims, p.mode, p.cl = (Bn, D, H, W), "cross2d", True
    want = base + cross_merge_ref(torch.matmul(xw.transpose(-1, -2), dx_dbl), H, W, "cross2d", True)
    got = chain._add_projection_grad(base.float(), xw.bfloat16(), dx_dbl.bfloat16(), p)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), want, rtol=3e-2, atol=3e-2 * want.abs().max().item())
