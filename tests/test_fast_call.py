"""The public call in one C++ call (csrc/autograd/fast_call.cpp, dispatch.FAST_CALL): a call whose argument metadata
dispatch.prepare checked before runs straight in the extension's C++ entry.

On the CPU, with the compiled extension (CI builds it), the torch backend is given C++ nodes around its raw kernels
(as triton and cupy have them on a GPU): its prepared calls with grad are then of kind "grad_native", which fast_call
runs natively; other prepared calls get Python entries (the prepared call without dispatch.prepare). Checked: outputs
and every gradient bitwise equal to the Python path's; the second call skips dispatch.prepare; everything the Python
key holds (grad mode, deterministic flag, requires_grad, impl, registry) and every context the Python path treats
differently (dispatch and function modes, torch.jit.trace, functorch, a cleared cache) sends the call back to
dispatch.prepare; an int flag and 3-D B / C get Python entries; the thread's last choice is recorded."""
from __future__ import annotations

import functools
import threading

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

import vmamba_kernels as vk
from vmamba_kernels import dispatch, native_nodes

pytestmark = pytest.mark.skipif(dispatch.extension_function("fast_call") is None or native_nodes._extension() is None,
                                reason="the compiled extension (with fast_call) is not built")


@pytest.fixture
def torch_nodes(monkeypatch):
    """impl "torch" with C++ nodes around its raw kernels, prepared calls keyed natively, fast_call on."""
    b = dispatch.get_backend("torch")
    monkeypatch.setattr(b, "native_key", True)
    monkeypatch.setattr(b, "_native", None)
    saved_key, saved_on = dispatch._NATIVE_KEY[0], dispatch.fast_call_on()
    dispatch.use_native_arg_key(dispatch.extension_function("arg_key"))
    assert dispatch.use_fast_call(True)
    yield b
    dispatch._NATIVE_KEY[0] = saved_key
    dispatch.use_fast_call(saved_on)
    dispatch.clear_choice_cache()


@pytest.fixture
def prepares(monkeypatch):
    """The number of dispatch.prepare calls so far (a list of op names)."""
    seen = []
    real = dispatch.prepare

    def counting(op, impl, args):
        seen.append(op)
        return real(op, impl, args)

    monkeypatch.setattr(dispatch, "prepare", counting)
    return seen


def _r(*s, dtype=torch.float32, scale=1.0, grad=True, device="cpu", seed=[0]):  # noqa: B006 (a counter)
    seed[0] += 1
    g = torch.Generator().manual_seed(seed[0])
    return (torch.randn(s, generator=g, dtype=torch.float64) * scale).to(device, dtype).requires_grad_(grad)


def _cases(dtype, impl="torch", device="cpu", grad=True):
    """(op, the public call on fresh leaves, those leaves)"""
    f32 = torch.float64 if dtype == torch.float64 else torch.float32  # the weights' dtype
    _r = functools.partial(globals()["_r"], device=device, grad=grad)
    u, delta = _r(1, 8, 13, dtype=dtype), _r(1, 8, 13, dtype=dtype, scale=0.5)
    A = (-torch.rand(8, 2, generator=torch.Generator().manual_seed(5)) - 0.5).to(device, f32).requires_grad_(grad)
    B, C = _r(1, 2, 2, 13, dtype=dtype), _r(1, 2, 2, 13, dtype=dtype)
    D, bias = _r(8, dtype=f32), _r(8, dtype=f32, scale=0.1)
    x4, br = _r(2, 5, 7, 6, dtype=dtype), _r(2, 5, 7, 6, dtype=dtype)
    xc = _r(2, 6, 5, 7, dtype=dtype)  # channels first
    w, b = _r(6, dtype=f32, scale=0.2), _r(6, dtype=f32)
    xm = _r(2, 4, 6, 35, dtype=dtype)
    cw = _r(6, 1, 3, 3, dtype=f32, scale=0.3)
    return [
        ("selective_scan", lambda: vk.selective_scan(u, delta, A, B, C, D, bias, True, return_last_state=True,
                                                     impl=impl), [u, delta, A, B, C, D, bias]),
        ("selective_scan", lambda: vk.selective_scan(u, delta, A, B, C, None, None, False, out_dtype=torch.float32,
                                                     impl=impl), [u, delta, A, B, C]),
        ("cross_scan", lambda: vk.cross_scan(x4, "cross2d", channels_last=True, impl=impl), [x4]),
        ("cross_merge", lambda: vk.cross_merge(xm, 5, 7, "bidi", impl=impl), [xm]),
        ("add_layer_norm", lambda: vk.add_layer_norm(x4, br, w, b, 1e-5, channels_last=True, impl=impl),
         [x4, br, w, b]),
        ("add_layer_norm", lambda: vk.add_layer_norm(xc, None, w, None, 1e-6, out_dtype=f32, impl=impl),
         [xc, w]),
        ("dwconv2d", lambda: vk.dwconv2d(xc, cw, b, "silu", channels_last=False, impl=impl), [xc, cw, b]),
    ]


