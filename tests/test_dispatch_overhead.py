"""The cheap-call machinery of dispatch: eager twins of the torch.library ops, and the cache of choices.

Eager twins (vmamba_kernels/_library.py) must compute exactly what the custom ops compute (outputs and
gradients, bitwise: same bodies, same backward), must be what an eager call runs, and must step aside
wherever torch.library has to be seen (dispatch modes such as the FLOP counter, torch.compile). The
choice cache (dispatch.choose) must be invalidated by everything that changes a choice.
"""
from __future__ import annotations

import time

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import vmamba_kernels as vk
from vmamba_kernels import _library, dispatch, validate
from vmamba_kernels.dispatch import Backend


def _scan_inputs(N=2, dtype=torch.float64, grad=True):
    g = torch.Generator().manual_seed(3)
    wt = torch.float64 if dtype == torch.float64 else torch.float32
    r = lambda *s, dt=dtype: torch.randn(*s, generator=g).to(dt)  # noqa: E731
    ins = [r(2, 8, 7), r(2, 8, 7) * 0.5, -torch.rand(8, N, generator=g).to(wt) - 0.5, r(2, 2, N, 7), r(2, 2, N, 7),
           r(8, dt=wt), r(8, dt=wt) * 0.1]
    return [t.requires_grad_(grad) for t in ins]


def _cases():
    """(op, validated args builder, leaves) for every public op on small float64 CPU inputs."""
    g = torch.Generator().manual_seed(5)
    r = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_()  # noqa: E731
    scan = _scan_inputs()
    x_cs, y_cm = r(2, 3, 4, 5), r(2, 4, 3, 20)
    x_ln, br, w, b = r(2, 4, 5, 6), r(2, 4, 5, 6), r(6), r(6)
    x_dw, wd, bd = r(2, 5, 4, 3), r(3, 1, 3, 3), r(3)
    return [
        ("selective_scan", lambda: validate.check_selective_scan(*scan, True), scan),
        ("cross_scan", lambda: validate.check_cross_scan(x_cs, "bidi", False), [x_cs]),
        ("cross_merge", lambda: validate.check_cross_merge(y_cm, 4, 5, "cross2d", True), [y_cm]),
        ("add_layer_norm", lambda: validate.check_add_layer_norm(x_ln, br, w, b, 1e-5, None, True), [x_ln, br, w, b]),
        ("dwconv2d", lambda: validate.check_dwconv2d(x_dw, wd, bd, "silu", True), [x_dw, wd, bd]),
    ]


def _run(op, make_args, leaves, which):
    args = make_args()
    call = dispatch.choose(op, args, "torch")
    ops = call.backend.eager_ops if which == "eager" else call.backend.library_ops
    out = call.spec.run(ops, args)
    outs = [o for o in (out if isinstance(out, tuple) else (out,)) if o.requires_grad]
    g = torch.Generator().manual_seed(11)
    grads = torch.autograd.grad(outs, leaves, [torch.randn(o.shape, generator=g, dtype=o.dtype) for o in outs])
    return out, grads


@pytest.mark.parametrize("op", [c[0] for c in _cases()])
def test_eager_twin_gives_the_custom_ops_outputs_and_gradients(op):
    (_, make_args, leaves), = [c for c in _cases() if c[0] == op]
    out_e, grads_e = _run(op, make_args, leaves, "eager")
    out_l, grads_l = _run(op, make_args, leaves, "library")
    out_e = out_e if isinstance(out_e, tuple) else (out_e,)
    out_l = out_l if isinstance(out_l, tuple) else (out_l,)
    for a, b in zip(out_e, out_l):
        assert torch.equal(a, b)
        assert a.requires_grad == b.requires_grad
    for a, b in zip(grads_e, grads_l):
        assert torch.equal(a, b)


def test_eager_twins_match_the_custom_ops_under_autocast():
    """float32 inputs under CPU bfloat16 autocast: both paths see the same autocast state in the bodies."""
    for op, make_args, leaves in _cases():
        leaves32 = [t.detach().float().requires_grad_() for t in leaves]

        def make32(op=op, leaves32=leaves32):
            return {
                "selective_scan": lambda: validate.check_selective_scan(*leaves32, True),
                "cross_scan": lambda: validate.check_cross_scan(leaves32[0], "bidi", False),
                "cross_merge": lambda: validate.check_cross_merge(leaves32[0], 4, 5, "cross2d", True),
                "add_layer_norm": lambda: validate.check_add_layer_norm(*leaves32, 1e-5, None, True),
                "dwconv2d": lambda: validate.check_dwconv2d(*leaves32, "silu", True),
            }[op]()

        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_e, grads_e = _run(op, make32, leaves32, "eager")
            out_l, grads_l = _run(op, make32, leaves32, "library")
        for a, b in zip(out_e if isinstance(out_e, tuple) else (out_e,), out_l if isinstance(out_l, tuple) else (out_l,)):
            assert torch.equal(a, b), op
        for a, b in zip(grads_e, grads_l):
            assert torch.equal(a, b), op


