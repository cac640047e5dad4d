"""The fused SS2D core (vmamba_kernels.ss2d_core, issue #18): every impl against an independent float64
oracle (pixel-table routes of scan_cases + its float64 scan, written apart from reference/) and against
the unfused chain of the same impl's ops, outputs and every gradient (x, x_proj_weight, dt_projs_weight,
A, D, delta_bias); validation, dispatch reasons, empty inputs.

The oracle rounds the x projection (and the projection weights) to x's dtype where the op's composition
does (its GEMM runs in x's dtype, as the unfused chain's), straight through for the gradients; the rest
is float64. Tolerances: the selective scan's (scan_cases.TOL / grad_tol), plus, for 16-bit x, a rounding
floor on the weight gradients (oracle_grads: the op's GEMM and the oracle round some projections to
neighbouring 16-bit values, which moves each of the B * L summed terms by about one unit roundoff).

impl "triton" runs on the GPU, or on the CPU under Triton's interpreter (this module turns it on where
there is no CUDA, before triton is imported; the README's interpreter half runs it): a few small cases,
seconds each. The gpu-marked tests add VMamba stage shapes for triton and cuda.
"""
from __future__ import annotations

from tests.norm_dwconv_cases import triton_interpreter_ready

_TRITON_REASON = triton_interpreter_ready()  # must precede every import of triton

import math  # noqa: E402
import os  # noqa: E402

import pytest  # noqa: E402
import torch  # noqa: E402

import reference  # noqa: E402
import vmamba_kernels as vk  # noqa: E402
from tests.conftest import requires_cuda  # noqa: E402
from tests.scan_cases import TOL, assert_close, dA_terms, grad_tol, independent_scan, pixel_routes, poisoned  # noqa: E402
from vmamba_kernels.layout import map_shape  # noqa: E402

K = 4
NAMES = ("x", "x_proj_weight", "dt_projs_weight", "A", "D", "delta_bias")
# the scan's gradient tolerance each input's gradient takes: x is the scan's u (plus a GEMM), the weights
# of the projections make delta and B / C
TOL_NAME = {"x": "u", "x_proj_weight": "B", "dt_projs_weight": "delta", "A": "A", "D": "D", "delta_bias": "delta_bias"}


def make_ss2d_inputs(Bn, Dc, H, W, N, R, dtype=torch.float32, channels_last=False, device="cpu", with_D=True,
                     with_bias=True, weights_in_x_dtype=False, requires_grad=True):
    """VMamba-range inputs: x ~ N(0, 1), projections scaled by 1 / sqrt(fan-in), A = -exp(U(-3, log 16)),
    delta_bias U(-4, 1) (softplus of bias + delta spans small and large dt)."""
    wt = torch.float64 if dtype == torch.float64 else torch.float32
    pw = dtype if weights_in_x_dtype else wt
    x = torch.randn(map_shape(Bn, Dc, H, W, channels_last), device=device).to(dtype)
    xpw = (torch.randn(K, R + 2 * N, Dc, device=device) / math.sqrt(max(Dc, 1))).to(pw)
    dtw = (torch.randn(K, Dc, R, device=device) / math.sqrt(R)).to(pw)
    A = -torch.exp(-3.0 + (math.log(16.0) + 3.0) * torch.rand(K * Dc, N, device=device)).to(wt)
    D = torch.randn(K * Dc, device=device).to(wt) if with_D else None
    bias = (-4.0 + 5.0 * torch.rand(K * Dc, device=device)).to(wt) if with_bias else None
    ins = [x, xpw, dtw, A, D, bias]
    if requires_grad:
        for t in ins:
            if t is not None:
                t.requires_grad_(True)
    return ins


def _parallel_scan64(u, delta, A, B, C, D, bias, softplus):
    """the float64 log-depth scan of reference/ (the GPU oracle's: the per-step loop is slow at 56 x 56)"""
    return reference.selective_scan_parallel(u, delta, A, B, C, D, bias, softplus, return_last_state=True)


