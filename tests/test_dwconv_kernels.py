"""Raw dwconv2d kernels (depthwise KxK conv + bias + activation) of every impl against the float64
reference (reference/dwconv.py), output and every gradient; cases, tolerance table and checks in
tests/norm_dwconv_cases.py.

impl "triton" runs on the GPU, or on the CPU under Triton's interpreter (this module turns it on
where there is no CUDA, before triton is imported); impl "cuda" is GPU-only and skipped with the
reason where the compiled kernels are missing, and runs the kernel sizes it declares. Under the
interpreter triton takes whole test maps in one tile, so a triton-only test forces small blocks
(halos across tile and channel-block edges). Worst observed errors on the CPU set (triton,
interpreter), max|err| / max(max|ref|, 1): fp32 <= 2e-7, fp16 <= 5.5e-4, bf16 <= 8.5e-3 (dx; y 7e-3)
against the tolerances of the table in norm_dwconv_cases (1e-5 / 4e-3 / 3e-2).
"""
from __future__ import annotations

from tests.norm_dwconv_cases import triton_interpreter_ready

_TRITON_REASON = triton_interpreter_ready()  # must precede every import of triton

import pytest  # noqa: E402
import torch  # noqa: E402

from models.layers import ACTS  # noqa: E402
from reference import dwconv2d  # noqa: E402
from tests.conftest import requires_cuda  # noqa: E402
from tests.norm_dwconv_cases import (IMPL_NAMES, DWCase, check_dwconv2d, dw_cases, dw_gpu_cases, dw_inputs,  # noqa: E402
                                     load_impl)


@pytest.fixture(params=IMPL_NAMES)
def impl(request):
    return load_impl(request.param, _TRITON_REASON)


@pytest.mark.parametrize("case", dw_cases(), ids=str)
def test_dwconv2d(impl, case):
    check_dwconv2d(impl, case)


@pytest.mark.parametrize("case", [
    DWCase(1, 20, 9, 10, False, torch.float32, "silu", True, 3),
    DWCase(1, 20, 9, 10, True, torch.float16, "gelu", True, 3),
    DWCase(1, 18, 9, 10, True, torch.float32, "none", False, 5),
], ids=str)
def test_triton_dwconv2d_small_tiles(case):
    """4 x 8 x 16 tiles: halos cross tile edges in h and w, channels cross a block edge, and the
    backward's programs walk several tiles each."""
    check_dwconv2d(load_impl("triton", _TRITON_REASON), case, block_h=4, block_w=8, block_c=16)


@requires_cuda
@pytest.mark.parametrize("case", dw_gpu_cases(), ids=str)
def test_dwconv2d_gpu(impl, case):
    check_dwconv2d(impl, case)


@requires_cuda
@pytest.mark.parametrize("channels_last", [False, True], ids=["cf", "cl"])
def test_dwconv2d_deterministic(impl, channels_last):
    """The backward is bitwise reproducible (partial sums reduced in a fixed order, no atomics)."""
    case = DWCase(8, 192, 56, 56, channels_last, torch.float16, "silu", True, 3)
    x, weight, bias, dy = dw_inputs(case, "cuda")
    runs = [impl.dwconv2d_bwd(dy, x, weight, bias, "silu", channels_last) for _ in range(3)]
    for other in runs[1:]:
        for a, b, name in zip(runs[0], other, ("dx", "dweight", "dbias")):
            assert torch.equal(a, b), f"{name} differs between runs"


@pytest.mark.parametrize("act", ["none", "silu", "gelu"])
def test_reference_matches_model_path(act):
    """The reference is the model's current unfused path: nn.Conv2d(C, C, K, padding=K // 2,
    groups=C) then the activation module of models/layers.py (channels-last through a permute)."""
    B, C, H, W, K = 2, 5, 6, 7, 3
    conv = torch.nn.Conv2d(C, C, K, padding=K // 2, groups=C, bias=True).double()
    act_mod = torch.nn.Identity() if act == "none" else ACTS[act]()
    x = torch.randn(B, C, H, W, dtype=torch.float64, requires_grad=True)
    y_model = act_mod(conv(x))
    y_ref = dwconv2d(x, conv.weight, conv.bias, act, channels_last=False)
    torch.testing.assert_close(y_ref, y_model, rtol=1e-12, atol=1e-12)
    y_cl = dwconv2d(x.permute(0, 2, 3, 1), conv.weight, conv.bias, act, channels_last=True)
    torch.testing.assert_close(y_cl, y_model.permute(0, 2, 3, 1), rtol=1e-12, atol=1e-12)
    dy = torch.randn_like(y_model)
    g_ref = torch.autograd.grad(y_ref, [x, conv.weight, conv.bias], dy)
    g_model = torch.autograd.grad(y_model, [x, conv.weight, conv.bias], dy)
    for a, b in zip(g_ref, g_model):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