def _outputs(r):
    return [t for t in (r if isinstance(r, tuple) else (r,)) if t is not None]


def _run(call, leaves):
    outs = _outputs(call())
    diff = [o for o in outs if o.requires_grad]
    if not diff:
        return [o.detach() for o in outs], []
    g = torch.Generator().manual_seed(7)
    cot = [torch.randn(o.shape, generator=g, dtype=torch.float64).to(o.dtype) for o in diff]
    grads = torch.autograd.grad(diff, leaves, cot, allow_unused=True)
    return [o.detach() for o in outs], grads


def _same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x is None) == (y is None)
        if x is not None:
            assert x.dtype == y.dtype and x.shape == y.shape and torch.equal(x, y)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fast_call_equals_the_python_path(torch_nodes, prepares, dtype):
    for op, call, leaves in _cases(dtype):
        dispatch.use_fast_call(False)
        want = _run(call, leaves)
        dispatch.use_fast_call(True)
        first = _run(call, leaves)  # checked and prepared in Python, then put in fast_call's table
        stats = dispatch.fast_call_stats()
        again = _run(call, leaves)  # fast_call, natively
        assert dispatch.fast_call_stats()[0] == stats[0] + 1, op
        for got in (first, again):
            _same(got[0], want[0])
            _same(got[1], want[1])


def test_last_choice_is_recorded_per_thread(torch_nodes, prepares):
    op, call, _ = _cases(torch.float32)[2]
    call()
    call()
    dispatch._LAST.choice[op] = "someone else"
    n = len(prepares)
    call()
    assert len(prepares) == n and dispatch.last_choice(op) == "torch"
    seen = {}

    def other():
        call()
        seen["choice"] = dispatch.last_choice(op)

    t = threading.Thread(target=other)
    t.start()
    t.join()
    assert seen["choice"] == "torch"


def _path(prepares, call) -> str:
    """How `call` ran: "native" (fast_call's C++ entry), "entry" (fast_call's Python entry: the prepared call without
    dispatch.prepare) or "prepare" (dispatch.prepare)."""
    n, (nat, py, _) = len(prepares), dispatch.fast_call_stats()
    call()
    after = dispatch.fast_call_stats()
    if len(prepares) > n:
        return "prepare"
    assert after[0] - nat + after[1] - py == 1
    return "native" if after[0] > nat else "entry"


def _calls_python(prepares, call) -> bool:
    return _path(prepares, call) == "prepare"


