"""Raw kernels of impl "cupy": CUDA C++ in csrc/*.cu, compiled at first use by NVRTC through
cupy.RawModule and launched on torch's tensors without copies.

- Sources: csrc/selective_scan.cu (forward + backward), csrc/cross_scan.cu, csrc/common.cuh.
  The local `#include "common.cuh"` is inlined here before compiling, so CuPy's on-disk cache key
  (source text + options) covers the header too; no CUDA header is needed (16-bit conversions
  are PTX cvt instructions), so NVRTC needs no include path.
- Instantiation: one RawModule per (kernel family, input dtype, d_state class) holding every
  ITEMS variant through `name_expressions` (e.g. "vmamba_cupy::ssm_fwd<vmamba_cupy::half_t, 1, 8>";
  d_state class: 1 = compiled for N = 1, 0 = runtime N). Modules are cached per process
  (`_MODULES`) and on disk by CuPy; `compile_stats()` counts real compiles.
- Interop: kernel arguments are torch data pointers (no copies); launches go to torch's current
  stream of the tensors' device (cupy.cuda.Stream.from_external through the CUDA stream protocol,
  ExternalStream on CuPy < 14), inside cupy.cuda.Device(that device). Inputs arrive validated and contiguous.
- Determinism: no atomics. dB/dC are summed per block over one group's channels in a fixed order
  into fp32 partials (batch, K, P, N, L) and then summed over P here; dA/dD/ddelta_bias come as
  per-row fp32 partials summed over batch here (torch reductions of fixed shape).

Importing this module raises ImportError when CuPy is missing or broken (the Backend turns that
into an "unavailable" reason with the install hint).
"""
from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np
import torch

try:
    import cupy  # noqa: F401
except ImportError as e:
    raise ImportError(f"CuPy is not installed ({e})") from e
except Exception as e:  # a broken CuPy install (missing CUDA libraries, ...) must not crash the registry
    raise ImportError(f"CuPy is installed but does not import ({type(e).__name__}: {e})") from e

from ..layout import map_dims, map_shape
from . import tuning

CSRC = Path(__file__).resolve().parent / "csrc"
OPTIONS = ("-std=c++17",)

_CTYPE = {torch.float32: "float", torch.float16: "vmamba_cupy::half_t", torch.bfloat16: "vmamba_cupy::bf16_t"}
_MODES = {"cross2d": 0, "unidi": 1, "bidi": 2}

_LOCK = threading.Lock()
_MODULES: dict = {}   # (family, ctype, kn) -> {name_expression: cupy RawKernel}
_STATS = {"compiles": 0, "compile_seconds": 0.0, "log": []}


# ---- availability -------------------------------------------------------------------------------
def _cupy_cuda_major() -> int:
    return cupy.cuda.runtime.runtimeGetVersion() // 1000


def unavailable_reason() -> Optional[str]:
    """None when CuPy imports, a CUDA device is visible, and CuPy's CUDA major matches torch's."""
    if torch.version.cuda is None:
        return ("torch is a CPU-only build (torch.version.cuda is None): CuPy kernels need a CUDA build of torch "
                "and an NVIDIA GPU")
    if not torch.cuda.is_available():
        return ("no CUDA device is visible (CuPy is installed, but its kernels run on NVIDIA GPUs only; "
                "the torch impl runs on the CPU)")
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
    return None


# ---- compiling ----------------------------------------------------------------------------------
def _source(name: str) -> str:
    text = (CSRC / name).read_text()
    common = (CSRC / "common.cuh").read_text().replace("#pragma once", "")
    return text.replace('#include "common.cuh"', common)


def _names(family: str, ctype: str, kn: int) -> list:
    if family == "cross":
        return [f"vmamba_cupy::cross_scan_k<{ctype}>", f"vmamba_cupy::cross_merge_k<{ctype}>"]
    return [f"vmamba_cupy::{family}<{ctype}, {kn}, {it}>" for it in tuning.INSTANTIATED_ITEMS]


