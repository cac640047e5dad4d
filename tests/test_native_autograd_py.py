"""C++ autograd nodes around a Python backend's raw kernels (vmamba_kernels/native_nodes.py, csrc/autograd/
autograd.cpp's register_py_kernels): the triton and cupy backends' calls with grad record their node in C++.

On the CPU, with the compiled extension (CI builds it), the torch backend's raw kernels stand in for triton's: the
node's outputs and every gradient must equal the Python twins' bitwise (the same raw kernels forward and backward),
with optional tensors absent, partial requires_grad, a double backward through the cross ops, last_state detached,
a 16-bit branch converted or not per the backend's mixed_branch, and a raw kernel's exception reaching the caller."""
from __future__ import annotations

import types

import pytest
import torch

import vmamba_kernels as vk
from vmamba_kernels import dispatch, native_nodes

pytestmark = pytest.mark.skipif(native_nodes._extension() is None,
                                reason="the compiled extension (with register_py_kernels) is not built")


@pytest.fixture(scope="module")
def torch_nodes():
    b = dispatch.get_backend("torch")
    ops = native_nodes.autograd_ops(b, force=True)
    assert set(ops) == {"scan_fwd", "cross_scan", "cross_merge", "add_layer_norm_fwd", "dwconv2d_fwd"}
    return b, ops


def _leaves(*ts):
    return [t.detach().clone().requires_grad_(t.requires_grad) for t in ts]


def _grads(outs, leaves, seed=11):
    outs = [o for o in outs if o is not None and o.requires_grad]
    g = torch.Generator().manual_seed(seed)
    cot = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype) for o in outs]
    want = [t for t in leaves if t is not None and t.requires_grad]
    return torch.autograd.grad(outs, want, cot, allow_unused=True)


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x is None) == (y is None)
        if x is not None:
            assert x.dtype == y.dtype and torch.equal(x, y)


def _scan_inputs(dtype, N, has_D, has_bias, grad_mask):
    g = torch.Generator().manual_seed(3)
    wt = torch.float64 if dtype == torch.float64 else torch.float32
    r = lambda *s, dt=dtype: torch.randn(*s, generator=g, dtype=torch.float64).to(dt)  # noqa: E731
    ins = [r(2, 8, 7), r(2, 8, 7) * 0.5, -torch.rand(8, N, generator=g, dtype=torch.float64).to(wt) - 0.5,
           r(2, 2, N, 7), r(2, 2, N, 7), r(8, dt=wt) if has_D else None, r(8, dt=wt) * 0.1 if has_bias else None]
    return [None if t is None else t.requires_grad_(bool(m)) for t, m in zip(ins, grad_mask)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("N,has_D,has_bias,mask", [
    (2, True, True, (1, 1, 1, 1, 1, 1, 1)), (1, False, False, (1, 1, 1, 1, 1, 0, 0)),
    (3, True, False, (0, 1, 0, 1, 0, 1, 0)), (2, False, True, (1, 0, 0, 0, 1, 0, 1))])
def test_scan_node_equals_the_python_twin(torch_nodes, dtype, N, has_D, has_bias, mask):
    b, ops = torch_nodes
    ins = _scan_inputs(dtype, N, has_D, has_bias, mask)
    res = {}
    for path, fn in (("twin", b.grad_ops["scan_fwd"]), ("node", ops["scan_fwd"])):
        leaves = [None if t is None else _leaves(t)[0] for t in ins]
        y, last, aux = fn(*leaves, True, dtype)
        assert y.requires_grad and not last.requires_grad and not aux.requires_grad
        res[path] = ((y, last, aux), _grads([y], leaves))
        if path == "node":
            assert "eager" not in type(y.grad_fn).__name__
    _same(res["twin"][0], res["node"][0])
    _same(res["twin"][1], res["node"][1])


@pytest.mark.parametrize("mode", ["cross2d", "bidi", "unidi"])
@pytest.mark.parametrize("cl", [False, True])
def test_cross_nodes_equal_the_python_twins_with_a_double_backward(torch_nodes, mode, cl):
    b, ops = torch_nodes
    g = torch.Generator().manual_seed(5)
    x0 = torch.randn(2, 3, 4, 5, generator=g, dtype=torch.float64)
    y0 = torch.randn(2, 4, 5 if cl else 3, 20, generator=g, dtype=torch.float64)
    for key, args in (("cross_scan", (mode, cl)), ("cross_merge", (4, 5, mode, cl))):
        inp = x0 if key == "cross_scan" else y0
        outs = {}
        for path, fn in (("twin", b.grad_ops[key]), ("node", ops[key])):
            t = inp.clone().requires_grad_()
            out = fn(t, *args)
            (gx,) = torch.autograd.grad(out, t, torch.ones_like(out) * 0.5, create_graph=True)
            (ggx,) = torch.autograd.grad((gx * gx).sum(), t) if gx.requires_grad else (None,)
            outs[path] = (out, gx, ggx)
        _same(outs["twin"], outs["node"])


@pytest.mark.parametrize("has_branch,has_bias,scale,branch_dtype", [
    (True, True, True, torch.float32), (False, True, False, None), (True, False, False, torch.bfloat16),
    (True, True, False, torch.float16)])
def test_add_layer_norm_node_equals_the_python_twin(torch_nodes, has_branch, has_bias, scale, branch_dtype):
    b, ops = torch_nodes
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 4, 5, 6, generator=g)
    br = torch.randn(2, 4, 5, 6, generator=g).to(branch_dtype) if has_branch else None
    w, bias = torch.randn(6, generator=g), (torch.randn(6, generator=g) if has_bias else None)
    sc = torch.rand(2, generator=g) if scale else None
    res = {}
    for path, fn in (("twin", b.grad_ops["add_layer_norm_fwd"]), ("node", ops["add_layer_norm_fwd"])):
        leaves = [None if t is None else t.clone().requires_grad_() for t in (x, br, w, bias)]
        y, s, mean, rstd = fn(*leaves, sc, 1e-5, True, None)
        outs = [y, s if has_branch else None]
        assert not mean.requires_grad and not rstd.requires_grad
        res[path] = ((y, s, mean, rstd), _grads(outs, leaves))
    _same(res["twin"][0], res["node"][0])
    _same(res["twin"][1], res["node"][1])
    if has_branch:
        assert res["node"][1][1].dtype == branch_dtype  # the branch's gradient in its own dtype


