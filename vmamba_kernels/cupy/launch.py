"""Raw kernels of impl "cupy": the cuda extension's own kernels (csrc/), compiled at first use by NVRTC
through cupy.RawModule and launched on torch's tensors without copies, chosen by the extension's rules.

- Sources (sources.py): the torch-free csrc headers selective_scan/selective_scan_kernels.cuh and
  cross_scan/cross_scan_kernels.cuh, one kernel template instance per module (name expressions such as
  "vmamba::scan::fwd_n1_kernel<__half, float>"), so a first call compiles only what it launches. Modules
  are cached per (instance, device) in this process (`_MODULES`) and on disk by CuPy (the source text
  carries a digest of the csrc headers, so an edited header is recompiled). `compile_stats()` logs
  every compile with its seconds: the first-call compile time of a model is their sum.
- Launch rules (plan.py): the extension's plan_fwd / plan_bwd / bwd_splits_or (selective_scan.h) and
  plan_cross (cross_scan_body.cuh), transcribed and checked against the C++ on the CPU
  (tests/test_cupy_sources.py); the kernel argument structs (FwdParams, PlaneArgs, ...) have numpy structured
  layouts equal to the C++ ones, and every argument goes to CuPy as a CPointer to its bytes ("kernel arguments"
  below).
- Knobs: tuning.py (`vk.tuning("cupy", ...)`), the extension's knobs with the same meaning.
- Interop: kernel arguments are torch data pointers; launches go to torch's current stream of the
  tensors' device (cupy.cuda.Stream.from_external through the CUDA stream protocol, ExternalStream on
  CuPy < 14), handed to the instance's Function (switching to that device only when it is not the current one).
  Inputs arrive validated.
- Scratch and outputs as the extension allocates them (selective_scan.cpp, cross_scan.cpp); the backward
  is deterministic (fixed-order reductions, no atomics) as there.

Importing this module raises ImportError when CuPy is missing or broken (the Backend turns that into an
"unavailable" reason with the install hint).
"""
from __future__ import annotations

import array
import struct
import threading
import time
from typing import Optional

import numpy as np
import torch

try:
    import cupy  # noqa: F401
except ImportError as e:
    raise ImportError(f"CuPy is not installed ({e})") from e
except Exception as e:  # a broken CuPy install (missing CUDA libraries, ...) must not crash the registry
    raise ImportError(f"CuPy is installed but does not import ({type(e).__name__}: {e})") from e

from .. import _alloc
from ..layout import map_dims, map_shape
from . import plan, sources, tuning

_DT = {torch.float32: "float32", torch.float16: "float16", torch.bfloat16: "bfloat16"}
_MODES = {"cross2d": plan.CROSS2D, "unidi": plan.UNIDI, "bidi": plan.BIDI}

_LOCK = threading.Lock()
_MODULES: dict = {}  # (name expression, device index) -> cupy RawKernel
_STATS = {"compiles": 0, "compile_seconds": 0.0, "log": []}
_DEVICE: dict = {}  # device index -> (SM count, {kernel name: resident warps of fwd_n1_packed_kernel})


# ---- availability -------------------------------------------------------------------------------
def _cupy_cuda_major() -> int:
    return cupy.cuda.runtime.runtimeGetVersion() // 1000


def unavailable_reason() -> Optional[str]:
    """None when CuPy imports, a CUDA device is visible, CuPy's CUDA major matches torch's and the csrc/
    headers are there."""
    if torch.version.cuda is None:
        return ("torch is a CPU-only build (torch.version.cuda is None): CuPy kernels need a CUDA build of torch "
                "and an NVIDIA GPU")
    if not torch.cuda.is_available():
        return ("no CUDA device is visible (CuPy is installed, but its kernels run on NVIDIA GPUs only: use it "
                "on a machine with one; the torch impl runs on the CPU)")
    try:
        cmaj = _cupy_cuda_major()
    except Exception as e:  # noqa: BLE001
        return f"CuPy cannot reach the CUDA runtime ({type(e).__name__}: {e})"
    tmaj = int(torch.version.cuda.split(".")[0])
    if cmaj != tmaj:
        return f"CuPy is built for CUDA {cmaj}.x but torch for CUDA {torch.version.cuda}"
    try:
        cupy.cuda.nvrtc.getVersion()
    except Exception as e:  # noqa: BLE001
        return f"NVRTC is not usable from CuPy ({type(e).__name__}: {e})"
    return sources.missing_reason()