def _kernels(family: str, dtype: torch.dtype, kn: int, device_index: int) -> dict:
    """{name_expression: RawKernel} for one module on one device, compiling it on first use
    (thread-safe). Call inside `cupy.cuda.Device(device_index)`."""
    ctype = _CTYPE[dtype]
    key = (family, ctype, kn, device_index)
    mod = _MODULES.get(key)
    if mod is not None:
        return mod
    with _LOCK:
        mod = _MODULES.get(key)
        if mod is None:
            names = _names(family, ctype, kn)
            src = _source("cross_scan.cu" if family == "cross" else "selective_scan.cu")
            t = time.perf_counter()
            raw = cupy.RawModule(code=src, options=OPTIONS, name_expressions=names)
            mod = {n: raw.get_function(n) for n in names}  # forces the NVRTC compile + load now
            dt = time.perf_counter() - t
            _STATS["compiles"] += 1
            _STATS["compile_seconds"] += dt
            _STATS["log"].append((family, ctype, kn, round(dt, 3)))
            _MODULES[key] = mod
    return mod


def compile_stats() -> dict:
    """Modules compiled (or loaded from CuPy's disk cache) by this process, and the seconds spent."""
    return {"compiles": _STATS["compiles"], "compile_seconds": _STATS["compile_seconds"],
            "log": list(_STATS["log"])}


# ---- launching ----------------------------------------------------------------------------------
def _p(t: Optional[torch.Tensor]):
    return np.uint64(0 if t is None else t.data_ptr())


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


def _launch(family: str, dtype: torch.dtype, kn: int, name: str, grid: int, block: int, args,
            device: torch.device, shared_mem: int = 0):
    """Launch kernel `name` of module (family, dtype, kn) on `device`, on torch's current stream."""
    idx = device.index if device.index is not None else torch.cuda.current_device()
    ptr = torch.cuda.current_stream(idx).cuda_stream
    with cupy.cuda.Device(idx):
        kernel = _kernels(family, dtype, kn, idx)[name]
        with _cupy_stream(ptr, idx):
            kernel((grid,), (block,), args, shared_mem=shared_mem)


def _kn(N: int) -> int:
    return 1 if N == 1 else 0


