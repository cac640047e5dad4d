"""Pure-torch selective scan (Mamba S6) with VMamba's grouped B/C: the definitions every backend
and test compares against.

Shapes (mamba_ssm's notation): u, delta (batch, KD, L); A (KD, N); B, C (batch, K, N, L), or
(batch, N, L) meaning K = 1; D, delta_bias (KD,). Channel d reads B/C group d // (KD // K).

    dt_t      = softplus(delta_t + delta_bias)        (softplus only when delta_softplus; threshold 20)
    x_t[n]    = exp(dt_t * A[n]) * x_{t-1}[n] + dt_t * B_t[n] * u_t,      x_{-1} = 0
    y_t       = sum_n C_t[n] * x_t[n] + D * u_t

Two implementations:
- `selective_scan_ref`: one step per time index, the readable definition. Computes in float32, or
  float64 when the inputs are float64 (tests use that as ground truth).
- `selective_scan_parallel`: the same recurrence as a log-depth (Hillis-Steele) scan over L of the
  affine maps x -> a*x + b. It multiplies decays (all <= 1 when dt >= 0 and A < 0) and never divides,
  so it cannot overflow the way "cumsum then divide by exp" formulations do. Each of the
  ceil(log2 L) levels adds one rounding per element: in float32 it agrees with the float64
  definition to ~1e-6 relative (tests/test_reference.py measures it), the same order as a
  sequential float32 loop. Work is O(L log L) and memory O(batch*KD*N*L), fine for tests and as a GPU
  fallback, not a fast kernel.

Both return y in `out_dtype` (default u's dtype) and optionally the last state (batch, KD, N) in
A's dtype. Both are differentiable with torch autograd.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _compute_dtype(u: torch.Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _prepare(u, delta, A, B, C, D, delta_bias, delta_softplus):
    """Upcast, apply bias + softplus, and view B/C per group. Returns (u, dt, A, B, C, D, K)."""
    ct = _compute_dtype(u)
    u, dt, A = u.to(ct), delta.to(ct), A.to(ct)
    if delta_bias is not None:
        dt = dt + delta_bias.to(ct)[None, :, None]
    if delta_softplus:
        dt = F.softplus(dt)  # beta 1, threshold 20: identity above 20, as mamba_ssm
    B = (B.unsqueeze(1) if B.dim() == 3 else B).to(ct)
    C = (C.unsqueeze(1) if C.dim() == 3 else C).to(ct)
    D = None if D is None else D.to(ct)
    return u, dt, A, B, C, D, B.shape[1]


def _finish(y, u, D, out_dtype, orig_dtype):
    if D is not None:
        y = y + D[None, :, None] * u
    return y.to(out_dtype if out_dtype is not None else orig_dtype)


def selective_scan_ref(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False, out_dtype=None):
    """The sequential definition (see module docstring)."""
    orig = u.dtype
    u, dt, A, B, C, D, K = _prepare(u, delta, A, B, C, D, delta_bias, delta_softplus)
    batch, KD, L = u.shape
    N = A.shape[1]
    G = KD // K  # channels per group
    x = u.new_zeros(batch, K, G, N)
    A4 = A.view(K, G, N)
    ys = []
    for t in range(L):
        dt_t = dt[:, :, t].view(batch, K, G, 1)
        u_t = u[:, :, t].view(batch, K, G, 1)
        x = torch.exp(dt_t * A4) * x + dt_t * u_t * B[:, :, None, :, t]
        ys.append((x * C[:, :, None, :, t]).sum(-1).view(batch, KD))
    y = torch.stack(ys, dim=-1) if L > 0 else u.new_zeros(batch, KD, 0)
    y = _finish(y, u, D, out_dtype, orig)
    if return_last_state:
        return y, x.reshape(batch, KD, N).to(A.dtype)
    return y


def affine_scan(a: torch.Tensor, b: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """Inclusive scan of h_t = a_t * h_{t-1} + b_t (h_{-1} = 0) along the last axis, log depth.

    With reverse=True the recurrence runs from the end: h_t = a_t * h_{t+1} + b_t.
    """
    if reverse:
        return affine_scan(a.flip(-1), b.flip(-1)).flip(-1)
    L = a.shape[-1]
    k = 1
    while k < L:
        # compose each element with the one k steps earlier: (a, b) o (a', b') = (a*a', a*b' + b)
        b = torch.cat([b[..., :k], a[..., k:] * b[..., :-k] + b[..., k:]], dim=-1)
        a = torch.cat([a[..., :k], a[..., k:] * a[..., :-k]], dim=-1)
        k *= 2
    return b


def selective_scan_parallel(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False,
                            return_last_state=False, out_dtype=None):
    """The log-depth parallel version (see module docstring); same arguments and results."""
    orig = u.dtype
    u, dt, A, B, C, D, K = _prepare(u, delta, A, B, C, D, delta_bias, delta_softplus)
    batch, KD, L = u.shape
    N = A.shape[1]
    G = KD // K
    dt5 = dt.view(batch, K, G, 1, L)
    a = torch.exp(dt5 * A.view(1, K, G, N, 1))  # (batch, K, G, N, L)
    b = (dt5 * u.view(batch, K, G, 1, L)) * B[:, :, None]  # B: (batch, K, 1, N, L)
    h = affine_scan(a, b)
    y = (h * C[:, :, None]).sum(3).reshape(batch, KD, L)
    y = _finish(y, u, D, out_dtype, orig)
    if return_last_state:
        last = h[..., -1] if L > 0 else h.new_zeros(batch, K, G, N)
        return y, last.reshape(batch, KD, N).to(A.dtype)
    return y


def affine_scan_sequential(a: torch.Tensor, b: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """`affine_scan` as a plain loop over the last axis (the definition it must match)."""
    L = a.shape[-1]
    out = torch.empty_like(b)
    h = torch.zeros_like(b[..., 0])
    for t in (range(L - 1, -1, -1) if reverse else range(L)):
        h = a[..., t] * h + b[..., t]
        out[..., t] = h
    return out


def selective_scan_backward_ref(u, delta, A, B, C, D, delta_bias, delta_softplus, dout, scan=affine_scan):
    """Gradients of `selective_scan_ref` in closed form, given dL/dy = dout.

    With a_t = exp(dt_t A), h_t the state and g_t = dL/dh_t, the state adjoint runs backwards:
        g_t = C_t * dout_t + a_{t+1} * g_{t+1}
    and, summing over n (and over a group's channels for B/C):
        dC_t = dout_t * h_t                 dB_t = g_t * dt_t * u_t
        du_t = sum_n g_t dt_t B_t + D dout_t
        ddt_t = sum_n g_t (B_t u_t + A a_t h_{t-1})        dA = sum_t g_t dt_t a_t h_{t-1}
        dD = sum_t dout_t u_t;  ddelta = ddt * sigmoid(delta + bias) under softplus (1 above 20);
        ddelta_bias = sum over batch and t of ddelta.
    `scan` is the affine-scan primitive (parallel by default; `affine_scan_sequential` also works).
    Returns (du, ddelta, dA, dB, dC, dD, ddelta_bias) in the input dtypes; None for absent D / bias.
    """
    in_dtype = u.dtype
    B4 = B.unsqueeze(1) if B.dim() == 3 else B
    C4 = C.unsqueeze(1) if C.dim() == 3 else C
    uc, dt, Ac, Bc, Cc, Dc, K = _prepare(u, delta, A, B4, C4, D, delta_bias, delta_softplus)
    ct = uc.dtype
    batch, KD, L = uc.shape
    N = Ac.shape[1]
    G = KD // K
    dy = dout.to(ct).view(batch, K, G, 1, L)
    dt5 = dt.view(batch, K, G, 1, L)
    u5 = uc.view(batch, K, G, 1, L)
    A5 = Ac.view(1, K, G, N, 1)
    Bg, Cg = Bc[:, :, None], Cc[:, :, None]  # (batch, K, 1, N, L)
    a = torch.exp(dt5 * A5)
    h = scan(a, dt5 * u5 * Bg)
    a_next = torch.cat([a[..., 1:], torch.zeros_like(a[..., :1])], dim=-1)
    g = scan(a_next, Cg * dy, reverse=True)
    h_prev = torch.cat([torch.zeros_like(h[..., :1]), h[..., :-1]], dim=-1)
    q = g * a * h_prev  # dL/d(dt*A) per element
    dA = (q * dt5).sum(dim=(0, 4)).reshape(KD, N)
    ddt = (q * A5).sum(3) + (g * Bg).sum(3) * u5[:, :, :, 0]
    du = (g * dt5 * Bg).sum(3)
    dB = (g * dt5 * u5).sum(2)
    dC = (dy * h).sum(2)
    du = du.reshape(batch, KD, L)
    ddt = ddt.reshape(batch, KD, L)
    dD = None
    if D is not None:
        du = du + Dc[None, :, None] * dout.to(ct)
        dD = (dout.to(ct) * uc).sum(dim=(0, 2)).to(D.dtype)
    if delta_softplus:
        pre = delta.to(ct) + (delta_bias.to(ct)[None, :, None] if delta_bias is not None else 0)
        ddt = ddt * torch.where(pre <= 20, torch.sigmoid(pre), torch.ones_like(pre))
    dbias = None if delta_bias is None else ddt.sum(dim=(0, 2)).to(delta_bias.dtype)
    dB = dB.to(in_dtype).reshape(B.shape)
    dC = dC.to(in_dtype).reshape(C.shape)
    return du.to(in_dtype), ddt.to(in_dtype), dA.to(A.dtype), dB, dC, dD, dbias
