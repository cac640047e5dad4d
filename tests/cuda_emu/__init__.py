"""CPU emulation of the CUDA layer-norm, depthwise-conv and fused SS2D core kernels (csrc/layer_norm,
csrc/dwconv, csrc/ss2d_core).

`load()` compiles tests/cuda_emu/harness.cu with nvcc as host code into a shared library (cached
under the system temp folder, keyed by the sources' hash) and returns a `Emu` whose methods take CPU
torch tensors and run the very kernel bodies of the extension, one fiber per CUDA thread
(tests/cuda_emu/emu.h). Output tensors are allocated poisoned (NaN bytes) so an element a kernel
forgets to write shows up. Raises RuntimeError with the reason when nvcc is missing or the compile fails.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
from typing import Optional

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DTYPE_CODE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
ACT_CODE = {"none": 0, "silu": 1, "gelu": 2}


def _nvcc() -> Optional[str]:
    for cand in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if cand and os.path.isfile(os.path.join(cand, "bin", "nvcc")):
            return os.path.join(cand, "bin", "nvcc")
    return shutil.which("nvcc")


def _sources() -> list:
    out = [os.path.join(HERE, "harness.cu"), os.path.join(HERE, "emu.h")]
    for sub in ("common", "layer_norm", "dwconv", "ss2d_core"):
        d = os.path.join(ROOT, "csrc", sub)
        if os.path.isdir(d):
            out += sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith((".cuh", ".h")))
    return out


def build() -> str:
    nvcc = _nvcc()
    if nvcc is None:
        raise RuntimeError("needs nvcc to compile the kernel bodies as host code (install the CUDA toolkit)")
    h = hashlib.sha256()
    for f in _sources():
        with open(f, "rb") as fh:
            h.update(f.encode() + b"\0" + fh.read())
    d = os.path.join(tempfile.gettempdir(), f"vmamba_cuda_emu_{h.hexdigest()[:16]}")
    lib = os.path.join(d, "libemu.so")
    if os.path.isfile(lib):
        return lib
    os.makedirs(d, exist_ok=True)
    tmp = lib + f".{os.getpid()}.tmp"
    cmd = [nvcc, "-std=c++17", "-O1", "-x", "cu", "-shared", "-Xcompiler", "-fPIC", os.path.join(HERE, "harness.cu"),
           "-o", tmp]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise RuntimeError(f"emulator compile failed:\n{res.stderr[-6000:]}")
    os.replace(tmp, lib)
    return lib


def _ptr(t: Optional[torch.Tensor]):
    return ctypes.c_void_p(t.data_ptr()) if t is not None and t.numel() > 0 else ctypes.c_void_p(0)


def poisoned(shape, dtype) -> torch.Tensor:
    t = torch.empty(shape, dtype=dtype)
    t.view(torch.uint8).fill_(0xFF)
    return t


class Emu:
    def __init__(self, path: str):
        self.lib = ctypes.CDLL(path)
        i64, i32, f32 = ctypes.c_int64, ctypes.c_int, ctypes.c_float
        vp, cp = ctypes.c_void_p, ctypes.c_char_p
        self.lib.emu_ln_fwd.argtypes = [vp] * 9 + [i64, i64, i64, f32] + [i32] * 7 + [cp, i32]
        self.lib.emu_ln_bwd.argtypes = [vp] * 12 + [i64, i64, i64] + [i32] * 8 + [cp, i32]
        self.lib.emu_dw.argtypes = [vp] * 7 + [i32] + [i64] * 4 + [i32] * 7 + [cp, i32]
        self.lib.emu_ss2d.argtypes = [i32] + [vp] * 13 + [i64] * 4 + [i32] * 18 + [cp, i32]

    @staticmethod
    def _dims(x, channels_last):
        B = x.shape[0]
        C = x.shape[3] if channels_last else x.shape[1]
        HW = x.shape[1] * x.shape[2] if channels_last else x.shape[2] * x.shape[3]
        return B, C, HW

    def ln_fwd(self, x, branch, weight, bias, scale, eps, channels_last, out_dtype=None, max_vec=0, tile=0,
               num_sms=132):
        B, C, HW = self._dims(x, channels_last)
        out_dtype = out_dtype or x.dtype
        y = poisoned(x.shape, out_dtype)
        s = poisoned(x.shape, x.dtype) if branch is not None else x
        mean, rstd = poisoned((B, HW), torch.float32), poisoned((B, HW), torch.float32)
        info = ctypes.create_string_buffer(512)
        rc = self.lib.emu_ln_fwd(_ptr(x), _ptr(branch), _ptr(scale), _ptr(weight), _ptr(bias),
                                 _ptr(s) if branch is not None else ctypes.c_void_p(0), _ptr(y), _ptr(mean), _ptr(rstd),
                                 B, C, HW, float(eps), int(channels_last), DTYPE_CODE[x.dtype], DTYPE_CODE[out_dtype],
                                 DTYPE_CODE[branch.dtype] if branch is not None else -1, max_vec, tile, num_sms,
                                 info, 512)
        if rc != 0:
            raise RuntimeError(info.value.decode())
        return (y, s, mean, rstd), info.value.decode()

    def ln_bwd(self, dy, ds, s, weight, has_bias, mean, rstd, scale, has_branch, channels_last, max_vec=0, tile=0,
               blocks=0, num_sms=132, from_y=None):
        """from_y: (y, bias, x_dtype) for the backward from the output (s is then ignored; mean may be None)."""
        B, C, HW = self._dims(s, channels_last)
        x_dtype = s.dtype if from_y is None else from_y[2]
        saved = s if from_y is None else from_y[0]
        bias = None if from_y is None else from_y[1]
        dx = poisoned(s.shape, x_dtype)
        dbranch = poisoned(s.shape, x_dtype) if has_branch else None
        dweight = poisoned((C,), torch.float32)
        dbias = poisoned((C,), torch.float32) if has_bias else None
        info = ctypes.create_string_buffer(512)
        rc = self.lib.emu_ln_bwd(_ptr(dy), _ptr(ds), _ptr(saved), _ptr(weight), _ptr(mean if from_y is None else None),
                                 _ptr(rstd), _ptr(scale), _ptr(dx), _ptr(dbranch), _ptr(dweight), _ptr(dbias),
                                 _ptr(bias), B, C, HW, int(channels_last), DTYPE_CODE[x_dtype], DTYPE_CODE[dy.dtype],
                                 int(from_y is not None), max_vec, tile, blocks, num_sms, info, 512)
        if rc != 0:
            raise RuntimeError(info.value.decode())
        return (dx, dbranch, dweight, dbias), info.value.decode()

    def dwconv_fwd(self, x, weight, bias, act, channels_last, max_vec=0, num_sms=132):
        y = poisoned(x.shape, x.dtype)
        info = self._dw(x, None, weight, bias, y, None, None, False, act, channels_last, max_vec, 0, num_sms)
        return y, info

    def dwconv_bwd(self, dy, x, weight, bias, act, channels_last, max_vec=0, segs=0, num_sms=132):
        """(dx, dweight, dbias): the op's kernels in order (dpre unless act is none, dx with the weight
        partials, the partial-sum pass); the info string describes the last kernel's plan."""
        C = x.shape[3] if channels_last else x.shape[1]
        dx = poisoned(x.shape, x.dtype)
        dweight = poisoned(weight.shape, torch.float32)
        dbias = poisoned((C,), torch.float32) if bias is not None else None
        info = self._dw(x, dy, weight, bias, dx, dweight, dbias, True, act, channels_last, max_vec, segs, num_sms)
        return (dx, dweight, dbias), info

    def _dw(self, x, dy, weight, bias, out, dweight, dbias, bwd, act, channels_last, max_vec, segs, num_sms):
        B = x.shape[0]
        C, H, W = (x.shape[3], x.shape[1], x.shape[2]) if channels_last else x.shape[1:]
        info = ctypes.create_string_buffer(512)
        rc = self.lib.emu_dw(_ptr(x), _ptr(dy), _ptr(weight), _ptr(bias), _ptr(out), _ptr(dweight), _ptr(dbias),
                             int(bwd), B, C, H, W, weight.shape[-1], ACT_CODE[act], int(channels_last),
                             DTYPE_CODE[x.dtype], max_vec, segs, num_sms, info, 512)
        if rc != 0:
            raise RuntimeError(info.value.decode())
        return info.value.decode()

    # ---- fused SS2D core: the raw kernels' signatures (csrc/ss2d_core/ss2d_core.cpp) plus the plan ----
    _MODES = {"cross2d": 0, "unidi": 1, "bidi": 2}

    def _ss2d(self, bwd, x, xdbl, dt_w, A, D, delta_bias, dy, out, grads, mode, channels_last, softplus, out_dtype,
              warps, smem_acc, splits, seg_steps=0, sweep=(0, 0)):
        Bn = x.shape[0]
        C, H, W = (x.shape[3], x.shape[1], x.shape[2]) if channels_last else x.shape[1:]
        K, R = dt_w.shape[0], dt_w.shape[2]
        N = A.shape[1]
        dxdbl, ddt_w, dA, dD, dbias = grads
        info = ctypes.create_string_buffer(512)
        rc = self.lib.emu_ss2d(int(bwd), _ptr(x), _ptr(xdbl), _ptr(dt_w), _ptr(A), _ptr(D), _ptr(delta_bias), _ptr(dy),
                               _ptr(out), _ptr(dxdbl), _ptr(ddt_w), _ptr(dA), _ptr(dD), _ptr(dbias), Bn, C, H, W, K, R,
                               N, self._MODES[mode], int(channels_last), int(softplus), DTYPE_CODE[x.dtype],
                               DTYPE_CODE[xdbl.dtype], DTYPE_CODE[dt_w.dtype],
                               DTYPE_CODE[dy.dtype] if dy is not None else 0, DTYPE_CODE[out_dtype], warps,
                               int(smem_acc), splits, seg_steps, sweep[0], sweep[1],
                               int(sweep[2]) if len(sweep) > 2 else 0, info, 512)
        if rc != 0:
            raise RuntimeError(info.value.decode())
        return info.value.decode()

    def ss2d_core_fwd(self, x, xdbl, dt_w, A, D, delta_bias, mode, channels_last, softplus, out_dtype, warps=8,
                      smem_acc=True, seg_steps=0, sweep=(0, 0)):
        """sweep = (G, S) or (G, S, mma), G > 0: the sweep forward with that tile (ss2d_sweep_body.cuh, d_state 1; its
        dt projection with FMAs, or on tensor cores with mma True where sweep_mma_applies); else seg_steps > 0:
        the segmented forward with segments of that many positions (ss2d_seg_body.cuh); 0: the whole-map forward with
        `warps` channels per block and the shared or global accumulator."""
        y = poisoned(x.shape, out_dtype)
        info = self._ss2d(False, x, xdbl, dt_w, A, D, delta_bias, None, y, (None,) * 5, mode, channels_last, softplus,
                          out_dtype, warps, smem_acc, 1, seg_steps, sweep)
        return y, info

    def ss2d_core_bwd(self, x, xdbl, dt_w, A, D, delta_bias, dy, mode, channels_last, softplus, warps=8,
                      smem_acc=True, splits=1, seg_steps=0):
        """(dx, dxdbl, ddt_w, dA, dD, ddelta_bias) as the raw kernel returns them (None for absent D / bias).
        seg_steps > 0: the segmented backward (ss2d_seg_bwd_body.cuh) with segments of that many positions."""
        f32 = torch.float32
        dx = poisoned(x.shape, f32)
        grads = (poisoned(xdbl.shape, f32), poisoned(dt_w.shape, f32), poisoned(A.shape, f32),
                 poisoned(D.shape, f32) if D is not None else None,
                 poisoned(delta_bias.shape, f32) if delta_bias is not None else None)
        info = self._ss2d(True, x, xdbl, dt_w, A, D, delta_bias, dy, dx, grads, mode, channels_last, softplus, f32,
                          warps, smem_acc, splits, seg_steps)
        return (dx,) + grads, info


_EMU: Optional[Emu] = None


def load() -> Emu:
    global _EMU
    if _EMU is None:
        _EMU = Emu(build())
    return _EMU