def oracle(x, xpw, dtw, A, D, bias, mode="cross2d", channels_last=False, delta_softplus=True,
           scan=independent_scan, device="cpu", keep=None, xdbl_scale=None):
    """float64 y of the SS2D core by the pixel table (differentiable in every input), on `device`. `keep`, a
    dict, receives the intermediates route-ordered (xs, dts; x_dbl, delta in the graph: for their gradients).
    xdbl_scale (B, K, R + 2N, L): the projections x_dbl are not rounded to x's 16-bit dtype but multiplied by
    it (1 + relative perturbations of rounding size: oracle_grads' floor for dA)."""
    dtype = x.dtype

    def rnd(t):  # x's dtype where the composition rounds, straight through for the gradient
        t64 = t.double()
        if dtype in (torch.float32, torch.float64):
            return t64
        return t64 + (t64.to(dtype).double() - t64).detach()

    x64 = x.double().to(device)
    xc = x64.permute(0, 3, 1, 2) if channels_last else x64
    Bn, Dc, H, W = xc.shape
    L = H * W
    routes = pixel_routes(mode, H, W).to(device)
    flat = xc.reshape(Bn, Dc, L)
    xs = torch.stack([flat[:, :, routes[k]] for k in range(K)], 1)  # (B, K, D, L)
    R, N = dtw.shape[2], A.shape[1]
    x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, rnd(xpw.to(device)))
    x_dbl = rnd(x_dbl) if xdbl_scale is None else x_dbl * xdbl_scale
    dts, Bs, Cs = x_dbl[:, :, :R], x_dbl[:, :, R:R + N], x_dbl[:, :, R + N:]
    delta = torch.einsum("bkrl,kdr->bkdl", dts, dtw.double().to(device))
    if keep is not None:
        keep.update(xs=xs.detach(), dts=dts.detach(), x_dbl=x_dbl, delta=delta)
    f = lambda t: None if t is None else t.double().to(device)  # noqa: E731
    ys, _ = scan(xs.reshape(Bn, K * Dc, L), delta.reshape(Bn, K * Dc, L), f(A), Bs, Cs, f(D), f(bias),
                             delta_softplus)
    if keep is not None:  # the scan's inputs and output, for dA's rounding floor
        keep.update(u=xs.reshape(Bn, K * Dc, L).detach(), delta_flat=delta.reshape(Bn, K * Dc, L).detach(),
                    Bs=Bs.detach(), Cs=Cs.detach(), ys=ys, softplus=delta_softplus)
    ys = ys.view(Bn, K, Dc, L)
    out = sum(torch.zeros(Bn, Dc, L, dtype=torch.float64, device=device).index_add(2, routes[k], ys[:, k])
              for k in range(K))
    out = out.view(Bn, Dc, H, W)
    return out.permute(0, 2, 3, 1) if channels_last else out


EPS16 = {torch.float16: 2.0 ** -11, torch.bfloat16: 2.0 ** -8}


def _dA_rounding_spread(ins, dy, dA, eps, xdbl_shape, **kw):
    """The largest |change| of the oracle's dA when its 16-bit rounding of the projections x_dbl is replaced
    by other perturbations of that size (oracle_grads)."""
    dev = dA.device
    gen = torch.Generator(device=dev).manual_seed(20261203)
    scales = [torch.ones(xdbl_shape, dtype=torch.float64, device=dev)]
    scales += [1 + eps * (2 * torch.rand(xdbl_shape, generator=gen, dtype=torch.float64, device=dev) - 1)
               for _ in range(2)]
    spread = torch.zeros_like(dA)
    for scale in scales:
        y = oracle(*ins, xdbl_scale=scale, **kw)
        g = torch.autograd.grad(y, ins[3], dy.double().to(dev))[0]
        spread = torch.maximum(spread, (g - dA).abs())
    return spread