def test_add_layer_norm_node_converts_the_branch_for_a_backend_without_mixed_branch(torch_nodes):
    """mixed_branch False: the raw kernel gets the branch in x's dtype (float32 x, bfloat16 branch), and the branch's
    gradient comes back in bfloat16; mixed_branch True (the torch backend): the raw kernel reads the bfloat16 branch."""
    b, _ = torch_nodes
    seen = []
    mod = b.impl()

    def ln_fwd(x, branch, *rest):
        seen.append(branch.dtype)
        return mod.add_layer_norm_fwd(x, branch, *rest)

    fake_mod = types.SimpleNamespace(**{**{k: getattr(mod, k) for k in native_nodes._KERNELS}, "add_layer_norm_fwd": ln_fwd})
    for mixed, want in ((False, torch.float32), (True, torch.bfloat16)):
        fake = types.SimpleNamespace(name=f"fake{mixed}", _impl=fake_mod, impl=lambda: fake_mod, mixed_branch=mixed,
                                     library_ops={"add_layer_norm_fwd": None})
        ops = native_nodes.autograd_ops(fake, force=True)
        assert set(ops) == {"add_layer_norm_fwd"}
        x = torch.randn(1, 2, 3, 4, requires_grad=True)
        br = torch.randn(1, 2, 3, 4).bfloat16().requires_grad_()
        y, s, _, _ = ops["add_layer_norm_fwd"](x, br, torch.ones(4), None, None, 1e-5, True, None)
        assert seen[-1] == want
        (gb,) = torch.autograd.grad(y.sum() + s.float().sum(), br)
        assert gb.dtype == torch.bfloat16


@pytest.mark.parametrize("act,has_bias,cl", [("silu", True, True), ("none", False, False), ("gelu", True, False)])
def test_dwconv_node_equals_the_python_twin(torch_nodes, act, has_bias, cl):
    b, ops = torch_nodes
    g = torch.Generator().manual_seed(9)
    x = torch.randn(2, 5, 4, 3, generator=g, dtype=torch.float64)
    w = torch.randn(3 if cl else 5, 1, 3, 3, generator=g, dtype=torch.float64)
    bias = torch.randn(w.shape[0], generator=g, dtype=torch.float64) if has_bias else None
    res = {}
    for path, fn in (("twin", b.grad_ops["dwconv2d_fwd"]), ("node", ops["dwconv2d_fwd"])):
        leaves = [None if t is None else t.clone().requires_grad_() for t in (x, w, bias)]
        y = fn(*leaves, act, cl)
        res[path] = ((y,), _grads([y], leaves))
    _same(res["twin"][0], res["node"][0])
    _same(res["twin"][1], res["node"][1])