# ---- compiling ----------------------------------------------------------------------------------
def _kernel(header: str, name: str, device_index: int):
    """The RawKernel of instance `name` (a name expression) of `header` on one device, compiled on first
    use (thread-safe). Call inside `cupy.cuda.Device(device_index)`."""
    key = (name, device_index)
    k = _MODULES.get(key)
    if k is not None:
        return k
    with _LOCK:
        k = _MODULES.get(key)
        if k is None:
            t = time.perf_counter()
            mod = cupy.RawModule(code=sources.source(header), options=sources.options(), name_expressions=[name])
            k = mod.get_function(name)  # forces the NVRTC compile (or CuPy's disk cache) and the load now
            _ = k.attributes  # noqa: F841 (loads the function on this device)
            dt = time.perf_counter() - t
            _STATS["compiles"] += 1
            _STATS["compile_seconds"] += dt
            _STATS["log"].append((name, device_index, round(dt, 3)))
            _MODULES[key] = k
    return k


def compile_stats() -> dict:
    """Kernel instances compiled (or loaded from CuPy's disk cache) by this process, the seconds spent, and
    one (name expression, device, seconds) entry per instance."""
    return {"compiles": _STATS["compiles"], "compile_seconds": _STATS["compile_seconds"],
            "log": list(_STATS["log"])}


# ---- launching ----------------------------------------------------------------------------------
def _p(t: Optional[torch.Tensor]) -> int:
    return 0 if t is None else t.data_ptr()


class _StreamRef:
    """A torch stream handle exposed through the CUDA stream protocol (for Stream.from_external)."""

    def __init__(self, ptr: int):
        self.ptr = ptr

    def __cuda_stream__(self):
        return (0, self.ptr)


_STREAMS: dict = {}


def _cupy_stream(ptr: int, device_index: int):
    """CuPy's view of torch's stream `ptr` (cached: wrapping costs more than the small kernels)."""
    key = (ptr, device_index)
    s = _STREAMS.get(key)
    if s is None:
        if len(_STREAMS) > 256:
            _STREAMS.clear()
        if hasattr(cupy.cuda.Stream, "from_external"):  # CuPy >= 14
            s = cupy.cuda.Stream.from_external(_StreamRef(ptr))
        else:
            s = cupy.cuda.ExternalStream(ptr, device_index)
        _STREAMS[key] = s
    return s


_SCALAR = {"i4": np.int32, "i8": np.int64, "?": np.bool_}
_SCALAR_PACK = {"i4": struct.Struct("<i"), "i8": struct.Struct("<q"), "?": struct.Struct("<?")}

# ---- kernel arguments ---------------------------------------------------------------------------
# CuPy turns every kernel argument into a pointer to its bytes (cupy.cuda.function._pointer): a CPointer it takes as
# it is, but a numpy scalar or 0-d array it reads through __array_interface__, which builds a dict (and for a struct
# the dtype's field description) on every call: the top of GPU call 72's profile of raw cupy calls
# (reports/logs/2026-12-07_gpu_call72.md). So launches pass CPointers to bytes this module holds, each argument's
# bytes padded to 8: the per-call head (the addresses, or the scan's struct) in an array.array made per call, the
# plan's scalars and structs once per plan (`_Fixed`).
# The driver reads the bytes while the launch is issued; the caller holds the buffers until then. A CuPy without
# cupy.cuda.function.CPointer gets numpy values, as CuPy's own examples pass them.
try:
    from cupy.cuda.function import CPointer as _CPointer
except ImportError:
    _CPointer = None


def _pad8(b: bytes) -> bytes:
    return b + bytes(-len(b) % 8)


