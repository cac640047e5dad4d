"""Autograd recorded in C++ for the cuda backend (csrc/autograd/autograd.cpp, the extension's `autograd_ops`):
dispatch's prepared calls with inputs that require grad take it instead of the Python autograd.Function. On the
GPU (marker `gpu`): outputs and every gradient bitwise equal to the Python twins' (the same kernels, forward and
backward), with partial requires_grad, optional tensors absent, a double backward through the cross ops, and
last_state detached. On any machine: which calls a prepared call sends to a backend's native functions."""
from __future__ import annotations

import pytest
import torch

import vmamba_kernels as vk
from vmamba_kernels import dispatch
from vmamba_kernels.op_table import SPECS

gpu = pytest.mark.gpu


# ---- any machine: the choice of path ----------------------------------------------------------------------------
def test_prepared_grad_calls_take_the_backends_native_autograd(monkeypatch):
    """With a backend module exporting autograd_ops, a call whose inputs require grad runs the native function;
    a call without grad, an empty input and a call under a dispatch mode do not."""
    b = dispatch.get_backend("torch")
    mod = b.impl()
    seen = []
    real = b.grad_ops["cross_scan"]

    def native(x, mode, cl):
        seen.append(tuple(x.shape))
        return real(x, mode, cl)

    monkeypatch.setattr(mod, "autograd_ops", {"cross_scan": native}, raising=False)
    dispatch.clear_choice_cache()
    try:
        x = torch.randn(1, 2, 3, 4, requires_grad=True)
        y = vk.cross_scan(x, impl="torch")
        assert seen == [(1, 2, 3, 4)]
        y.sum().backward()
        assert torch.equal(x.grad, vk.cross_merge(torch.ones_like(y), 3, 4, impl="torch"))
        vk.cross_scan(x.detach(), impl="torch")  # no grad: the body
        with torch.no_grad():
            vk.cross_scan(x, impl="torch")
        vk.cross_scan(torch.zeros(1, 2, 0, 4, requires_grad=True), impl="torch")  # empty: the Python formula
        from torch.utils.flop_counter import FlopCounterMode

        with FlopCounterMode(display=False):  # a dispatch mode: torch.library's op
            vk.cross_scan(x, impl="torch")
        assert seen == [(1, 2, 3, 4)]
        vk.cross_merge(torch.randn(1, 4, 2, 12, requires_grad=True), 3, 4, impl="torch")  # not in autograd_ops
        assert seen == [(1, 2, 3, 4)]
    finally:
        dispatch.clear_choice_cache()


def test_native_autograd_functions_are_bound_with_the_custom_ops_arguments():
    """Any machine with the extension built (CI builds it): every native function takes its custom op's arguments
    (pybind11 would raise a TypeError for a wrong signature) and refuses CPU tensors with the entry point's message;
    they are on unless VMAMBA_CUDA_NATIVE_AUTOGRAD=0."""
    try:
        from vmamba_kernels.cuda import extension
    except ImportError as e:
        pytest.skip(f"vmamba_kernels._C not built ({e})")
    fns = extension.NATIVE_AUTOGRAD_OPS
    assert set(fns) == {"scan_fwd", "cross_scan", "cross_merge", "dwconv2d_fwd", "add_layer_norm_fwd"}
    import os
    assert extension.autograd_ops == ({} if os.environ.get("VMAMBA_CUDA_NATIVE_AUTOGRAD") == "0" else fns)
    r = lambda *s: torch.randn(*s, requires_grad=True)  # noqa: E731
    calls = {
        "scan_fwd": lambda: fns["scan_fwd"](r(1, 4, 8), r(1, 4, 8), -torch.rand(4, 1), r(1, 4, 1, 8), r(1, 4, 1, 8),
                                            None, None, True, torch.float32),
        "cross_scan": lambda: fns["cross_scan"](r(1, 2, 3, 3), "cross2d", False),
        "cross_merge": lambda: fns["cross_merge"](r(1, 4, 2, 9), 3, 3, "bidi", True),
        "dwconv2d_fwd": lambda: fns["dwconv2d_fwd"](r(1, 2, 3, 3), r(2, 1, 3, 3), None, "silu", False),
        "add_layer_norm_fwd": lambda: fns["add_layer_norm_fwd"](r(1, 3, 3, 2), r(1, 3, 3, 2), r(2), None,
                                                                torch.rand(1), 1e-5, True, torch.float16),
    }
    calls["add_norm_node"] = lambda: extension.NATIVE_ADD_NORM_NODE(r(1, 3, 3, 2), None, r(2), r(2), None, 1e-5,
                                                                    True, None, True)
    for key, call in calls.items():
        with pytest.raises(RuntimeError, match="must be a CUDA tensor, got device cpu"):
            call()