def oracle_grads(ins, dy, **kw):
    """(y, {name: float64 gradient}, {name: rounding floor}) of the oracle, on y's device. The floors (0 for
    32/64-bit x) are 4 unit roundoffs of x's dtype times the root sum of squares of each weight gradient's
    B * L terms: the op's 16-bit GEMM (fp32 accumulation) and the oracle (float64, then rounded) round some
    projections (dt, B, C) to neighbouring values, which moves those terms by about one roundoff each,
    independently. The floors matter only where the terms cancel: the torch impl's own x_proj_weight
    gradient at VMamba-T stage 1 in float16 (B 2, 56 x 56) was 0.069 off at 0.86, 14x the plain tolerance
    (CPU, 2026-12-03; this floor there: median 0.5, against gradients of median 288); triton failed the
    same cases on the H200, and after those floors its dA, 0.285 off at 110 in float16 and 1.06 off in
    bfloat16 (H200, 2026-12-03): dA's terms are scan_cases.dA_terms, and dA also gets the scan tests' floor
    for an fp32 sum of its cancelling terms (scan_cases.dA_rounding_floor), in every dtype.

    Then triton's bfloat16 dA was still 0.117 off at -3.08 where that floor was 0.070 (3 of 3072 elements,
    B2 D768 14x14 bidi, H200), while on the CPU (interpreter, same case) it is within 0.0007 of the
    tolerance: on the GPU the projections come from cuBLAS, and dA, through every later state, is far more
    sensitive to their rounding than to its own terms' (CPU, that case: dA of the oracle with the
    projections rounded against not rounded differs by up to 7.6x that floor). So dA's 16-bit floor also
    takes 4x the largest change of the oracle's dA over three rounding-sized perturbations of the
    projections: not rounding them, and two random relative perturbations within one unit roundoff."""
    keep = {}
    want = oracle(*ins, keep=keep, **kw)
    present = [t for t in ins if t is not None]
    g = torch.autograd.grad(want, present + [keep["x_dbl"], keep["delta"], keep["ys"]],
                            dy.double().to(want.device))
    names = [n for n, t in zip(NAMES, ins) if t is not None]
    grads = {n: t.to(want.device) for n, t in zip(names, g[:len(present)])}
    eps = EPS16.get(ins[0].dtype, 0.0)
    gx2, gd2, dys = g[-3] ** 2, g[-2] ** 2, g[-1]  # squared terms' factors: (B, K, R+2N, L), (B, K, D, L)
    floors = {n: 0.0 for n in names}
    bias = ins[5].detach().to(want.device) if ins[5] is not None else None
    terms = dA_terms(keep["u"], keep["delta_flat"], ins[3].detach().to(want.device), keep["Bs"], keep["Cs"],
                     bias, keep["softplus"], dys.detach())
    # the fp32 sum of dA's cancelling terms, as the scan's tests allow (scan_cases.dA_rounding_floor)
    floors["A"] = terms.shape[-1] ** 0.5 * 2.0 ** -24 * terms.abs().sum((0, 3))
    if eps:
        floors["x_proj_weight"] = 4 * eps * torch.einsum("bkcl,bkdl->kcd", gx2, keep["xs"] ** 2).sqrt()
        floors["dt_projs_weight"] = 4 * eps * torch.einsum("bkdl,bkrl->kdr", gd2, keep["dts"] ** 2).sqrt()
        if "delta_bias" in floors:
            floors["delta_bias"] = 4 * eps * gd2.sum((0, 3)).sqrt().reshape(-1)
        floors["A"] = floors["A"] + 4 * eps * (terms ** 2).sum((0, 3)).sqrt() + 4 * _dA_rounding_spread(
            ins, dy, grads["A"], eps, keep["x_dbl"].shape, **kw)
    floors = {n: (f.to(want.device) if torch.is_tensor(f) else f) for n, f in floors.items()}
    return want, grads, floors


def run_op(impl, ins, mode, channels_last, out_dtype=None, softplus=True):
    """The op of backend `impl` through its torch.library op (no dispatch: the triton backend declares the
    CPU as its device only when the interpreter was on at import), as the public function runs it."""
    x, xpw, dtw, A, D, bias = ins
    return vk.ops(impl)["ss2d_core_fwd"](x, xpw, dtw, A, D, bias, mode, channels_last, softplus,
                                         out_dtype or x.dtype)[0]


def check_against_oracle(impl, Bn, Dc, H, W, N, R, dtype, mode, channels_last, device="cpu", with_D=True,
                         with_bias=True, weights_in_x_dtype=False, out_dtype=None):
    ins = make_ss2d_inputs(Bn, Dc, H, W, N, R, dtype, channels_last, device, with_D, with_bias, weights_in_x_dtype)
    tag = f"{impl} {mode} cl={channels_last} B{Bn} D{Dc} {H}x{W} N{N} R{R} {dtype}"
    with poisoned():
        y = run_op(impl, ins, mode, channels_last, out_dtype)
        dy = torch.randn_like(y)
        present = [t for t in ins if t is not None]
        grads = torch.autograd.grad(y, present, dy)
    want, wgrads, floors = oracle_grads(ins, dy.cpu(), mode=mode, channels_last=channels_last)
    floors = {n: (f.cpu() if torch.is_tensor(f) else f) for n, f in floors.items()}
    (y.dtype == (out_dtype or dtype)) or pytest.fail(f"{tag}: y dtype {y.dtype}")
    assert_close(f"y {tag}", y.cpu(), want, *TOL[dtype])
    names = [n for n, t in zip(NAMES, ins) if t is not None]
    for name, t, g in zip(names, present, grads):
        assert g.dtype == t.dtype and g.shape == t.shape, f"{tag}: d{name} {g.dtype} {tuple(g.shape)}"
        rtol, atol = grad_tol(TOL_NAME[name], dtype)
        assert_close(f"d{name} {tag}", g.cpu(), wgrads[name].cpu(), rtol, atol + floors[name])