def _pointers(parts) -> tuple:
    """(buffer, CPointers to each part's bytes in it): the parts' bytes, each padded to 8, in one array.array."""
    buf = array.array("B", b"".join(map(_pad8, parts)))
    base, pos, ptrs = buf.buffer_info()[0], 0, []
    for part in parts:
        ptrs.append(_CPointer(base + pos))
        pos += len(part) + (-len(part) % 8)
    return buf, tuple(ptrs)


def _address_args(*addrs: int) -> tuple:
    """(buffer to hold, kernel arguments) for device addresses passed by value (uint64)."""
    if _CPointer is None:
        return None, tuple(np.uint64(a) for a in addrs)
    buf = array.array("Q", addrs)
    base = buf.buffer_info()[0]
    return buf, tuple(_CPointer(base + 8 * i) for i in range(len(addrs)))


def _struct_arg(data: bytes, dtype: np.dtype) -> tuple:
    """(buffer to hold, kernel arguments) for one struct passed by value, given its bytes."""
    if _CPointer is None:
        return None, (np.frombuffer(data, dtype=dtype).reshape(()),)
    buf = array.array("B", data)
    return buf, (_CPointer(buf.buffer_info()[0]),)


class _Fixed:
    """The arguments of a launch after its head (`Launch.extra`: typed scalars ("i4", v) and struct values), made
    once per plan: `args` are CPointers into `buf` (or the numpy values without CPointer)."""

    __slots__ = ("buf", "args")

    def __init__(self, extra: tuple):
        if _CPointer is None:
            self.buf = None
            self.args = tuple(_SCALAR[e[0]](e[1]) if isinstance(e, tuple) else e for e in extra)
            return
        parts = [_SCALAR_PACK[e[0]].pack(e[1]) if isinstance(e, tuple) else e.tobytes() for e in extra]
        self.buf, self.args = _pointers(parts) if parts else (None, ())


# torch's current stream of a device as a raw handle, without building a torch.cuda.Stream object per call (what
# Triton's driver reads too); the public spelling where a torch build lacks it
_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None) or (
    lambda idx: torch.cuda.current_stream(idx).cuda_stream)


# (instance name, device index) -> [CuPy Function of the instance on that device, dynamic shared memory opted in]
_FUNCS: dict = {}


def _function(header: str, name: str, idx: int, smem: int) -> list:
    """The instance's CuPy Function on device `idx`, compiled or loaded on first use, with at least `smem` bytes of
    dynamic shared memory allowed (the opt-in above 48 KB, as the extension makes it)."""
    entry = _FUNCS.get((name, idx))
    if entry is None or entry[1] < smem:
        with cupy.cuda.Device(idx):
            kernel = _kernel(header, name, idx)
            if smem > 48 * 1024 and kernel.max_dynamic_shared_size_bytes < smem:
                kernel.max_dynamic_shared_size_bytes = smem
            entry = _FUNCS[(name, idx)] = [kernel.kernel, max(smem, entry[1] if entry else 0)]
    return entry


def _run(header: str, name: str, launch: plan.Launch, args: tuple, idx: int):
    """Launch instance `name` with kernel arguments `args` (the call's head, then the plan's `_Fixed` args) on
    torch's current stream of device `idx`. The launch goes to the instance's Function with the stream given, not
    through RawKernel's per-device lookup inside `with Device(...)` and `with stream` (a device query and set and a
    stream push and pop per launch, host work the small kernels wait on); the device is switched only when it is
    not the current one."""
    if launch.grid[0] == 0:
        return
    fn = _function(header, name, idx, launch.smem)[0]
    stream = _cupy_stream(_raw_stream(idx), idx)
    if cupy.cuda.runtime.getDevice() == idx:
        fn(launch.grid, launch.block, args, launch.smem, stream)
    else:
        with cupy.cuda.Device(idx):
            fn(launch.grid, launch.block, args, launch.smem, stream)


def _sms(idx: int) -> int:
    d = _DEVICE.get(idx)
    if d is None:
        d = _DEVICE[idx] = (torch.cuda.get_device_properties(idx).multi_processor_count, {})
    return d[0]


