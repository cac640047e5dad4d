"""Bad input gets a ValueError/TypeError naming the argument, the expected and the actual value.

Every rule of vmamba_kernels/validate.py has a case that fails when the rule is removed or weakened, here or (7
of them: empty maps, eps = 0, the channels-last channel index, dt_projs_weight's K, a branch scale under no_grad)
in tests/test_backends.py, test_prepared_calls.py, test_norm_node.py and test_ss2d_core.py. Checked with hand-made
mutants of validate.py (a `raise` deleted, a comparison shifted by one, a dimension or an argument dropped from a
check, a dtype added to a set, the exception type swapped): of 56 mutants on 2026-12-07, 31 survived the suite
until the add + LayerNorm, depthwise conv and ss2d_core sections below and the cases marked "weakened" were
added; this file alone now fails under 49 of them, the suite under all 56."""
import pytest
import torch

import vmamba_kernels as vk
from tests.scan_cases import make_inputs


def _ins(**kw):
    u, delta, A, B, C, D, bias = make_inputs(2, 8, 10, 3, 4, requires_grad=False)
    d = dict(u=u, delta=delta, A=A, B=B, C=C, D=D, delta_bias=bias)
    d.update(kw)
    return d


@pytest.mark.parametrize("kw, exc, pattern", [
    (dict(u=torch.randn(2, 8)), ValueError, r"u must be \(batch, KD, L\); got 2-D tensor with shape \(2, 8\)"),
    (dict(delta=torch.rand(2, 8, 11)), ValueError, r"delta must have the shape of u \(2, 8, 10\); got shape \(2, 8, 11\)"),
    (dict(A=-torch.rand(6, 3)), ValueError, r"A must be \(KD=8, N\) to match u's channels; got shape \(6, 3\)"),
    (dict(A=-torch.rand(8)), ValueError, r"A must be \(KD, N\); got 1-D"),
    (dict(B=torch.randn(2, 4, 3, 9)), ValueError, r"B must be \(batch=2, K, N=3, L=10\) .*got shape \(2, 4, 3, 9\)"),
    (dict(C=torch.randn(2, 4, 2, 10)), ValueError, r"C must be \(batch=2, K, N=3, L=10\)"),
    (dict(B=torch.randn(2, 3, 3, 10), C=torch.randn(2, 3, 3, 10)), ValueError, r"K=3 must divide the channels KD=8"),
    (dict(C=torch.randn(2, 2, 3, 10)), ValueError, r"B and C must have the same number of groups K"),
    (dict(B=torch.randn(2, 4, 3, 10, 1)), ValueError, r"B must be \(batch, N, L\) or grouped"),
    (dict(D=torch.randn(7)), ValueError, r"D must be \(KD=8,\); got shape \(7,\)"),
    (dict(delta_bias=torch.randn(8, 1)), ValueError, r"delta_bias must be \(KD=8,\)"),
    (dict(u=torch.randint(0, 3, (2, 8, 10))), TypeError, r"u must be a floating tensor .* got torch.int64"),
    (dict(u=[1.0]), TypeError, r"u must be a torch.Tensor, got list"),
    (dict(delta=torch.rand(2, 8, 10, dtype=torch.float16)), TypeError, r"delta must have u's dtype torch.float32; got torch.float16"),
    (dict(B=torch.randn(2, 4, 3, 10, dtype=torch.bfloat16)), TypeError, r"B must have u's dtype"),
    (dict(A=-torch.rand(8, 3, dtype=torch.float16)), TypeError, r"A must be torch.float32 .* got torch.float16"),
    (dict(D=torch.randn(8, dtype=torch.float64)), TypeError, r"D must be torch.float32"),
    (dict(D=torch.randn(8, device="meta")), ValueError, r"D is on meta but u is on cpu"),
    # batch, N and L of B / C each checked (a batch-1 B would otherwise broadcast silently)
    (dict(B=torch.randn(1, 4, 3, 10)), ValueError, r"B must be \(batch=2, K, N=3, L=10\) .*got shape \(1, 4, 3, 10\)"),
    (dict(C=torch.randn(1, 4, 3, 10)), ValueError, r"C must be \(batch=2, K, N=3, L=10\) .*got shape \(1, 4, 3, 10\)"),
    (dict(B=torch.randn(1, 3, 10), C=torch.randn(1, 3, 10)), ValueError, r"B must be \(batch=2, .*got shape \(1, 3, 10\)"),
    (dict(B=torch.randn(2, 4, 2, 10)), ValueError, r"B must be \(batch=2, K, N=3, L=10\)"),
    (dict(C=torch.randn(2, 4, 3, 11)), ValueError, r"C must be \(batch=2, K, N=3, L=10\)"),
    (dict(C=torch.randn(2, 10)), ValueError, r"C must be \(batch, N, L\) or grouped"),
    # d_state N >= 1 and groups K >= 1
    (dict(A=-torch.rand(8, 0), B=torch.randn(2, 4, 0, 10), C=torch.randn(2, 4, 0, 10)), ValueError,
     r"A must have d_state N >= 1; got shape \(8, 0\)"),
    (dict(B=torch.randn(2, 0, 3, 10), C=torch.randn(2, 0, 3, 10)), ValueError, r"K=0 must divide the channels KD=8"),
    (dict(A=-torch.rand(8, 3, 1)), ValueError, r"A must be \(KD, N\); got 3-D"),
    (dict(delta=torch.rand(8, 10)), ValueError, r"delta must have the shape of u \(2, 8, 10\); got shape \(8, 10\)"),
    (dict(D=torch.randn(8, 1)), ValueError, r"D must be \(KD=8,\); got shape \(8, 1\)"),
    # dtypes of every tensor
    (dict(C=torch.randn(2, 4, 3, 10, dtype=torch.float16)), TypeError, r"C must have u's dtype torch.float32"),
    (dict(delta_bias=torch.randn(8, dtype=torch.float16)), TypeError, r"delta_bias must be torch.float32"),
    (dict(u=torch.randn(2, 8, 10, dtype=torch.float64), delta=torch.rand(2, 8, 10, dtype=torch.float64),
          B=torch.randn(2, 4, 3, 10, dtype=torch.float64), C=torch.randn(2, 4, 3, 10, dtype=torch.float64)),
     TypeError, r"A must be torch.float64 .* got torch.float32"),
    # weakened checks: complex is not floating; a 4-D u with a delta to match; delta differing in batch alone
    (dict(u=torch.randn(2, 8, 10, dtype=torch.complex64)), TypeError, r"u must be a floating tensor .* got torch.complex64"),
    (dict(u=torch.randn(2, 8, 10, 1), delta=torch.rand(2, 8, 10, 1)), ValueError, r"u must be \(batch, KD, L\); got 4-D"),
    (dict(delta=torch.rand(1, 8, 10)), ValueError,
     r"delta must have the shape of u \(2, 8, 10\); got shape \(1, 8, 10\)"),
])
def test_selective_scan_bad_input(kw, exc, pattern):
    with pytest.raises(exc, match=pattern):
        vk.selective_scan(**_ins(**kw))


