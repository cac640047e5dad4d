"""reference.selective_scan_attention: W @ u + D u is the scan, W is its Jacobian dy/du, float64."""
import pytest
import torch

from reference import selective_scan_attention, selective_scan_parallel
from tests.scan_cases import assert_close, independent_scan, make_inputs

# (batch, KD, L, N, K, grouped B/C, softplus, bias)
CASES = [(2, 6, 7, 3, 2, True, True, True), (1, 4, 9, 1, 1, False, False, False),
         (2, 4, 5, 2, 4, True, False, True), (1, 3, 11, 4, 1, True, True, False)]


def _id(c):
    b, KD, L, N, K, grouped, sp, bias = c
    return f"b{b}-KD{KD}-L{L}-N{N}-K{K}{'' if grouped else '-3dBC'}{'-softplus' if sp else ''}{'-bias' if bias else ''}"


def _inputs(case):
    batch, KD, L, N, K, grouped, softplus, bias = case
    ins = make_inputs(batch, KD, L, N, K, torch.float64, grouped=grouped, with_bias=bias, requires_grad=False)
    ins[1] = ins[1] - 0.3  # some negative pre-activations: softplus matters, no softplus keeps dt signed
    return ins, softplus


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_weights_reproduce_the_scan(case):
    (u, delta, A, B, C, D, bias), softplus = _inputs(case)
    W = selective_scan_attention(delta, A, B, C, bias, softplus)
    assert W.dtype == torch.float64 and W.shape == (*u.shape, u.shape[-1])
    y = torch.einsum("bdts,bds->bdt", W, u) + D[:, None] * u
    y_ref, _ = independent_scan(u, delta, A, B, C, D, bias, delta_softplus=softplus)
    assert_close("W @ u + D u", y, y_ref, 1e-12, 1e-12)
    assert torch.equal(torch.triu(W, diagonal=1), torch.zeros_like(W)), "weights on future steps"


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_weights_are_the_jacobian(case):
    (u, delta, A, B, C, D, bias), softplus = _inputs(case)
    J = torch.autograd.functional.jacobian(
        lambda v: selective_scan_parallel(v, delta, A, B, C, D, bias, softplus), u)  # (b, KD, L, b, KD, L)
    batch, KD, L = u.shape
    W = selective_scan_attention(delta, A, B, C, bias, softplus)
    want = torch.zeros(batch, KD, L, batch, KD, L, dtype=torch.float64)
    for b in range(batch):
        for d in range(KD):
            want[b, d, :, b, d, :] = W[b, d] + D[d] * torch.eye(L, dtype=torch.float64)
    assert_close("dy/du", J, want, 1e-12, 1e-12)  # also: no coupling across channels or batch


def test_channel_and_row_selection_are_slices_of_the_full_matrix():
    (u, delta, A, B, C, D, bias), softplus = _inputs(CASES[0])
    W = selective_scan_attention(delta, A, B, C, bias, softplus)
    part = selective_scan_attention(delta, A, B, C, bias, softplus, channels=[5, 1, 3], rows=slice(2, None, 2))
    assert_close("channels/rows", part, W[:, [5, 1, 3]][:, :, 2::2], 1e-14, 1e-15)
    one = selective_scan_attention(delta, A, B, C, bias, softplus, channels=4, rows=-1, out_dtype=torch.float32)
    assert one.shape == (2, 1, 1, 7) and one.dtype == torch.float32
    assert torch.allclose(one.double(), W[:, 4:5, -1:], rtol=1e-6, atol=0)
    # a tiny block cap walks many row and channel blocks: same numbers
    small_blocks = selective_scan_attention(delta, A, B, C, bias, softplus, block_elems=5)
    assert_close("small blocks", small_blocks, W, 1e-14, 1e-15)


def test_long_sequence_with_strong_decay_stays_finite_and_exact():
    """L = 3136 (VMamba stage 1 at 224) with decay sums of ~1e4: exp(cumsum) underflows to 0 after a few
    hundred steps, so exp(S_t) / exp(S_s) would give 0/0 = NaN; the masked difference must not."""
    L = 3136
    u, delta, A, B, C, D, bias = make_inputs(1, 1, L, 2, 1, torch.float64, requires_grad=False)
    delta = delta + 1.0
    A = torch.tensor([[-4.0, -0.001]], dtype=torch.float64)
    W = selective_scan_attention(delta, A, B, C, bias, True)
    assert torch.isfinite(W).all()
    y = torch.einsum("bdts,bds->bdt", W, u) + D[:, None] * u
    y_ref = selective_scan_parallel(u, delta, A, B, C, D, bias, True)
    assert_close("W @ u + D u at L=3136", y, y_ref, 1e-10, 1e-10)


@pytest.mark.parametrize("bad, match", [
    (dict(A=torch.zeros(5, 3)), "A must be"),
    (dict(B=torch.zeros(2, 4, 3, 7)), "must divide KD"),
    (dict(delta_bias=torch.zeros(2)), "delta_bias must be"),
    (dict(channels=[6]), "channels must index"),
    (dict(rows="x"), "rows must be"),
])
def test_bad_arguments_are_named(bad, match):
    (u, delta, A, B, C, D, bias), _ = _inputs(CASES[0])
    kw = dict(delta=delta, A=A, B=B, C=C, delta_bias=bias)
    kw.update(bad)
    with pytest.raises((ValueError, TypeError), match=match):
        selective_scan_attention(**kw)
