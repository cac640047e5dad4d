"""The CUDA fused residual-add + LayerNorm (csrc/layer_norm) and depthwise conv (csrc/dwconv) against
float64 torch (F.layer_norm / F.conv2d with groups=C, and autograd through them).

Two layers:
* CPU emulation (needs nvcc, no GPU): tests/cuda_emu runs the very kernel bodies of the extension with
  one fiber per CUDA thread (barriers and warp shuffles emulated, shared memory and outputs poisoned)
  on small awkward shapes covering every launch path: channels-last row groups of 1..128 threads,
  vector widths 8/4/2/1, channels-first tiles cut at the image's end and several tiles per block,
  the backward's partial rows, depthwise strips cut at the map's edges, K 3/5/7, large-plane segments.
* GPU (marker `gpu`): the compiled ops torch.ops.vmamba_cuda.{add_layer_norm_fwd, add_layer_norm_bwd,
  dwconv2d_fwd, dwconv2d_bwd} on the awkward grid (C 1, 3, 96, 130, 768, 3072, 4096; H x W 1x1, 1x7,
  7x1, 7x7, 13x13, 14x14, 28x28, 56x56; batch 1, 2, 3; both layouts; fp32/fp16/bf16; branch / no
  branch / drop-path scale; bias / no bias; every activation) with NaN-poisoned outputs and scratch,
  the debug knobs that force other paths, bitwise determinism of the backward, and the input checks.

Tolerances (per dtype of the tensor compared; eps = 1e-5 fp32, 1e-3 fp16, 8e-3 bf16, about one unit
in the last place of fp16 / bf16 and fp32's accumulation error over thousands of terms):
  |out - ref| <= eps * |ref| + eps * max|ref|
for y, s, mean, rstd, dx, dbranch and the conv outputs; the depthwise dx in 16-bit types gets 2 eps
(dpre is stored in x's dtype between the two backward kernels, as under autocast). Reductions over
pixels (dweight, dbias of both ops) are fp32 sums of up to B*H*W terms: eps_fp32 * max|ref| with eps
1e-4, or the 16-bit eps where the summands were rounded (depthwise dweight from the stored dpre).
References are computed from the kernels' own rounded inputs (x, branch, dy in their dtype; the norm's
y from the returned s), so the tolerances measure the kernels' arithmetic and one output rounding.

Timing: python -m bench.cuda_norm_dwconv_timing (against F.layer_norm and cudnn's depthwise conv).
"""
from __future__ import annotations

import importlib
import math
import os

import pytest
import torch
import torch.nn.functional as F

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
DNAME = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
EPS = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 8e-3}
SUM_EPS = 1e-4  # fp32 sums over pixels
LN_EPS = 1e-5


def _ids(shape):
    return "B{}-C{}-{}x{}".format(*shape)


def _close(out, ref, eps, what, scale_floor=0.0):
    """scale_floor: the size of terms that cancel in ref (an LN input gradient is rstd * (w dy - means of
    w dy): exactly 0 for C = 1, where its rounding is rstd * |w dy| * eps, not |ref| * eps)."""
    out, ref = out.double(), ref.double()
    assert not out.isnan().any(), f"{what}: NaN (an unwritten, poisoned element?)"
    scale = max(ref.abs().max().item() if ref.numel() else 0.0, scale_floor)
    err = (out - ref).abs()
    bound = eps * ref.abs() + eps * max(scale, 1e-6)  # floor: an exact 0 against float64 round-off
    bad = err > bound
    assert not bad.any(), (f"{what}: {int(bad.sum())} of {out.numel()} elements off; max error {err.max().item():.3e}, "
                           f"max |ref| {scale:.3e}, eps {eps}")


def _act(shape, dtype, channels_last, device="cpu", offset=0.0):
    """A (B, C, H, W) activation in the layout's memory order: (B, H, W, C) when channels_last."""
    B, C, H, W = shape
    s = (B, H, W, C) if channels_last else (B, C, H, W)
    return (torch.randn(s, device=device) * 1.5 + offset).to(dtype)


def _to_cf(t, channels_last):
    return t.permute(0, 3, 1, 2) if channels_last else t


def _from_cf(t, channels_last):
    return t.permute(0, 2, 3, 1) if channels_last else t


# ---------------------------------------------------------------------------------------------------
# float64 references
# ---------------------------------------------------------------------------------------------------
def ln_ref_forward(s, weight, bias, channels_last):
    """y (float64) of LayerNorm over channels of s, in s's layout."""
    sl = s.double() if channels_last else s.double().permute(0, 2, 3, 1)
    y = F.layer_norm(sl, (sl.shape[-1],), weight.double(), None if bias is None else bias.double(), LN_EPS)
    return y if channels_last else y.permute(0, 3, 1, 2)


def ln_ref_stats(s, channels_last):
    sl = s.double() if channels_last else s.double().permute(0, 2, 3, 1)
    mean = sl.mean(-1)
    var = sl.var(-1, unbiased=False)
    B = s.shape[0]
    return mean.reshape(B, -1), (var + LN_EPS).rsqrt().reshape(B, -1)


def ln_ref_backward(dy, ds, s, weight, bias, scale, has_branch, channels_last):
    """(dx, dbranch, dweight, dbias) in float64: autograd of F.layer_norm at s, plus ds."""
    s64 = s.double().clone().requires_grad_(True)
    w64 = weight.double().clone().requires_grad_(True)
    b64 = bias.double().clone().requires_grad_(True) if bias is not None else None
    y = ln_ref_forward(s64, w64, b64, channels_last)
    y.backward(dy.double())
    g = s64.grad + (ds.double() if ds is not None else 0.0)
    dbranch = None
    if has_branch:
        dbranch = g * (scale.double().view(-1, 1, 1, 1) if scale is not None else 1.0)
    return g, dbranch, w64.grad, (b64.grad if b64 is not None else None)


