"""vmamba_kernels._alloc.empty_many: the compiled extension's helper (csrc/common/empty_many.h) makes the same tensors
as torch.empty (shape, dtype, device, contiguous strides) and refuses malformed specs with a clear error; without the
helper, torch.empty per tensor."""
from __future__ import annotations

import pytest
import torch

from vmamba_kernels import _alloc

native = _alloc._native()
needs_native = pytest.mark.skipif(native is None, reason="the compiled extension (with empty_many) is not built")

SPECS = [((1, 384, 196), torch.float16), ((2, 0, 3), torch.float32), ((), torch.bfloat16), (torch.Size([5, 7]),
         torch.float64), ((3, 1, 1, 1, 1, 1, 1, 2), torch.int64), ((0,), torch.bool)]


def _same_kind(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert (x.shape, x.dtype, x.device, x.stride()) == (y.shape, y.dtype, y.device, y.stride())
        assert x.is_contiguous() and not x.requires_grad


@needs_native
def test_native_empty_many_makes_what_torch_empty_makes():
    like = torch.zeros(2, dtype=torch.float16)
    got = native(like, *SPECS)
    _same_kind(got, _alloc.torch_empty_many(like, *SPECS))
    assert len({t.data_ptr() for t in got if t.numel()}) == sum(1 for t in got if t.numel())  # distinct storage
    assert native(like) == ()


@needs_native
@pytest.mark.parametrize("args,err,msg", [
    ((), TypeError, "first argument must be a tensor"),
    (("cpu", ((2,), torch.float32)), TypeError, "first argument must be a tensor"),
    ((torch.zeros(1), ((2,), "float32")), TypeError, r"argument 1 must be a \(shape tuple, torch.dtype\) pair"),
    ((torch.zeros(1), [(2,), torch.float32]), TypeError, "argument 1 must be"),
    ((torch.zeros(1), ((2,), torch.float32), ([2], torch.float32)), TypeError, "argument 2 must be"),
    ((torch.zeros(1), ((2,), torch.float32, 1)), TypeError, "argument 1 must be"),
    ((torch.zeros(1), ((2, -3), torch.float32)), ValueError, "argument 1 has a negative size -3"),
    ((torch.zeros(1), ((2, 1.5), torch.float32)), TypeError, "integer"),
    ((torch.zeros(1), ((2, 1 << 70), torch.float32)), OverflowError, "too large|too big"),
])
def test_native_empty_many_refuses_malformed_specs(args, err, msg):
    with pytest.raises(err, match=msg):
        native(*args)


def _fresh_module():
    """A new copy of vmamba_kernels._alloc, whose empty_many has not been called (the package's may have been)."""
    import importlib.util

    spec = importlib.util.find_spec("vmamba_kernels._alloc")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("with_native", [False, True])
def test_empty_many_binds_its_maker_on_the_first_call(with_native):
    """The first call binds the module's name to the helper, or to torch.empty per tensor where there is none."""
    if with_native and native is None:
        pytest.skip("the compiled extension (with empty_many) is not built")
    mod = _fresh_module()
    if not with_native:
        mod._native = lambda: None
    like = torch.zeros(1)
    _same_kind(mod.empty_many(like, *SPECS), _alloc.torch_empty_many(like, *SPECS))
    assert mod.empty_many is (native if with_native else mod.torch_empty_many)
    _same_kind(mod.empty_many(like, *SPECS), _alloc.torch_empty_many(like, *SPECS))


@needs_native
@pytest.mark.gpu
def test_native_empty_many_on_a_gpu():
    """On the like tensor's CUDA device (the current device may differ), through the caching allocator."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    like = torch.zeros(1, device=f"cuda:{torch.cuda.device_count() - 1}")
    before = torch.cuda.memory_allocated(like.device)
    got = native(like, *SPECS)
    _same_kind(got, _alloc.torch_empty_many(like, *SPECS))
    assert torch.cuda.memory_allocated(like.device) > before


@needs_native
@pytest.mark.gpu
def test_native_empty_many_keeps_torchs_deterministic_fill():
    """Under torch.use_deterministic_algorithms with fill_uninitialized_memory (torch's default), at::empty fills new
    tensors with NaN; empty_on (csrc/common/alloc.h), which skips the dispatcher, takes at::empty then."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    like = torch.zeros(1, device="cuda")
    was, fill = torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory
    native(like, ((1 << 16,), torch.float32))  # leaves non-NaN bytes in the allocator's cache to be reused
    try:
        torch.use_deterministic_algorithms(True)
        torch.utils.deterministic.fill_uninitialized_memory = True
        a, b = native(like, ((1 << 16,), torch.float32), ((3, 5), torch.float16))
        assert torch.isnan(a).all() and torch.isnan(b).all()
    finally:
        torch.use_deterministic_algorithms(was)
        torch.utils.deterministic.fill_uninitialized_memory = fill


def _shares_storage(a, b):
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()


def _disjoint(*ts):
    spans = sorted((t.data_ptr(), t.data_ptr() + t.numel() * t.element_size()) for t in ts)
    return all(end <= start for (_, end), (start, _) in zip(spans, spans[1:]))


@pytest.mark.gpu
def test_cuda_entries_carve_same_lifetime_tensors_from_one_allocation():
    """The cuda scan forward makes last_state and aux from one allocation, the add + LayerNorm forward its mean and
    rstd (csrc/common/alloc.h's empty_shared): plain tensors (not views), contiguous, 16-byte aligned, disjoint;
    the outputs with their own lifetime (y, s) keep their own allocation."""
    from vmamba_kernels.cuda import extension

    if not torch.cuda.is_available() or extension.unavailable_reason() is not None:
        pytest.skip("no CUDA device or no cuda extension")
    g = torch.Generator(device="cuda").manual_seed(0)
    batch, KD, L, N, K = 2, 8, 300, 1, 4
    u = torch.randn(batch, KD, L, device="cuda", generator=g)
    delta = torch.rand(batch, KD, L, device="cuda", generator=g)
    A = -torch.rand(KD, N, device="cuda", generator=g)
    B, C = (torch.randn(batch, K, N, L, device="cuda", generator=g) for _ in range(2))
    y, last, aux = extension.selective_scan_fwd(u, delta, A, B, C, None, None, True, torch.float32)
    assert _shares_storage(last, aux) and not _shares_storage(y, last)
    x = torch.randn(2, 5, 7, 32, device="cuda", generator=g)
    w = torch.randn(32, device="cuda", generator=g)
    yn, s, mean, rstd = extension.add_layer_norm_fwd(x, x.clone(), w, None, None, 1e-5, True, None)
    assert _shares_storage(mean, rstd) and not _shares_storage(yn, mean) and not _shares_storage(s, mean)
    for ts in ((y, last, aux), (yn, s, mean, rstd)):
        assert _disjoint(*ts)
        for t in ts:
            assert t._base is None and t.is_contiguous() and t.data_ptr() % 16 == 0
    # written where the kernels write them: the state after the last step, one aux row per chunk
    y2, last2, _ = extension.selective_scan_fwd(u, delta, A, B, C, None, None, True, torch.float32)
    torch.testing.assert_close(last2, last, rtol=0, atol=0)
    assert torch.isfinite(aux).all() and (aux[:, :, 0] == 0).all()
