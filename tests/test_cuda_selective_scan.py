"""The CUDA selective scan (csrc/selective_scan/, impl "cuda") against the float64 reference.

GPU tests (marker `gpu`): outputs, last_state and ALL gradients against
`reference.selective_scan.selective_scan_parallel` run in float64 on the same inputs, with mamba_ssm's
per-dtype tolerance table (tests/scan_cases.py); the awkward grid L x N x dtype with K, batch, out
dtype, softplus and D/delta_bias cycled, in mamba_ssm's input ranges and in VMamba's (softplus over
negative inputs, both sides of the threshold 20 and of the small-dt gradient branch, A down to -16);
softplus, its threshold and its gradient swept through every kernel family (test_softplus_through_the_scan);
poisoned outputs (the knob scan_poison fills every output and scratch buffer with NaN first, and
scan_cases.poisoned() every other allocation); several channel rounds per backward block (scan_bwd_splits=1);
bitwise determinism; the input checks; mamba_ssm's kernel when built; a > 2^31-element case (slow).

Timing lives in bench/ (`python -m bench.kernels`, and bench/tuning/scan.cu for the kernels' constants).
"""
from __future__ import annotations

import itertools

import pytest
import torch

import vmamba_kernels as vk
from reference.selective_scan import selective_scan_parallel
from tests.scan_cases import (NAMES, RANGES, TOL, assert_close, check_softplus_sweep, grad_tol, weight_grad_floor,
                              make_inputs, poisoned, softplus_sweep)

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
LS = (1, 7, 49, 197, 1031, 2049, 3136)
NS = (1, 4, 16, 64)

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def ops():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    try:
        from vmamba_kernels.cuda import extension  # noqa: F401
    except ImportError as e:
        pytest.skip(f"vmamba_kernels._C not built ({e})")
    if not hasattr(torch.ops.vmamba_cuda, "selective_scan_fwd"):
        pytest.fail("vmamba_kernels._C was built without csrc/selective_scan")
    return torch.ops.vmamba_cuda


@pytest.fixture(autouse=True)
def _poison():
    # the extension's knobs (CudaTuning, csrc/common/knobs.h) are set through vmamba_kernels.tuning
    with vk.tuning("cuda", scan_poison=True):
        yield


def _reference(ins, softplus, out_dtype, dout):
    """float64 outputs, last state and gradients of the same inputs."""
    ref_ins = [None if t is None else t.detach().double().requires_grad_(True) for t in ins]
    u, delta, A, B, C, D, bias = ref_ins
    y, last = selective_scan_parallel(u, delta, A, B, C, D, bias, delta_softplus=softplus,
                                      return_last_state=True, out_dtype=torch.float64)
    y.backward(dout.double())
    # an input the output does not depend on (A when L == 1) gets no .grad: its gradient is 0
    return y.detach(), last.detach(), [None if t is None else (t.grad if t.grad is not None else torch.zeros_like(t))
                                       for t in ref_ins]