def dw_ref(x, weight, bias, act, channels_last, dy=None):
    """y (float64), and with dy also (dx, dweight, dbias), of act(conv2d(x, weight, bias, groups=C))."""
    C, K = weight.shape[0], weight.shape[-1]
    x64 = _to_cf(x.double(), channels_last).clone().requires_grad_(dy is not None)
    w64 = weight.double().clone().requires_grad_(dy is not None)
    b64 = bias.double().clone().requires_grad_(dy is not None) if bias is not None else None
    pre = F.conv2d(x64, w64, b64, padding=K // 2, groups=C)
    y = {"none": pre, "silu": F.silu(pre), "gelu": F.gelu(pre)}[act]
    if dy is None:
        return _from_cf(y, channels_last).detach()
    y.backward(_to_cf(dy.double(), channels_last))
    return (_from_cf(x64.grad, channels_last), w64.grad, b64.grad if b64 is not None else None)


# ---------------------------------------------------------------------------------------------------
# checks shared by the emulator and the GPU
# ---------------------------------------------------------------------------------------------------
LN_VARIANTS = {
    # name: (branch, drop-path scale, bias, out dtype: None (x's) or "other", ds)
    "plain": (False, False, True, None, False),
    "plain_ds": (False, False, False, None, True),
    "branch": (True, False, True, None, True),
    "droppath": (True, True, False, None, True),
    "branch_nods": (True, False, False, None, False),
    "out_other": (False, False, True, "other", False),
    # a 16-bit branch on a float32 x (the autocast residual stream), read as is: x float32 only
    "branch16": (True, True, True, "other", True),
    "branchbf16": (True, False, False, None, True),
}
MIXED_BRANCH = {"branch16": torch.float16, "branchbf16": torch.bfloat16}


def _other(dtype):
    return torch.float16 if dtype == torch.float32 else torch.float32


def ln_case(fwd, bwd, shape, channels_last, dtype, variant, device="cpu", from_y=False):
    """Runs fwd(x, branch, weight, bias, scale, out_dtype) -> (y, s, mean, rstd) and
    bwd(dy, ds, s, weight, bias, mean, rstd, scale, has_branch) -> (dx, dbranch, dweight, dbias) and
    checks them against float64; returns the backward's outputs.

    from_y: the backward from the output, bwd(..., y=y) (the models' "norms" recompute): xhat is rebuilt from
    y rounded to its dtype, so the gradients carry that rounding divided by |weight|; the weights are drawn with
    |w| in [0.5, 1.5] and the tolerances are y's dtype's (4 eps: xhat's rounding enters dx twice)."""
    has_branch, has_scale, has_bias, out_mode, has_ds = LN_VARIANTS[variant]
    B, C, H, W = shape
    x = _act(shape, dtype, channels_last, device, offset=2.0)  # a mean far from 0: two-pass variance
    branch = _act(shape, MIXED_BRANCH.get(variant, dtype), channels_last, device) if has_branch else None
    if from_y:
        weight = ((torch.rand(C) + 0.5) * torch.where(torch.rand(C) < 0.3, -1.0, 1.0)).to(device)
    else:
        weight = (torch.randn(C) * 0.5 + 1.0).to(device)
    bias = (torch.randn(C) * 0.2).to(device) if has_bias else None
    scale = None
    if has_scale:
        keep = (torch.arange(B) % 3 != 1).float()  # sample 1 dropped
        scale = (keep / 0.8).to(device)
    out_dtype = _other(dtype) if out_mode == "other" else None
    y, s, mean, rstd = fwd(x, branch, weight, bias, scale, out_dtype)
    assert y.dtype == (out_dtype or dtype) and y.shape == x.shape
    assert mean.shape == (B, H * W) and rstd.shape == (B, H * W) and mean.dtype == torch.float32
    if branch is None:
        assert s.data_ptr() == x.data_ptr(), "without branch s must be x itself"
    else:
        s_ref = x.double() + (scale.double().view(-1, 1, 1, 1) if scale is not None else 1.0) * branch.double()
        _close(s, s_ref, EPS[dtype], "s")
    m_ref, r_ref = ln_ref_stats(s, channels_last)
    _close(mean, m_ref, EPS[torch.float32], "mean")
    _close(rstd, r_ref, EPS[torch.float32], "rstd")
    _close(y, ln_ref_forward(s, weight, bias, channels_last), EPS[y.dtype], "y")

    dy = _act(shape, y.dtype, channels_last, device)
    ds = _act(shape, dtype, channels_last, device) if has_ds else None
    if from_y:
        dx, dbranch, dweight, dbias = bwd(dy, ds, s, weight, bias, mean, rstd, scale, has_branch, y=y)
    else:
        dx, dbranch, dweight, dbias = bwd(dy, ds, s, weight, bias, mean, rstd, scale, has_branch)
    g, gb, gw, gbias = ln_ref_backward(dy, ds, s, weight, bias, scale, has_branch, channels_last)
    assert dx.dtype == dtype and dx.shape == x.shape
    terms = (rstd.double().max() * (dy.double() * weight.double().view(
        (1, 1, 1, -1) if channels_last else (1, -1, 1, 1))).abs().max()).item() if dy.numel() else 0.0
    eps_g = max(EPS[dtype], 4 * EPS[y.dtype]) if from_y else EPS[dtype]
    _close(dx, g, eps_g, "dx", terms)
    if has_branch:
        assert dbranch.dtype == dtype and dbranch.shape == x.shape
        _close(dbranch, gb, eps_g, "dbranch", terms)
    else:
        assert dbranch is None or dbranch.numel() == 0
    assert dweight.shape == (C,) and dweight.dtype == torch.float32
    if from_y:  # xhat's rounding, |y + bias| eps / |w| per element, summed with |dy|: dweight's scale where
        # its terms cancel (C = 1: xhat is exactly 0, the rebuilt one is bias's rounding in y over w)
        view = (1, 1, 1, -1) if channels_last else (1, -1, 1, 1)
        b64 = bias.double().abs().view(view) if has_bias else 0.0
        per = dy.double().abs() * (y.double().abs() + b64) / weight.double().abs().view(view)
        floor_w = per.sum(dim=(0, 1, 2) if channels_last else (0, 2, 3)).max().item() if dy.numel() else 0.0
        _close(dweight, gw, max(SUM_EPS, 4 * EPS[y.dtype]), "dweight", floor_w)
    else:
        _close(dweight, gw, SUM_EPS, "dweight")
    if has_bias:
        _close(dbias, gbias, SUM_EPS, "dbias")
    else:
        assert dbias is None or dbias.numel() == 0
    return dx, dbranch, dweight, dbias


def dw_case(fwd, bwd, shape, K, channels_last, dtype, act, has_bias, device="cpu"):
    """fwd(x, weight, bias) -> y; bwd(dy, x, weight, bias) -> (dx, dweight, dbias); checked against float64."""
    B, C, H, W = shape
    x = _act(shape, dtype, channels_last, device)
    weight = (torch.randn(C, 1, K, K) / K).to(device)
    bias = torch.randn(C).to(device) if has_bias else None
    y = fwd(x, weight, bias)
    assert y.dtype == dtype and y.shape == x.shape
    _close(y, dw_ref(x, weight, bias, act, channels_last), EPS[dtype], "y")
    dy = _act(shape, dtype, channels_last, device)
    dx, dweight, dbias = bwd(dy, x, weight, bias)
    gx, gw, gb = dw_ref(x, weight, bias, act, channels_last, dy)
    rounded = dtype != torch.float32 and act != "none"  # dpre stored in x's dtype
    _close(dx, gx, EPS[dtype] * (2 if rounded else 1), "dx")
    assert dweight.shape == weight.shape and dweight.dtype == torch.float32
    _close(dweight, gw, EPS[dtype] if rounded else SUM_EPS, "dweight")
    if has_bias:
        _close(dbias, gb, EPS[dtype] if rounded else SUM_EPS, "dbias")
    else:
        assert dbias is None or dbias.numel() == 0
    return dx, dweight, dbias


# ---------------------------------------------------------------------------------------------------
# CPU emulation of the kernel bodies
# ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def emu():
    from tests import cuda_emu

    try:
        return cuda_emu.load()
    except RuntimeError as e:
        pytest.skip(str(e))


def _plan(info, key):
    for tok in info.split():
        if tok.startswith(key + "="):
            return tok.split("=", 1)[1]
    raise AssertionError(f"{key} not in plan: {info}")


# (shape, layout, dtype, variant, knobs, what the forward's / backward's plan must show)
EMU_LN = [
    ((2, 96, 3, 5), True, torch.float16, "branch", {}, {"fwd.vec": "8", "fwd.tpr": "4", "bwd.tpr": "8"}),
    ((2, 96, 3, 5), True, torch.float32, "droppath", {}, {"fwd.vec": "4", "fwd.tpr": "4", "bwd.tpr": "8"}),
    ((1, 130, 2, 3), True, torch.bfloat16, "out_other", {}, {"fwd.vec": "2", "bwd.vec": "1"}),
    ((3, 3, 1, 7), True, torch.float32, "plain_ds", {}, {"fwd.vec": "1", "fwd.tpr": "1"}),
    ((1, 1, 1, 1), True, torch.float16, "branch", {}, {"fwd.vec": "1"}),
    ((1, 3072, 1, 3), True, torch.float16, "droppath", {}, {"fwd.tpr": "128", "bwd.tpr": "256"}),  # rows over warps
    ((1, 4096, 1, 2), True, torch.float32, "plain", {}, {"fwd.tpr": "128", "bwd.tpr": "256"}),
    ((2, 96, 8, 8), True, torch.float16, "branch", {"blocks": 3}, {"bwd.blocks": "3"}),
    ((2, 96, 13, 13), False, torch.float16, "branch", {"tile": 64}, {"fwd.tiles": "3", "bwd.tiles": "3"}),  # cut tile
    ((2, 96, 13, 13), False, torch.float32, "droppath", {"tile": 16, "blocks": 4}, {"bwd.tiles": "11", "bwd.blocks": "4"}),
    ((1, 130, 7, 7), False, torch.bfloat16, "out_other", {}, {"fwd.vec": "1"}),
    ((3, 3, 1, 7), False, torch.float32, "plain_ds", {}, {"fwd.tile": "8", "bwd.cpt": "2"}),
    ((1, 1, 1, 1), False, torch.float16, "branch_nods", {}, {}),
    ((2, 8, 4, 8), False, torch.float16, "branch", {}, {"fwd.vec": "8", "bwd.vec": "8"}),
    ((2, 8, 4, 8), False, torch.float16, "plain", {"max_vec": 2}, {"fwd.vec": "2", "bwd.vec": "2"}),
    ((1, 768, 2, 4), False, torch.float16, "branch", {}, {"bwd.cpt": "1"}),
    ((1, 3, 16, 16), False, torch.bfloat16, "droppath", {"blocks": 1}, {"bwd.blocks": "1"}),  # 1 block, 1 tile
    ((1, 768, 5, 8), True, torch.float16, "droppath", {"blocks": 10}, {"bwd.tpr": "64", "bwd.blocks": "10"}),  # > 8 rows
    # a 16-bit branch on a float32 x: vectors of 4 (8 bytes of the branch), or 1 when C is not a multiple of 4
    ((2, 96, 3, 5), True, torch.float32, "branch16", {}, {"fwd.vec": "4"}),
    ((1, 130, 2, 3), True, torch.float32, "branchbf16", {}, {"fwd.vec": "1"}),
    ((2, 96, 13, 13), False, torch.float32, "branch16", {"tile": 16}, {"fwd.tiles": "11"}),
    ((1, 8, 4, 8), False, torch.float32, "branchbf16", {}, {"fwd.vec": "4"}),
    # VMamba-S / -B's stage-4 out_norm channels first: the backward's smallest tile, past 48 KB of shared memory
    ((1, 2048, 3, 5), False, torch.float32, "branch16", {}, {"bwd.tile": "8"}),
    ((2, 1536, 2, 3), False, torch.bfloat16, "out_other", {}, {"bwd.tile": "8"}),
]
# the backward from the output (from_y): y in 16-bit on a float32 x (the autocast stream), or in x's dtype
EMU_LN_FROM_Y = [
    ((2, 96, 3, 5), True, torch.float32, "branch16", {}, {"bwd.vec": "4", "bwd.tpr": "8"}),
    ((2, 96, 3, 5), True, torch.float16, "droppath", {}, {"bwd.vec": "8"}),
    ((1, 130, 2, 3), True, torch.float32, "out_other", {}, {"bwd.vec": "1"}),
    ((1, 768, 5, 8), True, torch.float32, "branch16", {"blocks": 10}, {"bwd.tpr": "64"}),
    ((3, 3, 1, 7), True, torch.bfloat16, "plain_ds", {}, {}),
    ((2, 96, 13, 13), False, torch.float32, "branch16", {"tile": 16}, {"bwd.tiles": "11"}),
    ((1, 130, 7, 7), False, torch.float32, "out_other", {}, {}),
    ((2, 8, 4, 8), False, torch.float16, "branch", {}, {"bwd.vec": "8"}),
    ((1, 768, 2, 4), False, torch.bfloat16, "plain", {}, {"bwd.cpt": "1"}),
    # float32 y: xhat rebuilt to float32 rounding, so the tolerances are float32's (a 1% error in the bias term fails)
    ((2, 96, 3, 5), True, torch.float32, "branch", {}, {"bwd.vec": "4"}),
    ((2, 8, 4, 8), False, torch.float32, "plain", {}, {}),
]


@pytest.mark.parametrize("shape,channels_last,dtype,variant,knobs,expect", EMU_LN,
                         ids=[f"{_ids(c[0])}-{'cl' if c[1] else 'cf'}-{DNAME[c[2]]}-{c[3]}-{i}" for i, c in enumerate(EMU_LN)])
def test_emulated_add_layer_norm(emu, shape, channels_last, dtype, variant, knobs, expect):
    _emulated_ln(emu, shape, channels_last, dtype, variant, knobs, expect, from_y=False)


@pytest.mark.parametrize("shape,channels_last,dtype,variant,knobs,expect", EMU_LN_FROM_Y,
                         ids=[f"{_ids(c[0])}-{'cl' if c[1] else 'cf'}-{DNAME[c[2]]}-{c[3]}-{i}"
                              for i, c in enumerate(EMU_LN_FROM_Y)])
def test_emulated_add_layer_norm_from_y(emu, shape, channels_last, dtype, variant, knobs, expect):
    _emulated_ln(emu, shape, channels_last, dtype, variant, knobs, expect, from_y=True)


def _emulated_ln(emu, shape, channels_last, dtype, variant, knobs, expect, from_y):
    infos = []
    fk = {k: v for k, v in knobs.items() if k in ("max_vec", "tile")}

    def fwd(x, branch, weight, bias, scale, out_dtype):
        out, info = emu.ln_fwd(x, branch, weight, bias, scale, LN_EPS, channels_last, out_dtype, **fk)
        infos.append(info)
        return out

    def bwd(dy, ds, s, weight, bias, mean, rstd, scale, has_branch, y=None):
        out, info = emu.ln_bwd(dy, ds, s, weight, bias is not None, mean, rstd, scale, has_branch, channels_last,
                               from_y=None if y is None else (y, bias, s.dtype), **knobs)
        infos.append(info)
        return out

    ln_case(fwd, bwd, shape, channels_last, dtype, variant, from_y=from_y)
    for key, val in expect.items():
        which, field = key.split(".")
        plan = infos[0] if which == "fwd" else infos[1]
        assert _plan(plan, field) == val, f"{which}: {plan}"


def test_emulated_layer_norm_plan_errors(emu):
    x = torch.zeros(1, 1, 1, 8193)
    with pytest.raises(RuntimeError, match="C is too large"):
        emu.ln_fwd(x, None, torch.ones(8193), None, None, LN_EPS, True)


# (shape, K, layout, dtype, act, bias, knobs, what the plan of the last backward kernel must show)
EMU_DW = [
    ((2, 8, 7, 9), 3, True, torch.float32, "silu", True, {}, {"vec": "4"}),
    ((1, 16, 12, 12), 3, True, torch.float16, "gelu", False, {"segs": 3}, {"part_rows": "3"}),
    ((1, 130, 3, 4), 3, True, torch.bfloat16, "none", True, {}, {"vec": "2"}),
    ((3, 3, 5, 1), 3, True, torch.float16, "silu", True, {}, {"vec": "1"}),
    ((1, 1, 1, 1), 3, True, torch.float32, "gelu", True, {}, {}),
    ((1, 4, 9, 8), 5, True, torch.float32, "silu", True, {}, {"vec": "2"}),
    ((1, 2, 6, 7), 7, True, torch.bfloat16, "gelu", False, {}, {"vec": "1"}),
    ((2, 8, 7, 9), 3, False, torch.float32, "silu", True, {}, {"vec": "1", "P": "8", "tpp": "18"}),
    ((1, 4, 14, 14), 3, False, torch.float16, "gelu", True, {}, {"vec": "2"}),
    ((1, 2, 16, 16), 3, False, torch.float16, "none", False, {}, {"vec": "8"}),
    ((1, 2, 16, 16), 3, False, torch.bfloat16, "silu", True, {"max_vec": 4}, {"vec": "4"}),
    ((3, 3, 5, 1), 3, False, torch.float32, "gelu", True, {}, {"vec": "1"}),
    ((1, 1, 72, 64), 3, False, torch.float32, "silu", True, {"segs": 2}, {"P": "1", "nseg": "2"}),  # large plane
    ((1, 4, 9, 8), 5, False, torch.float32, "gelu", True, {}, {"vec": "4"}),
    ((1, 2, 6, 7), 7, False, torch.float16, "silu", True, {}, {"vec": "1"}),
    ((10, 2, 5, 5), 3, False, torch.float32, "silu", True, {}, {"part_rows": "10"}),  # more partial rows than ColSum strides
    ((7, 5, 6, 6), 3, False, torch.float16, "gelu", True, {"num_sms": 1}, {"bpb": "2", "part_rows": "4"}),  # image ranges
    ((3, 1, 72, 136), 3, False, torch.bfloat16, "none", False, {"num_sms": 1, "segs": 2}, {"nseg": "2", "bpb": "2", "part_rows": "4"}),
]


@pytest.mark.parametrize("shape,K,channels_last,dtype,act,has_bias,knobs,expect", EMU_DW,
                         ids=[f"{_ids(c[0])}-K{c[1]}-{'cl' if c[2] else 'cf'}-{DNAME[c[3]]}-{c[4]}-{'b' if c[5] else 'nob'}-{i}"
                              for i, c in enumerate(EMU_DW)])
def test_emulated_dwconv(emu, shape, K, channels_last, dtype, act, has_bias, knobs, expect):
    infos = []
    fk = {k: v for k, v in knobs.items() if k == "max_vec"}

    def fwd(x, weight, bias):
        y, info = emu.dwconv_fwd(x, weight, bias, act, channels_last, **fk)
        infos.append(info)
        return y

    def bwd(dy, x, weight, bias):
        out, info = emu.dwconv_bwd(dy, x, weight, bias, act, channels_last, **knobs)
        infos.append(info)
        return out

    dw_case(fwd, bwd, shape, K, channels_last, dtype, act, has_bias)
    for key, val in expect.items():
        assert _plan(infos[1], key) == val, infos[1]


# ---------------------------------------------------------------------------------------------------
# GPU
# ---------------------------------------------------------------------------------------------------
OPS = ("add_layer_norm_fwd", "add_layer_norm_bwd", "dwconv2d_fwd", "dwconv2d_bwd")
KNOBS = ("VMAMBA_NORM_POISON", "VMAMBA_NORM_MAX_VEC", "VMAMBA_NORM_TILE", "VMAMBA_NORM_BWD_BLOCKS",
         "VMAMBA_DWCONV_POISON", "VMAMBA_DWCONV_MAX_VEC", "VMAMBA_DWCONV_BWD_SEGS")


def _ops():
    try:
        importlib.import_module("vmamba_kernels._C")  # registers torch.ops.vmamba_cuda
    except ImportError as e:
        pytest.skip(f"vmamba_kernels._C is not built ({e}): pip install --no-build-isolation -e .")
    ops = torch.ops.vmamba_cuda
    missing = [n for n in OPS if not hasattr(ops, n)]
    if missing:
        pytest.skip(f"vmamba_kernels._C was built without {', '.join(missing)} (rebuild with all csrc/ sources)")
    return ops


@pytest.fixture
def knobs(monkeypatch):
    """Clean debug knobs, with outputs and scratch poisoned (NaN) by the ops themselves."""
    for k in KNOBS:
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("VMAMBA_NORM_POISON", "1")
    monkeypatch.setenv("VMAMBA_DWCONV_POISON", "1")
    return monkeypatch


def _gpu_ln(ops, channels_last):
    def fwd(x, branch, weight, bias, scale, out_dtype):
        return ops.add_layer_norm_fwd(x, branch, weight, bias, scale, LN_EPS, channels_last, out_dtype)

    def bwd(dy, ds, s, weight, bias, mean, rstd, scale, has_branch, y=None):
        if y is not None:  # the backward from the output: y in s's place, no mean
            return ops.add_layer_norm_bwd(dy, ds, y, weight, bias, None, rstd, scale, has_branch, channels_last,
                                          s.dtype, True)
        return ops.add_layer_norm_bwd(dy, ds, s, weight, bias, mean, rstd, scale, has_branch, channels_last, s.dtype)

    return fwd, bwd


def _gpu_dw(ops, act, channels_last):
    def fwd(x, weight, bias):
        return ops.dwconv2d_fwd(x, weight, bias, act, channels_last)

    def bwd(dy, x, weight, bias):
        return ops.dwconv2d_bwd(dy, x, weight, bias, act, channels_last)

    return fwd, bwd


LN_SHAPES = [(1, 1, 1, 1), (2, 3, 1, 7), (3, 96, 7, 1), (2, 130, 7, 7), (1, 768, 13, 13), (2, 96, 14, 14),
             (1, 96, 56, 56), (3, 768, 7, 7), (2, 192, 28, 28), (2, 3072, 7, 7), (1, 4096, 2, 3),
             (2, 1536, 7, 7), (1, 2048, 5, 5)]  # VMamba-S / -B's stage-4 out_norm (channels first: the shared-memory limit)


def _cf_refused(shape, channels_last, dtype, variant):
    """The dispatcher's refusal of the cuda kernels for these inputs (channels first: the backward's tile of
    C channels in shared memory), or None."""
    from vmamba_kernels.cuda import ln_refusal

    out = _other(dtype) if LN_VARIANTS[variant][3] == "other" else dtype
    return ln_refusal(shape[1], channels_last, dtype, out)


@pytest.mark.gpu
@pytest.mark.parametrize("variant", list(LN_VARIANTS))
@pytest.mark.parametrize("dtype", DTYPES, ids=[DNAME[d] for d in DTYPES])
@pytest.mark.parametrize("channels_last", (False, True), ids=("cf", "cl"))
@pytest.mark.parametrize("shape", LN_SHAPES, ids=[_ids(s) for s in LN_SHAPES])
def test_gpu_add_layer_norm(knobs, shape, channels_last, dtype, variant):
    if variant in MIXED_BRANCH and dtype != torch.float32:
        pytest.skip("a 16-bit branch is read as is only on a float32 x")
    why = _cf_refused(shape, channels_last, dtype, variant)
    if why:
        pytest.skip(f"{why} (dispatch refuses it; test_gpu_wide_channels_first_refused checks the kernel's own error)")
    fwd, bwd = _gpu_ln(_ops(), channels_last)
    ln_case(fwd, bwd, shape, channels_last, dtype, variant, device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("variant", ("branch16", "out_other", "branch", "plain_ds", "plain"))
@pytest.mark.parametrize("channels_last", (False, True), ids=("cf", "cl"))
@pytest.mark.parametrize("shape", LN_SHAPES, ids=[_ids(s) for s in LN_SHAPES])
def test_gpu_add_layer_norm_from_y(knobs, shape, channels_last, variant):
    """The backward from the output (from_y) on the compiled kernels: float32 x with 16-bit y (autocast), or y in x's
    dtype (float16, or float32: "plain", where the tolerances are float32's)."""
    dtype = torch.float16 if variant in ("branch", "plain_ds") else torch.float32
    why = _cf_refused(shape, channels_last, dtype, variant)
    if why:
        pytest.skip(why)
    fwd, bwd = _gpu_ln(_ops(), channels_last)
    ln_case(fwd, bwd, shape, channels_last, dtype, variant, device="cuda", from_y=True)


@pytest.mark.gpu
@pytest.mark.parametrize("with_branch", (False, True), ids=("plain", "branch"))
@pytest.mark.parametrize("dtype", DTYPES, ids=[DNAME[d] for d in DTYPES])
@pytest.mark.parametrize("channels_last", (False, True), ids=("cf", "cl"))
@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (2, 130, 7, 7), (1, 768, 13, 13), (2, 96, 14, 14), (1, 96, 56, 56),
                                   (2, 1536, 7, 7)], ids=_ids)
