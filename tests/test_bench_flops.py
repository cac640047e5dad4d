"""bench.flops: Gu's formula, the official (fvcore) counting convention, the nine released variants."""
import time

import pytest
import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode

import vmamba_kernels as vk
from bench import flops as FL
from vmamba_kernels import dispatch


def test_gu_formula():
    # 9*B*L*D*N, + B*D*L with D, + B*D*L with z (VMamba: with_D=True, with_Z=False)
    assert FL.selective_scan_flops(2, 384, 3136, 1, with_D=False) == 9 * 2 * 3136 * 384
    assert FL.selective_scan_flops(2, 384, 3136, 16) == 9 * 2 * 3136 * 384 * 16 + 2 * 384 * 3136
    assert FL.selective_scan_flops(1, 8, 5, 2, with_D=True, with_Z=True) == 9 * 80 + 40 + 40
    # T[s1l8] stage 0, batch 1: 9*3136*384 + 3136*384
    assert FL.selective_scan_flops(1, 4 * 96, 56 * 56, 1) == 10 * 3136 * 384


def _scan_args(b, kd, L, n, k=4, dtype=torch.float32):
    u = torch.randn(b, kd, L, dtype=dtype)
    return (u, torch.rand(b, kd, L, dtype=dtype), -torch.rand(kd, n), torch.randn(b, k, n, L, dtype=dtype),
            torch.randn(b, k, n, L, dtype=dtype))


def test_formula_registered_for_every_backend():
    names = FL.register_scan_flop_formulas()
    for b in dispatch.backends("selective_scan"):
        assert f"vmamba_kernels.selective_scan_fwd_{b.name}" in names
    u, dl, A, B, C = _scan_args(2, 8, 7, 3)
    D = torch.ones(8)
    with FlopCounterMode(display=False) as c:
        vk.selective_scan(u, dl, A, B, C, D, None, True, impl="torch")
    assert c.get_total_flops() == FL.selective_scan_flops(2, 8, 7, 3)
    with FlopCounterMode(display=False) as c:
        vk.selective_scan(u, dl, A, B, C, None, None, True, impl="torch")
    assert c.get_total_flops() == FL.selective_scan_flops(2, 8, 7, 3, with_D=False)


class _Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 4, 4)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
        self.ln = nn.LayerNorm(8)
        self.ln_noaffine = nn.LayerNorm(8, elementwise_affine=False)
        self.lin = nn.Linear(8, 16)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(8, 10)
        self.A = nn.Parameter(-torch.ones(32, 2))

    def forward(self, x):
        x = torch.nn.functional.gelu(self.dw(self.conv(x)))  # (1, 8, 8, 8)
        B, C, H, W = x.shape
        xs = vk.cross_scan(x, impl="torch").reshape(B, 4 * C, H * W)
        bc = torch.ones(B, 4, 2, H * W)
        y = vk.selective_scan(xs, xs, self.A, bc, bc, torch.ones(32), torch.zeros(32), True, impl="torch")
        x = x * vk.cross_merge(y.view(B, 4, C, H * W), H, W, impl="torch")
        t = self.ln(x.permute(0, 2, 3, 1))
        t = self.ln_noaffine(t)
        _ = torch.einsum("bhwc,dc->bhwd", t, self.lin.weight)
        return self.head(self.pool(x).flatten(1))


TOY_EXPECTED = (8 * 3 * 16 * 64      # patch conv: Cout*Cin*k*k*pixels
                + 8 * 1 * 9 * 64     # depthwise conv
                + FL.selective_scan_flops(1, 32, 64, 2)
                + 5 * 512 + 4 * 512  # layer norms (affine, no affine)
                + 64 * 8 * 16        # einsum = linear 8->16 per token
                + 512                # adaptive avg pool: input numel
                + 80)                # head


@pytest.mark.parametrize("fake", [True, False])
def test_official_convention_on_a_toy(fake):
    total, ops = FL.model_flops(_Toy(), img_size=32, fake=fake, by_op=True)
    assert total == TOY_EXPECTED, ops
    assert ops["selective_scan"] == FL.selective_scan_flops(1, 32, 64, 2)
    assert ops["layer_norm"] == 9 * 512 and ops["adaptive_avg_pool"] == 512


def test_model_flops_restores_training_mode_and_counts_params():
    m = _Toy().train()
    FL.model_flops(m, img_size=32)
    assert m.training
    assert FL.model_params(m) == sum(p.numel() for p in m.parameters())


def _models_or_skip():
    try:
        import models
    except ImportError as e:
        pytest.skip(f"models/ not importable yet ({e})")
    if not hasattr(models, "create_model") or not hasattr(models, "list_models"):
        pytest.skip("models/ does not provide create_model/list_models yet")
    return models


@pytest.mark.parametrize("official", list(FL.OFFICIAL))
def test_released_variants_match_official_gflops(official):
    models = _models_or_skip()
    name = FL.resolve_model_name(official)
    if name not in set(models.list_models()):
        pytest.skip(f"models.list_models() offers no {official} (looked for {name})")
    t0 = time.perf_counter()
    model = models.create_model(name, impl="torch")
    params, gflops = FL.OFFICIAL[official]
    assert FL.model_params(model) == params
    total = FL.model_flops(model, img_size=224)
    assert abs(total / 1e9 - gflops) / gflops < 0.005, (name, total / 1e9, gflops)
    assert time.perf_counter() - t0 < 60


def test_norm_and_pool_spellings_count_once():
    x = torch.randn(2, 3, 4, 5)
    w = torch.ones(5)
    for fn, expected in ((lambda: torch.nn.functional.layer_norm(x, (5,), w, None), 5 * 120),
                         (lambda: torch.layer_norm(x, (5,)), 4 * 120),
                         (lambda: torch.nn.functional.group_norm(x, 3), 4 * 120),
                         (lambda: nn.AdaptiveAvgPool2d(1)(x), 120),
                         (lambda: nn.BatchNorm2d(3).eval()(x), 2 * 120)):
        with FL.OfficialFlopCounter() as c:
            fn()
        assert c.get_total_flops() == expected