def _triton():
    if _TRITON_REASON:
        pytest.skip(_TRITON_REASON)
    pytest.importorskip("triton", reason="triton is not installed")
    if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
        pytest.skip("no CUDA and TRITON_INTERPRET is not 1")
    return "cuda" if torch.cuda.is_available() else "cpu"


# ---- torch impls: the awkward-size grid (cheap on the CPU) --------------------------------------------
MAPS = [(7, 7), (1, 6), (5, 1), (3, 5), (13, 13)]


@pytest.mark.parametrize("hw", MAPS, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("mode", ["cross2d", "unidi", "bidi"])
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
def test_torch_against_oracle_maps(channels_last, mode, hw):
    check_against_oracle("torch", 1, 3, *hw, 1 if hw[0] % 2 else 2, 2, torch.float32, mode, channels_last)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float64],
                         ids=lambda d: str(d).replace("torch.", ""))
@pytest.mark.parametrize("N", [1, 16])
def test_torch_against_oracle_dtypes(N, dtype):
    check_against_oracle("torch", 2, 4, 3, 5, N, 3, dtype, "cross2d", N == 1)


def test_torch_sequential_and_options():
    """the step-by-step torch impl; no D / delta_bias; weights in x's dtype; out_dtype float32"""
    check_against_oracle("torch_sequential", 1, 2, 3, 4, 2, 2, torch.float32, "bidi", False)
    check_against_oracle("torch", 1, 3, 4, 3, 2, 2, torch.float32, "cross2d", True, with_D=False, with_bias=False)
    check_against_oracle("torch", 2, 3, 3, 3, 1, 2, torch.bfloat16, "cross2d", False, weights_in_x_dtype=True,
                         out_dtype=torch.float32)


def unfused_chain(ins, mode, channels_last, impl, out_dtype=None):
    """SS2Dv05.forward_core's chain on the public ops of `impl` (up to out_norm)."""
    x, xpw, dtw, A, D, bias = ins
    Bn = x.shape[0]
    Dc, R, N = dtw.shape[1], dtw.shape[2], A.shape[1]
    xs = vk.cross_scan(x, mode, channels_last, impl=impl)
    L = xs.shape[-1]
    H, W = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[3])
    x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, xpw.to(x.dtype))
    dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
    delta = torch.einsum("bkrl,kdr->bkdl", dts, dtw.to(x.dtype))
    ys = vk.selective_scan(xs.reshape(Bn, K * Dc, L), delta.reshape(Bn, K * Dc, L), A, Bs.contiguous(),
                           Cs.contiguous(), D, bias, delta_softplus=True, out_dtype=out_dtype or x.dtype, impl=impl)
    return vk.cross_merge(ys.view(Bn, K, Dc, L), H, W, mode, channels_last, impl=impl)


def check_against_unfused(impl, fused_impl, ins, mode, channels_last, dtype):
    y = run_op(fused_impl, ins, mode, channels_last)
    yu = unfused_chain(ins, mode, channels_last, impl)
    dy = torch.randn_like(y)
    present = [t for t in ins if t is not None]
    g = torch.autograd.grad(y, present, dy)
    gu = torch.autograd.grad(yu, present, dy)
    rtol, atol = TOL[dtype]
    assert_close("y vs unfused", y.float(), yu.float(), 2 * rtol, 2 * atol)  # both round: twice the scan's
    for name, a, b in zip(NAMES, g, gu):
        r, at = grad_tol(TOL_NAME[name], dtype)
        assert_close(f"d{name} vs unfused", a.float(), b.float(), 2 * r, 2 * at)