def test_gpu_add_layer_norm_infer_equals_fwd(knobs, shape, channels_last, dtype, with_branch):
    """add_layer_norm_infer (inference: no statistics written or allocated) gives add_layer_norm_fwd's y and s
    bitwise, outputs poisoned first (a store the null statistics pointers skip by mistake would leave NaN)."""
    ops = _ops()
    if not hasattr(ops, "add_layer_norm_infer"):
        pytest.skip("vmamba_kernels._C was built without add_layer_norm_infer (rebuild)")
    torch.manual_seed(0)
    B, C, H, W = shape
    x = torch.randn(*((B, H, W, C) if channels_last else shape), device="cuda").to(dtype)
    br = torch.randn_like(x) if with_branch else None
    w, b = torch.randn(C, device="cuda"), torch.randn(C, device="cuda")
    scale = torch.rand(B, device="cuda") if with_branch else None
    out = torch.float16 if dtype == torch.float32 else None
    y, s_, _, _ = ops.add_layer_norm_fwd(x, br, w, b, scale, LN_EPS, channels_last, out)
    yi, si = ops.add_layer_norm_infer(x, br, w, b, scale, LN_EPS, channels_last, out)
    assert torch.equal(yi, y) and torch.equal(si, s_)
    assert not torch.isnan(yi.float()).any()
    if not with_branch:
        assert si.data_ptr() == x.data_ptr()  # s is x itself without a branch


