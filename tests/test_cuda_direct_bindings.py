"""The cuda extension's direct bindings (csrc/module.cpp binding csrc/ops.h's entry points into vmamba_kernels._C)
against the same entry points called through torch.ops.vmamba_cuda (the dispatcher): bitwise equal results for
every raw function of the backend, forward and backward, and the same errors for bad inputs (marker `gpu`); on
any machine, with a stand-in module, that the raw functions take the bindings and fall back to torch.ops. The host
cost of the two paths: `python -m bench.overhead --impls cuda` (paths "raw" and
"raw_dispatcher")."""
from __future__ import annotations

import importlib.util
import os
import sys
import types

import pytest
import torch

from tests.test_cuda_ss2d_core import make_case

gpu = pytest.mark.gpu


def _load_extension_with(monkeypatch, fake_c):
    """vmamba_kernels/cuda/extension.py loaded afresh (under a private name) against `fake_c` standing in for the
    compiled module vmamba_kernels._C: its choice of entry points runs on any machine."""
    import vmamba_kernels
    import vmamba_kernels.cuda  # noqa: F401  (the package its relative imports need)

    monkeypatch.setitem(sys.modules, "vmamba_kernels._C", fake_c)
    monkeypatch.setattr(vmamba_kernels, "_C", fake_c, raising=False)
    path = os.path.join(os.path.dirname(vmamba_kernels.cuda.__file__), "extension.py")
    spec = importlib.util.spec_from_file_location("vmamba_kernels.cuda._extension_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_raw_functions_call_the_direct_bindings(monkeypatch):
    """CPU: with a module that binds cross_scan but not cross_merge (an older or partial build), cross_scan_fwd calls
    the binding, cross_merge_fwd goes to torch.ops.vmamba_cuda and, without that op either, fails naming the rebuild;
    dispatcher_calls() sends cross_scan to torch.ops for its duration only."""
    calls = []
    fake = types.ModuleType("vmamba_kernels._C")
    fake.build_info = lambda: {"scan_chunk": "256"}
    fake.cross_scan = lambda x, mode, cl: calls.append(("direct", mode, cl)) or "direct"
    ext = _load_extension_with(monkeypatch, fake)
    # torch.ops.vmamba_cuda as a build that registered cross_scan only (whatever this machine has built)
    ext._ops = types.SimpleNamespace(cross_scan=lambda x, mode, cl: calls.append(("ops", mode, cl)) or "ops")
    assert ext.has_direct_bindings() and set(ext._DIRECT) == {"cross_scan"}
    assert ext.cross_scan_fwd(torch.zeros(1), "bidi", 1) == "direct"
    assert calls == [("direct", "bidi", True)]  # channels_last handed on as a bool
    with pytest.raises(RuntimeError, match="built without torch.ops.vmamba_cuda.cross_merge"):
        ext.cross_merge_fwd(torch.zeros(1), 2, 2, "cross2d", False)
    with ext.dispatcher_calls():
        assert ext.cross_scan_fwd(torch.zeros(1), "unidi", False) == "ops"
    assert ext.cross_scan_fwd(torch.zeros(1), "cross2d", False) == "direct"
    assert calls == [("direct", "bidi", True), ("ops", "unidi", False), ("direct", "cross2d", False)]


@pytest.fixture(scope="module")
def ext():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    try:
        from vmamba_kernels.cuda import extension
    except ImportError as e:
        pytest.skip(f"vmamba_kernels._C not built ({e})")
    return extension


def _cases(ext):
    """(name, fn) pairs: each fn calls one raw function of the backend on fixed inputs."""
    g = torch.Generator(device="cuda").manual_seed(0)

    def t(*s, dt=torch.float16, scale=1.0, offset=0.0):
        return torch.randn(s, generator=g, device="cuda").mul_(scale).add_(offset).to(dt)

    f32 = torch.float32
    cases = []
    # selective scan: KD = 12 channels in K = 4 groups, d_state 4, L = 37 (one partial chunk)
    u, delta = t(2, 12, 37), t(2, 12, 37, scale=0.5, offset=-1.0)
    A = -torch.rand(12, 4, generator=g, device="cuda") - 0.5
    B, C = t(2, 4, 4, 37), t(2, 4, 4, 37)
    D, bias = t(12, dt=f32), t(12, dt=f32, scale=0.1)
    dout = t(2, 12, 37)
    cases.append(("selective_scan_fwd", lambda: ext.selective_scan_fwd(u, delta, A, B, C, D, bias, True, f32)))
    aux = ext.selective_scan_fwd(u, delta, A, B, C, D, bias, True, torch.float16)[2]
    cases.append(("selective_scan_bwd",
                  lambda: ext.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux)))
    # cross scan / merge, both layouts, odd non-square map
    x_cf, x_cl = t(2, 5, 7, 9, dt=torch.bfloat16), t(2, 7, 9, 5)
    y = t(2, 4, 5, 63)
    cases += [("cross_scan cf", lambda: ext.cross_scan_fwd(x_cf, "cross2d", False)),
              ("cross_scan cl", lambda: ext.cross_scan_fwd(x_cl, "bidi", True)),
              ("cross_merge cf", lambda: ext.cross_merge_fwd(y, 7, 9, "cross2d", False)),
              ("cross_merge cl", lambda: ext.cross_merge_fwd(y, 7, 9, "unidi", True))]
    # add + LayerNorm, channels-last, a branch, drop-path scale; then its backward from the saved statistics
    xn, br = t(2, 5, 6, 24), t(2, 5, 6, 24)
    w, b = t(24, dt=f32, offset=1.0), t(24, dt=f32)
    scale = torch.rand(2, generator=g, device="cuda")
    cases += [("add_layer_norm_fwd", lambda: ext.add_layer_norm_fwd(xn, br, w, b, scale, 1e-5, True, None)),
              ("add_layer_norm_infer", lambda: ext.add_layer_norm_infer(xn, br, w, b, scale, 1e-5, True, f32))]
    _, s, mean, rstd = ext.add_layer_norm_fwd(xn, br, w, b, scale, 1e-5, True, None)
    dy = t(2, 5, 6, 24)
    cases.append(("add_layer_norm_bwd", lambda: ext.add_layer_norm_bwd(dy, None, s, w, b, mean, rstd, scale, True,
                                                                        True, torch.float16)))
    # depthwise conv 3x3 + silu, channels-last
    xc = t(2, 9, 11, 16)
    wc, bc = t(16, 1, 3, 3, dt=f32, scale=0.3), t(16, dt=f32)
    dyc = t(2, 9, 11, 16)
    cases += [("dwconv2d_fwd", lambda: ext.dwconv2d_fwd(xc, wc, bc, "silu", True)),
              ("dwconv2d_bwd", lambda: ext.dwconv2d_bwd(dyc, xc, wc, bc, "silu", True))]
    # the fused SS2D core
    xs, xdbl, dt_w, As, Ds, bs = make_case(2, 10, 7, 9, 1, 3, 4, torch.float16, channels_last=True)
    dys = torch.randn_like(xs)
    cases += [("ss2d_core_fwd",
               lambda: ext.ss2d_core_fwd(xs, xdbl, dt_w, As, Ds, bs, "cross2d", True, True, torch.float16)),
              ("ss2d_core_bwd", lambda: ext.ss2d_core_bwd(xs, xdbl, dt_w, As, Ds, bs, dys, "cross2d", True, True))]
    return cases


