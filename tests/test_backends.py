"""The generic grid: every registered backend, on every dtype it declares, against the float64
definition. A new backend is tested here by registering it; cases it cannot run are skipped with
the reasons its `why_not` gives. On a machine without CUDA only CPU-capable backends run."""
import pytest
import torch

import vmamba_kernels as vk
from reference import cross_merge_ref, cross_scan_ref
from tests.scan_cases import NAMES, TOL, assert_close, grad_tol, independent_scan, make_inputs
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


def _poison_allocator():
    # Fill freed cache blocks with NaN so an output element a kernel forgets to write shows up.
    if DEVICE == "cuda":
        junk = torch.full((64 << 20,), float("nan"), device=DEVICE)
        del junk


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
    _poison_allocator()
    y, last = vk.selective_scan(*ins, delta_softplus=softplus, return_last_state=True, out_dtype=out_dtype, impl=impl)
    y_ref, last_ref = independent_scan(*ins, delta_softplus=softplus)
    rtol, atol = TOL[dtype]
    assert y.dtype == (out_dtype or dtype) and last.dtype == torch.float32
    # a half-precision output carries its own rounding: compare at the output dtype's tolerance
    assert_close("y", y, y_ref, rtol, atol)
    assert_close("last_state", last, last_ref, *TOL[torch.float32 if dtype == torch.float32 else dtype])
    dy = torch.randn_like(y)
    present = [(n, t) for n, t in zip(NAMES, ins) if t is not None]
    _poison_allocator()
    got = torch.autograd.grad(y, [t for _, t in present], dy)
    want = torch.autograd.grad(y_ref, [t for _, t in present], dy.double())
    for (name, t), g, w in zip(present, got, want):
        assert g.dtype == t.dtype, f"d{name} dtype {g.dtype} != {t.dtype}"
        # the reference gradient of a half input is rounded to that dtype, as mamba_ssm's tests do
        assert_close(f"d{name}", g, w.to(t.dtype), *grad_tol(name, dtype))


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
def test_cross_scan_merge_against_reference(impl, dtype, channels_last, mode, hw):
    H, W = hw
    shape = (2, H, W, 5) if channels_last else (2, 5, H, W)
    x = torch.randn(*shape, device=DEVICE, dtype=dtype, requires_grad=True)
    _skip_unless_supported(impl, "cross_scan", validate.check_cross_scan(x, mode, channels_last))
    _poison_allocator()
    ys = vk.cross_scan(x, mode=mode, channels_last=channels_last, impl=impl)
    assert torch.equal(ys, cross_scan_ref(x.detach(), mode, channels_last))  # a permutation: exact
    g = torch.randn_like(ys)
    _poison_allocator()
    merged = vk.cross_merge(g, H, W, mode=mode, channels_last=channels_last, impl=impl)
    want = cross_merge_ref(g.double(), H, W, mode, channels_last)
    assert_close("merge", merged, want, *TOL[dtype])
    (gx,) = torch.autograd.grad(ys, x, g)  # backward of scan is merge
    assert_close("grad", gx, want, *TOL[dtype])