def test_torch_against_unfused_chain():
    ins = make_ss2d_inputs(2, 4, 5, 3, 2, 2, torch.float32, True)
    check_against_unfused("torch", "torch", ins, "cross2d", True, torch.float32)


# ---- triton: under the interpreter on the CPU (a few small cases) ----------------------------------------
TRITON_CASES = [  # (B, D, H, W, N, R, dtype, mode, channels_last): awkward maps, both layouts, every mode
    (1, 5, 7, 7, 1, 2, torch.float32, "cross2d", False),
    (2, 3, 3, 5, 2, 3, torch.float16, "cross2d", True),
    (1, 3, 1, 6, 1, 1, torch.bfloat16, "bidi", False),
    (1, 2, 5, 1, 2, 2, torch.float32, "unidi", True),
    (1, 2, 3, 4, 16, 2, torch.float32, "bidi", True),
    (2, 20, 3, 4, 1, 2, torch.float32, "cross2d", True),  # two channel blocks, the second partial: dxdbl partials
]


@pytest.mark.parametrize("case", TRITON_CASES,
                         ids=lambda c: "B{}-D{}-{}x{}-N{}-R{}-{}-{}-{}".format(
                             *c[:6], str(c[6]).replace("torch.", ""), c[7], "nhwc" if c[8] else "nchw"))
def test_triton_against_oracle(case):
    dev = _triton()
    check_against_oracle("triton", *case, device=dev)


def test_triton_block_pins():
    """TritonTuning.block_override pins (sweeps): other channel blocks and chunks forward than backward"""
    dev = _triton()
    pins = {("ss2d_fwd", 6, 2, 35): (2, 1, 32), ("ss2d_bwd", 6, 2, 35): (4, 1, 16)}
    with vk.tuning("triton", block_override=pins):
        check_against_oracle("triton", 1, 6, 5, 7, 2, 2, torch.float32, "cross2d", False, device=dev)


def test_triton_against_unfused_chain_and_deterministic():
    dev = _triton()
    if dev == "cpu" and "cpu" not in vk.dispatch.get_backend("triton").devices:
        # the public ops of the unfused chain dispatch, and the triton backend declared its devices when
        # vmamba_kernels was imported, before this module turned the interpreter on
        pytest.skip("the triton backend was registered without TRITON_INTERPRET=1 (run this module with it set)")
    ins = make_ss2d_inputs(1, 3, 4, 5, 1, 2, torch.float32, False, dev, with_bias=False)
    check_against_unfused("triton", "triton", ins, "cross2d", False, torch.float32)
    y = run_op("triton", ins, "cross2d", False)
    dy = torch.randn_like(y)
    present = [t for t in ins if t is not None]
    g1 = torch.autograd.grad(run_op("triton", ins, "cross2d", False), present, dy)
    g2 = torch.autograd.grad(y, present, dy)
    for name, a, b in zip(NAMES, g1, g2):
        assert torch.equal(a, b), f"d{name}: triton backward not bitwise reproducible"


# ---- public op: dispatch, validation, empty inputs --------------------------------------------------------
def test_public_op_dispatch_and_explain():
    ins = make_ss2d_inputs(1, 2, 3, 3, 1, 1, requires_grad=False)
    y = vk.ss2d_core(*ins, impl="torch")
    assert y.shape == ins[0].shape
    text = vk.explain("ss2d_core", *ins)
    assert "torch             can run" in text and "impl=None picks" in text
    rows = {r["name"]: r for r in vk.list_impls("ss2d_core")}
    assert rows["triton"]["op_d_state"] == (1, 16) and "1-16" in str(vk.list_impls("ss2d_core"))
    assert rows["cuda"]["op_d_state"] == (1, 16)
    if not torch.cuda.is_available():  # CPU inputs: cuda refuses with its reason and the impls that can
        with pytest.raises(vk.ImplRefused, match="Impls that can: .*torch"):
            vk.ss2d_core(*ins, impl="cuda")


