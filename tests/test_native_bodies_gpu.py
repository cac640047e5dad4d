"""Calls without grad run a backend's raw kernels as the ops' bodies (its module's `body_ops_native`, dispatch kind
"body_native": the cuda extension's entry points, triton's and cupy's raw kernels), skipping the custom op's Python
body. On the GPU (marker `gpu`): a public call takes that path and gives what the Python body gives, bitwise, in both
layouts, with add + LayerNorm's branch rule (a float32 branch on a 16-bit x converted, a 16-bit branch on a float32
x read as is). The choice of path itself is tested on any machine in tests/test_dispatch_edges.py."""
from __future__ import annotations

import pytest
import torch

import vmamba_kernels as vk
from vmamba_kernels import dispatch
from vmamba_kernels.op_table import SPECS

OWN = {"cuda": {"scan_fwd", "cross_scan", "cross_merge", "dwconv2d_fwd", "add_layer_norm_fwd"},
       "triton": {"scan_fwd", "cross_scan", "cross_merge", "dwconv2d_fwd", "add_layer_norm_fwd"},
       "cupy": {"scan_fwd", "cross_scan", "cross_merge"}}


@pytest.fixture(params=sorted(OWN))
def backend(request, monkeypatch):
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    b = dispatch.get_backend(request.param)
    if not b.available():
        pytest.skip(b.unavailable_reason())
    mod = b.impl()
    assert set(mod.body_ops_native) == OWN[b.name]
    seen = []
    spied = {k: (lambda f, k: lambda *a: seen.append(k) or f(*a))(f, k) for k, f in mod.body_ops_native.items()}
    monkeypatch.setattr(mod, "body_ops_native", spied)
    dispatch.clear_choice_cache()
    yield b, seen
    dispatch.clear_choice_cache()


def _check(b, seen, op, key, args, kwargs):
    seen.clear()
    got = getattr(vk, op)(*args, impl=b.name, **kwargs)
    assert seen == [key]
    a = SPECS[op].check(*args, **{k: v for k, v in kwargs.items() if k not in SPECS[op].public_only})
    want = SPECS[op].run(b.body_ops, a)
    got, want = (got if isinstance(got, tuple) else (got,)), (want if isinstance(want, tuple) else (want,))
    assert len(got) == len(want)
    for x, y in zip(got, want):
        assert x.dtype == y.dtype and torch.equal(x, y)


@pytest.mark.gpu
@pytest.mark.parametrize("channels_last", [False, True])
def test_calls_without_grad_run_the_raw_kernels_as_bodies(backend, channels_last):
    b, seen = backend
    g = torch.Generator(device="cuda").manual_seed(11)
    r = lambda *s, dt=torch.float16: torch.randn(*s, generator=g, device="cuda").to(dt)  # noqa: E731
    u, delta = r(2, 12, 301), r(2, 12, 301) * 2.0 - 1.0
    A = -torch.exp(torch.rand(12, 4, generator=g, device="cuda") * 2.0)
    scan = (u, delta, A, r(2, 4, 4, 301), r(2, 4, 4, 301), r(12, dt=torch.float32), r(12, dt=torch.float32) * 0.1)
    _check(b, seen, "selective_scan", "scan_fwd", scan, dict(delta_softplus=True, return_last_state=True))
    x = r(2, 7, 9, 16)  # (B, H, W, C) or (B, C, H, W)
    _check(b, seen, "cross_scan", "cross_scan", (x,), dict(channels_last=channels_last))
    _check(b, seen, "cross_merge", "cross_merge", (r(2, 4, 16, 63), 7, 9), dict(channels_last=channels_last))
    if "dwconv2d_fwd" in OWN[b.name]:
        C = 16 if channels_last else 7
        _check(b, seen, "dwconv2d", "dwconv2d_fwd", (x, torch.randn(C, 1, 3, 3, generator=g, device="cuda"),
                                                     torch.randn(C, generator=g, device="cuda")),
               dict(act="silu", channels_last=channels_last))
    if "add_layer_norm_fwd" in OWN[b.name]:
        shape = (2, 5, 6, 24) if channels_last else (2, 24, 5, 6)
        w, bias = torch.randn(24, generator=g, device="cuda") + 1.0, torch.randn(24, generator=g, device="cuda")
        for x_dtype, branch_dtype in ((torch.float16, torch.float32), (torch.float32, torch.bfloat16),
                                      (torch.bfloat16, None)):
            xn = r(*shape, dt=x_dtype)
            br = r(*shape, dt=branch_dtype) if branch_dtype is not None else None
            _check(b, seen, "add_layer_norm", "add_layer_norm_fwd", (xn, br, w, bias), dict(channels_last=channels_last))