LN_KNOB_CASES = [(s, k) for s in [(2, 130, 7, 7), (2, 96, 14, 14), (1, 768, 13, 13)]
                 for k in ({"VMAMBA_NORM_MAX_VEC": "1"}, {"VMAMBA_NORM_TILE": "8"}, {"VMAMBA_NORM_BWD_BLOCKS": "1"},
                           {"VMAMBA_NORM_BWD_BLOCKS": "3", "VMAMBA_NORM_TILE": "16"})]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", (torch.float32, torch.float16), ids=("f32", "f16"))
@pytest.mark.parametrize("channels_last", (False, True), ids=("cf", "cl"))
@pytest.mark.parametrize("shape,env", LN_KNOB_CASES,
                         ids=[f"{_ids(s)}-{'-'.join(f'{k[12:]}{v}' for k, v in e.items())}" for s, e in LN_KNOB_CASES])
def test_gpu_add_layer_norm_forced_paths(knobs, shape, env, channels_last, dtype):
    for k, v in env.items():
        knobs.setenv(k, v)
    fwd, bwd = _gpu_ln(_ops(), channels_last)
    ln_case(fwd, bwd, shape, channels_last, dtype, "droppath", device="cuda")


DW_SHAPES = [(1, 1, 1, 1), (2, 3, 1, 7), (3, 96, 7, 1), (2, 130, 7, 7), (1, 768, 13, 13), (2, 96, 14, 14),
             (1, 96, 56, 56), (2, 192, 28, 28), (1, 8, 57, 55)]