TENSOR_ARGS = ("u", "delta", "A", "B", "C", "D", "delta_bias")


@pytest.mark.parametrize("name", TENSOR_ARGS)
def test_every_tensor_must_be_a_tensor(name):
    with pytest.raises(TypeError, match=f"{name} must be a torch.Tensor, got list"):
        vk.selective_scan(**_ins(**{name: [1.0]}))


@pytest.mark.parametrize("name", TENSOR_ARGS)
def test_every_tensor_must_be_floating(name):
    t = _ins()[name]
    with pytest.raises(TypeError, match=f"{name} must be a floating tensor .* got torch.int32"):
        vk.selective_scan(**_ins(**{name: torch.ones(t.shape, dtype=torch.int32)}))


@pytest.mark.parametrize("name", TENSOR_ARGS[1:])
def test_every_tensor_on_u_device(name):
    """Each tensor on another device than u (the meta device stands in for a GPU on the CPU)."""
    t = _ins()[name]
    with pytest.raises(ValueError, match=f"{name} is on meta but u is on cpu; all inputs must be on one device"):
        vk.selective_scan(**_ins(**{name: torch.empty(t.shape, dtype=t.dtype, device="meta")}))


def test_bad_out_dtype_and_flags():
    with pytest.raises(TypeError, match="out_dtype must be a floating torch.dtype"):
        vk.selective_scan(**_ins(), out_dtype=torch.int32)
    with pytest.raises(TypeError, match="delta_softplus must be a bool"):
        vk.selective_scan(**_ins(), delta_softplus="yes")
    with pytest.raises(TypeError, match="out_dtype must be a floating torch.dtype or None; got 'float32'"):
        vk.selective_scan(**_ins(), out_dtype="float32")
    with pytest.raises(TypeError, match="out_dtype must be a floating torch.dtype or None; got torch.complex64"):
        vk.selective_scan(**_ins(), out_dtype=torch.complex64)