def test_a_raw_kernels_exception_reaches_the_caller_forward_and_backward(torch_nodes):
    b, _ = torch_nodes
    mod = b.impl()

    def bad_fwd(x, *a):
        raise ValueError("planted forward failure")

    def bad_bwd(*a):
        raise ValueError("planted backward failure")

    fake_mod = types.SimpleNamespace(**{k: getattr(mod, k) for k in native_nodes._KERNELS})
    fake_mod.cross_scan_fwd = bad_fwd
    fake = types.SimpleNamespace(name="bad", _impl=fake_mod, impl=lambda: fake_mod, mixed_branch=True,
                                 library_ops={"cross_scan": None, "dwconv2d_fwd": None})
    ops = native_nodes.autograd_ops(fake, force=True)
    with pytest.raises(ValueError, match="planted forward failure"):
        ops["cross_scan"](torch.randn(1, 2, 3, 4, requires_grad=True), "cross2d", False)
    fake_mod.dwconv2d_bwd = bad_bwd
    x = torch.randn(1, 2, 3, 3, requires_grad=True)
    y = ops["dwconv2d_fwd"](x, torch.randn(2, 1, 3, 3), None, "none", False)
    with pytest.raises(Exception, match="planted backward failure"):
        y.sum().backward()


def test_public_grad_calls_of_a_native_key_backend_take_the_nodes(monkeypatch):
    """A backend with native_key (triton, cupy) records its calls with grad in C++ (stood in for by the torch
    backend); VMAMBA_NATIVE_AUTOGRAD=0 or a missing extension leaves the Python formulas."""
    b = dispatch.get_backend("torch")
    monkeypatch.setattr(b, "native_key", True)
    monkeypatch.setattr(b, "_native", None)
    dispatch.clear_choice_cache()
    try:
        x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
        y = vk.cross_scan(x, impl="torch")
        assert "eager" not in type(y.grad_fn).__name__, type(y.grad_fn).__name__
        y.sum().backward()
        assert torch.equal(x.grad, torch.full_like(x, 4.0))
        monkeypatch.setattr(b, "_native", None)
        monkeypatch.setenv("VMAMBA_NATIVE_AUTOGRAD", "0")
        dispatch.clear_choice_cache()
        assert "eager" in type(vk.cross_scan(x, impl="torch").grad_fn).__name__
        monkeypatch.delenv("VMAMBA_NATIVE_AUTOGRAD")
        monkeypatch.setattr(b, "_native", None)
        monkeypatch.setattr(native_nodes, "_extension", lambda: None)
        dispatch.clear_choice_cache()
        assert "eager" in type(vk.cross_scan(x, impl="torch").grad_fn).__name__
    finally:
        dispatch.clear_choice_cache()


def test_nodes_only_for_ops_whose_raw_kernels_the_module_exports(torch_nodes):
    """An op whose forward or backward raw kernel the module lacks gets no node (its calls keep the Python formula);
    a backend with none of them gets {} and registers nothing."""
    b, _ = torch_nodes
    mod = b.impl()
    fake_mod = types.SimpleNamespace(**{k: getattr(mod, k) for k in native_nodes._KERNELS if k != "dwconv2d_bwd"})
    fake = types.SimpleNamespace(name="partial", _impl=fake_mod, impl=lambda: fake_mod, mixed_branch=True,
                                 library_ops={"dwconv2d_fwd": None, "cross_scan": None, "ss2d_core_fwd": None})
    assert set(native_nodes.autograd_ops(fake, force=True)) == {"cross_scan"}
    fake.library_ops = {"dwconv2d_fwd": None}
    assert native_nodes.autograd_ops(fake, force=True) == {}


def test_bad_kernel_sets_are_refused_with_a_clear_error():
    """A kernel set the extension never registered, or a raw kernel a registered set lacks, raises a RuntimeError that
    says which (never a crash)."""
    C = native_nodes._extension()
    x = torch.randn(1, 2, 3, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match="no kernel set 999"):
        C.cross_scan_pyautograd(999, x, "cross2d", False)
    with pytest.raises(RuntimeError, match="no kernel set -5"):
        C.cross_scan_pyautograd(-5, x, "cross2d", False)
    ks = C.register_py_kernels(None, None, None, None, None, None, None, None, True)
    with pytest.raises(RuntimeError, match="has no raw kernel cross_scan_fwd"):
        C.cross_scan_pyautograd(ks, x, "cross2d", False)


