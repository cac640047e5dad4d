"""Shared helpers for selective-scan tests: input generation, an independent float64 definition,
tolerances and one verbose comparison helper. Backend test files import from here."""
from __future__ import annotations

import torch

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


def make_inputs(batch, KD, L, N, K, dtype=torch.float32, device="cpu", grouped=True,
                with_D=True, with_bias=True, requires_grad=True):
    """Random inputs as mamba_ssm's tests draw them (A = -0.5 rand, delta = 0.5 rand, ...).

    grouped=False gives 3-D B/C (batch, N, L) (K must be 1 then)."""
    wt = torch.float64 if dtype == torch.float64 else torch.float32
    u = torch.randn(batch, KD, L, device=device, dtype=dtype)
    delta = (0.5 * torch.rand(batch, KD, L, device=device)).to(dtype)
    A = -0.5 * torch.rand(KD, N, device=device, dtype=wt)
    shape = (batch, K, N, L) if grouped else (batch, N, L)
    B = torch.randn(*shape, device=device, dtype=dtype)
    C = torch.randn(*shape, device=device, dtype=dtype)
    D = torch.randn(KD, device=device, dtype=wt) if with_D else None
    bias = (0.5 * torch.rand(KD, device=device, dtype=wt)) if with_bias else None
    ins = [u, delta, A, B, C, D, bias]
    if requires_grad:
        for t in ins:
            if t is not None:
                t.requires_grad_(True)
    return ins


def independent_scan(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False):
    """A second float64 definition written differently from reference/ (explicit per-channel
    group gather, explicit softplus), so the two can check each other."""
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
        dt = torch.where(dt > 20, dt, torch.log1p(torch.exp(dt)))
    state = torch.zeros(batch, KD, A.shape[1], dtype=torch.float64, device=u.device)
    ys = []
    for t in range(L):
        state = torch.exp(dt[:, :, t, None] * A) * state + (dt[:, :, t] * u[:, :, t])[..., None] * Bc[..., t]
        y = (state * Cc[..., t]).sum(-1)
        if D is not None:
            y = y + D * u[:, :, t]
        ys.append(y)
    return torch.stack(ys, -1), state


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
    from reference.selective_scan import affine_scan  # noqa: PLC0415
    f = torch.float64
    u, A, dout = u.to(f), A.to(f), dout.to(f)
    dt = delta.to(f) + (0 if delta_bias is None else delta_bias.to(f)[:, None])
    if softplus:
        dt = torch.where(dt > 20, dt, torch.log1p(torch.exp(dt)))
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
    return u.shape[-1] ** 0.5 * 2.0 ** -24 * (dt[:, :, None] * a * g * x_prev).abs().sum((0, 3))


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