# ---- selective scan -----------------------------------------------------------------------------
def selective_scan_fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype):
    u, delta, A, B, C = (t.contiguous() for t in (u, delta, A, B, C))
    batch, KD, L = u.shape
    N, K = A.shape[1], B.shape[1]
    dev = u.device
    direct = out_dtype in (torch.float32, u.dtype)
    out = torch.empty((batch, KD, L), dtype=out_dtype if direct else torch.float32, device=dev)
    last = torch.zeros((batch, KD, N), dtype=torch.float32, device=dev)
    aux_shape, _ = tuning.scan_aux_shape(batch, KD, L, N, u.dtype)
    aux = torch.empty(aux_shape, dtype=torch.float32, device=dev)
    rows = batch * KD
    if rows == 0 or L == 0:
        aux.zero_()
        return out.to(out_dtype), last, aux
    items = tuning.items_for(L)
    kn = _kn(N)
    W = tuning.fwd_warps(items)
    chp = 32 * items + items
    args = (_p(u), _p(delta), _p(A), _p(B), _p(C), _p(D), _p(delta_bias), _p(out), _p(last), _p(aux),
            np.int64(rows), np.int32(KD), np.int32(K), np.int32(N), np.int64(L), np.int32(aux_shape[2]),
            np.int32(bool(delta_softplus)), np.int32(out.dtype == torch.float32))
    _launch("ssm_fwd", u.dtype, kn, f"vmamba_cupy::ssm_fwd<{_CTYPE[u.dtype]}, {kn}, {items}>",
            -(-rows // W), 32 * W, args, dev, shared_mem=4 * W * (chp + N))
    return (out if direct else out.to(out_dtype)), last, aux


def selective_scan_bwd(u, delta, A, B, C, D, delta_bias, delta_softplus, dout, aux):
    u, delta, A, B, C = (t.contiguous() for t in (u, delta, A, B, C))
    batch, KD, L = u.shape
    N, K = A.shape[1], B.shape[1]
    dev = u.device
    if dout.dtype not in (torch.float32, u.dtype):
        dout = dout.float()
    dout = dout.contiguous()
    G = KD // K
    W = tuning.bwd_warps(G)
    P = G // W
    f32 = dict(dtype=torch.float32, device=dev)
    du = torch.empty_like(u)
    ddelta = torch.empty_like(delta)
    dA_part = torch.zeros((batch, KD, N), **f32)
    dD_part = torch.zeros((batch, KD), **f32)
    dbias_part = torch.zeros((batch, KD), **f32)
    dB_part = torch.zeros((batch, K, P, N, L), **f32) if L == 0 else torch.empty((batch, K, P, N, L), **f32)
    dC_part = torch.empty_like(dB_part)
    rows = batch * KD
    if rows and L:
        items = tuning.items_for(L)
        nch = tuning.n_chunks(L)
        if tuple(aux.shape) != (batch, KD, nch, N):
            raise RuntimeError(f"cupy selective_scan_bwd: aux has shape {tuple(aux.shape)}, expected "
                               f"{(batch, KD, nch, N)} (was the forward run by another impl?)")
        kn = _kn(N)
        chp = 32 * items + items
        args = (_p(u), _p(delta), _p(A), _p(B), _p(C), _p(D), _p(delta_bias), _p(dout),
                np.int32(dout.dtype == torch.float32), _p(aux.contiguous()), _p(du), _p(ddelta),
                _p(dA_part), _p(dD_part), _p(dbias_part), _p(dB_part), _p(dC_part),
                np.int32(KD), np.int32(K), np.int32(N), np.int64(L), np.int32(nch),
                np.int32(bool(delta_softplus)))
        _launch("ssm_bwd", u.dtype, kn, f"vmamba_cupy::ssm_bwd<{_CTYPE[u.dtype]}, {kn}, {items}>",
                rows // W, 32 * W, args, dev, shared_mem=4 * W * (2 * chp + 2 * N))
    else:
        du.zero_()
        ddelta.zero_()
    dA = dA_part.sum(0)
    dB = dB_part.sum(2).to(u.dtype)
    dC = dC_part.sum(2).to(u.dtype)
    dD = dD_part.sum(0) if D is not None else None
    dbias = dbias_part.sum(0) if delta_bias is not None else None
    return du, ddelta, dA, dB, dC, dD, dbias


# ---- cross scan / merge -------------------------------------------------------------------------
def _grid(total: int, block: int = 256) -> int:
    return max(1, min(-(-total // block), 1 << 20))  # grid-stride loops cover the rest


def cross_scan_fwd(x, mode, channels_last):
    x = x.contiguous()
    Bn, C, H, W = map_dims(x, channels_last)
    y = torch.empty((Bn, 4, C, H * W), dtype=x.dtype, device=x.device)
    total = x.numel()
    if total:
        args = (_p(x), _p(y), np.int64(Bn), np.int64(C), np.int64(H), np.int64(W),
                np.int32(_MODES[mode]), np.int32(bool(channels_last)))
        _launch("cross", x.dtype, 0, f"vmamba_cupy::cross_scan_k<{_CTYPE[x.dtype]}>", _grid(total), 256,
                args, x.device)
    return y


def cross_merge_fwd(y, H, W, mode, channels_last):
    y = y.contiguous()
    Bn, _, C, L = y.shape
    x = torch.empty(map_shape(Bn, C, H, W, channels_last), dtype=y.dtype, device=y.device)
    total = x.numel()
    if total:
        args = (_p(y), _p(x), np.int64(Bn), np.int64(C), np.int64(H), np.int64(W),
                np.int32(_MODES[mode]), np.int32(bool(channels_last)))
        _launch("cross", y.dtype, 0, f"vmamba_cupy::cross_merge_k<{_CTYPE[y.dtype]}>", _grid(total), 256,
                args, y.device)
    return x
