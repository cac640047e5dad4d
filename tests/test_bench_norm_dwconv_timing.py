"""bench/cuda_norm_dwconv_timing.py's logic on the CPU (no GPU time is spent finding its bugs): stand-in
ops with the CUDA ops' signatures, tiny shapes, one timed call per row."""
from __future__ import annotations

import io

import torch
import torch.nn.functional as F

from bench import cuda_norm_dwconv_timing as T


class StandInOps:
    """torch versions of the four ops with their schemas' argument order and return shapes."""

    calls: dict

    def __init__(self):
        self.calls = {}

    def _count(self, name):
        self.calls[name] = self.calls.get(name, 0) + 1

    def add_layer_norm_fwd(self, x, branch, weight, bias, scale, eps, channels_last, out_dtype):
        self._count("ln_fwd")
        s = x if branch is None else x + branch
        sl = s if channels_last else s.permute(0, 2, 3, 1)
        y = F.layer_norm(sl.float(), (sl.shape[-1],), weight, bias, eps)
        y = (y if channels_last else y.permute(0, 3, 1, 2)).to(out_dtype or x.dtype).contiguous()
        B = x.shape[0]
        return y, s, torch.zeros(B, sl.shape[1] * sl.shape[2]), torch.ones(B, sl.shape[1] * sl.shape[2])

    def add_layer_norm_bwd(self, dy, ds, s, weight, bias, mean, rstd, scale, has_branch, channels_last, x_dtype):
        self._count("ln_bwd")
        assert dy.shape == s.shape and s.dtype == x_dtype and mean.shape == rstd.shape
        assert (ds is not None) == has_branch
        return torch.empty_like(s), torch.empty_like(s), torch.zeros_like(weight), torch.zeros_like(weight)

    def dwconv2d_fwd(self, x, weight, bias, act, channels_last):
        self._count("dw_fwd")
        assert x.is_contiguous() and weight.dtype == torch.float32 and act == "silu"
        return torch.empty_like(x)

    def dwconv2d_bwd(self, dy, x, weight, bias, act, channels_last):
        self._count("dw_bwd")
        assert dy.shape == x.shape and dy.dtype == x.dtype
        return torch.empty_like(x), torch.zeros_like(weight), torch.zeros(0)


def test_timing_script_rows_on_cpu(monkeypatch):
    monkeypatch.setattr(T, "DEVICE", "cpu")
    monkeypatch.setattr(T, "LN_SHAPES", [(8, 3, 4)])
    monkeypatch.setattr(T, "DW_SHAPES", [(8, 5, 3)])
    monkeypatch.setattr(T, "_time", lambda fn, reps: (fn(0), fn(1), 1.0)[2])
    ops = StandInOps()
    out = io.StringIO()
    rows = T.run(("ln", "dw"), ("cf", "cl"), ("bf16", "fp32"), batch=2, reps=1, out=out, ops=ops)
    # ln: per layout and dtype "add" (+ "outnorm" in 16-bit) x fwd / fwd+bwd x impls; dw: 2 directions x 2 impls
    ln = [r for r in rows if r["op"].startswith("ln")]
    dw = [r for r in rows if r["op"].startswith("dw")]
    assert len(ln) == 2 * ((2 * 3 + 2 * 3) + 2 * 2) and len(dw) == 2 * 2 * 2 * 2
    assert {r["impl"] for r in ln} == {"cuda", "torch", "torch_autocast"} and {r["impl"] for r in dw} == {"cuda", "cudnn"}
    assert all(r["vs_cuda"] == 1.0 and r["gbps"] > 0 for r in rows)
    assert ops.calls["ln_bwd"] > 0 and ops.calls["dw_bwd"] > 0
    text = out.getvalue()
    assert "ln_add" in text and "ln_outnorm" in text and "dwconv3x3_silu" in text
