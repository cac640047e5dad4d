"""The cuda backend's add_layer_norm limits (vmamba_kernels.cuda.ln_refusal): channels first, what dispatch
refuses is exactly what the kernels' own plan cannot take (the backward's smallest tile of 8 pixels x C channels
in shared memory). Checked against the plan of the compiled kernel bodies on the CPU emulator (tests/cuda_emu):
the shared memory it asks for, and whether it refuses."""
from __future__ import annotations

import pytest
import torch

from vmamba_kernels.cuda import LN_SMEM_MAX, MAX_LN_CHANNELS, ln_cf_bwd_smem, ln_refusal

F32, F16, BF16 = torch.float32, torch.float16, torch.bfloat16


def test_vmamba_out_norms_fit_under_autocast():
    """The SS2D out_norm of VMamba-S / -B at stage 4 (1536 / 2048 channels) reads float32 and writes the autocast
    dtype: the cuda kernels take it channels first; float32 out at 2048 does not fit."""
    assert ln_refusal(1536, False, F32, F16) is None
    assert ln_refusal(2048, False, F32, F16) is None
    assert ln_refusal(1536, False, F32, F32) is None
    why = ln_refusal(2048, False, F32, F32)
    assert why and "more than 200 KB" in why and "2048 channels" in why
    assert ln_refusal(4096, True, F32, F32) is None and ln_refusal(4096, False, F16, F16) is None
    assert "at most 4096" in ln_refusal(MAX_LN_CHANNELS + 1, True, F16, F16)


def test_limits_are_monotone_in_channels():
    for xd, yd in ((F32, F32), (F32, F16), (F16, F16), (BF16, F32)):
        fits = [ln_refusal(C, False, xd, yd) is None for C in range(1, MAX_LN_CHANNELS + 1, 37)]
        assert fits == sorted(fits, reverse=True), (xd, yd)  # once refused, refused for every larger C


@pytest.fixture(scope="module")
def emu():
    from tests import cuda_emu  # noqa: PLC0415

    try:
        return cuda_emu.load()
    except RuntimeError as e:  # no nvcc here
        pytest.skip(str(e))


@pytest.mark.parametrize("x_dtype,y_dtype", [(F32, F32), (F32, F16), (F16, F16), (BF16, BF16), (F16, F32)],
                         ids=["f32-f32", "f32-f16", "f16-f16", "bf16-bf16", "f16-f32"])
@pytest.mark.parametrize("C", [1000, 1536, 1948, 1949, 2048, 2814, 2815, 3072, 4096])
def test_refusal_matches_the_kernel_plan(emu, C, x_dtype, y_dtype):
    """The emulated backward (the kernel bodies' own plan) on a 1 x 8 map, where the plan's tile is the
    smallest (8 pixels): it runs exactly when ln_refusal says the inputs fit, with the shared memory counted."""
    x = torch.randn(1, C, 1, 8).to(x_dtype)
    w = torch.rand(C) + 0.5
    (y, s, mean, rstd), _ = emu.ln_fwd(x, None, w, None, None, 1e-5, False, y_dtype)
    dy = torch.randn_like(y)
    # ln_refusal counts the saved tensor as the wider of x and y: for a y wider than x that is the backward from
    # the output (s is y), so run that one there; then the count is the plan's exactly
    from_y = (y, None, x_dtype) if x_dtype.itemsize < y_dtype.itemsize else None
    refused = ln_refusal(C, False, x_dtype, y_dtype)
    if refused:
        with pytest.raises(RuntimeError, match="C is too large for the channels-first backward"):
            emu.ln_bwd(dy, None, s, w, False, mean, rstd, None, False, False, from_y=from_y)
        assert ln_cf_bwd_smem(C, x_dtype.itemsize, y_dtype.itemsize) > LN_SMEM_MAX
    else:
        _, info = emu.ln_bwd(dy, None, s, w, False, mean, rstd, None, False, False, from_y=from_y)
        plan = dict(kv.split("=") for kv in info.split())
        assert plan["tile"] == "8"
        assert int(plan["smem"]) == ln_cf_bwd_smem(C, x_dtype.itemsize, y_dtype.itemsize), info
