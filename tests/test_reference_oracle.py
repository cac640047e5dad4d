"""reference/ (the float64 oracle every backend is checked against) by checks written here: closed forms of the
recurrence, the channel-to-group map, the dtype contracts of 16-bit inputs (computed in float32, rounded once),
mode errors. Each test names the bug it guards against; tests/tools/mutants/reference_*.py hold the mutants
(campaign of 2026-12-07: these tests kill the 11 of 95 that survived tests/test_reference.py and the op files)."""
import math

import pytest
import torch
import torch.nn.functional as F

import reference
from reference import (add_layer_norm, cross_merge_ref, cross_scan_ref, dwconv2d, route_index,
                       selective_scan_parallel, selective_scan_ref)

SCANS = {"sequential": selective_scan_ref, "parallel": selective_scan_parallel}


def _softplus(v):
    return v if v > 20 else math.log1p(math.exp(v))


@pytest.mark.parametrize("softplus", [False, True], ids=["dt", "softplus"])
@pytest.mark.parametrize("scan", SCANS)
def test_scan_closed_form_three_steps(scan, softplus):
    """One channel, two states, L = 3, against the recurrence written out in Python floats (bias before softplus,
    decay exp(dt A), input dt B u, output C x_t + D u, state from 0): guards the step order, the decay, the
    bias / softplus order, the D term, the last state, and float64 arithmetic (inputs not representable in
    float32; a float32 computation misses rtol 1e-13)."""
    u = [0.7 + 1e-9, -1.3, 0.4]
    delta = [0.2, -0.45, 1.1] if softplus else [0.2, 0.45, 1.1]
    bias, D = 0.15 + 1e-10, 0.6
    A = [-0.8, -0.1 - 1e-11]
    B = [[1.2, -0.3, 0.5], [0.4, 0.9, -1.1]]
    C = [[-0.7, 1.5, 0.3], [0.2, -0.6, 1.3]]
    x, y_want = [0.0, 0.0], []
    for t in range(3):
        dt = _softplus(delta[t] + bias) if softplus else delta[t] + bias
        x = [math.exp(dt * A[n]) * x[n] + dt * B[n][t] * u[t] for n in range(2)]
        y_want.append(sum(C[n][t] * x[n] for n in range(2)) + D * u[t])
    f64 = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    y, last = SCANS[scan](f64(u).view(1, 1, 3), f64(delta).view(1, 1, 3), f64(A).view(1, 2), f64(B).view(1, 2, 3),
                          f64(C).view(1, 2, 3), f64([D]), f64([bias]), softplus, return_last_state=True)
    assert y.dtype == last.dtype == torch.float64
    torch.testing.assert_close(y.view(3), f64(y_want), rtol=1e-13, atol=0)
    torch.testing.assert_close(last.view(2), f64(x), rtol=1e-13, atol=0)


@pytest.mark.parametrize("scan", SCANS)
def test_grouped_B_C_channel_d_reads_group_d_div_G(scan):
    """KD = 6 channels in K = 3 groups of G = 2: channel d reads B / C group d // G (VMamba's route k owns channels
    k*G .. k*G + G-1), checked against ungrouped one-channel calls given that group's B / C. Guards the c % K
    mapping (and any other permutation of the groups)."""
    g = torch.Generator().manual_seed(1)
    batch, KD, K, N, L = 2, 6, 3, 2, 5
    u = torch.randn(batch, KD, L, generator=g, dtype=torch.float64)
    delta = 0.5 * torch.rand(batch, KD, L, generator=g, dtype=torch.float64)
    A = -torch.rand(KD, N, generator=g, dtype=torch.float64)
    B = torch.randn(batch, K, N, L, generator=g, dtype=torch.float64)
    C = torch.randn(batch, K, N, L, generator=g, dtype=torch.float64)
    y = SCANS[scan](u, delta, A, B, C, return_last_state=False)
    for d in range(KD):
        k = d // (KD // K)
        want = SCANS[scan](u[:, d:d + 1], delta[:, d:d + 1], A[d:d + 1], B[:, k], C[:, k])
        torch.testing.assert_close(y[:, d:d + 1], want, rtol=1e-14, atol=1e-14, msg=f"channel {d} (group {k})")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("scan", SCANS)
def test_scan_16bit_inputs_float32_state_rounded_once(scan, dtype):
    """16-bit u / delta / B / C with float32 A, D, delta_bias: the scan runs in float32 on the upcast inputs, y is
    rounded once to u's dtype (or to out_dtype), the last state comes back in A's dtype (float32), not u's.
    Guards the last state's dtype of each form, out_dtype, and a 16-bit computation."""
    g = torch.Generator().manual_seed(2)
    batch, KD, K, N, L = 1, 4, 2, 3, 9
    u = torch.randn(batch, KD, L, generator=g).to(dtype)
    delta = (0.5 * torch.rand(batch, KD, L, generator=g)).to(dtype)
    A = -0.5 * torch.rand(KD, N, generator=g)
    B = torch.randn(batch, K, N, L, generator=g).to(dtype)
    C = torch.randn(batch, K, N, L, generator=g).to(dtype)
    D, bias = torch.randn(KD, generator=g), 0.5 * torch.rand(KD, generator=g)
    fn = SCANS[scan]
    y, last = fn(u, delta, A, B, C, D, bias, True, return_last_state=True)
    assert y.dtype == dtype and last.dtype == torch.float32
    y32, last32 = fn(u.float(), delta.float(), A, B.float(), C.float(), D, bias, True, return_last_state=True)
    assert torch.equal(y, y32.to(dtype)) and torch.equal(last, last32)
    y_out = fn(u, delta, A, B, C, D, bias, True, out_dtype=torch.float32)
    assert y_out.dtype == torch.float32 and torch.equal(y_out, y32)


