"""dispatch.prepare: a public call whose argument metadata passed its check before skips the check and the backend
choice, and normalises its arguments exactly as the check does (OpSpec.fast); anything the check reads is in the
key, so bad input is refused every time."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import vmamba_kernels as vk
from vmamba_kernels import dispatch
from vmamba_kernels.op_table import SPECS


def _scan_args(grouped=True, d=True, out=None, softplus=True):
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    B = r(2, 4, 3, 7) if grouped else r(2, 3, 7)
    C = r(2, 4, 3, 7) if grouped else r(2, 3, 7)
    return (r(2, 8, 7), r(2, 8, 7), -torch.rand(8, 3, generator=g), B, C, r(8) if d else None, r(8) if d else None,
            softplus, out)


def _cases():
    x = torch.randn(2, 3, 5, 6)
    xl = torch.randn(2, 5, 6, 3)
    ys = torch.randn(2, 4, 3, 30)
    w, b = torch.randn(3), torch.randn(3)
    yield "selective_scan", _scan_args()
    yield "selective_scan", _scan_args(grouped=False, d=False, out=torch.float64, softplus=False)
    yield "cross_scan", (x, "cross2d", False)
    yield "cross_scan", (xl, "bidi", True)
    yield "cross_merge", (ys, 5, 6, "unidi", False)
    yield "cross_merge", (ys, 5, 6, "cross2d", 1)  # a truthy non-bool layout flag: normalised to True
    yield "add_layer_norm", (x, None, w, None, 1e-5, None, False, None)
    yield "add_layer_norm", (xl, torch.randn(2, 5, 6, 3).bfloat16(), w, b, 1e-6, torch.rand(2), True, torch.float16)
    yield "add_layer_norm", (x, x.clone(), w, b, 1, None, False, None)  # an int eps: normalised to float
    yield "dwconv2d", (x, torch.randn(3, 1, 3, 3), None, "silu", False)
    yield "dwconv2d", (xl, torch.randn(3, 1, 5, 5), torch.randn(3), "gelu", True)
    yield "ss2d_core", (x, torch.randn(4, 2 + 2, 3), torch.randn(4, 3, 2), -torch.rand(12, 1), torch.randn(12),
                        torch.randn(12), "cross2d", False, True, None)
    yield "ss2d_core", (xl, torch.randn(4, 2 + 4, 3), torch.randn(4, 3, 2), -torch.rand(12, 2), None, None, "bidi",
                        True, False, torch.float32)


def _same(a, b):
    if isinstance(a, torch.Tensor):
        return (isinstance(b, torch.Tensor) and a.shape == b.shape and a.stride() == b.stride()
                and a.dtype == b.dtype and a.data_ptr() == b.data_ptr())
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("op,args", list(_cases()), ids=lambda v: v if isinstance(v, str) else "")
def test_fast_normalisation_equals_the_check(op, args):
    s = SPECS[op]
    checked, fast = s.check(*args), s.fast(*args)
    assert type(checked) is type(fast)
    for f in dataclasses.fields(checked):
        assert _same(getattr(checked, f.name), getattr(fast, f.name)), (op, f.name)


def test_every_public_op_has_a_fast_normalisation():
    assert all(s.fast is not None for s in SPECS.values())


def test_second_call_skips_check_and_choice(monkeypatch):
    dispatch.clear_choice_cache()
    args = _scan_args()
    vk.selective_scan(*args[:7], delta_softplus=True, impl="torch")
    calls = []
    real_check, real_choose = SPECS["selective_scan"].check, dispatch.choose
    monkeypatch.setitem(SPECS, "selective_scan", dataclasses.replace(
        SPECS["selective_scan"], check=lambda *a: calls.append("check") or real_check(*a)))
    monkeypatch.setattr(dispatch, "choose", lambda *a: calls.append("choose") or real_choose(*a))
    y = vk.selective_scan(*args[:7], delta_softplus=True, impl="torch")
    assert calls == [] and y.shape == (2, 8, 7)
    assert dispatch.last_choice("selective_scan") == "torch"
    vk.selective_scan(*args[:7], delta_softplus=False, impl="torch")  # another flag: checked again
    assert calls == ["check", "choose"]
    dispatch.clear_choice_cache()
    calls.clear()
    vk.selective_scan(*args[:7], delta_softplus=True, impl="torch")
    assert calls == ["check", "choose"]  # clear_choice_cache forgets the prepared calls too


def _refusals_after_a_good_call():
    """Calls the check refuses, each made right after an accepted call whose arguments differ only in what the
    check reads: every one must still raise."""
    dispatch.clear_choice_cache()
    args = _scan_args()
    vk.selective_scan(*args[:7], delta_softplus=True, impl="torch")
    with pytest.raises(TypeError, match="delta_softplus must be a bool"):
        vk.selective_scan(*args[:7], delta_softplus=1, impl="torch")  # 1 == True, but not a bool
    with pytest.raises(TypeError, match="delta must have u's dtype"):
        vk.selective_scan(args[0], args[1].double(), *args[2:7], delta_softplus=True, impl="torch")
    x = torch.randn(2, 3, 5, 6)
    br, w, sc = torch.randn(2, 3, 5, 6), torch.randn(3), torch.rand(2)
    with torch.no_grad():
        vk.add_layer_norm(x, br, w, branch_scale=sc.requires_grad_(), impl="torch")
    with pytest.raises(ValueError, match="takes no gradient"):  # the same metadata, now with grad enabled
        vk.add_layer_norm(x, br, w, branch_scale=sc, impl="torch")
    vk.add_layer_norm(x, br, w, branch_scale=sc.detach(), impl="torch")
    with pytest.raises(ValueError, match="takes no gradient"):  # only requires_grad differs from the last call
        vk.add_layer_norm(x, br, w, branch_scale=sc, impl="torch")
    vk.cross_merge(torch.randn(2, 4, 3, 30), 5, 6, impl="torch")
    with pytest.raises(ValueError, match="H must be a non-negative int"):
        vk.cross_merge(torch.randn(2, 4, 3, 30), 5.0, 6, impl="torch")


def test_bad_input_is_refused_after_good_input_of_the_same_shapes():
    _refusals_after_a_good_call()


def test_planted_key_without_requires_grad_is_caught(monkeypatch):
    # the Python key (the extension's, active once it is loaded, is planted below)
    monkeypatch.setattr(dispatch, "_NATIVE_KEY", [None])
    real = dispatch._arg_meta
    monkeypatch.setattr(dispatch, "_arg_meta", lambda v: real(v)[:4] if isinstance(v, torch.Tensor) else real(v))
    with pytest.raises(pytest.fail.Exception):
        _refusals_after_a_good_call()


def test_unhashable_argument_goes_to_the_check():
    with pytest.raises(ValueError, match="mode must be one of"):
        vk.cross_scan(torch.randn(1, 2, 3, 3), mode=["cross2d"], impl="torch")


# ---- the native argument key (csrc/common/arg_key.h) -------------------------------------------------------------
def _native_key():
    try:
        from vmamba_kernels import _C
    except ImportError:
        pytest.skip("the compiled extension vmamba_kernels._C is not built")
    return _C.arg_key


def test_native_key_tells_apart_what_the_python_key_does():
    """Arguments whose Python keys differ get different native keys, and arguments with equal metadata (other
    tensors, other values of the same shapes) equal keys."""
    key = _native_key()
    t = torch.randn(2, 3)
    base = (t, None, True, 1, 1.5, "cross2d", torch.float16)
    variants = [
        (torch.randn(3, 2),) + base[1:], (torch.randn(6),) + base[1:], (t.double(),) + base[1:],
        (t.to("meta"),) + base[1:], (t.clone().requires_grad_(),) + base[1:], (torch.nn.Parameter(t),) + base[1:],
        (t, t) + base[2:], (t, None, False) + base[3:], (t, None, 1) + base[3:], (t, None, True, 2) + base[4:],
        (t, None, True, 1.0) + base[4:], (t, None, True, 1, 2.5) + base[5:], (t, None, True, 1, 1.5, "bidi", base[6]),
        base[:6] + (torch.bfloat16,), base[:6] + ("float16",), base[:6], base + (None,),
        (t.to_sparse(),) + base[1:], (torch.randn(3, 2).t(),) + base[1:],  # the same shape, not contiguous
    ]
    keys = [key(base)] + [key(v) for v in variants]
    assert all(isinstance(k, bytes) for k in keys)
    assert len(set(keys)) == len(keys)  # every variant differs from the base and from each other
    same = (torch.zeros(2, 3), None, True, 1, 1.5, "cross" + "2d", torch.float16)
    assert key(same) == keys[0]


def test_native_key_declines_what_it_does_not_encode():
    """None (the caller keys in Python) for tensor subclasses, ints past 64 bits, other objects; a TypeError for
    anything but a tuple."""
    key = _native_key()

    class Sub(torch.Tensor):
        pass

    t = torch.zeros(2)
    for odd in (t.as_subclass(Sub), 2 ** 70, [1], object(), torch.Size([2]), torch.device("cpu"), b"x",
                "s" * 2000):
        assert key((t, odd)) is None, odd
    with pytest.raises(TypeError, match="takes the tuple"):
        key([t])


def test_first_prepared_call_finds_the_native_key_for_any_backend(monkeypatch):
    """A process that never loads the cuda backend (impl="triton" or "cupy": Backend.native_key, turned on for the
    torch backend here) keys its calls natively from its first prepared call on, when the extension is built;
    without it (import planted to fail), in Python, and the calls still run. Looked for once. A backend without
    native_key (torch as shipped) does not look."""
    import sys  # noqa: PLC0415

    x = torch.randn(1, 3, 5, 4)
    monkeypatch.setattr(dispatch, "_NATIVE_KEY", [dispatch._untried])
    dispatch.clear_choice_cache()
    vk.cross_scan(x, impl="torch")
    vk.cross_scan(x, impl="torch")
    assert dispatch._NATIVE_KEY[0] is dispatch._untried  # torch as shipped: no extension loaded for its key
    monkeypatch.setattr(dispatch.get_backend("torch"), "native_key", True)
    for built in (True, False):
        monkeypatch.setattr(dispatch, "_NATIVE_KEY", [dispatch._untried])
        if not built:
            monkeypatch.setitem(sys.modules, "vmamba_kernels._C", None)  # import raises ImportError
        dispatch.clear_choice_cache()
        assert not dispatch.native_arg_key()
        want = vk.cross_scan(x, impl="torch")
        if built:
            expected = _native_key()
            assert dispatch._NATIVE_KEY[0] is expected and dispatch.native_arg_key()
        else:
            assert dispatch._NATIVE_KEY[0] is None and not dispatch.native_arg_key()
        assert torch.equal(vk.cross_scan(x, impl="torch"), want)  # the second call: a prepared one under that key
        assert any(isinstance(k[-1], bytes) == built for k in dispatch._PREPARED)
    dispatch.clear_choice_cache()


@pytest.fixture(params=["python", "native"])
def which_key(request, monkeypatch):
    """Run a test with prepared calls keyed in Python, then by the native key."""
    native = _native_key() if request.param == "native" else None
    monkeypatch.setattr(dispatch, "_NATIVE_KEY", [native])
    dispatch.clear_choice_cache()
    yield request.param
    dispatch.clear_choice_cache()


def test_refusals_after_good_calls_under_either_key(which_key):
    _refusals_after_a_good_call()


def test_planted_native_key_without_requires_grad_is_caught(monkeypatch):
    key = _native_key()
    strip = lambda args: tuple(a.detach() if isinstance(a, torch.Tensor) else a for a in args)  # noqa: E731
    monkeypatch.setattr(dispatch, "_NATIVE_KEY", [lambda args: key(strip(args))])
    dispatch.clear_choice_cache()
    with pytest.raises(pytest.fail.Exception):
        _refusals_after_a_good_call()
    dispatch.clear_choice_cache()


def test_prepared_calls_take_the_path_their_key_decided(which_key):
    """The prepared call of a no-grad key runs the twin's bare body (no autograd node), of a grad key the twin's
    autograd Function; a call under no_grad with inputs that require grad is prepared again (grad mode is in the
    key); the results equal the custom op's."""
    args = _scan_args()
    leaves = [a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args]
    y0 = vk.selective_scan(*args[:7], delta_softplus=True, impl="torch")
    y1 = vk.selective_scan(*leaves[:7], delta_softplus=True, impl="torch")
    assert y0.grad_fn is None and "eager" in type(y1.grad_fn).__name__
    with torch.no_grad():
        y2 = vk.selective_scan(*leaves[:7], delta_softplus=True, impl="torch")
    assert y2.grad_fn is None and not y2.requires_grad
    y3 = vk.selective_scan(*leaves[:7], delta_softplus=True, impl="torch")  # the grad key again, now prepared
    assert "eager" in type(y3.grad_fn).__name__
    ref = vk.ops("torch")["scan_fwd"](*args[:7], True, args[0].dtype)[0]
    for y in (y0, y1, y2, y3):
        assert torch.equal(y, ref)
    g = torch.autograd.grad(y3.sum(), leaves[0])[0]
    g_ref = torch.autograd.grad(vk.ops("torch")["scan_fwd"](*leaves[:7], True, args[0].dtype)[0].sum(), leaves[0])[0]
    assert torch.equal(g, g_ref)