def test_what_the_key_holds_sends_the_call_to_python(torch_nodes, prepares):
    _, scan, (u, *_) = _cases(torch.float32)[0]
    scan()
    assert not _calls_python(prepares, scan)
    with torch.no_grad():  # grad mode: without grad, torch's prepared call runs its Python body (kind "body")
        assert _path(prepares, scan) == "prepare"
        assert _path(prepares, scan) == "entry"
    det = torch.are_deterministic_algorithms_enabled()
    try:
        torch.use_deterministic_algorithms(not det)
        assert _calls_python(prepares, scan)
    finally:
        torch.use_deterministic_algorithms(det)
    assert not _calls_python(prepares, scan)
    u.requires_grad_(False)  # an input's requires_grad
    assert _calls_python(prepares, scan)
    u.requires_grad_(True)
    with vk.use_impl("torch"):  # the same name, given as the default impl
        x = _r(1, 3, 4, 5)
        assert _calls_python(prepares, lambda: vk.cross_scan(x))
        assert not _calls_python(prepares, lambda: vk.cross_scan(x))
        assert not _calls_python(prepares, lambda: vk.cross_scan(x, impl="torch"))
    with pytest.MonkeyPatch.context() as m:  # the number of registered backends (tests add and remove them by hand)
        m.setitem(dispatch._REGISTRY, "torch twin", dispatch._REGISTRY["torch"])
        assert _calls_python(prepares, scan)
    assert not _calls_python(prepares, scan)
    dispatch.clear_choice_cache()  # forgotten
    assert _calls_python(prepares, scan)
    dispatch.use_fast_call(False)  # off: every call through dispatch.prepare
    assert _calls_python(prepares, scan) and _calls_python(prepares, scan)
    dispatch.use_fast_call(True)
    # B and C (batch, N, L): the Python path's view makes them 4-D, so such calls get a Python entry
    B3 = _r(1, 2, 13)
    A3 = _r(8, 2, scale=0.1) - 1.0
    scan3 = lambda: vk.selective_scan(u, u, A3, B3, B3, impl="torch")  # noqa: E731
    assert _path(prepares, scan3) == "prepare" and _path(prepares, scan3) == "entry"
    with torch.no_grad():
        want = vk.selective_scan(u, u, A3, B3.unsqueeze(1), B3.unsqueeze(1), impl="torch")
    assert torch.equal(scan3().detach(), want)
    # an int flag: the C++ side reads flags as bools, so such a call gets a Python entry (its normaliser converts it)
    x = _r(1, 3, 4, 5)
    flagged = lambda: vk.cross_scan(x, channels_last=1, impl="torch")  # noqa: E731
    assert _path(prepares, flagged) == "prepare" and _path(prepares, flagged) == "entry"
    assert torch.equal(flagged(), vk.cross_scan(x, channels_last=True, impl="torch"))