def test_public_call_runs_the_twin_and_a_dispatch_mode_runs_the_custom_op():
    ins = _scan_inputs()
    y = vk.selective_scan(*ins, delta_softplus=True, impl="torch")
    assert "eager" in type(y.grad_fn).__name__, type(y.grad_fn).__name__
    with FlopCounterMode(display=False) as counter:  # a TorchDispatchMode: it must see the custom op
        y2 = vk.selective_scan(*ins, delta_softplus=True, impl="torch")
    assert "eager" not in type(y2.grad_fn).__name__
    assert torch.equal(y, y2)
    assert counter.get_total_flops() >= 0
    with torch.no_grad():
        y3 = vk.selective_scan(*ins, delta_softplus=True, impl="torch")
    assert not y3.requires_grad and torch.equal(y3, y)


def test_twins_call_the_c_entry_of_autograd_function_apply(monkeypatch):
    """A twin's autograd apply is the C `_FunctionBase.apply` bound to its Function: a Python `Function.apply`
    layer (torch 2.11's, stood in for here while a twin is made) is not run per call, and the call still records
    the twin's node with its backward."""
    c_entry = torch._C._FunctionBase.__dict__["apply"]
    seen = []

    def python_layer(cls, *args, **kwargs):
        seen.append(cls)
        return c_entry.__get__(None, cls)(*args, **kwargs)

    monkeypatch.setattr(torch.autograd.Function, "apply", classmethod(python_layer))
    key = object()  # stands in for a custom op
    monkeypatch.setattr(_library, "_APPLY", {})
    monkeypatch.setattr(_library, "_BODY", {})
    monkeypatch.setattr(_library, "_EAGER", {})

    def setup(ctx, inputs, out):
        ctx.k = inputs[1]

    _library._twin(key, "probe", lambda x, k: x * k, setup, lambda ctx, g: (g * ctx.k, None))
    x = torch.randn(3, dtype=torch.float64, requires_grad=True)
    for f in (_library.apply_of(key), _library.eager_twin(key)):
        y = f(x, 3.0)
        assert "probe_eager" in type(y.grad_fn).__name__
        (gx,) = torch.autograd.grad(y.sum(), x)
        assert torch.equal(gx, torch.full_like(x, 3.0))
    assert seen == [], "a twin went through the Python Function.apply"


def test_last_state_stays_detached_and_backward_through_the_twin_matches():
    ins = _scan_inputs()
    y, last = vk.selective_scan(*ins, delta_softplus=True, return_last_state=True, impl="torch")
    assert y.requires_grad and not last.requires_grad and last.grad_fn is None


def test_eager_allowed_only_for_plain_eager_calls(monkeypatch):
    t = torch.zeros(1)
    assert _library.eager_allowed(t) and _library.eager_allowed(torch.nn.Parameter(t))
    with FlopCounterMode(display=False):
        assert not _library.eager_allowed(t)
    with torch.device("cpu"):  # a TorchFunctionMode
        assert not _library.eager_allowed(t)

    def inside(x):
        assert not _library.eager_allowed(x)
        return x.sum()

    torch.func.grad(inside)(torch.ones(2))
    torch.jit.trace(inside, torch.ones(2), check_trace=False)  # (the check re-runs it untraced)
    ins = _scan_inputs(dtype=torch.float32, grad=False)
    traced = torch.jit.trace(lambda u: vk.selective_scan(u, *ins[1:], delta_softplus=True, impl="torch"), ins[0],
                             check_trace=False)
    assert "vmamba_kernels::selective_scan_fwd_torch" in str(traced.graph)  # the op, not its body's torch calls
    assert _library.eager_allowed(t)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert not _library.eager_allowed(t)


# ---- the choice cache ------------------------------------------------------------------------------------
_PICKY = {}


@pytest.fixture
def picky():
    """A CPU backend (the torch kernels) ranked first that takes float32 only, d_state <= 2, and has a
    non-deterministic backward: each of dtype, shape, grad + deterministic mode changes whether it runs."""
    b = _PICKY.get("b")
    if b is None:
        b = _PICKY["b"] = dispatch.register_backend(Backend(
            name="test_picky", priority=0, module="vmamba_kernels.pytorch.parallel", install_hint="n/a",
            devices=("cpu",), dtypes=(torch.float32,), max_dstate=2, deterministic=False))
    dispatch._REGISTRY[b.name] = b
    yield b
    del dispatch._REGISTRY[b.name]