@pytest.mark.gpu
@pytest.mark.parametrize("has_bias", (True, False), ids=("bias", "nobias"))
@pytest.mark.parametrize("act", ("none", "silu", "gelu"))
@pytest.mark.parametrize("dtype", DTYPES, ids=[DNAME[d] for d in DTYPES])
@pytest.mark.parametrize("channels_last", (False, True), ids=("cf", "cl"))
@pytest.mark.parametrize("shape", DW_SHAPES, ids=[_ids(s) for s in DW_SHAPES])
def test_gpu_dwconv3x3(knobs, shape, channels_last, dtype, act, has_bias):
    fwd, bwd = _gpu_dw(_ops(), act, channels_last)
    dw_case(fwd, bwd, shape, 3, channels_last, dtype, act, has_bias, device="cuda")


DW_K_SHAPES = [(2, 3, 7, 7), (1, 16, 13, 13), (2, 130, 5, 9), (1, 8, 56, 56)]


@pytest.mark.gpu
@pytest.mark.parametrize("K", (5, 7))
@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16), ids=("f32", "bf16"))
@pytest.mark.parametrize("channels_last", (False, True), ids=("cf", "cl"))
@pytest.mark.parametrize("shape", DW_K_SHAPES, ids=[_ids(s) for s in DW_K_SHAPES])
def test_gpu_dwconv_k5_k7(knobs, shape, channels_last, dtype, K):
    fwd, bwd = _gpu_dw(_ops(), "gelu", channels_last)
    dw_case(fwd, bwd, shape, K, channels_last, dtype, "gelu", True, device="cuda")