def test_cuda_refuses_more_projections_than_it_stages():
    # the backend's own limit (why_not adds it once the device reasons are clear: tested here directly)
    from vmamba_kernels.cuda import MAX_SS2D_ROW, _limits  # noqa: PLC0415

    ok = vk.validate.check_ss2d_core(*make_ss2d_inputs(1, 2, 2, 2, 16, 1, requires_grad=False))
    assert _limits("ss2d_core", ok) == []
    R = MAX_SS2D_ROW - 2 * 16 + 1  # one more than the shared-memory staging row holds
    x, xw, dtw, A, D, bias = make_ss2d_inputs(1, 2, 2, 2, 16, 1, requires_grad=False)
    K, _, Dc = xw.shape
    args = vk.validate.check_ss2d_core(x, torch.randn(K, R + 32, Dc), torch.randn(K, Dc, R), A, D, bias)
    reasons = _limits("ss2d_core", args)
    assert any(f"at most {MAX_SS2D_ROW} projections per route" in r for r in reasons), reasons


def test_dstate_limit_names_an_impl_that_can():
    from vmamba_kernels import dispatch  # noqa: PLC0415

    a = vk.validate.check_ss2d_core(*make_ss2d_inputs(1, 2, 2, 2, 32, 1, requires_grad=False))
    reasons = dispatch.get_backend("triton").why_not("ss2d_core", a)
    assert any("d_state 1..16, not N=32" in r and "torch" in r for r in reasons), reasons


def _bad(**over):
    ins = dict(zip(NAMES, make_ss2d_inputs(2, 3, 4, 5, 2, 2, requires_grad=False)))
    ins.update(over)
    return ins