def _resident_warps(name: str, idx: int) -> int:
    """SMs x resident blocks of fwd_n1_packed_kernel instance `name` x kFwdWarps (the extension's
    occupancy query in packed_resident_warps), cached per device."""
    sms = _sms(idx)
    cache = _DEVICE[idx][1]
    w = cache.get(name)
    if w is None:
        fw = plan.constants()["kFwdWarps"]
        with cupy.cuda.Device(idx):
            k = _kernel(sources.SCAN_HEADER, name, idx)
            try:
                nb = cupy.cuda.driver.occupancyMaxActiveBlocksPerMultiprocessor(k.kernel.ptr, fw * 32, 0)
            except Exception:  # noqa: BLE001 (an older CuPy without the query: one block per SM)
                nb = 1
        w = cache[name] = max(1, sms * max(int(nb), 1) * fw)
    return w


# ---- selective scan -----------------------------------------------------------------------------
# A call's configuration (shapes, dtypes, flags, knobs, device, and for the forward the addresses' alignment, which
# the packed kernel's access width depends on) -> its launches, instance names and struct with the non-address
# fields filled: planning and packing ~25 fields in Python cost more than the small kernels run
# (reports/logs/2026-12-05_host_cost_cpu.md); a call then only fills in its addresses.
_SCAN_PLANS: dict = {}


def _remember(key, value):
    if len(_SCAN_PLANS) >= 4096:
        _SCAN_PLANS.clear()
    _SCAN_PLANS[key] = value
    return value


def _fwd_config(batch, KD, L, N, K, t, o, softplus, k, idx, addrs):
    """(Launch, instance name, FWD_PARAMS Record with every field but the addresses, the launch's _Fixed args)."""
    warps = 1
    if N == 1 and plan.packed_rows_knob(k) <= 0:
        warps = _resident_warps(sources.scan_fwd_name("fwd_n1_packed_kernel", t, o), idx)
    lp = plan.fwd_plan(batch, KD, L, N, K, t, o, addrs, warps, k)
    params = plan.Record(
        plan.FWD_PARAMS, batch=batch, KD=KD, L=L, G=KD // K, N=N, K=K, lpr=plan.lanes_per_row(L),
        softplus=bool(softplus), dtype=plan.DTYPE_CODE[t], out_dtype=plan.DTYPE_CODE[o],
        kd_div=plan.fast_divmod(KD), g_div=plan.fast_divmod(KD // K), seq_min_rows=plan.seq_min_rows(k),
        packed_rows=plan.packed_rows_knob(k), bc_bstride=K * N * L, bc_gstride=N * L)  # B, C made contiguous
    return lp, sources.scan_fwd_name(lp.kernel, t, o, *lp.targs[2:]), params, _Fixed(lp.extra)


def selective_scan_fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype):
    u, delta, A, B, C = (t.contiguous() for t in (u, delta, A, B, C))
    batch, KD, L = u.shape
    N, K = A.shape[1], B.shape[1]
    dev = u.device
    direct = out_dtype in (torch.float32, u.dtype)  # the kernels write these; any other: fp32, then converted
    f32 = torch.float32
    out, last, aux = _alloc.empty_many(u, ((batch, KD, L), out_dtype if direct else f32), ((batch, KD, N), f32),
                                       ((batch, KD, plan.num_chunks(L), N), f32))
    if L == 0:
        last.zero_()  # no steps: the state stays 0
    rows = batch * KD
    if rows == 0:
        return out.to(out_dtype), last, aux
    if rows >= 1 << 31:
        raise RuntimeError(f"cupy selective_scan_fwd: batch * KD = {rows} rows: at most 2^31 - 1 rows per call")
    k = tuning.knobs()
    t, o = _DT[u.dtype], _DT[out.dtype]
    idx = dev.index if dev.index is not None else torch.cuda.current_device()
    a = (u.data_ptr(), delta.data_ptr(), B.data_ptr(), C.data_ptr(), out.data_ptr())
    key = ("fwd", batch, KD, L, N, K, t, o, bool(delta_softplus), k, idx, a[0] & 15, a[1] & 15, a[2] & 15, a[3] & 15,
           a[4] & 15)
    got = _SCAN_PLANS.get(key)
    if got is None:
        got = _remember(key, _fwd_config(batch, KD, L, N, K, t, o, delta_softplus, k, idx,
                                         dict(zip(("u", "delta", "B", "C", "out"), a))))
    lp, name, rec, fixed = got
    # FwdParams' addresses in field order: u, delta, A, B, C, D, delta_bias, out, last_state, aux
    hold, head = _struct_arg(rec.fill_addresses(a[0], a[1], A.data_ptr(), a[2], a[3], _p(D), _p(delta_bias), a[4],
                                                last.data_ptr(), aux.data_ptr()), plan.FWD_PARAMS)
    _run(sources.SCAN_HEADER, name, lp, head + fixed.args, idx)
    del hold
    return (out if direct else out.to(out_dtype)), last, aux