def _flat(r):
    return [v for v in (r if isinstance(r, tuple) else (r,)) if v is not None]


@gpu
def test_the_build_has_direct_bindings(ext):
    """A build from these sources binds every op (else the raw functions fall back to torch.ops silently)."""
    assert ext.has_direct_bindings()
    assert set(ext._DIRECT) == {"selective_scan_fwd", "selective_scan_bwd", "cross_scan", "cross_merge",
                                "add_layer_norm_fwd", "add_layer_norm_infer", "add_layer_norm_bwd", "dwconv2d_fwd",
                                "dwconv2d_bwd", "ss2d_core_fwd", "ss2d_core_bwd"}
    ext.cross_scan_fwd(torch.zeros(1, 2, 3, 3, device="cuda"), "cross2d", False)
    assert ext._ENTRY["cross_scan"] is ext._DIRECT["cross_scan"]
    with ext.dispatcher_calls():
        ext.cross_scan_fwd(torch.zeros(1, 2, 3, 3, device="cuda"), "cross2d", False)
        assert ext._ENTRY["cross_scan"] is torch.ops.vmamba_cuda.cross_scan
    assert ext._ENTRY["cross_scan"] is ext._DIRECT["cross_scan"]


@gpu
def test_direct_bindings_equal_the_dispatcher(ext):
    for name, fn in _cases(ext):
        direct = _flat(fn())
        with ext.dispatcher_calls():
            via_ops = _flat(fn())
        assert len(direct) == len(via_ops), name
        for i, (a, b) in enumerate(zip(direct, via_ops)):
            assert a.shape == b.shape and a.dtype == b.dtype and a.device == b.device, (name, i)
            assert torch.equal(a, b), (name, i)


@gpu
def test_direct_bindings_raise_the_same_errors(ext):
    """Bad inputs reaching the entry points (the public API validates before them) raise RuntimeError with the
    entry point's message through both paths, never a crash."""
    with pytest.raises(RuntimeError, match="must be a CUDA tensor"):
        ext._DIRECT["cross_scan"](torch.zeros(1, 3, 4, 4), "cross2d", False)
    x = torch.randn(1, 3, 4, 4, device="cuda")
    u = torch.randn(1, 4, 9, device="cuda")
    A = torch.randn(4, 1, device="cuda")
    Bm = torch.randn(1, 1, 1, 9, device="cuda")
    for ctx in (lambda: torch.enable_grad(), ext.dispatcher_calls):
        with ctx():
            # the entry point's check (direct), or the dispatcher's "no CPU kernel"
            with pytest.raises(RuntimeError, match="must be a CUDA tensor|CPU"):
                ext.cross_scan_fwd(x.cpu(), "cross2d", False)
            with pytest.raises(RuntimeError, match="mode must be one of"):
                ext.cross_merge_fwd(torch.randn(1, 4, 3, 16, device="cuda"), 4, 4, "diag", False)
            with pytest.raises(RuntimeError, match="A"):
                ext.selective_scan_fwd(u, u, A.half(), Bm, Bm, None, None, True, torch.float32)
