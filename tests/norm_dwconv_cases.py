"""Shared cases, tolerances and checks for the raw add_layer_norm / dwconv2d kernels of every impl
(tests/test_norm_kernels.py, tests/test_dwconv_kernels.py; the CPU interpreter cases and the GPU
cases use the same checks).

An impl is a namespace with the four raw kernels of the contract (add_layer_norm_fwd/_bwd,
dwconv2d_fwd/_bwd), the device it runs on and the dwconv kernel sizes it supports. Every output and
every gradient is compared with the float64 reference (reference/norms.py, reference/dwconv.py; its
gradients by autograd) evaluated on float64 copies of the very same (already rounded) inputs, so the
differences are the kernel's own: fp32 arithmetic, rounding of s / dz / the outputs to 16 bits.

Tolerance: |actual - ref| <= atol * max(max|ref|, 1) + rtol * |ref| per element, atol relative to
the tensor's largest magnitude (LayerNorm gradients and weight sums have no fixed scale; the floor 1
covers tensors that are 0 up to rounding, e.g. dweight at C = 1 where xhat = 0):

    dtype      rtol    atol (x max|ref|)   what dominates the error
    float32    1e-4    1e-5                 fp32 statistics / accumulation
    float16    4e-3    4e-3                 output rounding (2^-11), s rounded before the statistics,
                                            dz rounded to fp16 between the two dwconv backward kernels
    bfloat16   3e-2    3e-2                 the same at 2^-8

dweight / dbias (fp32 sums over all pixels) take the input dtype's row: they sum products of the
16-bit inputs with the (rounded) intermediate. The observed worst errors are several times below
these bounds (recorded in the test modules); a planted bug is off by O(1) x max|ref|. Bugs planted
once in the triton kernels and caught on the CPU set: unbiased variance, the ds term dropped,
branch_scale dropped in the forward or in the backward, Chan's merge without its between-chunk term,
blocks past the end unmasked in the LN backward, the halo's w bound off by one, the dx taps not
mirrored, dweight's taps transposed, GELU's derivative without z phi(z) (test_add_layer_norm /
test_dwconv2d), a tile's w origin from BLOCK_H (only test_triton_dwconv2d_small_tiles: the
interpreter otherwise takes whole maps in one tile).
"""
from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Optional

import pytest
import torch

from reference import add_layer_norm, dwconv2d
from vmamba_kernels.cuda import ln_refusal as cuda_ln_refusal
from tests.scan_cases import assert_close

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
TOL = {  # dtype -> (rtol, atol relative to max|ref|)
    torch.float32: (1e-4, 1e-5),
    torch.float16: (4e-3, 4e-3),
    torch.bfloat16: (3e-2, 3e-2),
}
DW_ACTS = ("none", "silu", "gelu")
EPS = 1e-5

# ---- impls ---------------------------------------------------------------------------------------
IMPL_NAMES = ("triton", "cuda")
# where each impl's raw kernels live (module names; the functions keep the contract's names)
IMPL_MODULES = {
    "triton": ("vmamba_kernels.triton.layer_norm", "vmamba_kernels.triton.dwconv"),
    "cuda": ("vmamba_kernels.cuda.extension",),
}
_FUNCS = ("add_layer_norm_fwd", "add_layer_norm_bwd", "dwconv2d_fwd", "dwconv2d_bwd")


def triton_interpreter_ready() -> Optional[str]:
    """Call at a test module's import: turn the interpreter on where there is no CUDA (before triton
    is imported); returns why the triton impl cannot run here, or None."""
    if torch.cuda.is_available():
        return None
    if "triton" in sys.modules and os.environ.get("TRITON_INTERPRET") != "1":
        return ("no CUDA, and triton was imported without the interpreter by an earlier test module: run "
                "`TRITON_INTERPRET=1 python -m pytest tests/test_norm_kernels.py tests/test_dwconv_kernels.py`")
    os.environ.setdefault("TRITON_INTERPRET", "1")
    return None