def selective_scan_bwd(u, delta, A, B, C, D, delta_bias, delta_softplus, dout, aux):
    u, delta, A, B, C = (t.contiguous() for t in (u, delta, A, B, C))
    batch, KD, L = u.shape
    N, K = A.shape[1], B.shape[1]
    G = KD // K
    dev = u.device
    if dout.dtype not in (torch.float32, u.dtype):
        dout = dout.float()
    dout = dout.contiguous()
    nch = plan.num_chunks(L)
    if tuple(aux.shape) != (batch, KD, nch, N):
        raise RuntimeError(f"cupy selective_scan_bwd: aux has shape {tuple(aux.shape)}, expected "
                           f"{(batch, KD, nch, N)} (was the forward run by another impl?)")
    aux = aux.contiguous()
    f32 = torch.float32
    # dD / dbias (KD floats each) are made with the rest whether or not D / delta_bias are given
    du, ddelta, dA, dB, dC, dD, dbias = _alloc.empty_many(
        u, (u.shape, u.dtype), (delta.shape, delta.dtype), ((KD, N), f32), (B.shape, B.dtype), (C.shape, C.dtype),
        ((KD,), f32), ((KD,), f32))
    dD = dD if D is not None else None
    dbias = dbias if delta_bias is not None else None
    if KD == 0:
        return du, ddelta, dA, dB, dC, dD, dbias
    k = tuning.knobs()
    idx = dev.index if dev.index is not None else torch.cuda.current_device()
    t, d = _DT[u.dtype], _DT[dout.dtype]
    key = ("bwd", batch, KD, L, N, K, t, d, bool(delta_softplus), k, idx)
    got = _SCAN_PLANS.get(key)
    if got is None:
        got = _remember(key, _bwd_config(batch, KD, L, N, K, t, d, delta_softplus, k, idx))
    S, launches, rec = got
    acc, part = _alloc.empty_many(u, ((2, S, batch, K, N, L), f32), ((batch, KD, N + 2), f32))
    rows = batch * KD
    acc_b = acc.data_ptr()
    acc_c = acc_b + 4 * S * batch * K * N * L
    pa = part.data_ptr()
    # BwdParams' addresses in field order (u .. partBias)
    hold, params = _struct_arg(rec.fill_addresses(
        _p(u), _p(delta), _p(A), _p(B), _p(C), _p(D), _p(delta_bias), _p(dout), _p(aux), _p(du), _p(ddelta), _p(dA),
        _p(dB), _p(dC), _p(dD), _p(dbias), acc_b, acc_c, pa, pa + 4 * rows * N, pa + 4 * rows * (N + 1)),
        plan.BWD_PARAMS)
    for lp, name, fixed in launches:
        if lp.kernel == "finalize_bc_kernel":
            hold_bc, head = _address_args(acc_b, acc_c, dB.data_ptr(), dC.data_ptr())
            _run(sources.SCAN_HEADER, name, lp, head + fixed.args, idx)
            del hold_bc
        else:
            _run(sources.SCAN_HEADER, name, lp, params + fixed.args, idx)
    del hold
    return du, ddelta, dA, dB, dC, dD, dbias