def test_ss2d_core_honours_out_dtype():
    """reference.ss2d_core returns out_dtype (float32 from float64 inputs here), by default x's dtype: guards an
    out_dtype that is dropped on the way to the scan (the sanitizer only ever asks for x's dtype)."""
    g = torch.Generator().manual_seed(3)
    Bn, Dc, H, W, N, R, K = 1, 3, 2, 3, 2, 2, 4
    f64 = dict(generator=g, dtype=torch.float64)
    x = torch.randn(Bn, Dc, H, W, **f64)
    xpw = torch.randn(K, R + 2 * N, Dc, **f64) / Dc ** 0.5
    dtw = torch.randn(K, Dc, R, **f64) / R ** 0.5
    A, D, bias = -torch.rand(K * Dc, N, **f64), torch.randn(K * Dc, **f64), torch.rand(K * Dc, **f64) - 2.0
    y64 = reference.ss2d_core(x, xpw, dtw, A, D, bias)
    y32 = reference.ss2d_core(x, xpw, dtw, A, D, bias, out_dtype=torch.float32)
    assert y64.dtype == torch.float64 and y32.dtype == torch.float32 and y32.shape == x.shape
    torch.testing.assert_close(y32, y64.float(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("call", ["route_index", "cross_scan_ref", "cross_merge_ref"])
def test_unknown_mode_raises(call):
    """A misspelt mode is an error in the reference itself (the ops validate first, so only a direct caller of
    reference/ sees this): guards a fall-through to one of the known route sets."""
    with pytest.raises(ValueError, match="mode must be one of"):
        if call == "route_index":
            route_index("diag", 2, 3)
        elif call == "cross_scan_ref":
            cross_scan_ref(torch.zeros(1, 1, 2, 3), "diag")
        else:
            cross_merge_ref(torch.zeros(1, 4, 1, 6), 2, 3, "diag")


@pytest.mark.parametrize("dtype,branch_dtype", [(torch.float16, torch.float32), (torch.bfloat16, torch.float16),
                                                (torch.float16, torch.float16)], ids=["fp16+fp32", "bf16+fp16", "fp16"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["cf", "cl"])
def test_add_layer_norm_16bit_rounds_s_once_and_normalises_in_float32(channels_last, dtype, branch_dtype):
    """16-bit x (branch 16-bit or float32, as the validator allows): s = x + scale * branch is formed in float32
    and rounded once to x's dtype (not the branch rounded first), y is the LayerNorm of that s with float32
    statistics and float32 weight / bias, returned in out_dtype (default x's dtype). Guards s left unrounded,
    16-bit statistics, a weight rounded to x's dtype, a branch rounded before the add and a dropped out_dtype."""
    g = torch.Generator().manual_seed(4)
    Bn, C, H, W = 2, 16, 7, 8
    shape = (Bn, H, W, C) if channels_last else (Bn, C, H, W)
    x = (torch.randn(shape, generator=g) + 0.5).to(dtype)
    branch = torch.randn(shape, generator=g).to(branch_dtype)
    scale = torch.tensor([1.25, 0.5])
    weight, bias = 1.0 + 0.5 * torch.randn(C, generator=g), 0.5 * torch.randn(C, generator=g)
    y, s = add_layer_norm(x, branch, weight, bias, scale, 1e-5, channels_last, torch.float32)
    assert s.dtype == dtype and y.dtype == torch.float32
    assert torch.equal(s, (x.float() + scale.view(-1, 1, 1, 1) * branch.float()).to(dtype))
    s64 = s.double() if channels_last else s.double().movedim(1, -1)
    want = F.layer_norm(s64, (C,), weight.double(), bias.double(), 1e-5)
    want = want if channels_last else want.movedim(-1, 1)
    torch.testing.assert_close(y.double(), want, rtol=1e-5, atol=1e-5)
    y_default, _ = add_layer_norm(x, branch, weight, bias, scale, 1e-5, channels_last)
    assert y_default.dtype == dtype and torch.equal(y_default, y.to(dtype))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["cf", "cl"])
def test_dwconv2d_16bit_computed_in_float32_rounded_once(channels_last, dtype):
    """16-bit x with float32 weight / bias: the conv and the activation run in float32 on the upcast x and the
    result is rounded once to x's dtype. Guards a 16-bit conv (weights rounded, 16-bit sums) and a result left
    in float32."""
    g = torch.Generator().manual_seed(5)
    Bn, C, H, W, K = 2, 8, 9, 10, 3
    x = torch.randn(Bn, C, H, W, generator=g)
    x = (x.permute(0, 2, 3, 1).contiguous() if channels_last else x).to(dtype)
    weight, bias = torch.randn(C, 1, K, K, generator=g) / K, 0.5 * torch.randn(C, generator=g)
    for act in ("none", "silu", "gelu"):
        y = dwconv2d(x, weight, bias, act, channels_last)
        assert y.dtype == dtype and y.shape == x.shape
        assert torch.equal(y, dwconv2d(x.float(), weight, bias, act, channels_last).to(dtype)), act
