"""reference/ and the two torch backends against an independent float64 definition."""
import itertools

import pytest
import torch

import vmamba_kernels as vk
from reference import (affine_scan, affine_scan_sequential, cross_merge_ref, cross_scan_ref,
                       route_index, selective_scan_backward_ref, selective_scan_parallel,
                       selective_scan_ref)
from tests.scan_cases import (NAMES, assert_close, check_softplus_sweep, independent_cross_merge,
                              independent_cross_scan, independent_scan, make_inputs, rel_err, softplus_sweep)

TORCH_IMPLS = ("torch", "torch_sequential")

# (L, N, grouped, softplus, with_D, with_bias): every L and N, the flags cycled so each value of
# every flag meets every L (a full product is 160 slow sequential cases for no extra coverage)
_FLAGS = list(itertools.product([True, False], repeat=4))
CASES = [(L, N, *_FLAGS[(i * 5 + j * 3) % 16])
         for i, L in enumerate((1, 7, 49, 197, 1031)) for j, N in enumerate((1, 16))]
CASES += [(197, 16, *f) for f in _FLAGS]  # every flag combination at one awkward size


def _case_id(c):
    L, N, grouped, sp, D, bias = c
    return f"L{L}-N{N}-{'K2' if grouped else 'K1'}{'-softplus' if sp else ''}{'-D' if D else ''}{'-bias' if bias else ''}"


def _run(impl, ins, softplus, out_dtype=None):
    return vk.selective_scan(*ins, delta_softplus=softplus, return_last_state=True, out_dtype=out_dtype, impl=impl)


@pytest.mark.parametrize("case", CASES, ids=_case_id)
@pytest.mark.parametrize("impl", TORCH_IMPLS)
def test_float64_matches_independent_definition(impl, case):
    L, N, grouped, softplus, with_D, with_bias = case
    K = 2 if grouped else 1
    ins = make_inputs(2, 4, L, N, K, torch.float64, grouped=grouped, with_D=with_D, with_bias=with_bias)
    y, last = _run(impl, ins, softplus)
    y_ref, last_ref = independent_scan(*ins, delta_softplus=softplus)
    assert rel_err(y, y_ref) < 1e-6 and rel_err(last, last_ref) < 1e-6
    dy = torch.randn_like(y)
    present = [t for t in ins if t is not None]
    got = torch.autograd.grad(y, present, dy)
    want = torch.autograd.grad(y_ref, present, dy)
    names = [n for n, t in zip(NAMES, ins) if t is not None]
    for name, g, w in zip(names, got, want):
        assert g.shape == w.shape, name
        assert rel_err(g, w) < 1e-6, f"d{name}: relative error {rel_err(g, w):.3g}"


# VMamba's ranges in float64 (make_inputs(ranges="vmamba")): softplus inputs over [-12, 30], A to -16;
# elementwise at float64 precision, so a softplus threshold other than 20 shows (softplus(v) - v = e^-v)
VMAMBA_CASES = [(7, 1, True, True), (49, 16, True, False), (197, 1, False, True), (33, 4, False, False)]


@pytest.mark.parametrize("case", VMAMBA_CASES, ids=lambda c: f"L{c[0]}-N{c[1]}-{'softplus' if c[2] else 'dt'}-K{2 if c[3] else 1}")
@pytest.mark.parametrize("impl", TORCH_IMPLS)
def test_float64_vmamba_ranges(impl, case):
    L, N, softplus, grouped = case
    ins = make_inputs(2, 4, L, N, 2 if grouped else 1, torch.float64, grouped=grouped, ranges="vmamba",
                      softplus=softplus)
    y, last = _run(impl, ins, softplus)
    y_ref, last_ref = independent_scan(*ins, delta_softplus=softplus)
    assert_close("y", y, y_ref, 1e-9, 1e-12)
    assert_close("last_state", last, last_ref, 1e-9, 1e-12)
    dy = torch.randn_like(y)
    got = torch.autograd.grad(y, ins, dy)
    want = torch.autograd.grad(y_ref, ins, dy)
    for name, g, w in zip(NAMES, got, want):
        assert_close(f"d{name}", g, w, 1e-9, 1e-10 * w.abs().max().item())


@pytest.mark.parametrize("impl", TORCH_IMPLS)
def test_softplus_sweep_float64(impl):
    """softplus, its threshold and its gradient through the torch backends in float64 (tests/scan_cases.py)."""
    check_softplus_sweep(*softplus_sweep(impl, 1, "cpu", torch.float64), rtols=(1e-13, 1e-13, 1e-12))


@pytest.mark.parametrize("case", CASES[:10], ids=_case_id)
@pytest.mark.parametrize("impl", TORCH_IMPLS)
def test_float32_matches_float64_definition(impl, case):
    L, N, grouped, softplus, with_D, with_bias = case
    K = 2 if grouped else 1
    ins = make_inputs(1, 6, L, N, K, torch.float32, grouped=grouped, with_D=with_D, with_bias=with_bias)
    y, last = _run(impl, ins, softplus)
    assert y.dtype == torch.float32 and last.dtype == torch.float32
    y_ref, last_ref = independent_scan(*ins, delta_softplus=softplus)
    assert rel_err(y, y_ref) < 2e-4 and rel_err(last, last_ref) < 2e-4
    dy = torch.randn_like(y)
    present = [t for t in ins if t is not None]
    for t, g, w in zip(present, torch.autograd.grad(y, present, dy), torch.autograd.grad(y_ref, present, dy.double())):
        assert g.dtype == t.dtype  # each gradient in its input's dtype
        assert rel_err(g, w) < 2e-4


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("out_dtype", [None, torch.float32])
def test_half_inputs_fp32_state(dtype, out_dtype):
    ins = make_inputs(2, 8, 49, 4, 4, dtype)
    y, last = _run("torch", ins, True, out_dtype)
    assert y.dtype == (out_dtype or dtype) and last.dtype == torch.float32
    y_ref, _ = independent_scan(*ins, delta_softplus=True)
    rtol, atol = {torch.float16: (3e-3, 5e-3), torch.bfloat16: (3e-2, 5e-2)}[dtype]
    assert_close("y", y, y_ref, rtol, atol)
    grads = torch.autograd.grad(y.float().sum(), [t for t in ins])
    for name, g, t in zip(NAMES, grads, ins):
        assert g.dtype == t.dtype, f"d{name} must come back in {name}'s dtype"


