"""The generic grid: every registered backend, on every dtype it declares, against the float64
definition. A new backend is tested here by registering it; cases it cannot run are skipped with
the reasons its `why_not` gives. On a machine without CUDA only CPU-capable backends run (the triton
backend on the CPU runs under the interpreter in tests/test_triton.py).

Every backend call runs `poisoned()` (tests/scan_cases.py): uninitialized memory reads NaN, so an output
element a kernel never writes fails the comparison. Inputs come in mamba_ssm's test ranges and in
VMamba's ranges (softplus over negative inputs, both sides of its threshold and of the kernels' small-dt
branch; A down to -16); softplus, its threshold and its gradient are also swept through each backend
directly (test_softplus_through_the_scan). Cross ops are compared with an independent pixel-loop
definition, not with reference/."""
import pytest
import torch

import vmamba_kernels as vk
from tests.scan_cases import (NAMES, TOL, assert_close, check_softplus_sweep, grad_tol, independent_cross_merge,
                              independent_cross_scan, independent_scan, make_inputs, poisoned, softplus_sweep)
from vmamba_kernels import dispatch, validate

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
IMPLS = [b.name for b in dispatch.backends()]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]

# (batch, KD, L, N, K, grouped): awkward L (no block multiple), d_state 1 and 16 (and 64 on GPU),
# batch 1, ungrouped 3-D B/C, VMamba-like K=4
SCAN_CASES = [
    (1, 4, 1, 1, 1, False), (2, 8, 7, 16, 2, True), (1, 8, 49, 1, 4, True), (2, 4, 197, 16, 1, True),
]
if DEVICE == "cuda":
    SCAN_CASES += [(2, 16, 1031, 1, 4, True), (1, 8, 3136, 16, 4, True), (2, 8, 2049, 64, 2, True),
                   (1, 12, 300, 4, 3, True)]
# VMamba's ranges (make_inputs(ranges="vmamba")): d_state 1 (v2), 16 (v0), 64 (m0), groups of 4
RANGE_CASES = [(2, 8, 7, 1, 4, True), (1, 4, 33, 16, 2, True), (1, 4, 20, 64, 1, False)]
if DEVICE == "cuda":
    RANGE_CASES += [(2, 24, 49, 1, 4, True), (2, 16, 1031, 1, 4, True), (1, 8, 3136, 1, 4, True),
                    (2, 8, 197, 16, 4, True), (1, 12, 2049, 16, 4, True), (2, 8, 300, 64, 2, True),
                    (1, 8, 777, 4, 1, False)]


def _skip_unless_supported(impl, op, args):
    reasons = dispatch.get_backend(impl).why_not(op, args)
    if reasons:
        pytest.skip(f"{impl}: " + "; ".join(reasons))


@pytest.mark.parametrize("case", SCAN_CASES, ids=lambda c: "B{}-KD{}-L{}-N{}-K{}{}".format(*c[:5], "" if c[5] else "-3d"))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("out_fp32", [False, True], ids=["out_in", "out_fp32"])
@pytest.mark.parametrize("impl", IMPLS)
def test_selective_scan_against_definition(impl, dtype, out_fp32, case):
    batch, KD, L, N, K, grouped = case
    if out_fp32 and dtype == torch.float32:
        pytest.skip("same as out_in for fp32")
    ins = make_inputs(batch, KD, L, N, K, dtype, DEVICE, grouped=grouped)
    out_dtype = torch.float32 if out_fp32 else None
    softplus = L % 2 == 1  # alternate softplus with the cases
    _skip_unless_supported(impl, "selective_scan", validate.check_selective_scan(*ins, softplus, out_dtype))
    _check_scan(impl, ins, softplus, out_dtype, dtype)


def _check_scan(impl, ins, softplus, out_dtype, dtype):
    """Outputs, last state and every gradient of `impl` against the float64 definition, under poison."""
    with poisoned():
        y, last = vk.selective_scan(*ins, delta_softplus=softplus, return_last_state=True, out_dtype=out_dtype,
                                    impl=impl)
    y_ref, last_ref = independent_scan(*ins, delta_softplus=softplus)
    rtol, atol = TOL[dtype]
    assert y.dtype == (out_dtype or dtype) and last.dtype == torch.float32
    # a half-precision output carries its own rounding: compare at the output dtype's tolerance
    assert_close("y", y, y_ref, rtol, atol)
    assert_close("last_state", last, last_ref, *TOL[torch.float32 if dtype == torch.float32 else dtype])
    dy = torch.randn_like(y)
    present = [(n, t) for n, t in zip(NAMES, ins) if t is not None]
    with poisoned():
        got = torch.autograd.grad(y, [t for _, t in present], dy)
    want = torch.autograd.grad(y_ref, [t for _, t in present], dy.double())
    for (name, t), g, w in zip(present, got, want):
        assert g.dtype == t.dtype, f"d{name} dtype {g.dtype} != {t.dtype}"
        # the reference gradient of a half input is rounded to that dtype, as mamba_ssm's tests do
        assert_close(f"d{name}", g, w.to(t.dtype), *grad_tol(name, dtype))


