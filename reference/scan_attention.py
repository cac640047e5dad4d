"""The selective scan as an explicit causal "attention" matrix (the view of the Mamba / VMamba papers).

Unrolling the recurrence of `selective_scan_ref` (module docstring there), with dt the biased and
(optionally) softplus-ed delta, the output of channel d at step t is a weighted sum of its inputs:

    y_t = sum_{s <= t} W[t, s] u_s + D u_t,
    W[t, s] = sum_n C_t[n] * exp(sum_{r = s+1..t} dt_r A[n]) * dt_s B_s[n]

(B, C of channel d's group). W is lower-triangular and does not depend on u: for fixed delta, B, C
it is exactly the Jacobian dy/du minus D on the diagonal. The official VMamba analysis calls it the
"CwBdtw" map.

How it is computed here: the exponent is a difference S_t - S_s of the float64 running sum
S_t = sum_{r <= t} dt_r A[n], masked to s <= t *before* the exponential, so masked entries give
exp(-inf) = 0 and no inf / NaN appears (the form exp(S_t) / exp(S_s) underflows to 0/0 after a few
hundred steps of strong decay). The rounding error of the difference is about 1e-16 * |S_t| in the
exponent, i.e. a relative error of the same size in W: negligible unless the decay sums to ~1e8.

Memory: the result has batch * len(channels) * len(rows) * L entries (for VMamba-T's stage 1,
KD = 384 and L = 3136: 15 GB in float32), so pick channels / rows for big maps. The work runs over
channel and row blocks so that one float64 temporary holds at most `block_elems` entries
(default 2**24, 128 MiB); it never forms an L x L x N tensor.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def _index(sel, size: int, name: str, device) -> torch.Tensor:
    """None / int / slice / sequence / tensor -> 1-D long tensor of indices in [0, size)."""
    full = torch.arange(size, device=device)
    if sel is None:
        return full
    if isinstance(sel, int):
        sel = [sel]
    try:
        idx = full[sel] if isinstance(sel, slice) else torch.as_tensor(sel, dtype=torch.long, device=device)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name} must be None, an int, a slice or a sequence of ints; got {sel!r}") from e
    idx = idx.reshape(-1)
    if idx.numel() and (int(idx.min()) < -size or int(idx.max()) >= size):
        raise ValueError(f"{name} must index 0..{size - 1}; got values {int(idx.min())}..{int(idx.max())}")
    return full[idx]


def _check(delta, A, B, C, delta_bias):
    if delta.dim() != 3:
        raise ValueError(f"delta must be (batch, KD, L); got shape {tuple(delta.shape)}")
    batch, KD, L = delta.shape
    if A.dim() != 2 or A.shape[0] != KD:
        raise ValueError(f"A must be (KD={KD}, N); got shape {tuple(A.shape)}")
    N = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        t4 = t.unsqueeze(1) if t.dim() == 3 else t
        if t4.dim() != 4 or t4.shape[0] != batch or t4.shape[2] != N or t4.shape[3] != L:
            raise ValueError(f"{name} must be (batch={batch}, K, N={N}, L={L}) or (batch, N, L); "
                             f"got shape {tuple(t.shape)}")
        if KD % t4.shape[1]:
            raise ValueError(f"{name}: the number of groups K={t4.shape[1]} must divide KD={KD}")
    if B.shape != C.shape:
        raise ValueError(f"B and C must have the same shape; got {tuple(B.shape)} and {tuple(C.shape)}")
    if delta_bias is not None and tuple(delta_bias.shape) != (KD,):
        raise ValueError(f"delta_bias must be (KD={KD},); got shape {tuple(delta_bias.shape)}")


def selective_scan_attention(delta, A, B, C, delta_bias=None, delta_softplus=False, *, channels=None, rows=None,
                             out_dtype: Optional[torch.dtype] = None, block_elems: int = 1 << 24) -> torch.Tensor:
    """The scan's implicit attention weights W, such that `selective_scan(u, delta, A, B, C, D, ...)`
    equals W @ u + D * u for every channel (module docstring for the formula).

    delta (batch, KD, L); A (KD, N); B, C (batch, K, N, L) or (batch, N, L), channel d reading group
    d // (KD // K); delta_bias (KD,); delta_softplus as in `selective_scan_ref`.
    channels: which channels d to return (None = all; int, slice, sequence or tensor of indices).
    rows: which output steps t to return (None = all L).
    out_dtype: default float64 for float64 delta, else float32; the computation is float64 throughout.
    block_elems: cap on the entries of one float64 temporary (memory knob, not a result changer).

    Returns W of shape (batch, len(channels), len(rows), L); W[..., i, s] is the weight of input step
    s in output step rows[i], zero for s > rows[i].
    """
    _check(delta, A, B, C, delta_bias)
    f64 = torch.float64
    if out_dtype is None:
        out_dtype = f64 if delta.dtype == f64 else torch.float32
    batch, KD, L = delta.shape
    N = A.shape[1]
    dev = delta.device
    ch = _index(channels, KD, "channels", dev)
    rw = _index(rows, L, "rows", dev)
    B4 = (B.unsqueeze(1) if B.dim() == 3 else B).to(f64)
    C4 = (C.unsqueeze(1) if C.dim() == 3 else C).to(f64)
    group = ch // (KD // B4.shape[1])
    dt = delta[:, ch].to(f64)
    if delta_bias is not None:
        dt = dt + delta_bias[ch].to(f64)[None, :, None]
    if delta_softplus:
        dt = F.softplus(dt)  # threshold 20, as selective_scan_ref
    Bk = B4[:, group] * dt[:, :, None, :]  # (batch, c, N, L): dt_s B_s
    Ck = C4[:, group][..., rw]  # (batch, c, N, rows)
    S = torch.cumsum(dt[:, :, None, :] * A[ch].to(f64)[None, :, :, None], dim=-1)  # (batch, c, N, L)

    out = torch.empty(batch, ch.numel(), rw.numel(), L, dtype=out_dtype, device=dev)
    if out.numel() == 0:
        return out
    rows_per = max(1, min(rw.numel(), block_elems // (batch * L)))
    ch_per = max(1, min(ch.numel(), block_elems // (batch * rows_per * L)))
    cols = torch.arange(L, device=dev)
    for r0 in range(0, rw.numel(), rows_per):
        r = rw[r0:r0 + rows_per]
        future = cols[None, :] > r[:, None]  # (rows, L): entries s > t, masked before the exp
        for c0 in range(0, ch.numel(), ch_per):
            c1 = c0 + ch_per
            acc = None
            for n in range(N):
                Sn = S[:, c0:c1, n]
                w = (Sn[..., r, None] - Sn[..., None, :]).masked_fill_(future, float("-inf")).exp_()
                w.mul_(Ck[:, c0:c1, n, r0:r0 + rows_per, None]).mul_(Bk[:, c0:c1, n, None, :])
                acc = w if acc is None else acc.add_(w)
            out[:, c0:c1, r0:r0 + rows_per] = acc
    return out