DW_KNOB_CASES = [(s, k) for s in [(2, 130, 7, 7), (1, 8, 57, 55), (1, 4, 120, 96)]
                 for k in ({"VMAMBA_DWCONV_MAX_VEC": "1"}, {"VMAMBA_DWCONV_BWD_SEGS": "1"}, {"VMAMBA_DWCONV_BWD_SEGS": "3"})]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", (torch.float32, torch.float16), ids=("f32", "f16"))
@pytest.mark.parametrize("channels_last", (False, True), ids=("cf", "cl"))
@pytest.mark.parametrize("shape,env", DW_KNOB_CASES,
                         ids=[f"{_ids(s)}-{'-'.join(f'{k[14:]}{v}' for k, v in e.items())}" for s, e in DW_KNOB_CASES])
def test_gpu_dwconv_forced_paths(knobs, shape, env, channels_last, dtype):
    for k, v in env.items():
        knobs.setenv(k, v)
    fwd, bwd = _gpu_dw(_ops(), "silu", channels_last)
    dw_case(fwd, bwd, shape, 3, channels_last, dtype, "silu", True, device="cuda")


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", (torch.float32, torch.float16), ids=("f32", "f16"))
@pytest.mark.parametrize("channels_last", (False, True), ids=("cf", "cl"))
def test_gpu_backward_is_deterministic(knobs, channels_last, dtype):
    """Two backward runs give bitwise equal results (partial rows summed in a fixed order)."""
    ops = _ops()
    shape = (8, 96, 28, 28)
    B, C, H, W = shape
    s = _act(shape, dtype, channels_last, "cuda", offset=1.0)
    weight, bias = torch.randn(C, device="cuda"), torch.randn(C, device="cuda")
    scale = torch.rand(B, device="cuda")
    y, _, mean, rstd = ops.add_layer_norm_fwd(s, None, weight, bias, None, LN_EPS, channels_last, None)
    dy, ds = torch.randn_like(y), torch.randn_like(s)
    runs = [ops.add_layer_norm_bwd(dy, ds, s, weight, bias, mean, rstd, scale, True, channels_last, dtype) for _ in range(2)]
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    w3 = torch.randn(C, 1, 3, 3, device="cuda")
    runs = [ops.dwconv2d_bwd(dy.to(dtype), s, w3, bias, "silu", channels_last) for _ in range(2)]
    for a, b in zip(*runs):
        assert torch.equal(a, b)