def _ran(**kw):
    vk.selective_scan(*_scan_inputs(**{k: v for k, v in kw.items() if k != "impl"}), delta_softplus=True,
                      impl=kw.get("impl"))
    return dispatch.last_choice("selective_scan")


def test_choice_cache_follows_what_changes_the_choice(picky):
    assert _ran(dtype=torch.float32, grad=False) == "test_picky"
    assert _ran(dtype=torch.float32, grad=False) == "test_picky"  # a cache hit
    assert _ran(dtype=torch.float64, grad=False) != "test_picky"  # dtype
    assert _ran(dtype=torch.float32, N=4, grad=False) != "test_picky"  # shape (d_state)
    assert _ran(dtype=torch.float32, grad=False, impl="torch") == "torch"  # impl
    assert _ran(dtype=torch.float32, grad=True) == "test_picky"
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert _ran(dtype=torch.float32, grad=True) != "test_picky"  # deterministic flag, with grad
        assert _ran(dtype=torch.float32, grad=False) == "test_picky"  # no backward: nothing to refuse
    finally:
        torch.use_deterministic_algorithms(was)
    assert _ran(dtype=torch.float32, grad=True) == "test_picky"
    with vk.use_impl("torch"):  # the default impl
        assert _ran(dtype=torch.float32, grad=False) == "torch"
    with pytest.raises(vk.ImplRefused, match="d_state"):  # refusals are not cached: they raise every time
        _ran(dtype=torch.float32, N=4, grad=False, impl="test_picky")
    with pytest.raises(vk.ImplRefused, match="d_state"):
        _ran(dtype=torch.float32, N=4, grad=False, impl="test_picky")


def test_choice_cache_sees_a_backend_removed_from_the_registry(picky):
    assert _ran(dtype=torch.float32, grad=False) == "test_picky"
    del dispatch._REGISTRY[picky.name]
    try:
        assert _ran(dtype=torch.float32, grad=False) != "test_picky"
    finally:
        dispatch._REGISTRY[picky.name] = picky
    assert _ran(dtype=torch.float32, grad=False) == "test_picky"


def test_choice_key_names_every_field_of_an_args_record():
    a = validate.check_cross_scan(torch.zeros(1, 2, 3, 4), "cross2d", False)
    b = validate.check_cross_scan(torch.zeros(1, 2, 3, 4), "unidi", False)
    c = validate.check_cross_scan(torch.zeros(1, 2, 3, 5), "cross2d", False)
    assert a.choice_key() != b.choice_key() and a.choice_key() != c.choice_key()
    s1, s2 = (validate.check_selective_scan(*_scan_inputs(N=n), True) for n in (1, 2))
    assert s1.choice_key() != s2.choice_key()


def test_a_cached_choice_runs_no_support_checks(monkeypatch):
    """The per-call path of a shape seen before: no backend's why_not, no custom op (its Python wrappers are
    what the eager twins avoid)."""
    ins = _scan_inputs(dtype=torch.float32)
    vk.selective_scan(*ins, delta_softplus=True)  # first call: the choice is made and cached
    checks = []
    real = Backend.why_not
    monkeypatch.setattr(Backend, "why_not", lambda self, op, args: checks.append(self.name) or real(self, op, args))
    entered = []
    b = dispatch.get_backend(dispatch.last_choice("selective_scan"))
    op = b.library_ops["scan_fwd"]
    monkeypatch.setitem(b.library_ops, "scan_fwd", lambda *a: entered.append(1) or op(*a))
    y = vk.selective_scan(*ins, delta_softplus=True)
    assert checks == [] and entered == []
    y.sum().backward()
    dispatch.clear_choice_cache()
    vk.selective_scan(*ins, delta_softplus=True)
    assert checks  # after clearing, the choice is made again


def test_time_calls_gpu_branch_runs_with_faked_cuda(monkeypatch):
    """The CUDA-event branch of bench.overhead.time_calls (never taken on a CPU machine) runs: a faked
    torch.cuda stands in for the GPU (a missing import there once failed every GPU row)."""
    from bench import overhead  # noqa: PLC0415

    class FakeEvent:
        def __init__(self, enable_timing=False):
            self.t = 0.0

        def record(self):
            self.t = time.perf_counter()

        def elapsed_time(self, other):
            return (other.t - self.t) * 1e3

    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "_sleep", lambda cycles: None)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    out = overhead.time_calls(lambda: sum(range(100)), "cuda", calls=20, warmup=1)
    assert out["host_us"] > 0 and out["device_us"] == out["device_us"] and out["device_us"] >= 0
