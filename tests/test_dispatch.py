"""Dispatch: listing, choosing, explaining, defaults, errors; torch.library registration."""
import pytest
import torch

import vmamba_kernels as vk
from vmamba_kernels import dispatch
from vmamba_kernels.dispatch import Backend
from reference import cross_scan_ref
from tests.scan_cases import make_inputs

ALL_IMPLS = {"cuda", "triton", "cupy", "torch", "torch_sequential"}


def test_list_impls_names_every_backend_with_reasons():
    rows = vk.list_impls("selective_scan")
    assert {r["name"] for r in rows} == ALL_IMPLS
    assert [r["priority"] for r in rows] == sorted(r["priority"] for r in rows)
    by = {r["name"]: r for r in rows}
    assert by["torch"]["available"] and by["torch"]["reason"] is None
    fixes = ("pip install", "build", "TRITON_INTERPRET=1", "machine with one", "CUDA build of torch")
    for r in rows:
        if not r["available"]:
            # an unavailable backend says why and how to fix it, never a bare ImportError
            assert r["reason"] and any(f in r["reason"] for f in fixes), r
    assert {r["name"] for r in vk.list_impls("cross_scan")} == ALL_IMPLS
    assert len(vk.list_impls()) == len(ALL_IMPLS)


def test_cuda_backend_unavailable_without_gpu_names_the_missing_gpu():
    if torch.cuda.is_available():
        pytest.skip("this checks the message on a machine without CUDA")
    r = {r["name"]: r for r in vk.list_impls("selective_scan")}["cuda"]
    # the blocker comes first: building the extension would not make it run here
    assert not r["available"] and r["reason"].startswith("no CUDA device is visible"), r["reason"]
    try:
        import vmamba_kernels._C  # noqa: F401
    except ImportError:  # not built: the build command is still named, after the real blocker
        assert "pip install --no-build-isolation -e ." in r["reason"]
    else:
        assert "build the extension" not in r["reason"]


def _fresh(name, module, install_hint, **kw):
    """A Backend object probing `module` now (the registered ones cache their first answer)."""
    return Backend(name=name, priority=99, module=module, install_hint=install_hint, **kw)


def test_installed_triton_without_gpu_names_the_interpreter_not_pip(monkeypatch):
    pytest.importorskip("triton", reason="triton is not installed")
    if torch.cuda.is_available():
        pytest.skip("checks the message on a machine without CUDA")
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    reason = _fresh("triton_probe", "vmamba_kernels.triton.launch", "pip install triton").unavailable_reason()
    assert "no CUDA device is visible" in reason and "TRITON_INTERPRET=1" in reason, reason
    assert "pip install triton" not in reason
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert _fresh("triton_probe2", "vmamba_kernels.triton.launch", "x").unavailable_reason() is None


def test_installed_cupy_without_gpu_names_the_gpu_not_pip(monkeypatch):
    import sys
    import types

    if torch.cuda.is_available():
        pytest.skip("checks the message on a machine without CUDA")
    # CuPy imports (a stand-in module: the probe stops at the missing GPU before touching it)
    monkeypatch.setitem(sys.modules, "cupy", types.ModuleType("cupy"))
    monkeypatch.delitem(sys.modules, "vmamba_kernels.cupy.launch", raising=False)
    reason = _fresh("cupy_probe", "vmamba_kernels.cupy.launch", "pip install cupy-cuda13x").unavailable_reason()
    monkeypatch.delitem(sys.modules, "vmamba_kernels.cupy.launch", raising=False)  # drop the stand-in's module
    assert "pip install cupy" not in reason, reason
    assert ("no CUDA device is visible" in reason) if torch.version.cuda else ("CPU-only" in reason), reason


