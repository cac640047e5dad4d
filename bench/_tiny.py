"""A tiny VMamba-shaped stand-in model for CPU tests of the CLIs (and `--model-factory`).

It exercises the same project ops as the real models (cross_scan, selective_scan, cross_merge through
`vmamba_kernels` with the chosen impl) plus conv, LayerNorm, Linear and adaptive pooling, in a few
thousand parameters, so the CLIs' logic can be tested end to end before `models/` exists and fast
on a CPU afterwards. Not a benchmark subject.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class TinyVMamba(nn.Module):
    def __init__(self, impl=None, dim: int = 8, d_state: int = 1, num_classes: int = 10):
        super().__init__()
        self.impl = impl
        self.stem = nn.Conv2d(3, dim, 4, 4)
        self.norm = nn.LayerNorm(dim)
        self.in_proj = nn.Linear(dim, dim, bias=False)
        self.dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)
        K, R = 4, 1
        self.x_proj = nn.Parameter(torch.randn(K, R + 2 * d_state, dim) * 0.1)
        self.dt_proj = nn.Parameter(torch.randn(K, dim, R) * 0.1)
        self.dt_bias = nn.Parameter(torch.rand(K * dim) * 0.1)
        self.A_logs = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(K * dim, 1))
        self.Ds = nn.Parameter(torch.ones(K * dim))
        self.out_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, num_classes)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.R, self.N = R, d_state
        self.num_classes = num_classes

    def forward(self, x):
        import vmamba_kernels as vk  # noqa: PLC0415

        x = self.stem(x)  # (B, C, H, W)
        B, C, H, W = x.shape
        h = self.norm(x.permute(0, 2, 3, 1))
        h = self.in_proj(h).permute(0, 3, 1, 2)
        h = F.silu(self.dw(h.contiguous()))
        xs = vk.cross_scan(h, impl=self.impl)  # (B, 4, C, L)
        L = H * W
        dbl = torch.einsum("bkdl,kcd->bkcl", xs, self.x_proj)
        dts, Bs, Cs = torch.split(dbl, [self.R, self.N, self.N], dim=2)
        dts = torch.einsum("bkrl,kdr->bkdl", dts, self.dt_proj)
        dt = xs.dtype  # under autocast the einsums may come out in another dtype than the scan input
        dts, Bs, Cs = dts.to(dt), Bs.to(dt), Cs.to(dt)
        A = -torch.exp(self.A_logs.float())
        ys = vk.selective_scan(xs.reshape(B, -1, L), dts.reshape(B, -1, L), A, Bs.contiguous(), Cs.contiguous(),
                               self.Ds.float(), self.dt_bias.float(), delta_softplus=True,
                               out_dtype=torch.float32, impl=self.impl)
        y = vk.cross_merge(ys.view(B, 4, C, L), H, W, impl=self.impl)
        y = self.out_norm(y.permute(0, 2, 3, 1)).permute(0, 3, 1, 2).to(x.dtype)
        x = x + y
        return self.head(self.pool(x).flatten(1))


def create_model(name: str = "tiny", impl=None, pretrained=None, num_classes: int = 10, **overrides):
    """models.create_model-compatible factory for the stand-in."""
    return TinyVMamba(impl=impl, num_classes=num_classes, **overrides)


def list_models():
    return ["tiny"]


SMALL_VMAMBA = dict(depths=(1, 2, 2, 1), dims=16)


def create_small_vmamba(name: str = "vmamba_tiny_s1l8", impl=None, pretrained=None, **overrides):
    """The named VMamba variant (any forward type) at depths (1, 2, 2, 1) and width 16: the analysis CLIs'
    CPU tests (`--model-factory bench._tiny:create_small_vmamba`) run the real model code in seconds."""
    import models  # noqa: PLC0415

    return models.create_model(name, impl=impl, pretrained=pretrained, **{**SMALL_VMAMBA, **overrides})