def _noncontiguous(t):
    """t's values in a tensor of t's shape that is not contiguous."""
    return t.transpose(-1, -2).contiguous().transpose(-1, -2) if t.dim() >= 2 and t.shape[-1] > 1 else t


@pytest.mark.parametrize("op,args", list(_cases()))
def test_prepared_calls_of_contiguous_inputs_skip_the_contiguous_calls(which_key, op, args):
    """A key of contiguous inputs prepares the run without .contiguous() calls (OpSpec.run_dense), a key with a
    non-contiguous input the full run; both give the same result. The key holds contiguity, so the second never
    reuses the first's call."""
    s = SPECS[op]
    call, a = dispatch.prepare(op, "torch", args)
    call, a = dispatch.prepare(op, "torch", args)  # the prepared call itself
    assert call.run is s.run_dense
    odd = tuple(_noncontiguous(v) if isinstance(v, torch.Tensor) else v for v in args)
    assert any(isinstance(v, torch.Tensor) and not v.is_contiguous() for v in odd)
    for _ in range(2):
        call2, a2 = dispatch.prepare(op, "torch", odd)
    assert call2.run is s.run
    r1, r2 = call(a), call2(a2)
    for x, y in zip(r1 if isinstance(r1, tuple) else (r1,), r2 if isinstance(r2, tuple) else (r2,)):
        assert torch.equal(x, y)


def test_a_native_key_without_contiguity_keeps_the_contiguous_calls(monkeypatch):
    """An extension built before its key held contiguity: prepared calls must not skip .contiguous() (a later call of
    the same shapes, not contiguous, would reuse them)."""
    key = _native_key()
    blind = lambda args: key(tuple(a.contiguous() if isinstance(a, torch.Tensor) else a for a in args))  # noqa: E731
    monkeypatch.setattr(dispatch, "_NATIVE_KEY", [blind])
    dispatch.clear_choice_cache()
    try:
        assert not dispatch.key_encodes_contiguity()
        args = _scan_args()
        call, _ = dispatch.prepare("selective_scan", "torch", args)
        assert call.run is SPECS["selective_scan"].run
        odd = (_noncontiguous(args[0]),) + args[1:]
        assert torch.equal(vk.selective_scan(*odd[:7], delta_softplus=True, impl="torch"),
                           vk.selective_scan(*args[:7], delta_softplus=True, impl="torch"))
    finally:
        dispatch.clear_choice_cache()
    assert dispatch._keys_contiguity(key) and dispatch._arg_meta(torch.zeros(2, 2)) != dispatch._arg_meta(
        torch.zeros(2, 2).t())
