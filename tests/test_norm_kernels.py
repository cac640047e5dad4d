"""Raw add_layer_norm kernels (residual add + LayerNorm over channels) of every impl against the
float64 reference (reference/norms.py), outputs and every gradient; cases, tolerance table and
checks in tests/norm_dwconv_cases.py.

impl "triton" runs on the GPU, or on the CPU under Triton's interpreter (this module turns it on
where there is no CUDA, before triton is imported); impl "cuda" is GPU-only and skipped with the
reason where the compiled kernels are missing. The CPU set is small (the interpreter's cost is per
program); the gpu-marked tests add VMamba stage shapes, C beyond one channels-last chunk and a
determinism check. Worst observed errors on the CPU set (triton, interpreter), max|err| / max(max|ref|, 1):
fp32 <= 9e-7, fp16 <= 6e-4, bf16 <= 1.1e-2 (dx, dbranch; y 7e-3) against the tolerances of the
table in norm_dwconv_cases (1e-5 / 4e-3 / 3e-2).
"""
from __future__ import annotations

from tests.norm_dwconv_cases import triton_interpreter_ready

_TRITON_REASON = triton_interpreter_ready()  # must precede every import of triton

import pytest  # noqa: E402
import torch  # noqa: E402

from models.layers import DropPath, LayerNorm2d  # noqa: E402
from reference import add_layer_norm  # noqa: E402
from tests.conftest import requires_cuda  # noqa: E402
from tests.norm_dwconv_cases import (IMPL_NAMES, LNCase, check_add_layer_norm,  # noqa: E402
                                     check_add_layer_norm_from_y, from_y_cases, ln_cases, ln_gpu_cases, ln_inputs,
                                     load_impl)


@pytest.fixture(params=IMPL_NAMES)
def impl(request):
    return load_impl(request.param, _TRITON_REASON)


@pytest.mark.parametrize("case", ln_cases(), ids=str)
def test_add_layer_norm(impl, case):
    check_add_layer_norm(impl, case)


@pytest.mark.parametrize("x_dtype,branch_dtype", [(torch.float16, torch.float32), (torch.bfloat16, torch.float16),
                                                  (torch.float32, torch.bfloat16)])