@pytest.mark.parametrize("case", RANGE_CASES, ids=lambda c: "B{}-KD{}-L{}-N{}-K{}{}".format(*c[:5], "" if c[5] else "-3d"))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("softplus", [True, False], ids=["softplus", "dt"])
@pytest.mark.parametrize("impl", IMPLS)
def test_selective_scan_vmamba_ranges(impl, softplus, dtype, case):
    """VMamba's ranges: softplus inputs over [-12, 30] (negative, both sides of the small-dt gradient branch
    and of the threshold 20), or without softplus dt itself over [1e-4, 30]; A in [-16, -0.05]."""
    batch, KD, L, N, K, grouped = case
    ins = make_inputs(batch, KD, L, N, K, dtype, DEVICE, grouped=grouped, ranges="vmamba", softplus=softplus)
    out_dtype = torch.float32 if (dtype != torch.float32 and L % 2 == 1) else None
    _skip_unless_supported(impl, "selective_scan", validate.check_selective_scan(*ins, softplus, out_dtype))
    _check_scan(impl, ins, softplus, out_dtype, dtype)


@pytest.mark.parametrize("N", [1, 2, 16])
@pytest.mark.parametrize("impl", IMPLS)
def test_softplus_through_the_scan(impl, N):
    ones = torch.ones(1, 1, N, 1, device=DEVICE)
    args = validate.check_selective_scan(torch.ones(1, 4, 1, device=DEVICE), torch.ones(1, 4, 1, device=DEVICE),
                                         -torch.ones(4, N, device=DEVICE), ones, ones, None, None, True)
    _skip_unless_supported(impl, "selective_scan", args)
    check_softplus_sweep(*softplus_sweep(impl, N, DEVICE))


@pytest.mark.parametrize("impl", IMPLS)
def test_selective_scan_without_D_and_bias(impl):
    ins = make_inputs(2, 8, 33, 4, 2, torch.float32, DEVICE, with_D=False, with_bias=False)
    _skip_unless_supported(impl, "selective_scan", validate.check_selective_scan(*ins))
    y = vk.selective_scan(*ins, impl=impl)
    y_ref, _ = independent_scan(*ins)
    assert_close("y", y, y_ref, *TOL[torch.float32])
    got = torch.autograd.grad(y.sum(), ins[:5])
    want = torch.autograd.grad(y_ref.sum(), ins[:5])
    for name, g, w in zip(NAMES, got, want):
        assert_close(f"d{name}", g, w, *grad_tol(name, torch.float32))


MAPS = [(1, 1), (7, 7), (13, 13), (14, 14), (7, 13)]


