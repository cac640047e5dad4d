"""mamba_ssm's `selective_scan_cuda` as a baseline and oracle, without importing the mamba_ssm package.

`load_selective_scan_cuda()` returns the compiled module (built by `python -m bench.build_mamba_ssm`,
or installed) or None, and `unavailable_reason()` says why. `mamba_selective_scan(...)` is a thin
differentiable call of its fwd/bwd, with the semantics of mamba_ssm's selective_scan_fn (no z):
output in u's dtype, optional last state (batch, dim, N) fp32 without gradient.

Raw signatures (mamba_ssm 2.3.2 csrc/selective_scan/selective_scan.cpp):
    fwd(u, delta, A, B, C, D?, z?, delta_bias?, delta_softplus) -> [out, x(, out_z)]
        x: (batch, dim, n_chunks, 2N) fp32 chunk states (chunks of 2048 steps); last state x[..., -1, 1::2]
    bwd(u, delta, A, B, C, D?, z?, delta_bias?, dout, x?, out?, dz?, delta_softplus, recompute_out_z)
        -> [du, ddelta, dA, dB, dC, dD?, ddelta_bias?(, dz, out_z)]   (dout in u's dtype)
"""
from __future__ import annotations

import glob
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Optional

import torch

REPO = Path(__file__).resolve().parent.parent
MODULE = "selective_scan_cuda"
_STATE: dict = {}


def search_paths() -> list:
    """Where a built module is looked for: $VMAMBA_MAMBA_SSM_DIR, build/mamba_ssm(/build)."""
    paths = []
    if os.environ.get("VMAMBA_MAMBA_SSM_DIR"):
        d = Path(os.environ["VMAMBA_MAMBA_SSM_DIR"])
        paths += [d, d / "build"]
    paths += [REPO / "build" / "mamba_ssm" / "build", REPO / "build" / "mamba_ssm"]
    return paths


def _load():
    tried = []
    for d in search_paths():
        for so in sorted(glob.glob(str(d / f"{MODULE}*.so"))):
            try:
                spec = importlib.util.spec_from_file_location(MODULE, so)
                mod = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(mod)
                sys.modules.setdefault(MODULE, mod)
                return mod, None
            except Exception as e:  # noqa: BLE001 (a stale or foreign build: report it)
                tried.append(f"{so}: {type(e).__name__}: {e}")
    try:  # an installed mamba_ssm ships the same top-level module
        return importlib.import_module(MODULE), None
    except Exception as e:  # noqa: BLE001
        tried.append(f"import {MODULE}: {type(e).__name__}: {e}")
    return None, ("mamba_ssm's selective_scan_cuda is not built: run `python -m bench.build_mamba_ssm` "
                  "(needs nvcc and the sdist in .sdist/)" + ("; tried " + " | ".join(tried) if tried else ""))


def load_selective_scan_cuda():
    """The compiled module, or None (see `unavailable_reason()`). Cached."""
    if "mod" not in _STATE:
        _STATE["mod"], _STATE["reason"] = _load()
    return _STATE["mod"]


def unavailable_reason() -> Optional[str]:
    load_selective_scan_cuda()
    return _STATE["reason"]


def _c(t):
    return None if t is None else t.contiguous()


def mamba_fwd(u, delta, A, B, C, D=None, delta_bias=None, delta_softplus=False):
    """Raw forward: (out in u's dtype, chunk states x)."""
    mod = load_selective_scan_cuda()
    if mod is None:
        raise RuntimeError(unavailable_reason())
    if B.dim() == 3:
        B = B.unsqueeze(1)
    if C.dim() == 3:
        C = C.unsqueeze(1)
    out, x, *_ = mod.fwd(_c(u), _c(delta), _c(A), _c(B), _c(C), _c(D), None, _c(delta_bias), delta_softplus)
    return out, x


def mamba_bwd(u, delta, A, B, C, D, delta_bias, delta_softplus, dout, x):
    """Raw backward: (du, ddelta, dA, dB, dC, dD or None, ddelta_bias or None)."""
    mod = load_selective_scan_cuda()
    if mod is None:
        raise RuntimeError(unavailable_reason())
    res = mod.bwd(_c(u), _c(delta), _c(A), _c(B), _c(C), _c(D), None, _c(delta_bias), _c(dout), x, None, None,
                  delta_softplus, False)
    du, ddelta, dA, dB, dC, dD, ddb = res[:7]
    return du, ddelta, dA, dB, dC, (dD if D is not None else None), (ddb if delta_bias is not None else None)


class _MambaScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, delta_bias, delta_softplus):
        squeeze_b, squeeze_c = B.dim() == 3, C.dim() == 3
        B4 = B.unsqueeze(1) if squeeze_b else B
        C4 = C.unsqueeze(1) if squeeze_c else C
        out, x = mamba_fwd(u, delta, A, B4, C4, D, delta_bias, delta_softplus)
        ctx.save_for_backward(u, delta, A, B4, C4, D, delta_bias, x)
        ctx.flags = (delta_softplus, squeeze_b, squeeze_c)
        last = x[:, :, -1, 1::2]
        ctx.mark_non_differentiable(last)
        return out, last

    @staticmethod
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, delta_bias, x = ctx.saved_tensors
        softplus, squeeze_b, squeeze_c = ctx.flags
        du, ddelta, dA, dB, dC, dD, ddb = mamba_bwd(u, delta, A, B, C, D, delta_bias, softplus,
                                                    dout.to(u.dtype), x)
        if squeeze_b:
            dB = dB.squeeze(1)
        if squeeze_c:
            dC = dC.squeeze(1)
        return du, ddelta, dA, dB, dC, dD, ddb, None


def mamba_selective_scan(u, delta, A, B, C, D=None, delta_bias=None, softplus=False, return_last_state=False):
    """mamba_ssm's selective scan (no z), differentiable in every tensor input. B/C (batch, K, N, L)
    or (batch, N, L). Returns out (u's dtype), or (out, last_state)."""
    out, last = _MambaScan.apply(u, delta, A, B, C, D, delta_bias, softplus)
    return (out, last) if return_last_state else out
