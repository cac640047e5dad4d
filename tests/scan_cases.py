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


def assert_close(name, actual, expected, rtol, atol):
    """allclose with a message naming the tensor, the worst element and the failing fraction."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a, e = actual.detach().double(), expected.detach().double()
    assert torch.isfinite(a).all(), f"{name}: non-finite values (unwritten output?)"
    err = (a - e).abs()
    bad = err > atol + rtol * e.abs()
    if bad.any():
        idx = tuple(int(i) for i in torch.nonzero(bad)[0])
        worst = int(err.argmax())
        raise AssertionError(
            f"{name}: {int(bad.sum())}/{bad.numel()} ({100 * bad.float().mean():.2f}%) outside "
            f"rtol={rtol} atol={atol}; first at {idx}: {a[idx].item():.6g} vs {e[idx].item():.6g}; "
            f"max abs err {err.view(-1)[worst].item():.3g}")


def rel_err(actual, expected) -> float:
    e = expected.detach().double()
    return float((actual.detach().double() - e).norm() / e.norm().clamp_min(1e-30))