@pytest.mark.gpu
def test_gpu_wide_channels_first_refused(knobs):
    """Beyond shared memory the channels-first backward raises a clear error (dispatch never gets there)."""
    import vmamba_kernels as vk

    ops = _ops()
    x = torch.randn(2, 2048, 7, 7, device="cuda")
    w = torch.ones(2048, device="cuda")
    y, s, mean, rstd = ops.add_layer_norm_fwd(x, x, w, None, None, LN_EPS, False, None)
    with pytest.raises(RuntimeError, match="C is too large for the channels-first backward"):
        ops.add_layer_norm_bwd(y, None, s, w, None, mean, rstd, None, True, False, torch.float32)
    args = vk.validate.check_add_layer_norm(x, x, w, None, LN_EPS, None, False, None)
    assert "more than 200 KB" in " ".join(vk.dispatch.get_backend("cuda").why_not("add_layer_norm", args))
    # a 16-bit output fits (VMamba-B's out_norm under autocast): dispatch lets it through
    args = vk.validate.check_add_layer_norm(x, x, w, None, LN_EPS, None, False, torch.float16)
    assert not vk.dispatch.get_backend("cuda").why_not("add_layer_norm", args)


@pytest.mark.gpu
def test_gpu_side_stream_and_empty_batch(knobs):
    ops = _ops()
    x = torch.randn(2, 7, 7, 96, device="cuda", dtype=torch.float16)
    w = torch.ones(96, device="cuda")
    st = torch.cuda.Stream()
    st.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(st):
        y, _, _, _ = ops.add_layer_norm_fwd(x, x, w, None, None, LN_EPS, True, None)
        z = ops.dwconv2d_fwd(x, torch.ones(96, 1, 3, 3, device="cuda"), None, "none", True)
    st.synchronize()
    _close(y, ln_ref_forward((x.double() * 2).to(torch.float16), w, None, True), EPS[torch.float16], "y")
    _close(z, dw_ref(x, torch.ones(96, 1, 3, 3, device="cuda"), None, "none", True), EPS[torch.float16], "z")
    e = torch.randn(0, 5, 6, 8, device="cuda")
    y, s, mean, rstd = ops.add_layer_norm_fwd(e, None, torch.ones(8, device="cuda"), None, None, LN_EPS, True, None)
    assert y.shape == e.shape and mean.shape == (0, 30)
    dx, _, dw, _ = ops.add_layer_norm_bwd(e, None, e, torch.ones(8, device="cuda"), None, mean, rstd, None, False, True,
                                          torch.float32)
    assert dx.shape == e.shape and torch.equal(dw, torch.zeros(8, device="cuda"))
    dx, dw, db = ops.dwconv2d_bwd(e, e, torch.ones(8, 1, 3, 3, device="cuda"), torch.ones(8, device="cuda"), "gelu", True)
    assert dx.shape == e.shape and torch.equal(dw, torch.zeros(8, 1, 3, 3, device="cuda")) and torch.equal(db, torch.zeros(8, device="cuda"))