def test_missing_gpu_only_package_names_the_gpu_first():
    if torch.cuda.is_available():
        pytest.skip("checks the message on a machine without CUDA")
    gpu_only = _fresh("ghost_gpu", "vmamba_kernels.no_such_module", "pip install ghost")
    assert gpu_only.unavailable_reason().startswith("no CUDA device is visible")
    assert gpu_only.unavailable_reason().endswith("pip install ghost")
    anywhere = _fresh("ghost_cpu", "vmamba_kernels.no_such_module", "pip install ghost", devices=("cpu", "cuda"))
    assert anywhere.unavailable_reason().startswith("cannot import vmamba_kernels.no_such_module")


def test_list_impls_prints_a_table_and_stays_a_list():
    rows = vk.list_impls("selective_scan")
    assert isinstance(rows, list) and all(isinstance(r, dict) for r in rows)
    assert [r["name"] for r in rows] == [r["name"] for r in list(rows)]
    text = str(rows)
    lines = text.splitlines()
    assert lines[0].startswith("selective_scan implementations")
    assert lines[1].split() == ["impl", "here", "devices", "dtypes", "d_state", "backward"]
    torch_line = next(ln for ln in lines if ln.split()[:1] == ["torch"])
    assert torch_line.split()[1:3] == ["yes", "cpu,cuda"] and "1-256" in torch_line
    for r in rows:  # every unavailable impl's reason is printed, under its row
        if not r["available"]:
            words = r["reason"].split()
            assert " ".join(words[:4]) in " ".join(text.split())
    assert repr(rows) == text  # at a prompt, too
    assert "implementations, best first" in str(vk.list_impls())


def test_env_default_names_the_variable_when_wrong(monkeypatch):
    monkeypatch.setenv("VMAMBA_KERNELS_IMPL", "bogus")
    with pytest.raises(ValueError, match=r"\$VMAMBA_KERNELS_IMPL='bogus' names no impl; known impls: .*torch"):
        vk.cross_scan(torch.randn(1, 2, 3, 3))
    monkeypatch.setenv("VMAMBA_KERNELS_IMPL", "auto")
    assert vk.get_default_impl() is None


def test_last_choice_records_what_ran():
    x = torch.randn(1, 2, 3, 3)
    vk.cross_scan(x, impl="torch_sequential")
    assert dispatch.last_choice("cross_scan") == "torch_sequential"
    vk.cross_scan(x)
    assert dispatch.last_choice("cross_scan") == "torch"


def test_list_impls_unknown_op():
    with pytest.raises(ValueError, match="unknown op 'scan'"):
        vk.list_impls("scan")


def test_auto_choice_on_cpu_is_torch():
    ins = make_inputs(1, 4, 5, 2, 2, requires_grad=False)
    b = dispatch.choose("selective_scan", vk.validate.check_selective_scan(*ins), None)
    assert b.name == "torch"


def test_named_impl_that_cannot_run_raises_with_reasons_and_alternatives():
    ins = make_inputs(1, 4, 5, 2, 2, requires_grad=False)
    if torch.cuda.is_available():
        pytest.skip("on a GPU machine cuda may be available")
    with pytest.raises(RuntimeError) as e:
        vk.selective_scan(*ins, impl="cuda")
    msg = str(e.value)
    assert "impl 'cuda' cannot run selective_scan" in msg and "Impls that can: torch" in msg
    assert "runs on cuda tensors, not cpu" in msg


def test_unknown_impl():
    x = torch.randn(1, 2, 3, 3)
    with pytest.raises(ValueError, match=r"unknown impl 'fast'; known impls: .*torch"):
        vk.cross_scan(x, impl="fast")


def test_default_impl_and_context_manager():
    ins = make_inputs(1, 4, 5, 2, 2, requires_grad=False)
    args = vk.validate.check_selective_scan(*ins)
    assert vk.get_default_impl() is None
    with vk.use_impl("torch_sequential"):
        assert dispatch.choose("selective_scan", args, None).name == "torch_sequential"
        assert dispatch.choose("selective_scan", args, "torch").name == "torch"  # explicit wins
        with vk.use_impl("torch"):
            assert vk.get_default_impl() == "torch"
        assert vk.get_default_impl() == "torch_sequential"
    assert vk.get_default_impl() is None
    vk.set_default_impl("torch_sequential")
    try:
        assert dispatch.choose("selective_scan", args, None).name == "torch_sequential"
    finally:
        vk.set_default_impl(None)
    with pytest.raises(ValueError, match="unknown impl"):
        vk.set_default_impl("nope")