def test_nodes_keep_autograds_rules(torch_nodes):
    """The hand-written nodes keep what torch.autograd.Function gave the earlier ones: a second backward without
    retain_graph fails, an in-place change of a saved input is caught, saved-tensor hooks see every saved tensor,
    forward-mode AD is refused with a clear error, nothing is recorded under no_grad, and the node has a name."""
    b, ops = torch_nodes
    ins = _scan_inputs(torch.float64, 2, True, True, (1,) * 7)
    y = ops["scan_fwd"](*ins, True, torch.float64)[0]
    assert y.grad_fn.name() == "SelectiveScanBackward"
    y.sum().backward()
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.sum().backward()

    ins = _scan_inputs(torch.float64, 2, True, True, (1,) * 7)
    u = ins[0].detach().clone().requires_grad_()
    u2 = u * 1.0  # a non-leaf, changed in place after the call
    y = ops["scan_fwd"](u2, *ins[1:], True, torch.float64)[0]
    u2.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()

    for path, fn in (("twin", b.grad_ops["scan_fwd"]), ("node", ops["scan_fwd"])):
        packed, unpacked = [], []

        def pack(t, packed=packed):
            packed.append(t.shape)
            return t

        def unpack(t, unpacked=unpacked):
            unpacked.append(t.shape)
            return t

        leaves = _leaves(*_scan_inputs(torch.float64, 2, True, True, (1,) * 7))
        with torch.autograd.graph.saved_tensors_hooks(pack, unpack):
            y = fn(*leaves, True, torch.float64)[0]
        y.sum().backward()
        assert len(packed) == 8 and len(unpacked) == 8, (path, packed, unpacked)

    x = torch.randn(1, 2, 3, 4, dtype=torch.float64, requires_grad=True)
    import torch.autograd.forward_ad as fwAD  # noqa: PLC0415
    with fwAD.dual_level():
        xd = fwAD.make_dual(x, torch.ones_like(x))
        with pytest.raises(RuntimeError, match="forward-mode AD .* is not supported"):
            ops["cross_scan"](xd, "cross2d", False)
    with torch.no_grad():
        out = ops["cross_scan"](x, "cross2d", False)
    assert out.grad_fn is None and not out.requires_grad


def test_a_raw_kernel_handing_back_its_input_gets_a_fresh_output(torch_nodes):
    """A Python raw kernel that returns its input (or a view of it) must not have the node's history set on the
    caller's tensor: the output is a copy, the input stays a leaf, and the gradient is the backward kernel's."""
    b, _ = torch_nodes
    mod = b.impl()
    fake_mod = types.SimpleNamespace(**{k: getattr(mod, k) for k in native_nodes._KERNELS})
    fake = types.SimpleNamespace(name="aliasing", _impl=fake_mod, impl=lambda: fake_mod, mixed_branch=True,
                                 library_ops={"dwconv2d_fwd": None})
    ops = native_nodes.autograd_ops(fake, force=True)
    w = torch.zeros(2, 1, 3, 3, dtype=torch.float64)
    w[:, 0, 1, 1] = 1.0  # the identity filter: the input is the right answer
    for ret in (lambda x: x, lambda x: x.view_as(x)):
        fake_mod.dwconv2d_fwd = lambda x, *a, ret=ret: ret(x)
        x = torch.randn(1, 2, 3, 3, dtype=torch.float64, requires_grad=True)
        y = ops["dwconv2d_fwd"](x, w, None, "none", False)
        assert x.is_leaf and x.grad_fn is None and y is not x and y.grad_fn is not None
        assert y.data_ptr() != x.data_ptr() and torch.equal(y, x)
        y.backward(torch.full_like(y, 3.0))
        assert torch.equal(x.grad, torch.full_like(x, 3.0))


@pytest.mark.parametrize("has_branch", [True, False])
def test_a_dropped_graph_frees_the_nodes_outputs(torch_nodes, has_branch):
    """The add + LayerNorm node saves its own output s (with a branch): saved as an output it does not own it, so when
    the caller drops y and s without a backward nothing stays alive (a reference cycle node -> s -> node would keep
    every step's activations)."""
    import gc
    import weakref

    _, ops = torch_nodes
    x = torch.randn(2, 3, 4, 6, requires_grad=True)
    br = torch.randn(2, 3, 4, 6, requires_grad=True) if has_branch else None
    w = torch.randn(6, requires_grad=True)
    y, s, mean, rstd = ops["add_layer_norm_fwd"](x, br, w, None, None, 1e-5, True, None)
    refs = [weakref.ref(t) for t in (y, s, mean, rstd)]
    del y, s, mean, rstd
    gc.collect()
    assert [r() is None for r in refs] == [True] * 4


def test_a_dropped_scan_or_dwconv_graph_frees_its_outputs(torch_nodes):
    """As above for the scan (aux saved, an output without this node's history) and the depthwise conv."""
    import gc
    import weakref

    _, ops = torch_nodes
    outs = list(ops["scan_fwd"](*_scan_inputs(torch.float32, 2, True, True, (1,) * 7), True, torch.float32))
    outs.append(ops["dwconv2d_fwd"](torch.randn(1, 3, 3, 2, requires_grad=True), torch.randn(2, 1, 3, 3), None,
                                    "silu", True))
    refs = [weakref.ref(t) for t in outs]
    del outs
    gc.collect()
    assert [r() is None for r in refs] == [True] * 4