def _check(ops, batch, KD, L, N, K, dtype, out_fp32, softplus, with_D, with_bias, splits=None, ranges="mamba_ssm"):
    dev = "cuda"
    ins = make_inputs(batch, KD, L, N, K, dtype=dtype, device=dev, with_D=with_D, with_bias=with_bias,
                      requires_grad=False, ranges=ranges, softplus=softplus)
    u, delta, A, B, C, D, bias = ins
    out_dtype = torch.float32 if out_fp32 else dtype
    with poisoned():
        y, last, aux = ops.selective_scan_fwd(u, delta, A, B, C, D, bias, softplus, out_dtype)
    assert y.dtype == out_dtype and last.dtype == torch.float32 and aux.dtype == torch.float32
    from vmamba_kernels.cuda import _aux_shape
    assert tuple(aux.shape) == _aux_shape(batch, KD, L, N, dtype)[0]
    dout = torch.randn(batch, KD, L, device=dev, dtype=out_dtype)
    with vk.tuning("cuda", scan_bwd_splits=splits), poisoned():
        grads = ops.selective_scan_bwd(u, delta, A, B, C, D, bias, softplus, dout, aux)
    y_ref, last_ref, g_ref = _reference(ins, softplus, out_dtype, dout)
    rtol, atol = TOL[dtype]  # the input dtype's tolerance whether y is written in it or in fp32
    tag = f"b{batch} KD{KD} L{L} N{N} K{K} {dtype} out{out_dtype} sp{softplus} D{with_D} bias{with_bias} {ranges}"
    assert_close(f"y [{tag}]", y, y_ref, rtol, atol)
    assert_close(f"last_state [{tag}]", last, last_ref, *TOL[torch.float32] if dtype == torch.float32 else TOL[dtype])
    for name, g, gr, t in zip(NAMES, grads, g_ref, ins):
        if t is None:
            assert g.numel() == 0, f"d{name} must be empty when {name} is None"
            continue
        assert g.dtype == (torch.float32 if name in ("A", "D", "delta_bias") else dtype), name
        assert g.shape == t.shape, name
        rtol_g, atol_g = grad_tol(name, dtype)
        # the fp32 floor of the cancelling sums dA, dD, ddelta_bias (scan_cases.weight_grad_floor)
        atol_g = atol_g + weight_grad_floor(name, u, delta, A, B, C, bias, softplus, dout, g_ref[1])
        assert_close(f"d{name} [{tag}]", g, gr, rtol_g, atol_g)