# ---- GPU: bitwise against the Python twins ------------------------------------------------------------------------
@pytest.fixture
def cuda_backend(monkeypatch):
    """The cuda backend with its native autograd functions on (the default; VMAMBA_CUDA_NATIVE_AUTOGRAD=0 turns them
    off)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    b = dispatch.get_backend("cuda")
    if not b.available():
        pytest.skip(b.unavailable_reason())
    mod = b.impl()
    assert set(mod.NATIVE_AUTOGRAD_OPS) == {"scan_fwd", "cross_scan", "cross_merge", "dwconv2d_fwd",
                                            "add_layer_norm_fwd"}  # the build has them all
    monkeypatch.setattr(mod, "autograd_ops", mod.NATIVE_AUTOGRAD_OPS)
    dispatch.clear_choice_cache()
    yield b
    dispatch.clear_choice_cache()


def _scan_inputs(dtype, with_d, grads):
    g = torch.Generator(device="cuda").manual_seed(1)
    r = lambda *s, dt=dtype: torch.randn(*s, generator=g, device="cuda").to(dt)  # noqa: E731
    u, delta = r(2, 12, 301), r(2, 12, 301) * 2.0 - 1.0  # delta both sides of softplus' bend
    A = -torch.exp(torch.rand(12, 4, generator=g, device="cuda") * 2.0)
    B, C = r(2, 4, 4, 301), r(2, 4, 4, 301)
    D, bias = (r(12, dt=torch.float32), r(12, dt=torch.float32) * 0.1) if with_d else (None, None)
    ins = [u, delta, A, B, C, D, bias]
    return [t.requires_grad_(i in grads) if t is not None else None for i, t in enumerate(ins)]


def _grads(outs, leaves, seed=2):
    g = torch.Generator(device="cuda").manual_seed(seed)
    cot = [torch.randn(o.shape, generator=g, device="cuda").to(o.dtype) for o in outs]
    need = [t for t in leaves if t is not None and t.requires_grad]
    return torch.autograd.grad(outs, need, cot, allow_unused=True, materialize_grads=True)


def _both(b, op, args):
    """(native outputs, Python twin outputs) of `op`'s run on validated `args`."""
    a = SPECS[op].check(*args)
    call = b.calls[op].prepared(a)
    assert call.ops is not b.grad_ops and any(call.ops[k] is v for k, v in b.impl().autograd_ops.items())
    return SPECS[op].run(call.ops, a), SPECS[op].run(b.grad_ops, a)


@gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("with_d,grads", [(True, range(7)), (False, range(5)), (True, (0,)), (True, (2, 5))])
def test_native_scan_autograd_equals_the_python_twin(cuda_backend, dtype, with_d, grads):
    ins = _scan_inputs(dtype, with_d, set(grads))
    (y_n, last_n), (y_p, last_p) = _both(cuda_backend, "selective_scan", tuple(ins) + (True, None))
    assert torch.equal(y_n, y_p) and torch.equal(last_n, last_p)
    assert y_n.requires_grad and not last_n.requires_grad and last_n.grad_fn is None
    for gn, gp in zip(_grads([y_n], ins), _grads([y_p], ins)):
        assert torch.equal(gn, gp)