def _bwd_config(batch, KD, L, N, K, t, d, softplus, k, idx):
    """(split count S, [(Launch, instance name, its _Fixed args)], BWD_PARAMS Record with every field but the
    addresses)."""
    G = KD // K
    seq = plan.use_seq(N, batch * KD, plan.seq_min_rows(k))
    S = plan.splits(batch, K, G, N, L, _sms(idx), seq, k)
    if batch * K * S >= 1 << 31:
        raise RuntimeError("cupy selective_scan_bwd: batch * K too large for one launch")
    launches = []
    for lp in plan.bwd_plan(batch, KD, L, N, K, S, seq, t, d):
        if lp.kernel == "finalize_bc_kernel":
            name = sources.scan_finalize_bc_name(t)
        elif lp.kernel == "finalize_small_kernel":
            name = sources.SCAN_FINALIZE_SMALL
        else:
            name = sources.scan_bwd_name(lp.kernel, t, d, *lp.targs[2:])
        launches.append((lp, name, _Fixed(lp.extra)))
    rec = plan.Record(
        plan.BWD_PARAMS, batch=batch, KD=KD, L=L, G=G, N=N, K=K, S=S, lpr=plan.lanes_per_row(L),
        softplus=bool(softplus), seq=seq, dtype=plan.DTYPE_CODE[t], dout_dtype=plan.DTYPE_CODE[d],
        bc_bstride=K * N * L, bc_gstride=N * L)
    return S, tuple(launches), rec


# ---- cross scan / merge -------------------------------------------------------------------------
# (CrossProblem's fields with the addresses mod 16, merge, knobs) -> (Launch, instance name, _Fixed) or None; a plain
# tuple, the CrossProblem dataclass built on a miss only (building it per call cost more than the rest of the key:
# reports/logs/2026-12-07_contiguous_run_cpu.md)
_CROSS_PLANS: dict = {}


def _cross(inp: torch.Tensor, out: torch.Tensor, B, C, H, W, mode, channels_last, merge: bool):
    # the plan depends on the addresses only through their alignment (vectors of at most 16 bytes), so it
    # is cached per shape, alignment and knobs: planning in Python costs more than the small kernels
    a_in, a_out = inp.data_ptr(), out.data_ptr()
    k = tuning.knobs()
    key = (B, C, H, W, mode, bool(channels_last), inp.dtype, a_in % 16, a_out % 16, merge, k)
    got = _CROSS_PLANS.get(key, False)
    if got is False:
        prob = plan.CrossProblem(B, C, H, W, _MODES[mode], bool(channels_last), _DT[inp.dtype], a_in % 16, a_out % 16)
        lp_d = plan.cross_launch(prob, merge, k)
        got = None if lp_d is None else (lp_d[0], sources.cross_name(lp_d[0].kernel, prob.dtype, *lp_d[0].targs[1:]),
                                         _Fixed(lp_d[0].extra))
        if len(_CROSS_PLANS) > 4096:
            _CROSS_PLANS.clear()
        _CROSS_PLANS[key] = got
    if got is not None:
        dev = inp.device
        hold, head = _address_args(a_in, a_out)
        _run(sources.CROSS_HEADER, got[1], got[0], head + got[2].args,
             dev.index if dev.index is not None else torch.cuda.current_device())
        del hold


def cross_scan_fwd(x, mode, channels_last):
    x = x.contiguous()
    Bn, C, H, W = map_dims(x, channels_last)
    (y,) = _alloc.empty_many(x, ((Bn, 4, C, H * W), x.dtype))
    _cross(x, y, Bn, C, H, W, mode, channels_last, merge=False)
    return y


def cross_merge_fwd(y, H, W, mode, channels_last):
    y = y.contiguous()
    Bn, _, C, L = y.shape
    (x,) = _alloc.empty_many(y, (map_shape(Bn, C, H, W, channels_last), y.dtype))
    _cross(y, x, Bn, C, H, W, mode, channels_last, merge=True)
    return x


# The raw kernels as the ops' bodies for calls without grad (dispatch kind "body_native"), as the cuda extension's
body_ops_native = {"scan_fwd": selective_scan_fwd, "cross_scan": cross_scan_fwd, "cross_merge": cross_merge_fwd}