@pytest.mark.gpu
def test_gpu_errors_name_the_argument():
    ops = _ops()
    dev = "cuda"
    x = torch.randn(2, 4, 5, 6, device=dev)
    w, b = torch.ones(4, device=dev), torch.zeros(4, device=dev)
    with pytest.raises(RuntimeError, match="x: must be contiguous in its layout"):
        ops.add_layer_norm_fwd(x.permute(0, 1, 3, 2), None, w, b, None, LN_EPS, False, None)
    with pytest.raises(RuntimeError, match="x: must be contiguous in its layout"):
        ops.dwconv2d_fwd(x.permute(0, 1, 3, 2), torch.ones(4, 1, 3, 3, device=dev), None, "none", False)
    with pytest.raises(RuntimeError, match="x: must be a CUDA tensor"):
        ops.add_layer_norm_fwd(x.cpu(), None, w, b, None, LN_EPS, False, None)
    with pytest.raises(RuntimeError, match="x: dtype must be float32, float16 or bfloat16"):
        ops.dwconv2d_fwd(x.double(), torch.ones(4, 1, 3, 3, device=dev), None, "none", False)
    with pytest.raises(RuntimeError, match="weight: must have shape \\(C,\\)"):
        ops.add_layer_norm_fwd(x, None, torch.ones(5, device=dev), b, None, LN_EPS, False, None)
    with pytest.raises(RuntimeError, match="weight: must be float32"):
        ops.add_layer_norm_fwd(x, None, w.half(), b, None, LN_EPS, False, None)
    with pytest.raises(RuntimeError, match="branch: must have x's dtype"):
        ops.add_layer_norm_fwd(x.half(), x, w, b, None, LN_EPS, False, None)  # (16-bit on float32 is allowed)
    with pytest.raises(RuntimeError, match="branch_scale: is the drop-path factor of branch"):
        ops.add_layer_norm_fwd(x, None, w, b, torch.ones(2, device=dev), LN_EPS, False, None)
    with pytest.raises(RuntimeError, match="out_dtype: must be float32, float16 or bfloat16"):
        ops.add_layer_norm_fwd(x, None, w, b, None, LN_EPS, False, torch.float64)
    y, s, mean, rstd = ops.add_layer_norm_fwd(x, None, w, b, None, LN_EPS, False, None)
    with pytest.raises(RuntimeError, match="mean: must have shape \\(B, H\\*W\\)"):
        ops.add_layer_norm_bwd(y, None, s, w, b, mean[:, :5], rstd, None, False, False, torch.float32)
    with pytest.raises(RuntimeError, match="s: must have x_dtype"):
        ops.add_layer_norm_bwd(y, None, s, w, b, mean, rstd, None, False, False, torch.float16)
    with pytest.raises(RuntimeError, match="kernel size K must be 3, 5 or 7"):
        ops.dwconv2d_fwd(x, torch.ones(4, 1, 4, 4, device=dev), None, "none", False)
    with pytest.raises(RuntimeError, match="weight: must have shape \\(C, 1, K, K\\)"):
        ops.dwconv2d_fwd(x, torch.ones(4, 2, 3, 3, device=dev), None, "none", False)
    with pytest.raises(RuntimeError, match="act must be one of"):
        ops.dwconv2d_fwd(x, torch.ones(4, 1, 3, 3, device=dev), None, "relu", False)
    with pytest.raises(RuntimeError, match="dy: must have x's dtype"):
        ops.dwconv2d_bwd(x.half(), x, torch.ones(4, 1, 3, 3, device=dev), None, "none", False)