@gpu
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("mode", ["cross2d", "bidi"])
def test_native_cross_autograd_equals_the_python_twin_with_a_double_backward(cuda_backend, channels_last, mode):
    g = torch.Generator(device="cuda").manual_seed(3)
    shape = (2, 7, 9, 5) if channels_last else (2, 5, 7, 9)
    x = torch.randn(shape, generator=g, device="cuda").half().requires_grad_()
    (ys_n, ys_p) = _both(cuda_backend, "cross_scan", (x, mode, channels_last))
    assert torch.equal(ys_n, ys_p)
    y = torch.randn(2, 4, 5, 63, generator=g, device="cuda").half().requires_grad_()
    (ym_n, ym_p) = _both(cuda_backend, "cross_merge", (y, 7, 9, mode, channels_last))
    assert torch.equal(ym_n, ym_p)
    for outs_n, outs_p, leaf in ((ys_n, ys_p, x), (ym_n, ym_p, y)):
        cot = torch.randn(outs_n.shape, device="cuda").half().requires_grad_()
        gn = torch.autograd.grad(outs_n, leaf, cot, create_graph=True)[0]
        gp = torch.autograd.grad(outs_p, leaf, cot, create_graph=True)[0]
        assert torch.equal(gn, gp) and gn.requires_grad and gp.requires_grad
        # the backward is recorded too: d/dcot <gn, w> equals the Python path's
        w = torch.randn(gn.shape, device="cuda").half()
        assert torch.equal(torch.autograd.grad(gn, cot, w)[0], torch.autograd.grad(gp, cot, w)[0])


@gpu
@pytest.mark.parametrize("with_bias", [True, False])
@pytest.mark.parametrize("act,channels_last", [("silu", True), ("none", False), ("gelu", True)])
def test_native_dwconv_autograd_equals_the_python_twin(cuda_backend, with_bias, act, channels_last):
    g = torch.Generator(device="cuda").manual_seed(4)
    shape = (2, 9, 11, 16) if channels_last else (2, 16, 9, 11)
    x = torch.randn(shape, generator=g, device="cuda").bfloat16().requires_grad_()
    w = (torch.randn(16, 1, 3, 3, generator=g, device="cuda") * 0.3).requires_grad_()
    bias = torch.randn(16, generator=g, device="cuda").requires_grad_() if with_bias else None
    y_n, y_p = _both(cuda_backend, "dwconv2d", (x, w, bias, act, channels_last))
    assert torch.equal(y_n, y_p)
    leaves = [x, w, bias]
    for gn, gp in zip(_grads([y_n], leaves), _grads([y_p], leaves)):
        assert torch.equal(gn, gp)


def _norm_inputs(g, x_dtype, branch_dtype):
    """x and a branch (None without a branch dtype) of shape (2, 5, 6, 24), channels-last, weight and bias: all
    requiring grad."""
    x = torch.randn(2, 5, 6, 24, generator=g, device="cuda").to(x_dtype).requires_grad_()
    br = (torch.randn(2, 5, 6, 24, generator=g, device="cuda").to(branch_dtype).requires_grad_()
          if branch_dtype is not None else None)
    w = (torch.randn(24, generator=g, device="cuda") + 1.0).requires_grad_()
    return x, br, w, torch.randn(24, generator=g, device="cuda").requires_grad_()


@gpu
@pytest.mark.parametrize("x_dtype,branch_dtype", [(torch.float32, torch.bfloat16), (torch.float16, torch.float16),
                                                  (torch.float32, None), (torch.bfloat16, torch.float32)])
@pytest.mark.parametrize("use", ["y", "s", "both"])
def test_native_add_layer_norm_autograd_equals_the_python_twin(cuda_backend, x_dtype, branch_dtype, use):
    """A branch of x's dtype, a 16-bit branch on a float32 stream (read as is), a float32 branch on a 16-bit stream
    (converted; its gradient comes back in float32), no branch; the loss through y, through s only, through both;
    a drop-path scale (with a branch) and a bias."""
    g = torch.Generator(device="cuda").manual_seed(5)
    x, br, w, b = _norm_inputs(g, x_dtype, branch_dtype)
    scale = torch.rand(2, generator=g, device="cuda") if br is not None else None  # (a scale needs a branch)
    args = (x, br, w, b, 1e-5, scale, True, torch.float16)
    (y_n, s_n), (y_p, s_p) = _both(cuda_backend, "add_layer_norm", args)
    assert torch.equal(y_n, y_p) and torch.equal(s_n, s_p)
    if use == "s" and br is None:
        pytest.skip("without a branch s is x itself")
    outs = {"y": lambda y, s: [y], "s": lambda y, s: [s], "both": lambda y, s: [y, s] if br is not None else [y]}[use]
    leaves = [x, br, w, b]
    grads_n, grads_p = _grads(outs(y_n, s_n), leaves), _grads(outs(y_p, s_p), leaves)
    for gn, gp in zip(grads_n, grads_p):  # (zeros where a leaf is not reached, e.g. w from s)
        assert gn.dtype == gp.dtype and torch.equal(gn, gp)
    if br is not None:
        assert grads_n[1].dtype == br.dtype