def test_other_contexts_take_the_python_path(torch_nodes, prepares):
    _, scan, _ = _cases(torch.float32)[0]
    scan()

    class Log(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.ops = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.ops.append(str(func))
            return func(*args, **(kwargs or {}))

    with Log() as log:  # the mode must see the custom op, as on the Python path
        scan()
    assert any("vmamba_kernels" in o for o in log.ops), log.ops[:5]

    class Count(TorchFunctionMode):
        n = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            Count.n += 1
            return func(*args, **(kwargs or {}))

    with Count():
        assert _calls_python(prepares, scan)

    x = _r(1, 3, 4, 5, grad=False)
    vk.cross_scan(x, impl="torch")
    traced = torch.jit.trace(lambda t: vk.cross_scan(t, impl="torch"), (x,), check_trace=False)
    assert "vmamba_kernels" in str(traced.graph)
    y = _r(1, 3, 4, 5, grad=False)
    out = torch.func.vmap(lambda t: vk.cross_scan(t, impl="torch"))(y.unsqueeze(0))
    assert torch.equal(out[0], vk.cross_scan(y, impl="torch"))
    vk.cross_scan(y, impl="torch")  # prepared outside: inside vmap the same call must still take dispatch.prepare
    seen = []
    torch.func.vmap(lambda t: seen.append(_path(prepares, lambda: vk.cross_scan(y, impl="torch"))) or t)(y)
    assert seen == ["prepare"]


def test_bad_arguments_are_refused():
    fast = dispatch.extension_function("fast_call")
    with pytest.raises(ValueError, match="op id"):
        fast(9, None, 1)
    with pytest.raises(ValueError, match="op id"):
        fast(1, None, 1)  # cross_scan takes 3 arguments
    with pytest.raises(TypeError):
        fast()


# the ops each GPU backend's prepared calls run in the extension (cupy has no add + LayerNorm or depthwise conv)
GPU_OPS = {"cuda": {"selective_scan", "cross_scan", "cross_merge", "add_layer_norm", "dwconv2d"},
           "triton": {"selective_scan", "cross_scan", "cross_merge", "add_layer_norm", "dwconv2d"},
           "cupy": {"selective_scan", "cross_scan", "cross_merge"}}


@pytest.mark.gpu
@pytest.mark.parametrize("impl", sorted(GPU_OPS))
@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("dtype", [torch.float16, torch.float32])
def test_gpu_fast_call_equals_the_python_path(prepares, impl, grad, dtype):
    """The backend's own prepared calls through fast_call, bitwise against the Python path: with grad on every GPU
    backend (their C++ nodes), without grad on cuda (its entry points as bodies; triton's and cupy's raw kernels
    stay on the Python path)."""
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    b = dispatch.get_backend(impl)
    if not b.available():
        pytest.skip(b.unavailable_reason())
    saved = dispatch.fast_call_on()
    try:
        for op, call, leaves in _cases(dtype, impl, "cuda", grad):
            if op not in GPU_OPS[impl]:
                continue
            leaves = [t for t in leaves if t.requires_grad]
            dispatch.use_fast_call(False)
            want = _run(call, leaves)
            assert dispatch.use_fast_call(True)
            _run(call, leaves)
            stats = dispatch.fast_call_stats()
            got = _run(call, leaves)
            native = dispatch.fast_call_stats()[0] == stats[0] + 1
            assert native == (grad or impl == "cuda"), op
            _same(got[0], want[0])
            _same(got[1], want[1])
    finally:
        dispatch.use_fast_call(saved)


def test_only_the_extensions_own_functions_are_put(torch_nodes, prepares, monkeypatch):
    """A prepared call that runs anything else (here a Python wrapper around the node, shaped like one: a partial
    with a kernel set) stays on the Python path, so that the wrapper runs every time."""
    real = torch_nodes.native_autograd()["cross_scan"]
    seen = []

    def spy(ks, *args):
        seen.append(ks)
        return real(*args)

    monkeypatch.setattr(torch_nodes, "_native", {**torch_nodes.native_autograd(),
                                                 "cross_scan": functools.partial(spy, real.args[0])})
    dispatch.clear_choice_cache()
    x = _r(1, 3, 4, 5)
    for _ in range(3):
        vk.cross_scan(x, impl="torch")
    assert len(seen) == 3


def test_fast_call_keeps_no_reference_to_its_arguments(torch_nodes, prepares):
    """Native and Python entries hand back new references and keep none of the arguments (refcounts unchanged after
    many calls), and the table is emptied when the prepared calls are forgotten."""
    import sys

    x = _r(1, 3, 4, 5)
    native = lambda: vk.cross_scan(x, impl="torch")  # noqa: E731
    python = lambda: vk.cross_scan(x, channels_last=1, impl="torch")  # noqa: E731 (an int flag: a Python entry)
    for call, path in ((native, "native"), (python, "entry")):
        call()
        assert _path(prepares, call) == path
        before = sys.getrefcount(x)
        for _ in range(200):
            out = call()
        assert sys.getrefcount(out) == 2, path
        del out  # its graph holds x (torch then keeps x's Python object alive from C++: one more reference)
        assert sys.getrefcount(x) == before, path
    assert dispatch.extension_function("fast_call_size")() >= 2
    dispatch.clear_choice_cache()
    assert dispatch.extension_function("fast_call_size")() == 0


def test_ss2d_core_gets_a_python_entry(torch_nodes, prepares):
    """ss2d_core (op id 5, ten arguments) has no native entry: its second call runs the prepared call from fast_call's
    table, equal to the Python path, gradients included."""
    from tests.test_ss2d_core import make_ss2d_inputs

    ins = make_ss2d_inputs(1, 4, 3, 5, 2, 2, channels_last=True)
    call = lambda: vk.ss2d_core(*ins, channels_last=True, impl="torch")  # noqa: E731
    leaves = [t for t in ins if t is not None and t.requires_grad]
    dispatch.use_fast_call(False)
    want = _run(call, leaves)
    dispatch.use_fast_call(True)
    assert _path(prepares, call) == "prepare"
    assert _path(prepares, call) == "entry"
    got = _run(call, leaves)
    _same(got[0], want[0])
    _same(got[1], want[1])