def test_env_default(monkeypatch):
    monkeypatch.setenv("VMAMBA_KERNELS_IMPL", "torch_sequential")
    assert vk.get_default_impl() == "torch_sequential"


def test_explain_lists_every_impl():
    ins = make_inputs(1, 4, 5, 2, 2, requires_grad=False)
    text = vk.explain("selective_scan", *ins, delta_softplus=True)
    for name in ALL_IMPLS:
        assert name in text
    assert "torch             can run" in text
    assert "impl=None picks: torch" in text
    text = vk.explain("cross_merge", torch.randn(1, 4, 2, 6), 2, 3)
    assert "cross_merge on y" not in text and "H=2, W=3" in text


def _fake_backend(**kw):
    return Backend(name="fake", priority=1, module="vmamba_kernels.pytorch.parallel",
                   install_hint="n/a", devices=("cpu",), **kw)


def test_why_not_reports_each_limit():
    ins = make_inputs(1, 4, 5, 8, 2, dtype=torch.float64)
    args = vk.validate.check_selective_scan(*ins, out_dtype=torch.float64)
    b = _fake_backend(max_dstate=4, supports_backward=False)
    reasons = b.why_not("selective_scan", args)
    text = "; ".join(reasons)
    assert "supports dtypes float32, float16, bfloat16, not float64" in text
    assert "d_state 1..4, not N=8" in text
    assert "has no backward" in text
    assert _fake_backend(ops=("cross_scan",)).why_not("selective_scan", args) == ["does not implement selective_scan"]


def test_missing_module_is_unavailable_with_hint():
    b = Backend(name="ghost", priority=1, module="vmamba_kernels.no_such_module", install_hint="pip install ghost")
    assert not b.available()
    assert "cannot import vmamba_kernels.no_such_module" in b.unavailable_reason()
    assert b.unavailable_reason().endswith("pip install ghost")
    with pytest.raises(RuntimeError, match="impl 'ghost' is not available"):
        b.impl()


def test_registering_twice_is_an_error():
    with pytest.raises(ValueError, match="already registered"):
        dispatch.register_backend(dispatch.get_backend("torch"))


def test_ops_are_registered_in_the_vmamba_kernels_namespace():
    for name in ALL_IMPLS:
        for op in ("selective_scan_fwd", "selective_scan_bwd", "cross_scan", "cross_merge"):
            assert hasattr(getattr(torch.ops.vmamba_kernels, f"{op}_{name}"), "default")


@pytest.mark.parametrize("impl", ["torch", "torch_sequential"])
def test_opcheck_scan(impl):
    ins = [t.detach() for t in make_inputs(2, 4, 7, 3, 2)]
    args = (*ins, True, torch.float32)
    torch.library.opcheck(vk.ops(impl)["scan_fwd"], args)
    ins_nd = [None if t is None else t.detach() for t in make_inputs(2, 4, 7, 3, 2, with_D=False, with_bias=False)]
    torch.library.opcheck(vk.ops(impl)["scan_fwd"], (*ins_nd, False, torch.float32))


@pytest.mark.parametrize("channels_last", [False, True])
def test_opcheck_cross(channels_last):
    ops = vk.ops("torch")
    x = torch.randn(2, 5, 7, 3) if channels_last else torch.randn(2, 3, 5, 7)
    torch.library.opcheck(ops["cross_scan"], (x, "cross2d", channels_last))
    torch.library.opcheck(ops["cross_merge"], (torch.randn(2, 4, 3, 35), 5, 7, "bidi", channels_last))