@gpu
@pytest.mark.parametrize("x_dtype,branch_dtype", [(torch.float32, torch.bfloat16), (torch.float16, torch.float16),
                                                  (torch.bfloat16, None)])
@pytest.mark.parametrize("from_y", [False, True])
def test_models_norm_node_native_equals_python(cuda_backend, monkeypatch, x_dtype, branch_dtype, from_y):
    """models/norm_node.py's add + LayerNorm with grad: the C++ node (extension.NATIVE_ADD_NORM_NODE) against its
    Python autograd.Function, outputs and gradients bitwise, saving the sum or y (from_y), loss through y and s."""
    from models import norm_node

    def run(native: bool):
        if not native:
            monkeypatch.setattr(norm_node, "_native_node", lambda backend: None)
        x, br, w, b = _norm_inputs(torch.Generator(device="cuda").manual_seed(9), x_dtype, branch_dtype)
        (y, s), name = norm_node.add_norm_node(x, br, w, b, 1e-5, None, True, torch.float16, "cuda", from_y=from_y)
        assert name == "cuda"
        node = type(y.grad_fn).__name__
        outs = [y, s] if br is not None else [y]
        return [y, s], _grads(outs, [x, br, w, b]), node

    got, got_g, node_n = run(True)
    want, want_g, node_p = run(False)
    assert "_AddNorm" not in node_n and "_AddNorm" in node_p, (node_n, node_p)
    for a, b in zip(got + list(got_g), want + list(want_g)):
        assert a.dtype == b.dtype and torch.equal(a, b)


@gpu
def test_public_calls_with_grad_record_the_native_nodes(cuda_backend):
    """Through the public functions: the graph nodes are the C++ ones, and training a step works."""
    ins = _scan_inputs(torch.float16, True, set(range(7)))
    y = vk.selective_scan(*ins, delta_softplus=True, impl="cuda")
    assert "eager" not in type(y.grad_fn).__name__, type(y.grad_fn).__name__
    x = torch.randn(1, 6, 5, 8, device="cuda", requires_grad=True)
    xs = vk.cross_scan(x, channels_last=True, impl="cuda")
    xm = vk.cross_merge(xs, 6, 5, channels_last=True, impl="cuda")
    xm.sum().backward()
    assert torch.equal(x.grad, vk.cross_merge(vk.cross_scan(torch.ones_like(x), channels_last=True, impl="cuda"),
                                              6, 5, channels_last=True, impl="cuda"))


@gpu
def test_the_from_y_node_frees_its_output_when_dropped(cuda_backend):
    """from_y saves the node's own output y. Saved as an output (the node does not own y), it goes with the graph
    when the caller drops y and s without a backward: no reference cycle keeps the step's memory (gc off)."""
    import gc

    from models import norm_node

    x, br, w, b = _norm_inputs(torch.Generator(device="cuda").manual_seed(4), torch.float32, torch.bfloat16)
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    gc.disable()
    try:
        (y, s), name = norm_node.add_norm_node(x, br, w, b, 1e-5, None, True, torch.float16, "cuda", from_y=True)
        assert name == "cuda" and "_AddNorm" not in type(y.grad_fn).__name__
        assert torch.cuda.memory_allocated() > base
        del y, s
        assert torch.cuda.memory_allocated() == base
    finally:
        gc.enable()

