"""Shared helpers for selective-scan tests: input generation, an independent float64 definition,
tolerances and one verbose comparison helper. Backend test files import from here."""
from __future__ import annotations

import contextlib
import math
import os
import warnings

import torch
import torch.nn.functional as F

# mamba_ssm's test tolerances (kernel_facts.md §5): output / last state (rtol, atol)
TOL = {
    torch.float32: (6e-4, 2e-3),
    torch.float16: (3e-3, 5e-3),
    torch.bfloat16: (3e-2, 5e-2),
    torch.float64: (1e-10, 1e-10),
}
_WEIGHT_TOL = (1e-3, 1e-3)  # rtolw / atolw for dA, dD, ddelta_bias


def grad_tol(name: str, dtype: torch.dtype):
    """Per-gradient tolerance, scaled from the output tolerance as mamba_ssm's tests do."""
    rtol, atol = TOL[dtype]
    if dtype == torch.float64:
        return rtol, atol
    rtolw, atolw = _WEIGHT_TOL
    return {
        "u": (2 * rtol, 2 * atol), "delta": (5 * rtol, 10 * atol), "A": (rtolw, 5 * atolw),
        "B": (rtol, atol), "C": (rtol, atol), "D": (rtolw, atolw), "delta_bias": (rtolw, atolw),
    }[name]


NAMES = ("u", "delta", "A", "B", "C", "D", "delta_bias")


RANGES = ("mamba_ssm", "vmamba")
# softplus inputs (delta + delta_bias) under ranges="vmamba": a band each element picks at random. Negative
# values (dt down to 6e-6), both sides of dt = 0.5 (softplus input -0.43: the kernels' small-dt gradient
# branch) and of 0 (max(v, 0)), large dt, and both sides of torch's threshold 20.
SOFTPLUS_BANDS = ((-12.0, -3.0), (-3.0, 2.0), (2.0, 18.0), (18.0, 30.0))


def _vmamba_delta(batch, KD, L, bias, softplus, device):
    """delta (float32) for ranges="vmamba": delta + bias lands in SOFTPLUS_BANDS when softplus, else dt
    itself is log-uniform over [1e-4, 30] (no softplus: dt must stay >= 0 or the state grows)."""
    shape = (batch, KD, L)
    if softplus:
        bands = torch.tensor(SOFTPLUS_BANDS, device=device)
        lo, hi = bands[torch.randint(0, len(SOFTPLUS_BANDS), shape, device=device)].unbind(-1)
        target = lo + (hi - lo) * torch.rand(shape, device=device)
    else:
        target = torch.exp(math.log(1e-4) + (math.log(30.0) - math.log(1e-4)) * torch.rand(shape, device=device))
    return target if bias is None else target - bias.float()[:, None]


def make_inputs(batch, KD, L, N, K, dtype=torch.float32, device="cpu", grouped=True,
                with_D=True, with_bias=True, requires_grad=True, ranges="mamba_ssm", softplus=True):
    """Random inputs.

    ranges="mamba_ssm": as mamba_ssm's tests draw them (A = -0.5 rand, delta = 0.5 rand, bias 0.5 rand:
    softplus sees only [0, 1.5)).
    ranges="vmamba": VMamba's ranges and beyond: A = -exp(U(-3, log 16)) in [-16, -0.05] (strong decay
    next to long memory), delta_bias U(-7, 1) (VMamba's init is softplus^-1 of [1e-3, 0.1] = [-6.9, -2.3]),
    and delta drawn so that delta + delta_bias covers SOFTPLUS_BANDS when `softplus` (the flag the call
    will pass), else a non-negative dt over [1e-4, 30].

    grouped=False gives 3-D B/C (batch, N, L) (K must be 1 then)."""
    if ranges not in RANGES:
        raise ValueError(f"ranges must be one of {RANGES}; got {ranges!r}")
    wt = torch.float64 if dtype == torch.float64 else torch.float32
    shape = (batch, K, N, L) if grouped else (batch, N, L)
    u = torch.randn(batch, KD, L, device=device, dtype=dtype)
    if ranges == "mamba_ssm":  # (the draws in this order keep the values every seed gave before)
        delta = (0.5 * torch.rand(batch, KD, L, device=device)).to(dtype)
        A = -0.5 * torch.rand(KD, N, device=device, dtype=wt)
    else:
        A = -torch.exp(-3.0 + (math.log(16.0) + 3.0) * torch.rand(KD, N, device=device)).to(wt)
    B = torch.randn(*shape, device=device, dtype=dtype)
    C = torch.randn(*shape, device=device, dtype=dtype)
    D = torch.randn(KD, device=device, dtype=wt) if with_D else None
    if ranges == "mamba_ssm":
        bias = (0.5 * torch.rand(KD, device=device, dtype=wt)) if with_bias else None
    else:
        bias = (-7.0 + 8.0 * torch.rand(KD, device=device)).to(wt) if with_bias else None
        delta = _vmamba_delta(batch, KD, L, bias, softplus, device).to(dtype)
    ins = [u, delta, A, B, C, D, bias]
    if requires_grad:
        for t in ins:
            if t is not None:
                t.requires_grad_(True)
    return ins