def test_ungrouped_3d_B_C_accepted_and_gradient_keeps_shape():
    u, delta, A, B, C, D, bias = make_inputs(2, 8, 10, 3, 1, grouped=False)
    y = vk.selective_scan(u, delta, A, B, C, D, bias)
    dB, dC = torch.autograd.grad(y.sum(), [B, C])
    assert dB.shape == B.shape == (2, 3, 10) and dC.shape == C.shape


def test_non_contiguous_inputs_are_handled():
    u, delta, A, B, C, D, bias = make_inputs(2, 8, 10, 3, 4, requires_grad=False)
    ut = u.transpose(1, 2).contiguous().transpose(1, 2)  # same values, channel-stride 1
    assert not ut.is_contiguous()
    assert torch.equal(vk.selective_scan(ut, delta, A, B, C, D, bias), vk.selective_scan(u, delta, A, B, C, D, bias))


@pytest.mark.parametrize("call, exc, pattern", [
    (lambda: vk.cross_scan(torch.randn(2, 3, 4)), ValueError, r"x must be a 4-D map \(B, C, H, W\); got 3-D"),
    (lambda: vk.cross_scan(torch.randn(2, 3, 4), channels_last=True), ValueError, r"\(B, H, W, C\)"),
    (lambda: vk.cross_scan(torch.randn(1, 2, 3, 3), mode="diag"), ValueError, r"mode must be one of \('cross2d', 'unidi', 'bidi'\); got 'diag'"),
    (lambda: vk.cross_scan(torch.ones(1, 2, 3, 3, dtype=torch.int32)), TypeError, r"x must be a floating tensor"),
    (lambda: vk.cross_merge(torch.randn(1, 4, 2, 12), 3, 5), ValueError, r"y must be \(B, 4, C, H\*W=15\) for H=3, W=5; got shape \(1, 4, 2, 12\)"),
    (lambda: vk.cross_merge(torch.randn(1, 3, 2, 12), 3, 4), ValueError, r"y must be \(B, 4, C, H\*W=12\)"),
    (lambda: vk.cross_merge(torch.randn(1, 4, 2, 13), 3, 4), ValueError,  # too long, not only too short
     r"y must be \(B, 4, C, H\*W=12\) for H=3, W=4; got shape \(1, 4, 2, 13\)"),
    (lambda: vk.cross_merge(torch.randn(1, 4, 2, 12), -1, 4), ValueError, r"H must be a non-negative int; got -1"),
    (lambda: vk.cross_merge(torch.randn(1, 4, 2, 12), 3, 4.0), ValueError, r"W must be a non-negative int; got 4.0"),
    (lambda: vk.cross_merge(torch.randn(1, 4, 2, 12), True, 12), ValueError, r"H must be a non-negative int; got True"),
    (lambda: vk.cross_merge(torch.randn(4, 2, 12), 3, 4), ValueError, r"y must be \(B, 4, C, H\*W\); got 3-D"),
    (lambda: vk.cross_merge([1.0], 3, 4), TypeError, r"y must be a torch.Tensor, got list"),
    (lambda: vk.cross_merge(torch.ones(1, 4, 2, 12, dtype=torch.int64), 3, 4), TypeError, r"y must be a floating tensor"),
    (lambda: vk.cross_merge(torch.randn(1, 4, 2, 12), 3, 4, mode="diag"), ValueError, r"mode must be one of"),
    (lambda: vk.cross_scan([1.0]), TypeError, r"x must be a torch.Tensor, got list"),
])
def test_cross_bad_input(call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call()


def test_explain_validates_too():
    with pytest.raises(ValueError, match="delta must have the shape of u"):
        vk.explain("selective_scan", torch.randn(1, 2, 3), torch.randn(1, 2, 4), -torch.rand(2, 1),
                   torch.randn(1, 1, 3), torch.randn(1, 1, 3))
    with pytest.raises(ValueError, match="unknown op"):
        vk.explain("conv", torch.randn(1))
    # explain runs no backend: the mode check is validate's own (the torch backends repeat it)
    with pytest.raises(ValueError, match=r"mode must be one of \('cross2d', 'unidi', 'bidi'\); got 'diag'"):
        vk.explain("cross_scan", torch.randn(1, 2, 3, 3), mode="diag")
    with pytest.raises(ValueError, match=r"mode must be one of"):
        vk.explain("cross_merge", torch.randn(1, 4, 2, 9), 3, 3, mode="diag")


# ---- add + LayerNorm ---------------------------------------------------------------------------------------------
def _ln(**kw):
    d = dict(x=torch.randn(2, 3, 5, 6), branch=torch.randn(2, 3, 5, 6), weight=torch.randn(3), bias=torch.randn(3),
             branch_scale=torch.rand(2))
    d.update(kw)
    return d


@pytest.mark.parametrize("kw, exc, pattern", [
    (dict(x=torch.randn(2, 3, 5), branch=None, branch_scale=None), ValueError,
     r"x must be a 4-D map \(B, C, H, W\); got 3-D"),
    (dict(branch=torch.randn(2, 3, 5, 6, device="meta")), ValueError, r"branch is on meta but x is on cpu"),
    (dict(branch=torch.randn(2, 3, 5, 6, dtype=torch.float64)), TypeError, r"branch and x must both be float64 or neither"),
    (dict(weight=None), TypeError, r"weight must be a \(3,\) float tensor, got None"),
    (dict(bias=torch.randn(3, 1)), ValueError, r"bias must be \(3,\) \(one value per channel\); got shape \(3, 1\)"),
    (dict(weight=torch.randn(3, device="meta")), ValueError, r"weight is on meta but x is on cpu"),
    (dict(bias=torch.randn(3, dtype=torch.float16)), TypeError, r"bias must be torch.float32 .* got torch.float16"),
    (dict(branch=None), ValueError, r"branch_scale scales the branch"),
    (dict(branch_scale=torch.rand(2, device="meta")), ValueError, r"branch_scale is on meta but x is on cpu"),
    (dict(branch_scale=torch.rand(2, dtype=torch.float16)), TypeError,
     r"branch_scale must be torch.float32; got torch.float16"),
    (dict(eps=True), ValueError, r"eps must be a positive float; got True"),  # a bool is not an eps of 1.0
    (dict(out_dtype=torch.int32), TypeError, r"out_dtype must be a floating torch.dtype or None; got torch.int32"),
])
def test_add_layer_norm_bad_input(kw, exc, pattern):
    with pytest.raises(exc, match=pattern):
        vk.add_layer_norm(**_ln(**kw))


# ---- depthwise conv ----------------------------------------------------------------------------------------------
_DW_WEIGHT = r"weight must be a depthwise conv weight \(C=3, 1, K, K\) with K odd; got shape "


@pytest.mark.parametrize("kw, exc, pattern", [
    (dict(weight=torch.randn(3, 1, 4, 4)), ValueError, _DW_WEIGHT + r"\(3, 1, 4, 4\)"),  # even K: a larger output
    (dict(weight=torch.randn(3, 2, 3, 3)), ValueError, _DW_WEIGHT + r"\(3, 2, 3, 3\)"),
    (dict(weight=torch.randn(3, 1, 3, 5)), ValueError, _DW_WEIGHT + r"\(3, 1, 3, 5\)"),  # not square
    (dict(weight=torch.randn(4, 1, 3, 3)), ValueError, _DW_WEIGHT + r"\(4, 1, 3, 3\)"),
    (dict(weight=torch.randn(3, 1, 3, 3, device="meta")), ValueError, r"weight is on meta but x is on cpu"),
    (dict(weight=torch.randn(3, 1, 3, 3, dtype=torch.float16)), TypeError, r"weight must be torch.float32 \(the conv's"),
    (dict(bias=torch.randn(3, dtype=torch.float64)), TypeError, r"bias must be torch.float32 \(the conv's"),
    (dict(bias=torch.randn(3, 1)), ValueError, r"bias must be \(3,\) \(one value per channel\)"),
])
def test_dwconv2d_bad_input(kw, exc, pattern):
    d = dict(x=torch.randn(2, 3, 5, 6), weight=torch.randn(3, 1, 3, 3), bias=torch.randn(3))
    d.update(kw)
    with pytest.raises(exc, match=pattern):
        vk.dwconv2d(**d)


def test_dwconv2d_act_is_checked_before_any_backend():
    # explain runs no backend (the torch backend repeats the check, others need not)
    with pytest.raises(ValueError, match=r"act must be one of \('none', 'silu', 'gelu'\); got 'relu'"):
        vk.explain("dwconv2d", torch.randn(2, 3, 5, 6), torch.randn(3, 1, 3, 3), act="relu")


# ---- ss2d_core ---------------------------------------------------------------------------------------------------
def _core(**kw):  # batch 2, D=3 channels on a 4 x 5 map, d_state N=2, dt_rank R=2, K=4 routes
    d = dict(x=torch.randn(2, 3, 4, 5), x_proj_weight=torch.randn(4, 6, 3), dt_projs_weight=torch.randn(4, 3, 2),
             A=-torch.rand(12, 2), D=torch.randn(12), delta_bias=torch.randn(12))
    d.update(kw)
    return d


@pytest.mark.parametrize("kw, exc, pattern", [
    (dict(x_proj_weight=torch.randn(4, 4, 3), dt_projs_weight=torch.randn(4, 3, 0)), ValueError,
     r"dt_projs_weight must have dt_rank R >= 1; got shape \(4, 3, 0\)"),
    (dict(x_proj_weight=torch.randn(4, 2, 3), A=-torch.rand(12, 0)), ValueError,
     r"A must be \(K\*D=12, N\) with d_state N >= 1; got shape \(12, 0\)"),
    (dict(dt_projs_weight=torch.randn(4, 3, 2, dtype=torch.float16)), TypeError,
     r"dt_projs_weight must be torch.float32 \(the model's parameter\) or x's dtype torch.float32; got torch.float16"),
    (dict(x_proj_weight=torch.randn(4, 6, 3, device="meta")), ValueError, r"x_proj_weight is on meta but x is on cpu"),
    (dict(dt_projs_weight=torch.randn(4, 3, 2, device="meta")), ValueError, r"dt_projs_weight is on meta but x is on cpu"),
    (dict(delta_bias=torch.randn(12, device="meta")), ValueError, r"delta_bias is on meta but x is on cpu"),
    (dict(out_dtype=torch.int32), TypeError, r"out_dtype must be a floating torch.dtype or None; got torch.int32"),
])
def test_ss2d_core_bad_input(kw, exc, pattern):
    with pytest.raises(exc, match=pattern):
        vk.ss2d_core(**_core(**kw), impl="torch")