def test_public_call_without_grad_keeps_the_branch_rule(impl, x_dtype, branch_dtype):
    """Without grad the public call runs the raw kernel as the op's body (dispatch kind "body_native",
    _library.norm_body_native): bitwise what the custom op's Python body gives, whose rule puts a branch of another
    dtype in x's dtype first (the kernel would otherwise add it unrounded) but reads a 16-bit branch on a float32 x as
    is; and close to the reference."""
    import vmamba_kernels as vk  # noqa: PLC0415
    from vmamba_kernels import dispatch  # noqa: PLC0415
    from vmamba_kernels.op_table import SPECS  # noqa: PLC0415

    g = torch.Generator().manual_seed(3)
    x = torch.randn(2, 6, 5, 40, generator=g).to(impl.device, x_dtype)
    br = torch.randn(2, 6, 5, 40, generator=g).to(impl.device, branch_dtype)
    w, b = torch.rand(40, generator=g).to(impl.device) + 0.5, torch.randn(40, generator=g).to(impl.device)
    y, s = vk.add_layer_norm(x, br, w, b, channels_last=True, impl=impl.name)
    a = SPECS["add_layer_norm"].check(x, br, w, b, channels_last=True)
    y_body, s_body = SPECS["add_layer_norm"].run(dispatch.get_backend(impl.name).body_ops, a)
    assert y.dtype == s.dtype == x_dtype
    assert torch.equal(s, s_body) and torch.equal(y, y_body)
    seen = br if x_dtype == torch.float32 else br.to(x_dtype)  # what the kernel reads
    y_ref, s_ref = add_layer_norm(x.double(), seen.double(), w.double(), b.double(), channels_last=True)
    torch.testing.assert_close(s.double(), s_ref, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(y.double(), y_ref, rtol=2e-2, atol=2e-2)


@pytest.mark.parametrize("case", from_y_cases(), ids=str)
def test_add_layer_norm_from_y(impl, case):
    """The backward from the output (VSSM.set_recompute "norms"): y in place of s, xhat = (y - bias) / weight."""
    check_add_layer_norm_from_y(impl, case)


def _torch_impl():
    from types import SimpleNamespace

    from vmamba_kernels.pytorch import _common

    return SimpleNamespace(name="torch", device="cpu", add_layer_norm_fwd=_common.add_layer_norm_fwd,
                           add_layer_norm_bwd=_common.add_layer_norm_bwd)


@pytest.mark.parametrize("case", from_y_cases(), ids=str)
def test_torch_backend_add_layer_norm_from_y(case):
    check_add_layer_norm_from_y(_torch_impl(), case)


@pytest.mark.parametrize("name", ["torch", "triton"])
def test_from_y_zero_weight_is_finite(name):
    """A zero weight leaves no trace of xhat in y: the clamp keeps the gradients finite (the cuda kernels clamp
    alike: tests/test_cuda_norm_dwconv.py)."""
    impl = _torch_impl() if name == "torch" else load_impl(name, _TRITON_REASON)
    case = LNCase(2, 8, 3, 3, True, torch.float32, "add", True, True, torch.float16, torch.float16)
    x, branch, weight, bias, scale, dy, ds = ln_inputs(case, impl.device)
    weight[3] = 0.0
    y, s, mean, rstd = impl.add_layer_norm_fwd(x, branch, weight, bias, scale, 1e-5, True, torch.float16)
    out = impl.add_layer_norm_bwd(dy, ds, y, weight, bias, None, rstd, scale, True, True, x.dtype, from_y=True)
    for t in out:
        assert torch.isfinite(t).all()


# triton's own block shapes, forced: the channels-last chunk loop at a small C, one chunk holding
# all of a wide C in channels-first, four-pixel blocks (many backward iterations per program)
@pytest.mark.parametrize("case,blocks", [
    (LNCase(2, 70, 5, 7, True, torch.float16, "scaled", True, True), dict(block_p=8, block_c=16)),
    (LNCase(1, 96, 7, 7, False, torch.float32, "add", False, True), dict(block_p=8, block_c=128)),
    (LNCase(2, 5, 3, 5, False, torch.bfloat16, "none", True, True), dict(block_p=4, block_c=2)),
], ids=lambda v: str(v) if isinstance(v, LNCase) else "-".join(f"{k}{n}" for k, n in v.items()))
def test_triton_add_layer_norm_blocks(case, blocks):
    check_add_layer_norm(load_impl("triton", _TRITON_REASON), case, **blocks)


@requires_cuda
@pytest.mark.parametrize("case", ln_gpu_cases(), ids=str)
def test_add_layer_norm_gpu(impl, case):
    check_add_layer_norm(impl, case)


@requires_cuda
@pytest.mark.parametrize("channels_last", [False, True], ids=["cf", "cl"])
def test_add_layer_norm_deterministic(impl, channels_last):
    """The backward is bitwise reproducible (partial sums reduced in a fixed order, no atomics)."""
    case = LNCase(8, 192, 28, 28, channels_last, torch.float16, "scaled", True, True)
    x, branch, weight, bias, scale, dy, ds = ln_inputs(case, "cuda")
    y, s, mean, rstd = impl.add_layer_norm_fwd(x, branch, weight, bias, scale, 1e-5, channels_last, None)
    runs = [impl.add_layer_norm_bwd(dy, ds, s, weight, bias, mean, rstd, scale, True, channels_last, x.dtype)
            for _ in range(3)]
    for other in runs[1:]:
        for a, b, name in zip(runs[0], other, ("dx", "dbranch", "dweight", "dbias")):
            assert torch.equal(a, b), f"{name} differs between runs"


@pytest.mark.parametrize("channels_last", [False, True], ids=["cf", "cl"])
def test_reference_matches_model_path(channels_last):
    """The reference is the model's current unfused path: x + DropPath(branch), then LayerNorm2d
    (channels-first) or nn.LayerNorm (channels-last) from models/layers.py; values and gradients."""
    B, C, H, W = 4, 6, 3, 5
    shape = (B, H, W, C) if channels_last else (B, C, H, W)
    norm = (torch.nn.LayerNorm if channels_last else LayerNorm2d)(C).double()
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    drop = DropPath(0.5).train()
    x = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    branch = torch.randn(shape, dtype=torch.float64, requires_grad=True)
    torch.manual_seed(3)  # a draw with both kept and dropped samples
    dropped = drop(branch)
    scale = (dropped.flatten(1)[:, 0] / branch.flatten(1)[:, 0]).detach()
    assert (scale == 0).any() and (scale != 0).any()
    s_model = x + dropped
    y_model = norm(s_model)
    y_ref, s_ref = add_layer_norm(x, branch, norm.weight, norm.bias, scale, norm.eps, channels_last)
    torch.testing.assert_close(y_ref, y_model, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(s_ref, s_model, rtol=1e-12, atol=1e-12)
    dy, ds = torch.randn_like(y_ref), torch.randn_like(s_ref)
    g_ref = torch.autograd.grad([y_ref, s_ref], [x, branch, norm.weight, norm.bias], [dy, ds])
    g_model = torch.autograd.grad([y_model, s_model], [x, branch, norm.weight, norm.bias], [dy, ds])
    for a, b in zip(g_ref, g_model):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    # no branch: s is x itself
    y0, s0 = add_layer_norm(x, None, norm.weight, norm.bias, None, norm.eps, channels_last)
    assert s0 is x
    torch.testing.assert_close(y0, norm(x), rtol=1e-12, atol=1e-12)