@pytest.mark.parametrize("over,err,match", [
    (dict(x=torch.randn(3, 4, 5)), ValueError, "x must be a 4-D map"),
    (dict(x=torch.randn(2, 3, 4, 5, dtype=torch.float64)), TypeError, "x_proj_weight must be torch.float64"),
    (dict(x_proj_weight=torch.randn(4, 7, 3)), ValueError, r"x_proj_weight must be \(K=4, R\+2N=6, D=3\)"),
    (dict(x_proj_weight=torch.randn(2, 6, 3)), ValueError, "x_proj_weight must be"),
    (dict(dt_projs_weight=torch.randn(4, 2, 2)), ValueError, r"dt_projs_weight must be \(K=4, D=3, R\)"),
    (dict(dt_projs_weight=torch.randn(1, 3, 2)), ValueError, "dt_projs_weight must be"),
    (dict(A=torch.randn(12, 3)), ValueError, r"x_proj_weight must be .* d_state N=3"),
    (dict(A=torch.randn(6, 2)), ValueError, r"A must be \(K\*D=12, N\)"),
    (dict(D=torch.randn(3)), ValueError, r"D must be \(K\*D=12,\)"),
    (dict(delta_bias=torch.randn(12, 1)), ValueError, "delta_bias must be"),
    (dict(A=-torch.rand(12, 2, dtype=torch.float16)), TypeError, "A must be torch.float32"),
    (dict(D=torch.randn(12, dtype=torch.bfloat16)), TypeError, "D must be torch.float32"),
    (dict(x_proj_weight=torch.randn(4, 6, 3, dtype=torch.float16)), TypeError, "x_proj_weight must be"),
    (dict(x=torch.randint(0, 3, (2, 3, 4, 5))), TypeError, "x must be a floating tensor"),
    (dict(A="A"), TypeError, "A must be a torch.Tensor"),
    (dict(A=-torch.rand(12, 2, device="meta")), ValueError, "A is on meta but x is on cpu"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_validation_names_the_argument(over, err, match):
    with pytest.raises(err, match=match):
        vk.ss2d_core(**_bad(**over), impl="torch")


def test_validation_of_keywords():
    ins = _bad()
    with pytest.raises(ValueError, match="mode must be one of"):
        vk.ss2d_core(**ins, mode="diag")
    with pytest.raises(TypeError, match="out_dtype must be"):
        vk.ss2d_core(**ins, out_dtype="half")
    with pytest.raises(TypeError, match="delta_softplus must be a bool"):
        vk.ss2d_core(**ins, delta_softplus=1)


EMPTY = [(0, 3, 4, 5), (2, 3, 0, 4), (2, 3, 4, 0), (2, 0, 4, 5)]  # (B, D, H, W)


@pytest.mark.parametrize("shape", EMPTY, ids=lambda s: "B{}-D{}-{}x{}".format(*s))
@pytest.mark.parametrize("channels_last", [False, True], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("impl", ["torch", "triton"])
def test_empty_inputs(impl, channels_last, shape):
    """as the other ops: a zero y of x's shape and zero gradients, the same on every backend"""
    if impl == "triton":
        _triton()
    Bn, Dc, H, W = shape
    ins = make_ss2d_inputs(Bn, Dc, H, W, 2, 2, channels_last=channels_last)
    y = run_op(impl, ins, "cross2d", channels_last)
    assert y.shape == ins[0].shape and not y.any()
    grads = torch.autograd.grad(y, ins, torch.ones_like(y), allow_unused=False)
    for name, t, g in zip(NAMES, ins, grads):
        assert g.shape == t.shape and not g.any(), name


def test_fake_tensors_and_opcheck():
    """the torch.library op's fake implementation and autograd registration (torch.library.opcheck)"""
    ins = make_ss2d_inputs(1, 2, 3, 2, 2, 2, channels_last=True)
    op = vk.ops("torch")["ss2d_core_fwd"]
    torch.library.opcheck(op, (*ins, "cross2d", True, True, torch.float32),
                          test_utils=("test_schema", "test_autograd_registration", "test_faketensor"))


# ---- GPU (the lead's run) ----------------------------------------------------------------------------------
GPU_CASES = [  # VMamba-T stages at batch 2 (d_inner 192..1536, dt_rank 6..48) and awkward maps, N 1 / 16
    (2, 192, 56, 56, 1, 6, "cross2d", False), (2, 384, 28, 28, 1, 12, "cross2d", True),
    (2, 768, 14, 14, 1, 24, "bidi", False), (2, 1536, 7, 7, 1, 48, "unidi", True),
    (1, 96, 13, 17, 16, 6, "cross2d", True), (3, 64, 1, 33, 4, 4, "cross2d", False),
    (2, 40, 65, 1, 16, 3, "cross2d", False),
]


def gpu_oracle_check(impl, Bn, Dc, H, W, N, R, mode, cl, dtype):
    """The GPU grid against the pixel-table oracle in float64 on the GPU with reference/'s log-depth scan
    (the CPU oracle's per-step loop is too slow at 56 x 56), rounding as the CPU tests."""
    ins = make_ss2d_inputs(Bn, Dc, H, W, N, R, dtype, cl, "cuda")
    with poisoned():
        y = run_op(impl, ins, mode, cl)
        dy = torch.randn_like(y)
        grads = torch.autograd.grad(y, ins, dy)
    want, wgrads, floors = oracle_grads(ins, dy, mode=mode, channels_last=cl, scan=_parallel_scan64, device="cuda")
    tag = f"{impl} {mode} cl={cl} B{Bn} D{Dc} {H}x{W} N{N} {dtype}"
    assert_close(f"y {tag}", y, want, *TOL[dtype])
    for name, g in zip(NAMES, grads):
        rtol, atol = grad_tol(TOL_NAME[name], dtype)
        assert_close(f"d{name} {tag}", g, wgrads[name], rtol, atol + floors[name])


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=lambda d: str(d)[6:])
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: "B{}-D{}-{}x{}-N{}-{}-{}".format(
    *c[:5], c[6], "nhwc" if c[7] else "nchw"))
@pytest.mark.parametrize("impl", ["triton", "cuda"])
def test_gpu_against_reference(impl, case, dtype):
    if "ss2d_core" not in vk.dispatch.get_backend(impl).ops:
        pytest.skip(f"impl {impl} does not implement ss2d_core yet (its Backend does not list it)")
    Bn, Dc, H, W, N, R, mode, cl = case
    gpu_oracle_check(impl, Bn, Dc, H, W, N, R, mode, cl, dtype)


@requires_cuda
@pytest.mark.parametrize("impl", ["triton", "cuda"])
def test_gpu_deterministic_and_unfused(impl):
    if "ss2d_core" not in vk.dispatch.get_backend(impl).ops:
        pytest.skip(f"impl {impl} does not implement ss2d_core yet (its Backend does not list it)")
    ins = make_ss2d_inputs(4, 192, 28, 28, 1, 6, torch.float16, True, "cuda")
    check_against_unfused(impl, impl, ins, "cross2d", True, torch.float16)
    y = run_op(impl, ins, "cross2d", True)
    dy = torch.randn_like(y)
    g1 = torch.autograd.grad(y, ins, dy, retain_graph=True)
    g2 = torch.autograd.grad(y, ins, dy)
    for name, a, b in zip(NAMES, g1, g2):
        assert torch.equal(a, b), f"d{name}: {impl} backward not bitwise reproducible"