def _cuda_ops() -> dict:
    """The contract's functions over the extension's ops torch.ops.vmamba_cuda.* (csrc/layer_norm,
    csrc/dwconv), for when vmamba_kernels.cuda.extension has no Python wrappers of them: the ops return
    empty tensors where the contract has None (dbranch without a branch, dbias without a bias)."""
    try:
        from vmamba_kernels import _C  # noqa: F401  (registers the ops)
        ops = torch.ops.vmamba_cuda
        fwd_ln, bwd_ln, fwd_dw, bwd_dw = (getattr(ops, f) for f in _FUNCS)
    except (ImportError, AttributeError, RuntimeError):
        return {}
    none_if_absent = lambda t, present: t if present else None  # noqa: E731

    def add_layer_norm_bwd(dy, ds, s, weight, bias, mean, rstd, branch_scale, has_branch, channels_last, x_dtype):
        dx, dbr, dw, db = bwd_ln(dy, ds, s, weight, bias, mean, rstd, branch_scale, has_branch, channels_last, x_dtype)
        return dx, none_if_absent(dbr, has_branch), dw, none_if_absent(db, bias is not None)

    def dwconv2d_bwd(dy, x, weight, bias, act, channels_last):
        dx, dw, db = bwd_dw(dy, x, weight, bias, act, channels_last)
        return dx, dw, none_if_absent(db, bias is not None)

    return dict(add_layer_norm_fwd=fwd_ln, add_layer_norm_bwd=add_layer_norm_bwd, dwconv2d_fwd=fwd_dw,
                dwconv2d_bwd=dwconv2d_bwd, DWCONV_KERNEL_SIZES=(3, 5, 7))