@pytest.mark.parametrize("hw", MAPS, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("mode", ["cross2d", "unidi", "bidi"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("impl", IMPLS)
def test_cross_scan_merge_against_pixel_loops(impl, dtype, channels_last, mode, hw):
    H, W = hw
    shape = (2, H, W, 5) if channels_last else (2, 5, H, W)
    x = torch.randn(*shape, device=DEVICE, dtype=dtype, requires_grad=True)
    _skip_unless_supported(impl, "cross_scan", validate.check_cross_scan(x, mode, channels_last))
    with poisoned():
        ys = vk.cross_scan(x, mode=mode, channels_last=channels_last, impl=impl)
    # a permutation: exact
    assert torch.equal(ys.cpu().double(), independent_cross_scan(x, mode, channels_last))
    g = torch.randn_like(ys)
    with poisoned():
        merged = vk.cross_merge(g, H, W, mode=mode, channels_last=channels_last, impl=impl)
        (gx,) = torch.autograd.grad(ys, x, g)  # backward of scan is merge
    want = independent_cross_merge(g, H, W, mode, channels_last)
    assert_close("merge", merged.cpu(), want, *TOL[dtype])
    assert_close("grad", gx.cpu(), want, *TOL[dtype])


# ---- last state, empty inputs -------------------------------------------------------------------------
@pytest.mark.parametrize("impl", IMPLS)
def test_last_state_is_detached(impl):
    """The last state is returned detached (vk.selective_scan's docstring): no silent zero gradient."""
    ins = make_inputs(2, 4, 9, 2, 2, torch.float32, DEVICE)
    _skip_unless_supported(impl, "selective_scan", validate.check_selective_scan(*ins, True))
    y, last = vk.selective_scan(*ins, delta_softplus=True, return_last_state=True, impl=impl)
    assert y.requires_grad and not last.requires_grad and last.grad_fn is None
    with pytest.raises(RuntimeError, match="does not require grad"):
        torch.autograd.grad(last.sum(), ins[0])
    # its value is still the state after the last step, and y's gradients are unaffected by it
    y_ref, last_ref = independent_scan(*ins, delta_softplus=True)
    assert_close("last_state", last, last_ref, *TOL[torch.float32])


EMPTY_SCANS = [(2, 4, 0), (0, 4, 5), (2, 0, 5), (0, 0, 0)]


@pytest.mark.parametrize("shape", EMPTY_SCANS, ids=lambda s: "B{}-KD{}-L{}".format(*s))
@pytest.mark.parametrize("impl", IMPLS)
def test_selective_scan_empty_inputs(impl, shape):
    """No elements: an empty y, the state after no steps (zeros) and zero gradients, on every backend."""
    batch, KD, L = shape
    ins = make_inputs(batch, KD, L, 3, 1, torch.float32, DEVICE)
    _skip_unless_supported(impl, "selective_scan", validate.check_selective_scan(*ins, True))
    y, last = vk.selective_scan(*ins, delta_softplus=True, return_last_state=True, impl=impl)
    assert y.shape == (batch, KD, L) and y.dtype == torch.float32 and y.requires_grad
    assert last.shape == (batch, KD, 3) and torch.equal(last, torch.zeros_like(last))
    grads = torch.autograd.grad(y.sum(), ins)
    for name, g, t in zip(NAMES, grads, ins):
        assert g.shape == t.shape and torch.equal(g, torch.zeros_like(t)), name


@pytest.mark.parametrize("shape", [(2, 3, 0, 4), (2, 3, 4, 0), (0, 3, 4, 5), (2, 0, 4, 5)], ids=str)
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("impl", IMPLS)
def test_cross_empty_maps(impl, channels_last, shape):
    """A map with no elements gives empty routes, and routes with no elements an empty map, on every backend."""
    Bn, C, H, W = shape
    x = torch.randn(*((Bn, H, W, C) if channels_last else shape), device=DEVICE, requires_grad=True)
    _skip_unless_supported(impl, "cross_scan", validate.check_cross_scan(x, "cross2d", channels_last))
    ys = vk.cross_scan(x, channels_last=channels_last, impl=impl)
    assert ys.shape == (Bn, 4, C, H * W)
    (gx,) = torch.autograd.grad(ys.sum(), x)
    assert gx.shape == x.shape
    m = vk.cross_merge(torch.randn(Bn, 4, C, H * W, device=DEVICE), H, W, channels_last=channels_last, impl=impl)
    assert m.shape == x.shape


# ---- the poison reaches what the ops return ------------------------------------------------------------
def test_poison_exposes_a_skipped_element(monkeypatch):
    """A kernel that leaves one output element unwritten fails the comparison: the torch backend's cross
    scan, swapped for one that writes all but the last element of a torch.empty output, returns a NaN there
    through the registered op when run under poisoned() (as every backend call above is)."""
    backend = dispatch.get_backend("torch")
    full = backend.impl().cross_scan_fwd

    def skipping(x, mode, channels_last):
        ref = full(x, mode, channels_last)
        out = torch.empty_like(ref)
        out.view(-1)[:-1] = ref.view(-1)[:-1]
        return out

    monkeypatch.setattr(backend.impl(), "cross_scan_fwd", skipping)
    x = torch.randn(2, 3, 5, 4)
    with poisoned():
        ys = vk.cross_scan(x, impl="torch")
    assert torch.isnan(ys.view(-1)[-1]) and not torch.isnan(ys.view(-1)[:-1]).any()
    with pytest.raises(AssertionError, match="non-finite values"):
        assert_close("scan", ys, independent_cross_scan(x), 0, 0)