def test_sequential_and_parallel_agree_in_float32():
    ins = make_inputs(2, 8, 1031, 16, 4, torch.float32, requires_grad=False)
    a = selective_scan_ref(*ins, delta_softplus=True)
    b = selective_scan_parallel(*ins, delta_softplus=True)
    assert rel_err(a, b) < 1e-5


@pytest.mark.parametrize("reverse", [False, True])
def test_affine_scan_matches_loop(reverse):
    a = torch.rand(3, 5, 77, dtype=torch.float64)
    b = torch.randn(3, 5, 77, dtype=torch.float64)
    assert torch.allclose(affine_scan(a, b, reverse), affine_scan_sequential(a, b, reverse), rtol=1e-12, atol=1e-12)


def test_closed_form_backward_matches_autograd():
    ins = make_inputs(2, 6, 33, 3, 3, torch.float64)
    y = selective_scan_ref(*ins, delta_softplus=True)
    dy = torch.randn_like(y)
    want = torch.autograd.grad(y, ins, dy)
    got = selective_scan_backward_ref(*[t.detach() for t in ins], True, dy)
    for name, g, w in zip(NAMES, got, want):
        assert rel_err(g, w) < 1e-10, name


def test_softplus_threshold_is_identity_above_20():
    ins = make_inputs(1, 2, 5, 1, 1, torch.float64, with_bias=False, requires_grad=False)
    ins[1] = torch.full_like(ins[1], 25.0)
    y = selective_scan_ref(*ins, delta_softplus=True)
    y_plain = selective_scan_ref(*ins, delta_softplus=False)
    assert torch.equal(y, y_plain)


@pytest.mark.parametrize("impl", TORCH_IMPLS)
@pytest.mark.parametrize("grouped", [True, False])
def test_gradcheck_float64(impl, grouped):
    ins = make_inputs(1, 4, 6, 2, 2 if grouped else 1, torch.float64, grouped=grouped)
    fn = lambda *t: vk.selective_scan(*t, delta_softplus=True, impl=impl)  # noqa: E731
    assert torch.autograd.gradcheck(fn, tuple(ins), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("impl", TORCH_IMPLS)
def test_last_state_is_detached(impl):
    """The last state comes back detached (no silent zero gradient through it), with the right value."""
    ins = make_inputs(1, 2, 9, 2, 1, torch.float64)
    y, last = vk.selective_scan(*ins, return_last_state=True, impl=impl)
    assert y.requires_grad and not last.requires_grad
    with pytest.raises(RuntimeError, match="does not require grad"):
        torch.autograd.grad(last.sum(), ins[0])
    assert rel_err(last, independent_scan(*ins)[1]) < 1e-12


# ---- cross scan / merge ------------------------------------------------------------------
MAPS = [(1, 1), (7, 7), (13, 13), (14, 14), (7, 13), (13, 7), (1, 5)]
MODES = ("cross2d", "unidi", "bidi")


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("hw", MAPS, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("impl", TORCH_IMPLS)
def test_cross_scan_merge_against_loops(impl, mode, hw, channels_last):
    H, W = hw
    x = torch.randn(2, 3, H, W, dtype=torch.float64)
    want = independent_cross_scan(x, mode)  # explicit loops over pixels (tests/scan_cases.py)
    xin = x.permute(0, 2, 3, 1).contiguous() if channels_last else x
    got = vk.cross_scan(xin, mode=mode, channels_last=channels_last, impl=impl)
    assert torch.equal(got, want)
    y = torch.randn_like(want)
    merged = vk.cross_merge(y, H, W, mode=mode, channels_last=channels_last, impl=impl)
    # merge by the same loops: each route element goes back to its pixel
    assert torch.allclose(merged, independent_cross_merge(y, H, W, mode, channels_last), atol=1e-12)
    # adjointness: <scan(x), y> == <x, merge(y)>
    assert torch.allclose((got * y).sum(), (xin * merged).sum(), rtol=1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_route_index_matches_scan(mode):
    x = torch.randn(1, 2, 5, 3, dtype=torch.float64)
    flat = x.reshape(1, 2, 15)
    want = torch.stack([flat[:, :, route_index(mode, 5, 3)[k]] for k in range(4)], 1)
    assert torch.equal(cross_scan_ref(x, mode), want)
    assert torch.equal(want, independent_cross_scan(x, mode))


@pytest.mark.parametrize("impl", TORCH_IMPLS)
@pytest.mark.parametrize("channels_last", [False, True])
def test_cross_gradients_are_each_other(impl, channels_last):
    shape = (1, 5, 7, 2) if channels_last else (1, 2, 5, 7)
    x = torch.randn(*shape, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: vk.cross_scan(t, channels_last=channels_last, impl=impl), (x,))
    y = torch.randn(1, 4, 2, 35, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: vk.cross_merge(t, 5, 7, channels_last=channels_last, impl=impl), (y,))


def test_cross_merge_ref_dtype_preserved():
    y = torch.randn(1, 4, 3, 12, dtype=torch.bfloat16)
    assert cross_merge_ref(y, 3, 4).dtype == torch.bfloat16