def load_impl(name: str, triton_reason: Optional[str] = None) -> SimpleNamespace:
    """The impl's kernels, or pytest.skip with the reason it cannot run here."""
    if name == "triton":
        if triton_reason:
            pytest.skip(triton_reason)
        pytest.importorskip("triton", reason="triton is not installed: `pip install triton`")
        if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET") != "1":
            pytest.skip("no CUDA and TRITON_INTERPRET is not 1")
    elif not torch.cuda.is_available():
        pytest.skip(f"impl {name} needs a CUDA device")
    funcs, sizes, why = {}, None, []
    for mod_name in IMPL_MODULES[name]:
        try:
            mod = importlib.import_module(mod_name)
        except ImportError as e:
            why.append(f"{mod_name} does not import ({e})")
            continue
        funcs.update({f: getattr(mod, f) for f in _FUNCS if hasattr(mod, f)})
        sizes = getattr(mod, "DWCONV_KERNEL_SIZES", sizes)
    if name == "cuda" and any(f not in funcs for f in _FUNCS):
        ops = _cuda_ops()
        sizes = ops.pop("DWCONV_KERNEL_SIZES", sizes)
        funcs = {**ops, **funcs}
    missing = [f for f in _FUNCS if f not in funcs]
    if missing:
        hint = "; build the extension (`pip install -e . --no-build-isolation`)" if name == "cuda" else ""
        pytest.skip(f"impl {name} has no {', '.join(missing)} ({'; '.join(why) or ', '.join(IMPL_MODULES[name])}){hint}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    # triton takes any odd K; an impl may declare the sizes it supports (default 3 only)
    sizes = (1, 3, 5, 7) if name == "triton" else (sizes or (3,))
    # the cuda kernels keep a row of channels on chip, channels first a tile of them in shared memory: what they
    # cannot take, dispatch refuses (vmamba_kernels.cuda.ln_refusal)
    ln_refuses = cuda_ln_refusal if name == "cuda" else None
    return SimpleNamespace(name=name, device=device, dwconv_kernel_sizes=tuple(sizes), ln_refusal=ln_refuses,
                           **funcs)


# ---- comparison ----------------------------------------------------------------------------------
def check(name: str, actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, scale_floor: float = 0.0):
    """actual against the float64 expected at dtype's tolerance (atol relative to max|expected|, >= 1).
    scale_floor: the size of terms that cancel in expected (an LN input gradient is rstd * (w dy - means
    of w dy): exactly 0 for C = 1, where its rounding is rstd * |w dy| * eps, not |expected| * eps)."""
    rtol, atol = TOL[dtype]
    scale = max(expected.detach().abs().max().item() if expected.numel() else 0.0, scale_floor)
    assert_close(name, actual.detach().cpu(), expected.detach().cpu(), rtol, atol * max(scale, 1.0))


def max_rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max(max |expected|, 1), the scale check() uses (for reporting)."""
    e = expected.detach().double().cpu()
    return float((actual.detach().double().cpu() - e).abs().max() / e.abs().max().clamp_min(1.0))


def _dname(d: torch.dtype) -> str:
    return str(d).replace("torch.", "")


# ---- add_layer_norm ------------------------------------------------------------------------------
@dataclass(frozen=True)
class LNCase:
    B: int
    C: int
    H: int
    W: int
    channels_last: bool
    dtype: torch.dtype
    branch: str = "none"  # "none" | "add" | "scaled" (drop-path's per-sample scale)
    bias: bool = True
    ds: bool = False  # s has other consumers (its gradient flows in)
    out_dtype: Optional[torch.dtype] = None
    branch_dtype: Optional[torch.dtype] = None  # None: x's; 16-bit on a float32 x (the autocast residual stream)

    def __str__(self):
        out = f"-out_{_dname(self.out_dtype)}" if self.out_dtype else ""
        out += f"-branch_{_dname(self.branch_dtype)}" if self.branch_dtype else ""
        return (f"B{self.B}-C{self.C}-{self.H}x{self.W}-{'cl' if self.channels_last else 'cf'}-{_dname(self.dtype)}"
                f"-br_{self.branch}{'' if self.bias else '-nobias'}{'-ds' if self.ds else ''}{out}")

    @property
    def shape(self):
        return (self.B, self.H, self.W, self.C) if self.channels_last else (self.B, self.C, self.H, self.W)


def _rotate(options, i):
    return options[i % len(options)]


def ln_cases() -> list:
    """The CPU set: every C x map pair of the brief in both layouts, the other options rotated
    through so that each value meets each layout and dtype; plus the two uses of the brief."""
    Cs = (1, 3, 96, 130)
    maps = ((1, 1), (1, 7), (7, 7), (13, 13), (14, 14))
    cases = []
    i = 0
    for C in Cs:
        for H, W in maps:
            if C >= 96 and (H, W) in ((1, 7),):  # wide-C cases are the slow ones under the interpreter
                continue
            for cl in (False, True):
                cases.append(LNCase(
                    B=_rotate((1, 2), i), C=C, H=H, W=W, channels_last=cl, dtype=_rotate(DTYPES, i + cl),
                    branch=_rotate(("none", "add", "scaled"), i // 2 + cl), bias=_rotate((True, True, False), i // 3),
                    ds=_rotate((False, True), i // 4 + cl)))
                i += 1
    # the two uses of the brief: AMP residual stream, and SS2D out_norm (fp32 in, fp16 out)
    cases += [LNCase(2, 96, 7, 7, True, torch.float16, "scaled", True, True),
              LNCase(2, 96, 7, 7, False, torch.float16, "add", True, True),
              LNCase(2, 130, 7, 7, True, torch.float32, "none", True, False, torch.float16),
              LNCase(1, 96, 14, 14, False, torch.float32, "none", False, False, torch.bfloat16),
              # the fast path's residual add: a 16-bit block output on the float32 stream
              LNCase(2, 96, 7, 7, True, torch.float32, "scaled", True, True, torch.float16, torch.float16)]
    return cases


def ln_gpu_cases() -> list:
    """Larger shapes for the GPU: VMamba stage maps, C wider than one channels-last row chunk."""
    out = []
    for i, (C, H, W) in enumerate(((96, 56, 56), (192, 28, 28), (384, 14, 14), (768, 7, 7), (1024, 7, 7),
                                   (3, 57, 31), (130, 29, 30), (4100, 5, 3), (5000, 2, 2))):
        for cl in (False, True):
            for dt in DTYPES:
                out.append(LNCase(2, C, H, W, cl, dt, _rotate(("none", "add", "scaled"), i + cl),
                                  i % 3 != 2, (i + cl) % 2 == 0))
    out.append(LNCase(3, 192, 28, 28, True, torch.float32, "none", True, False, torch.float16))
    out.append(LNCase(3, 192, 28, 28, False, torch.float32, "none", True, False, torch.bfloat16))
    for cl in (False, True):  # a 16-bit branch on the float32 stream (every backend declaring mixed_branch)
        out.append(LNCase(2, 96, 56, 56, cl, torch.float32, "scaled", True, True, torch.float16, torch.float16))
        out.append(LNCase(3, 130, 7, 9, cl, torch.float32, "add", False, False, None, torch.bfloat16))
    return out


def ln_inputs(case: LNCase, device):
    """x, branch, weight, bias, branch_scale, dy, ds. x carries a channel ramp and an offset so every
    pixel's variance is well away from 0 (C = 3 stays well conditioned) and the mean is not 0."""
    shape, dt = case.shape, case.dtype
    ch = (1, case.C, 1, 1) if not case.channels_last else (1, 1, 1, case.C)
    ramp = torch.linspace(-2.0, 2.0, case.C, device=device).view(ch) if case.C > 1 else 0.0
    x = (torch.randn(shape, device=device) + ramp + 1.0).to(dt)
    branch = torch.randn(shape, device=device).to(case.branch_dtype or dt) if case.branch != "none" else None
    scale = None
    if case.branch == "scaled":  # drop-path: sample 0 dropped, the others kept and scaled by 1/keep
        scale = torch.full((case.B,), 1.0 / 0.8, device=device)
        scale[0] = 0.0
    weight = 1.0 + 0.5 * torch.randn(case.C, device=device)
    bias = 0.5 * torch.randn(case.C, device=device) if case.bias else None
    out_dt = case.out_dtype or dt
    dy = torch.randn(shape, device=device).to(out_dt)
    ds = torch.randn(shape, device=device).to(dt) if case.ds else None
    return x, branch, weight, bias, scale, dy, ds


def ln_reference(case: LNCase, x, branch, weight, bias, scale, dy, ds):
    """float64 (y, s) and the autograd gradients {x, branch, weight, bias} of sum(y dy) + sum(s ds)."""
    d = lambda t: None if t is None else t.detach().double().requires_grad_()  # noqa: E731
    x64, b64, w64, bias64 = d(x), d(branch), d(weight), d(bias)
    y, s = add_layer_norm(x64, b64, w64, bias64, None if scale is None else scale.double(), EPS,
                          case.channels_last, torch.float64)
    outs, grads_in = [y], [dy.double()]
    if ds is not None:
        outs.append(s)
        grads_in.append(ds.double())
    torch.autograd.backward(outs, grads_in)
    g = {"x": x64.grad, "weight": w64.grad}
    if b64 is not None:
        g["branch"] = b64.grad
    if bias64 is not None:
        g["bias"] = bias64.grad
    return y.detach(), s.detach(), g


def _skip_refused(impl, case: LNCase) -> None:
    refusal = getattr(impl, "ln_refusal", None)
    why = refusal and refusal(case.C, case.channels_last, case.dtype, case.out_dtype or case.dtype)
    if why:
        pytest.skip(f"impl {impl.name}: {why} (dispatch refuses it)")


def check_add_layer_norm(impl, case: LNCase, errors: Optional[dict] = None, **blocks):
    """Forward and backward of impl against the float64 reference; errors (when given) collects the
    observed max relative errors by (tensor name, dtype of its tolerance); blocks: triton's block
    overrides."""
    _skip_refused(impl, case)
    dev = impl.device
    x, branch, weight, bias, scale, dy, ds = ln_inputs(case, dev)
    y, s, mean, rstd = impl.add_layer_norm_fwd(x, branch, weight, bias, scale, EPS, case.channels_last,
                                               case.out_dtype, **blocks)
    out_dt = case.out_dtype or case.dtype
    B, HW = case.B, case.H * case.W
    assert y.dtype == out_dt and y.shape == x.shape, f"y: {y.dtype} {tuple(y.shape)}"
    assert mean.dtype == rstd.dtype == torch.float32 and tuple(mean.shape) == tuple(rstd.shape) == (B, HW)
    if branch is None:
        assert s is x, "without a branch s must be x itself"
    else:
        assert s.dtype == x.dtype and s.shape == x.shape
    y_ref, s_ref, g = ln_reference(case, x, branch, weight, bias, scale, dy, ds)
    found = {"y": (y, y_ref, out_dt)}
    if branch is not None:
        found["s"] = (s, s_ref, case.dtype)
    # mean / rstd of the stored s: fp32 statistics of the (rounded) s the kernel normalised
    s64 = s.detach().double()
    sl = s64 if case.channels_last else s64.movedim(1, -1)
    m_ref = sl.mean(-1).reshape(B, HW)
    r_ref = (sl.var(-1, unbiased=False) + EPS).rsqrt().reshape(B, HW)
    found["mean"] = (mean, m_ref, torch.float32 if case.dtype == torch.float32 else case.dtype)
    found["rstd"] = (rstd, r_ref, torch.float32 if case.dtype == torch.float32 else case.dtype)

    dx, dbr, dw, db = impl.add_layer_norm_bwd(dy, ds, s, weight, bias, mean, rstd, scale, branch is not None,
                                              case.channels_last, x.dtype, **blocks)
    assert dx.dtype == x.dtype and dx.shape == x.shape
    assert dw.dtype == torch.float32 and dw.shape == weight.shape
    assert (dbr is None) == (branch is None), "dbranch must be None exactly when there is no branch"
    assert (db is None) == (bias is None), "dbias must be None exactly when there is no bias"
    found["dx"] = (dx, g["x"], case.dtype)
    found["dweight"] = (dw, g["weight"], case.dtype)
    if branch is not None:
        assert dbr.dtype == x.dtype
        found["dbranch"] = (dbr, g["branch"], case.dtype)
    if bias is not None:
        assert db.dtype == torch.float32 and db.shape == bias.shape
        found["dbias"] = (db, g["bias"], case.dtype)
    wshape = (1, 1, 1, -1) if case.channels_last else (1, -1, 1, 1)
    terms = (rstd.double().max() * (dy.double() * weight.double().view(wshape)).abs().max()).item() \
        if dy.numel() else 0.0
    for name, (a, e, dt) in found.items():
        if errors is not None:
            errors[(name, dt)] = max(errors.get((name, dt), 0.0), max_rel_err(a, e))
        check(f"{case} {name}", a, e, dt, terms if name in ("dx", "dbranch") else 0.0)


def from_y_cases() -> list:
    """The backward from the output (the models' "norms" recompute): the autocast residual stream (float32 x,
    16-bit y) and out_norm on both layouts, a 16-bit x, odd sizes, no bias."""
    return [LNCase(2, 96, 7, 7, True, torch.float32, "scaled", True, True, torch.float16, torch.float16),
            LNCase(1, 130, 13, 13, False, torch.float32, "add", True, True, torch.float16, torch.float16),
            LNCase(2, 96, 14, 14, True, torch.float32, "none", True, False, torch.float16),
            LNCase(1, 3, 1, 7, False, torch.float32, "none", False, False, torch.bfloat16),
            LNCase(2, 96, 7, 7, True, torch.float16, "add", True, True),
            LNCase(1, 1, 7, 7, True, torch.bfloat16, "scaled", True, False)]


def check_add_layer_norm_from_y(impl, case: LNCase, **blocks):
    """add_layer_norm_bwd(from_y=True), given the forward's y in place of s and no mean, against the float64
    gradients. xhat is rebuilt from y rounded to its dtype, so the gradients carry y's rounding divided by
    |weight|: weights are drawn with |w| in [0.5, 1.5] and the tolerance is that of the coarser of x's and
    y's dtypes (for a weight near 0 the rebuilt xhat is only as good as y's rounding over |w|: documented)."""
    _skip_refused(impl, case)
    x, branch, weight, bias, scale, dy, ds = ln_inputs(case, impl.device)
    sign = torch.where(torch.rand(case.C, device=weight.device) < 0.3, -1.0, 1.0)
    weight = (torch.rand(case.C, device=weight.device) + 0.5) * sign
    y, s, mean, rstd = impl.add_layer_norm_fwd(x, branch, weight, bias, scale, EPS, case.channels_last,
                                               case.out_dtype, **blocks)
    _, _, g = ln_reference(case, x, branch, weight, bias, scale, dy, ds)
    dx, dbr, dw, db = impl.add_layer_norm_bwd(dy, ds, y, weight, bias, None, rstd, scale, branch is not None,
                                              case.channels_last, x.dtype, from_y=True, **blocks)
    assert dx.dtype == x.dtype and dx.shape == x.shape and dw.dtype == torch.float32
    assert (dbr is None) == (branch is None) and (db is None) == (bias is None)
    coarse = max((case.dtype, y.dtype), key=lambda d: TOL[d][0])
    wshape = (1, 1, 1, -1) if case.channels_last else (1, -1, 1, 1)
    terms = (rstd.double().max() * (dy.double() * weight.double().view(wshape)).abs().max()).item()
    check(f"{case} from_y dx", dx, g["x"], coarse, terms)
    check(f"{case} from_y dweight", dw, g["weight"], coarse)
    if branch is not None:
        check(f"{case} from_y dbranch", dbr, g["branch"], coarse, terms)
    if bias is not None:
        check(f"{case} from_y dbias", db, g["bias"], case.dtype)


# ---- dwconv2d ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DWCase:
    B: int
    C: int
    H: int
    W: int
    channels_last: bool
    dtype: torch.dtype
    act: str = "silu"
    bias: bool = True
    K: int = 3

    def __str__(self):
        return (f"B{self.B}-C{self.C}-{self.H}x{self.W}-{'cl' if self.channels_last else 'cf'}-{_dname(self.dtype)}"
                f"-{self.act}{'' if self.bias else '-nobias'}-K{self.K}")

    @property
    def shape(self):
        return (self.B, self.H, self.W, self.C) if self.channels_last else (self.B, self.C, self.H, self.W)


def dw_cases() -> list:
    """The CPU set: the brief's C x map pairs (with 1 x W and H x 1 maps) in both layouts, dtype /
    act / bias rotated through; a few K = 1, 5, 7."""
    Cs = (1, 3, 96, 130)
    maps = ((1, 1), (1, 7), (7, 1), (7, 7), (13, 13), (14, 14))
    cases = []
    i = 0
    for C in Cs:
        for H, W in maps:
            if C >= 96 and (H, W) in ((1, 1), (7, 1), (14, 14)):  # the slow ones under the interpreter
                continue
            for cl in (False, True):
                cases.append(DWCase(B=_rotate((1, 2), i), C=C, H=H, W=W, channels_last=cl,
                                    dtype=_rotate(DTYPES, i + cl), act=_rotate(DW_ACTS, i // 2 + cl),
                                    bias=_rotate((True, True, False), i // 3)))
                i += 1
    cases += [DWCase(2, 5, 7, 6, False, torch.float32, "gelu", True, 5),
              DWCase(1, 6, 6, 9, True, torch.float16, "silu", False, 7),
              DWCase(2, 4, 5, 5, True, torch.float32, "none", True, 1)]
    return cases


def dw_gpu_cases() -> list:
    out = []
    for i, (C, H, W) in enumerate(((192, 56, 56), (384, 28, 28), (768, 14, 14), (1536, 7, 7), (3, 57, 31),
                                   (130, 29, 30), (96, 1, 200), (96, 200, 1), (8, 130, 130))):
        for cl in (False, True):
            for dt in DTYPES:
                out.append(DWCase(2, C, H, W, cl, dt, _rotate(DW_ACTS, i + cl), i % 3 != 2))
    return out


def dw_inputs(case: DWCase, device):
    x = torch.randn(case.shape, device=device).to(case.dtype)
    weight = torch.randn(case.C, 1, case.K, case.K, device=device) / case.K
    bias = 0.5 * torch.randn(case.C, device=device) if case.bias else None
    dy = torch.randn(case.shape, device=device).to(case.dtype)
    return x, weight, bias, dy


def check_dwconv2d(impl, case: DWCase, errors: Optional[dict] = None, **blocks):
    """Forward and backward of impl against the float64 reference; blocks: triton's block overrides."""
    if case.K not in impl.dwconv_kernel_sizes:
        pytest.skip(f"impl {impl.name} supports K in {impl.dwconv_kernel_sizes}, not {case.K}")
    x, weight, bias, dy = dw_inputs(case, impl.device)
    y = impl.dwconv2d_fwd(x, weight, bias, case.act, case.channels_last, **blocks)
    assert y.dtype == x.dtype and y.shape == x.shape
    d = lambda t: None if t is None else t.detach().double().requires_grad_()  # noqa: E731
    x64, w64, b64 = d(x), d(weight), d(bias)
    y_ref = dwconv2d(x64, w64, b64, case.act, case.channels_last)
    y_ref.backward(dy.double())
    dx, dw, db = impl.dwconv2d_bwd(dy, x, weight, bias, case.act, case.channels_last, **blocks)
    assert dx.dtype == x.dtype and dx.shape == x.shape
    assert dw.dtype == torch.float32 and dw.shape == weight.shape
    assert (db is None) == (bias is None), "dbias must be None exactly when there is no bias"
    found = {"y": (y, y_ref), "dx": (dx, x64.grad), "dweight": (dw, w64.grad)}
    if bias is not None:
        assert db.dtype == torch.float32 and db.shape == bias.shape
        found["dbias"] = (db, b64.grad)
    for name, (a, e) in found.items():
        if errors is not None:
            errors[(name, case.dtype)] = max(errors.get((name, case.dtype), 0.0), max_rel_err(a, e))
        check(f"{case} {name}", a, e, case.dtype)