def independent_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False):
    """A second float64 definition written differently from reference/ (explicit per-channel
    group gather), so the two can check each other. Softplus is torch's (threshold 20: the identity
    above, as mamba_ssm defines it) evaluated in float64: the oracle for every softplus of the kernels."""
    f = lambda t: None if t is None else t.double()  # noqa: E731
    u, delta, A, B, C, D, delta_bias = map(f, (u, delta, A, B, C, D, delta_bias))
    if B.dim() == 3:
        B, C = B[:, None], C[:, None]
    batch, KD, L = u.shape
    K = B.shape[1]
    group = torch.arange(KD, device=u.device) // (KD // K)
    Bc, Cc = B[:, group], C[:, group]  # (batch, KD, N, L)
    dt = delta if delta_bias is None else delta + delta_bias[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    state = torch.zeros(batch, KD, A.shape[1], dtype=torch.float64, device=u.device)
    ys = []
    for t in range(L):
        state = torch.exp(dt[:, :, t, None] * A) * state + (dt[:, :, t] * u[:, :, t])[..., None] * Bc[..., t]
        y = (state * Cc[..., t]).sum(-1)
        if D is not None:
            y = y + D * u[:, :, t]
        ys.append(y)
    return torch.stack(ys, -1), state


def dA_terms(u, delta, A, B, C, delta_bias, softplus, dout):
    """The float64 terms dt a_t g_t x_{t-1} of dA[d, n] = sum over batch and steps, (batch, KD, N, L)
    (g = dL/dx_t, x the state): the rounding floors of the scan's and the SS2D core's tests scale with them."""
    from reference.selective_scan import affine_scan  # noqa: PLC0415
    f = torch.float64
    u, A, dout = u.to(f), A.to(f), dout.to(f)
    dt = delta.to(f) + (0 if delta_bias is None else delta_bias.to(f)[:, None])
    if softplus:
        dt = F.softplus(dt)
    if B.dim() == 3:
        B, C = B[:, None], C[:, None]
    KD, K = u.shape[1], B.shape[1]
    group = torch.arange(KD, device=u.device) // (KD // K)
    Bc, Cc = B[:, group].to(f), C[:, group].to(f)  # (batch, KD, N, L)
    a = torch.exp(dt[:, :, None] * A[None, :, :, None])
    x = affine_scan(a, (dt * u)[:, :, None] * Bc)
    x_prev = torch.cat([torch.zeros_like(x[..., :1]), x[..., :-1]], -1)
    a_next = torch.cat([a[..., 1:], torch.zeros_like(a[..., :1])], -1)
    g = affine_scan(a_next, Cc * dout[:, :, None], reverse=True)
    return dt[:, :, None] * a * g * x_prev


def dA_rounding_floor(u, delta, A, B, C, delta_bias, softplus, dout):
    """Per (channel, state): sqrt(L) * u32 * sum over batch and steps of |dt a g x_prev|.

    dA[d, n] = sum_{b,t} dt a_t g_t x_{t-1} (g = dL/dx_t). With a = exp(dt A) ~ 1 (mamba_ssm's test
    inputs draw A = -0.5 rand) x and g are sums over up to L steps, the terms reach ~1e3 and cancel to
    values near 0. An fp32 evaluation of such a sum is off by about sqrt(n) unit roundoffs (2^-24) of
    the absolute sum (the probabilistic bound of Higham & Mary), here n ~ L for the recurrences that
    make x and g: this floor is added to dA's atol, so it matters only where the terms cancel (on
    the H100 both CUDA backwards missed the plain dA tolerance there on 2 of 3 seeds at L = 2049, and
    mamba_ssm's fp32 kernel reached ratio 0.87). Computed in float64 with the reference's log-depth scans.
    """
    terms = dA_terms(u, delta, A, B, C, delta_bias, softplus, dout)
    return u.shape[-1] ** 0.5 * 2.0 ** -24 * terms.abs().sum((0, 3))


def weight_grad_floor(name, u, delta, A, B, C, delta_bias, softplus, dout, ref_grad):
    """The fp32 rounding floor added to atol for the gradients that are sums over batch and steps (A, D,
    delta_bias), or 0 for the others. Each is sqrt(L) unit roundoffs (2^-24) of the absolute sum of its
    terms (see dA_rounding_floor): it matters only where the terms cancel. Measured need on the H200:
    ddelta_bias of a fp16 L=1031 N=16 case summed terms of |ddelta| ~2.5e4 to 0.34, and the cuda kernel
    was 1.9e-3 off (1.4x the plain tolerance); a bf16 L=3136 N=64 dA element of the triton kernel was 0.6
    off at 77.8. `ref_grad` is the float64 reference gradient of delta (for delta_bias)."""
    f = torch.float64
    L = u.shape[-1]
    if name == "A":
        return dA_rounding_floor(u, delta, A, B, C, delta_bias, softplus, dout)
    if name == "D":
        return L ** 0.5 * 2.0 ** -24 * (u.to(f) * dout.to(f)).abs().sum((0, 2))
    if name == "delta_bias":
        return L ** 0.5 * 2.0 ** -24 * ref_grad.to(f).abs().sum((0, 2))
    return 0.0


def assert_close(name, actual, expected, rtol, atol):
    """allclose with a message naming the tensor, the worst element and the failing fraction.
    atol may be a tensor broadcastable to the values (per-element floors, see dA_rounding_floor)."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a, e = actual.detach().double(), expected.detach().double()
    assert torch.isfinite(a).all(), f"{name}: non-finite values (unwritten output?)"
    err = (a - e).abs()
    if torch.is_tensor(atol):
        atol = atol.to(err.device, torch.float64)
    bad = err > atol + rtol * e.abs()
    if bad.any():
        idx = tuple(int(i) for i in torch.nonzero(bad)[0])
        worst = int(err.argmax())
        at = f"{atol.flatten()[0].item():.3g} + floor (at the first bad element {atol.expand_as(e)[idx].item():.3g})" \
            if torch.is_tensor(atol) else atol
        raise AssertionError(
            f"{name}: {int(bad.sum())}/{bad.numel()} ({100 * bad.float().mean():.2f}%) outside "
            f"rtol={rtol} atol={at}; first at {idx}: {a[idx].item():.6g} vs {e[idx].item():.6g}; "
            f"max abs err {err.view(-1)[worst].item():.3g}")


def rel_err(actual, expected) -> float:
    e = expected.detach().double()
    return float((actual.detach().double() - e).norm() / e.norm().clamp_min(1e-30))


# ---- softplus through the code under test -------------------------------------------------------------
# softplus inputs swept through a scan that outputs dt itself: u = B = C = 1, no D, and A = -1e30, so every
# decay exp(dt A) is 0 and the state is the last step's dt B u alone: y = N * softplus(v) and
# dy/ddelta = N * sigmoid(v) for every element (the sweep is laid out as 8 channels x 277 steps). Dense
# around 0 and softplus^-1(0.5) = -0.43 (the kernels' small-dt gradient branch), over dt in [0.049, 0.105]
# (where 1 - exp(-dt) loses digits), and around the threshold 20.
SOFTPLUS_SWEEP = torch.cat([torch.linspace(-16, -3, 256), torch.linspace(-3.0, -2.2, 1024),
                            torch.linspace(-2.2, 1, 512), torch.linspace(1, 19, 128), torch.linspace(19, 21, 256),
                            torch.tensor([20.0]), torch.linspace(21, 40, 39)])


def softplus_sweep(impl, N, device, dtype=torch.float32):
    """(v, y, ddelta) of `impl` on SOFTPLUS_SWEEP (flattened), see above."""
    KD = 8
    v = SOFTPLUS_SWEEP.to(device, dtype).view(1, KD, -1).clone().requires_grad_(True)
    L = v.shape[-1]
    ones = torch.ones(1, 1, N, L, device=device, dtype=dtype)
    A = torch.full((KD, N), -1e30, device=device, dtype=dtype)
    import vmamba_kernels as vk  # noqa: PLC0415 (test_triton sets TRITON_INTERPRET before the first import)

    with poisoned():
        y = vk.selective_scan(torch.ones(1, KD, L, device=device, dtype=dtype), v, A, ones, ones, delta_softplus=True,
                              impl=impl)
        (g,) = torch.autograd.grad(y, v, torch.ones_like(y))
    flat = lambda t: t.detach().double().cpu().flatten()  # noqa: E731
    return flat(v), flat(y) / N, flat(g) / N


def check_softplus_sweep(v, y, g, rtols=(4e-6, 2e-6, 1e-6)):
    """softplus, its threshold and its gradient as the code under test computes them, against torch's
    softplus and its derivative in float64 (the definition: threshold 20, the identity above it).
    rtols: softplus, its derivative, its derivative at the code's own dt (defaults for fp32)."""
    v64 = v.clone().requires_grad_(True)
    want = F.softplus(v64)
    (dwant,) = torch.autograd.grad(want.sum(), v64)
    # fp32 forward: exp's error grows with |v| (CUDA's __expf: 2 + 1.2|v| ulp), ~2.4e-6 at v = -16
    assert_close("softplus(v) through the scan", y, want.detach(), rtols[0], 0.0)
    assert_close("d softplus / dv through the scan", g, dwant, rtols[1], 0.0)
    # the gradient against the exact derivative at the code's own dt (sigmoid(v) = 1 - exp(-dt)): this
    # leaves out the forward's rounding, so the small-dt branch's precision shows (1 - exp(-dt) computed
    # directly loses ~2 ulp / dt relative: 2.4e-6 at dt = 0.05); above the threshold the derivative is 1
    below = v <= 20
    assert_close("d softplus / dv against 1 - exp(-dt) at the scan's dt", g[below], -torch.expm1(-y[below]),
                 rtols[2], 0.0)


# ---- cross scan / merge: an independent pixel-loop definition -------------------------------------
_ROUTES: dict = {}


def pixel_routes(mode: str, H: int, W: int) -> torch.Tensor:
    """(4, H*W) long: route k, position i reads pixel routes[k, i] (row-major pixel number), built pixel by
    pixel from VMamba's route table (written here, not taken from reference/): with p = h*W + w
    (row-major), q = w*H + h (column-major) and L = H*W, pixel (h, w) sits at
    cross2d (p, q, L-1-p, L-1-q), unidi (p, p, p, p), bidi (p, p, L-1-p, L-1-p)."""
    key = (mode, H, W)
    if key not in _ROUTES:
        L = H * W
        routes = [[-1] * L for _ in range(4)]
        for h in range(H):
            for w in range(W):
                p, q = h * W + w, w * H + h
                pos = {"cross2d": (p, q, L - 1 - p, L - 1 - q), "unidi": (p, p, p, p),
                       "bidi": (p, p, L - 1 - p, L - 1 - p)}[mode]
                for k in range(4):
                    routes[k][pos[k]] = h * W + w
        assert all(i >= 0 for r in routes for i in r)
        _ROUTES[key] = torch.tensor(routes, dtype=torch.long).view(4, L)
    return _ROUTES[key]


def independent_cross_scan(x, mode="cross2d", channels_last=False):
    """(B, 4, C, H*W) in float64 on the CPU, by the pixel table: the oracle for every backend's cross scan."""
    x = x.detach().double().cpu()
    x = x.permute(0, 3, 1, 2) if channels_last else x
    Bn, C, H, W = x.shape
    flat = x.reshape(Bn, C, H * W)
    return torch.stack([flat[:, :, pixel_routes(mode, H, W)[k]] for k in range(4)], 1)


def independent_cross_merge(y, H, W, mode="cross2d", channels_last=False):
    """The adjoint: every route element added back onto its pixel (float64, CPU)."""
    y = y.detach().double().cpu()
    Bn, _, C, L = y.shape
    out = torch.zeros(Bn, C, L, dtype=torch.float64)
    for k in range(4):
        out.index_add_(2, pixel_routes(mode, H, W)[k], y[:, k])
    out = out.view(Bn, C, H, W)
    return out.permute(0, 2, 3, 1) if channels_last else out


# ---- poisoned outputs ---------------------------------------------------------------------------------
@contextlib.contextmanager
def poisoned():
    """Inside, every uninitialized allocation (torch.empty*, new_empty, and at::empty in C++ extensions,
    on the CPU and the GPU) is filled with NaN, so an output element a kernel never writes reads NaN
    whatever memory the caching allocator hands out. This is torch's own switch
    (torch.utils.deterministic.fill_uninitialized_memory, active under use_deterministic_algorithms;
    warn_only keeps ops without a deterministic variant running, their warnings silenced here)."""
    det, warn_only = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    fill = torch.utils.deterministic.fill_uninitialized_memory
    cublas = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # else cuBLAS calls warn in this mode
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.utils.deterministic.fill_uninitialized_memory = True
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*deterministic.*")
            yield
    finally:
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.utils.deterministic.fill_uninitialized_memory = fill
        if cublas is None:
            os.environ.pop("CUBLAS_WORKSPACE_CONFIG", None)