# the awkward grid: every L x N x dtype, other parameters cycled so each value meets each other
_GRID = []
for i, (L, N, dtype) in enumerate(itertools.product(LS, NS, DTYPES)):
    K = (1, 4)[i % 2]
    batch = (1, 2)[(i // 2) % 2]
    out_fp32 = bool((i // 3) % 2)
    softplus = bool((i // 5) % 2 == 0)
    with_D, with_bias = [(True, True), (False, False), (True, False), (False, True)][(i // 7) % 4]
    KD = 12 if K == 4 else 20  # groups of 3 and 20 channels: partial warps in the backward blocks
    _GRID.append((batch, KD, L, N, K, dtype, out_fp32, softplus, with_D, with_bias))


@pytest.mark.parametrize("ranges", RANGES)
@pytest.mark.parametrize("case", _GRID, ids=lambda c: f"b{c[0]}-L{c[2]}-N{c[3]}-K{c[4]}-{str(c[5])[6:]}-o{int(c[6])}-sp{int(c[7])}-D{int(c[8])}{int(c[9])}")
def test_grid(ops, case, ranges):
    _check(ops, *case, ranges=ranges)


# d_state 1 with rows of one chunk (L <= 256) takes fwd_n1_packed_kernel (rows end to end at lane
# granularity): L at the 128 / 129 and chunk (256 / 257) edges, every input dtype
@pytest.mark.parametrize("ranges", RANGES)
@pytest.mark.parametrize("L", (8, 9, 128, 129, 255, 256, 257))
@pytest.mark.parametrize("dtype", DTYPES)
def test_one_chunk_rows_d_state_1(ops, L, dtype, ranges):
    _check(ops, 3, 44, L, 1, 4, dtype, True, True, True, True, ranges=ranges)
    _check(ops, 1, 9, L, 1, 1, dtype, False, False, False, False, ranges=ranges)


# fwd_n1_packed_kernel with a few rows per warp forced (the knob scan_packed_rows; by default a warp
# takes rows / resident warps, one row on inputs this small): rows then start and end mid-chunk and
# cross chunk boundaries (ceil(L / 8) lanes per row), a warp's last chunk is partly idle, and the
# last warp has fewer rows than the others (3 * 44 rows)
@pytest.mark.parametrize("rows_per_warp", [2, 3, 7, 64])
@pytest.mark.parametrize("L", (1, 7, 9, 49, 196, 255, 256))
@pytest.mark.parametrize("dtype", DTYPES)
def test_packed_rows(ops, rows_per_warp, L, dtype):
    with vk.tuning("cuda", scan_packed_rows=rows_per_warp):
        _check(ops, 3, 44, L, 1, 4, dtype, True, True, True, True, ranges=RANGES[L % 2])


# the row-per-thread kernels (1 < N <= 16, taken from scan_seq_min_rows rows up; 0 forces
# them): padded state counts (N = 2, 5 use 4 or 8 registers in the forward, 8 lanes' worth in the
# backward), groups of 70 channels (full and partial 64-row forward blocks, 16/32-row backward rounds),
# L across the tile (32), sub-tile (8) and chunk (256) edges; one backward split (several rounds per
# block) and the automatic split count
_SEQ = [(2, 1, torch.float32), (5, 33, torch.bfloat16), (16, 7, torch.float16), (16, 300, torch.float32),
        (8, 1031, torch.float16), (16, 2049, torch.bfloat16), (16, 3136, torch.float32), (4, 197, torch.float16),
        (12, 520, torch.float32)]


@pytest.mark.parametrize("N,L,dtype", _SEQ, ids=lambda v: str(v).replace("torch.", ""))
@pytest.mark.parametrize("splits", [None, 1])
def test_row_per_thread_kernels(ops, N, L, dtype, splits):
    with vk.tuning("cuda", scan_seq_min_rows=0):
        for ranges in RANGES:
            _check(ops, 2, 280, L, N, 4, dtype, True, True, True, True, splits=splits, ranges=ranges)
            _check(ops, 1, 70, L, N, 1, dtype, False, False, False, False, splits=splits, ranges=ranges)


# softplus, its threshold 20 and its gradient (and that gradient's small-dt branch) through each kernel
# family: d_state 1 (packed rows and chunked: the sweep's rows are 277 steps), the warp-per-row kernels
# (N 2, 16, 64) and the row-per-thread ones (scan_seq_min_rows=0, 1 < N <= 16)
@pytest.mark.parametrize("N,seq", [(1, False), (2, False), (16, False), (64, False), (2, True), (16, True)])
def test_softplus_through_the_scan(ops, N, seq):
    with vk.tuning("cuda", scan_seq_min_rows=0 if seq else None):
        check_softplus_sweep(*softplus_sweep("cuda", N, "cuda"))


def test_row_per_thread_matches_warp_per_row(ops):
    """Both forwards give the same out / last_state / aux and both backwards the same gradients (same
    arithmetic up to rounding order)."""
    ins = make_inputs(2, 140, 700, 16, 2, dtype=torch.float32, device="cuda", requires_grad=False)
    dout = torch.randn(2, 140, 700, device="cuda")
    res = {}
    for rows in ("0", str(1 << 40)):
        with vk.tuning("cuda", scan_seq_min_rows=int(rows)):
            fwd = ops.selective_scan_fwd(*ins, True, torch.float32)
            res[rows] = (*fwd, *ops.selective_scan_bwd(*ins, True, dout, fwd[2]))
    names = ("out", "last_state", "aux", "du", "ddelta", "dA", "dB", "dC", "dD", "ddelta_bias")
    for a, b, name in zip(res["0"], res[str(1 << 40)], names):
        # dA sums L * batch products whose rounding differs between the two: mamba_ssm's dA tolerance
        rtol, atol = (1e-3, 5e-3) if name == "dA" else (1e-4, 1e-4)
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("out_fp32", [False, True])
@pytest.mark.parametrize("softplus", [False, True])
@pytest.mark.parametrize("with_D,with_bias", [(False, False), (True, True)])
def test_flags(ops, dtype, out_fp32, softplus, with_D, with_bias):
    _check(ops, 2, 8, 300, 16, 4, dtype, out_fp32, softplus, with_D, with_bias)


@pytest.mark.parametrize("splits", [1, 2])
def test_several_channel_rounds_per_block(ops, splits):
    # G = 40 channels per group: 5 rounds of 8 warps (splits=1) or 3+2 rounds (splits=2), last partial
    _check(ops, 2, 80, 777, 4, 2, torch.float16, True, True, True, True, splits=splits)
    _check(ops, 1, 44, 260, 1, 4, torch.float32, False, True, True, True, splits=splits)


def test_vmamba_stage4_shape(ops):
    # a real VMamba shape (stage 4 at batch 2): K=4, KD=3072, N=1, L=49, fp16 in, fp32 out
    _check(ops, 2, 3072, 49, 1, 4, torch.float16, True, True, True, True)


@pytest.mark.parametrize("L", [16, 100, 128, 129, 256, 257])
def test_row_packing_edges(ops, L):
    # L <= 128 packs 32 // ceil(L / 8) rows per warp; 129..256 is one full-warp chunk
    _check(ops, 3, 40, L, 2, 4, torch.float32, True, True, True, True)


def _x_dbl_slices(B, C, R: int, dtype_like):
    """B and C written into one (batch, K, R + 2N, L) tensor, as the x projection lays them out, and returned
    as its slices (batch and group strides of the big tensor; models.chain passes them in place)."""
    batch, K, N, L = B.shape
    big = torch.randn(batch, K, R + 2 * N, L, device=B.device, dtype=dtype_like)
    big[:, :, R:R + N] = B
    big[:, :, R + N:] = C
    return big[:, :, R:R + N], big[:, :, R + N:]


# (L, N, seq_min_rows): every kernel family (packed, one-chunk and multi-chunk d_state 1; generic and
# row-per-thread d_state > 1); R odd so that the slices start off the 8- and 16-byte boundaries at L = 49
_STRIDED = [(49, 1, None), (196, 1, None), (7, 1, None), (300, 1, None), (197, 16, None), (64, 16, 0), (33, 4, 0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("L,N,seq", _STRIDED)
@pytest.mark.parametrize("R", [1, 3])
def test_strided_B_C_equal_contiguous(ops, dtype, L, N, seq, R):
    """B and C as slices of the x projection's output (batch and group strides not those of a contiguous
    (batch, K, N, L)) give bitwise the results of their contiguous copies, forward and backward."""
    ins = make_inputs(2, 12, L, N, 4, dtype=dtype, device="cuda", requires_grad=False, ranges="vmamba", softplus=True)
    u, delta, A, B, C, D, bias = ins
    Bv, Cv = _x_dbl_slices(B, C, R, dtype)
    assert not Bv.is_contiguous() and torch.equal(Bv, B)
    dout = torch.randn(2, 12, L, device="cuda")
    knobs = {} if seq is None else {"scan_seq_min_rows": seq}
    with vk.tuning("cuda", **knobs):
        ref = ops.selective_scan_fwd(u, delta, A, B, C, D, bias, True, torch.float32)
        got = ops.selective_scan_fwd(u, delta, A, Bv, Cv, D, bias, True, torch.float32)
        g_ref = ops.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, ref[2])
        g_got = ops.selective_scan_bwd(u, delta, A, Bv, Cv, D, bias, True, dout, got[2])
    for name, a, b in zip(("out", "last_state", "aux"), got, ref):
        assert torch.equal(a, b), f"{name} differs with strided B/C"
    for name, a, b in zip(NAMES, g_got, g_ref):
        assert torch.equal(a, b), f"d{name} differs with strided B/C"
    assert g_got[3].is_contiguous() and g_got[4].is_contiguous()


def test_strided_B_C_refusals(ops):
    u, delta, A, B, C, D, bias = make_inputs(2, 8, 16, 4, 4, device="cuda", requires_grad=False)
    Bv, Cv = _x_dbl_slices(B, C, 2, torch.float32)
    with pytest.raises(RuntimeError, match="C.*B's batch stride"):
        ops.selective_scan_fwd(u, delta, A, Bv, C, D, bias, False, torch.float32)
    with pytest.raises(RuntimeError, match="B.*dense \\(N, L\\) planes"):
        ops.selective_scan_fwd(u, delta, A, B.transpose(2, 3).contiguous().transpose(2, 3), C, D, bias, False,
                               torch.float32)
    every_other = torch.randn(*C.shape[:3], 2 * C.shape[3], device="cuda")[..., ::2]  # L stride 2
    with pytest.raises(RuntimeError, match="C.*dense \\(N, L\\) planes"):
        ops.selective_scan_fwd(u, delta, A, B, every_other, D, bias, False, torch.float32)


def test_deterministic_backward(ops):
    ins = make_inputs(4, 192, 1031, 16, 4, dtype=torch.float16, device="cuda", requires_grad=False)
    u, delta, A, B, C, D, bias = ins
    y, last, aux = ops.selective_scan_fwd(u, delta, A, B, C, D, bias, True, torch.float32)
    dout = torch.randn_like(y)
    g1 = ops.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux)
    g2 = ops.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux)
    for name, a, b in zip(NAMES, g1, g2):
        assert torch.equal(a, b), f"d{name} differs between two identical backward runs"
    y2, last2, aux2 = ops.selective_scan_fwd(u, delta, A, B, C, D, bias, True, torch.float32)
    assert torch.equal(y, y2) and torch.equal(last, last2) and torch.equal(aux, aux2)


def test_public_api_autograd(ops):
    import vmamba_kernels as vk
    ins = make_inputs(2, 8, 197, 16, 4, dtype=torch.float32, device="cuda")
    y, last = vk.selective_scan(*ins, delta_softplus=True, return_last_state=True, impl="cuda")
    dout = torch.randn_like(y)
    y.backward(dout)
    y_ref, last_ref, g_ref = _reference(ins, True, torch.float32, dout)
    assert_close("y", y, y_ref, *TOL[torch.float32])
    assert_close("last", last, last_ref, *TOL[torch.float32])
    for name, t, gr in zip(NAMES, ins, g_ref):
        assert_close(f"d{name}", t.grad, gr, *grad_tol(name, torch.float32))


def test_side_stream(ops):
    ins = make_inputs(2, 16, 500, 4, 4, dtype=torch.float16, device="cuda", requires_grad=False)
    ref = ops.selective_scan_fwd(*ins, True, torch.float32)[0]
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        out = ops.selective_scan_fwd(*ins, True, torch.float32)[0]
    s.synchronize()
    assert torch.equal(out, ref)


def test_checks_name_tensor_and_rule(ops):
    u, delta, A, B, C, D, bias = make_inputs(1, 8, 16, 4, 4, device="cuda", requires_grad=False)
    with pytest.raises(RuntimeError, match="delta.*shape"):
        ops.selective_scan_fwd(u, delta[:, :4].contiguous(), A, B, C, D, bias, False, torch.float32)
    with pytest.raises(RuntimeError, match="A.*float32"):
        ops.selective_scan_fwd(u, delta, A.half(), B, C, D, bias, False, torch.float32)
    with pytest.raises(RuntimeError, match="K = 3 must divide KD"):
        ops.selective_scan_fwd(u, delta, A, B[:, :3].contiguous(), C[:, :3].contiguous(), D, bias, False, torch.float32)
    with pytest.raises(RuntimeError, match="u.*contiguous"):
        ops.selective_scan_fwd(u.transpose(1, 2).contiguous().transpose(1, 2), delta, A, B, C, D, bias, False, torch.float32)
    with pytest.raises(RuntimeError, match="out_dtype"):
        ops.selective_scan_fwd(u, delta, A, B, C, D, bias, False, torch.float16)
    with pytest.raises(RuntimeError, match="d_state"):
        A2 = -torch.rand(8, 65, device="cuda")
        B2 = torch.randn(1, 4, 65, 16, device="cuda")
        ops.selective_scan_fwd(u, delta, A2, B2, B2, D, bias, False, torch.float32)


def test_against_mamba_ssm(ops):
    try:
        from bench import mamba_ref
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"bench.mamba_ref not importable ({e})")
    if mamba_ref.load_selective_scan_cuda() is None:
        pytest.skip(f"mamba_ssm unavailable: {mamba_ref.unavailable_reason()}")
    for dtype, L, N in [(torch.float32, 1031, 16), (torch.float16, 3136, 1), (torch.bfloat16, 49, 4),
                        (torch.float16, 197, 64)]:
        ins = make_inputs(2, 16, L, N, 4, dtype=dtype, device="cuda", requires_grad=False)
        y, last, aux = ops.selective_scan_fwd(*ins, True, dtype)
        m_ins = [None if t is None else t.clone().requires_grad_(True) for t in ins]
        ym, lastm = mamba_ref.mamba_selective_scan(*m_ins, softplus=True, return_last_state=True)
        rtol, atol = TOL[dtype]
        # both kernels round differently from the float64 truth: allow twice the table between them
        assert_close(f"y vs mamba_ssm {dtype} L{L} N{N}", y, ym, 2 * rtol, 2 * atol)
        assert_close(f"last vs mamba_ssm {dtype} L{L} N{N}", last, lastm, 2 * rtol, 2 * atol)
        dout = torch.randn_like(y)
        ym.backward(dout)
        grads = ops.selective_scan_bwd(*ins, True, dout, aux)
        for name, g, t in zip(NAMES, grads, m_ins):
            r, a = grad_tol(name, dtype)
            assert_close(f"d{name} vs mamba_ssm {dtype} L{L} N{N}", g, t.grad, 2 * r, 2 * a)


@pytest.mark.slow
def test_large_index(ops):
    # batch * KD * L > 2^31 elements (fp16: 4.3 GB per tensor, ~35 GB in all with the backward's); checks the
    # tail of the last row, forward and backward, against a small run
    if torch.cuda.get_device_properties(0).total_memory < 60 * 2**30:
        pytest.skip("needs >= 60 GiB of GPU memory")
    batch, KD, L, N, K = 2, 16, 2**26 + 5, 1, 4
    u = torch.randn(batch, KD, L, device="cuda", dtype=torch.float16)
    delta = torch.full_like(u, 0.1)
    A = -0.5 * torch.rand(KD, N, device="cuda")
    B = torch.randn(batch, K, N, L, device="cuda", dtype=torch.float16)
    C = torch.randn_like(B)
    y, last, aux = ops.selective_scan_fwd(u, delta, A, B, C, None, None, False, torch.float16)
    # the last 300 steps of the last row only depend on ~300 steps back (decay exp(-0.05 t)) -> compare
    # against a run over the last 2048 steps
    T = 2048
    sl = slice(L - T, L)
    ys, _, _ = ops.selective_scan_fwd(u[-1:, -1:, sl].contiguous(), delta[-1:, -1:, sl].contiguous(), A[-1:],
                                      B[-1:, -1:, :, sl].contiguous(), C[-1:, -1:, :, sl].contiguous(),
                                      None, None, False, torch.float16)
    assert torch.isfinite(y[-1, -1, -300:].float()).all()
    assert_close("tail of last row", y[-1, -1, -300:], ys[0, 0, -300:], *TOL[torch.float16])
    # backward: du / ddelta at the tail depend on ~300 steps of dout after them and of states before
    del y, ys
    dout = torch.randn(batch, KD, L, device="cuda", dtype=torch.float16)
    du, ddelta = ops.selective_scan_bwd(u, delta, A, B, C, None, None, False, dout, aux)[:2]
    small = [t[-1:, -1:, sl].contiguous() for t in (u, delta)] + [A[-1:]] + \
        [t[-1:, -1:, :, sl].contiguous() for t in (B, C)]
    _, _, aux_s = ops.selective_scan_fwd(*small, None, None, False, torch.float16)
    du_s, dd_s = ops.selective_scan_bwd(*small, None, None, False, dout[-1:, -1:, sl].contiguous(), aux_s)[:2]
    assert torch.isfinite(du[-1, -1, -300:].float()).all() and torch.isfinite(ddelta[-1, -1, -300:].float()).all()
    assert_close("du tail of last row", du[-1, -1, -300:], du_s[0, 0, -300:], *grad_tol("u", torch.float16))
    assert_close("ddelta tail of last row", ddelta[-1, -1, -300:], dd_s[0, 0, -300:], *grad_tol("delta", torch.float16))