def test_torch_compile_fullgraph_through_dispatch():
    def f(x, u, delta, A, B, C, D, bias):
        xs = vk.cross_scan(x, impl="torch")
        y = vk.selective_scan(u * xs.sum(), delta, A, B, C, D, bias, delta_softplus=True, impl="torch")
        return vk.cross_merge(y.view(1, 4, 2, 15), 3, 5, impl="torch").sum()

    x = torch.randn(1, 2, 3, 5)
    ins = make_inputs(1, 8, 15, 2, 4)
    compiled = torch.compile(f, fullgraph=True, backend="aot_eager")
    out = compiled(x, *ins)
    ref = f(x, *ins)
    assert torch.allclose(out, ref, rtol=1e-5, atol=1e-5)
    g1 = torch.autograd.grad(out, ins[0])[0]
    g2 = torch.autograd.grad(f(x, *ins), ins[0])[0]
    assert torch.allclose(g1, g2, rtol=1e-5, atol=1e-5)


def test_first_op_call_of_a_process_may_be_inside_torch_compile():
    """A fresh process whose first op call is traced by torch.compile(fullgraph=True): the backends are
    registered at import (dynamo cannot enter the registry's lock a first call would take)."""
    import subprocess
    import sys
    from pathlib import Path

    code = ("import torch, vmamba_kernels as vk\n"
            "from vmamba_kernels import dispatch\n"
            "assert dispatch._LOADED\n"
            "f = torch.compile(lambda x: vk.cross_scan(x, impl='torch').sum(), fullgraph=True, backend='aot_eager')\n"
            "print('OK', float(f(torch.ones(1, 2, 3, 5))))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0 and "OK 120.0" in r.stdout, r.stderr[-3000:]


# ---- choose() hands back the op; vk.ops; typed refusals; capabilities checked as reasons ----------------
def test_choose_returns_the_backends_op_ready_to_call():
    x = torch.randn(2, 3, 5, 7)
    args = vk.validate.check_cross_scan(x, "cross2d", False)
    call = dispatch.choose("cross_scan", args, "torch")
    assert call.name == "torch" and call.backend is dispatch.get_backend("torch")
    assert torch.equal(call(args), cross_scan_ref(x, "cross2d", False))


def test_ops_accessor_returns_the_registered_custom_ops():
    ops = vk.ops("torch_sequential")
    assert set(ops) == {"scan_fwd", "scan_bwd", "cross_scan", "cross_merge", "add_layer_norm_fwd",
                        "add_layer_norm_bwd", "dwconv2d_fwd", "dwconv2d_bwd", "ss2d_core_fwd", "ss2d_core_bwd"}
    assert ops["cross_merge"] is dispatch.get_backend("torch_sequential").library_ops["cross_merge"]
    assert ops["scan_fwd"]._opoverload is torch.ops.vmamba_kernels.selective_scan_fwd_torch_sequential.default
    with pytest.raises(ValueError, match="unknown impl 'nope'"):
        vk.ops("nope")


def test_refusal_is_an_ImplRefused_with_impl_reasons_and_alternatives():
    import pickle

    ins = make_inputs(1, 4, 5, 300, 2, requires_grad=False)  # d_state 300: beyond every backend
    with pytest.raises(vk.ImplRefused) as e:
        vk.selective_scan(*ins, impl="torch")
    err = e.value
    assert isinstance(err, RuntimeError)
    assert (err.impl, err.op, err.can) == ("torch", "selective_scan", [])
    assert err.reasons == ["supports d_state 1..256, not N=300"]
    assert str(err).startswith("impl 'torch' cannot run selective_scan on u (1, 4, 5)")
    assert str(pickle.loads(pickle.dumps(err))) == str(err)
    with pytest.raises(vk.ImplRefused) as e:
        vk.selective_scan(*ins)  # automatic choice: nothing can
    assert e.value.impl is None and e.value.can == [] and str(e.value).startswith("no impl can run selective_scan")
    assert any(r.startswith("torch_sequential: ") for r in e.value.reasons)
    ok = make_inputs(1, 4, 5, 2, 2, requires_grad=False)
    if not torch.cuda.is_available():
        with pytest.raises(vk.ImplRefused) as e:
            vk.selective_scan(*ok, impl="cuda")
        assert e.value.impl == "cuda" and {"torch", "torch_sequential"} <= set(e.value.can)
        assert "runs on cuda tensors, not cpu" in e.value.reasons


def test_backend_whose_module_lacks_raw_kernels_is_unavailable():
    b = Backend(name="empty", priority=1, module="vmamba_kernels.layout", install_hint="n/a", devices=("cpu",))
    assert b.unavailable_reason() == ("vmamba_kernels.layout does not define the raw kernel(s) selective_scan_fwd, "
                                      "selective_scan_bwd, cross_scan_fwd, cross_merge_fwd")
    with pytest.raises(ValueError, match="declares unknown op"):
        dispatch.register_backend(Backend(name="odd", priority=1, module="x", install_hint="n/a", ops=("scan",)))


_LIMITED = {}


@pytest.fixture
def limited_backend():
    """A CPU backend (the torch kernels) that declares a non-deterministic backward and no torch.compile
    support, ranked first while the test runs (its torch.library ops are defined once per process)."""
    b = _LIMITED.get("b")
    if b is None:
        b = _LIMITED["b"] = dispatch.register_backend(Backend(
            name="test_limited", priority=0, module="vmamba_kernels.pytorch.parallel", install_hint="n/a",
            devices=("cpu",), deterministic=False, supports_compile=False))
    dispatch._REGISTRY[b.name] = b
    yield b
    del dispatch._REGISTRY[b.name]


def test_deterministic_mode_refuses_a_nondeterministic_backward(limited_backend):
    ins = make_inputs(1, 4, 5, 2, 2)
    args = vk.validate.check_selective_scan(*ins)
    assert dispatch.choose("selective_scan", args, None).name == "test_limited"
    was = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        assert limited_backend.why_not("selective_scan", args) == [
            "its backward is not deterministic, and torch.use_deterministic_algorithms(True) is set"]
        # the inputs are CPU tensors: the next backend that runs them with a deterministic backward
        assert dispatch.choose("selective_scan", args, None).name == ("triton" if args.device.type == "cpu" and
                                                                       "cpu" in dispatch.get_backend("triton").devices
                                                                       else "torch")
        with pytest.raises(vk.ImplRefused, match="not deterministic"):
            vk.selective_scan(*ins, impl="test_limited")
        assert "not deterministic" in vk.explain("selective_scan", *ins)
        with torch.no_grad():  # no backward to run: nothing to refuse
            vk.selective_scan(*ins, impl="test_limited")
    finally:
        torch.use_deterministic_algorithms(was)
    vk.selective_scan(*ins, impl="test_limited").sum().backward()


def test_compile_tracing_skips_a_backend_without_compile_support(limited_backend, monkeypatch):
    x = torch.randn(1, 2, 3, 5)
    args = vk.validate.check_cross_scan(x, "cross2d", False)
    assert dispatch.choose("cross_scan", args, None).name == "test_limited"  # eager: it wins
    graphs = []

    def record(gm, example_inputs):
        graphs.append(str(gm.graph))
        return gm

    torch._dynamo.reset()
    limited_backend._reason = "unprobed"  # the first probe happens while dynamo traces: a constant, no import traced
    out = torch.compile(lambda t: vk.cross_scan(t), fullgraph=True, backend=record)(x)
    assert torch.equal(out, cross_scan_ref(x, "cross2d", False))
    assert len(graphs) == 1 and "cross_scan_torch" in graphs[0] and "test_limited" not in graphs[0], graphs
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert limited_backend.why_not("cross_scan", args) == ["does not support torch.compile, which is tracing this call"]


def test_probe_is_marked_as_torch_compile_marks_constants():
    def f():
        return None

    torch.compiler.assume_constant_result(f)
    marks = {k for k, v in vars(f).items() if v is True}
    assert marks and all(getattr(dispatch._probe_registered, k, False) for k in marks), marks
