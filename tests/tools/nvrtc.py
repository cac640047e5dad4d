"""A minimal ctypes binding to NVRTC (no GPU, no CuPy): compiles a CUDA source with name expressions the
way cupy.RawModule does, so CPU tests can check that the cupy backend's kernel instances compile.

libnvrtc comes from $VMAMBA_NVRTC_LIB, the CUDA wheel torch installs (nvidia/cu*/lib), or the
toolkit (/usr/local/cuda/lib64); `find()` returns None when none loads.
"""
from __future__ import annotations

import ctypes
import glob
import os
from typing import Optional


def _candidates() -> list:
    out = []
    if os.environ.get("VMAMBA_NVRTC_LIB"):
        out.append(os.environ["VMAMBA_NVRTC_LIB"])
    try:
        import nvidia

        for base in getattr(nvidia, "__path__", []):
            out += sorted(glob.glob(os.path.join(base, "cu*", "lib", "libnvrtc.so*")), reverse=True)
            out += sorted(glob.glob(os.path.join(base, "cuda_nvrtc", "lib", "libnvrtc.so*")), reverse=True)
    except ImportError:
        pass
    for env in ("CUDA_PATH", "CUDA_HOME"):
        if os.environ.get(env):
            out += sorted(glob.glob(os.path.join(os.environ[env], "lib64", "libnvrtc.so*")), reverse=True)
    out += sorted(glob.glob("/usr/local/cuda/lib64/libnvrtc.so*"), reverse=True)
    return [p for p in out if "builtins" not in p and ".alt." not in p]


_LIB = None


def find() -> Optional[ctypes.CDLL]:
    """The loaded libnvrtc, or None."""
    global _LIB
    if _LIB is not None:
        return _LIB
    for path in _candidates():
        try:
            # its builtins library sits next to it and is dlopen'ed by name: load it first, globally
            for b in sorted(glob.glob(os.path.join(os.path.dirname(path), "libnvrtc-builtins.so*"))):
                if ".alt." not in b:
                    ctypes.CDLL(b, mode=ctypes.RTLD_GLOBAL)
            _LIB = ctypes.CDLL(path)
            return _LIB
        except OSError:
            continue
    return None


def version() -> tuple:
    lib = find()
    major, minor = ctypes.c_int(), ctypes.c_int()
    lib.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor))
    return major.value, minor.value


def compile_names(src: str, names: list, options: tuple) -> tuple:
    """Compile `src` (PTX, for the arch in `options`) instantiating `names`. Returns (ok, log, {name:
    lowered name}, ptx size in bytes)."""
    lib = find()
    prog = ctypes.c_void_p()
    rc = lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), b"vmamba_cupy.cu", 0, None, None)
    if rc != 0:
        return False, f"nvrtcCreateProgram returned {rc}", {}, 0
    try:
        for n in names:
            rc = lib.nvrtcAddNameExpression(prog, n.encode())
            if rc != 0:
                return False, f"nvrtcAddNameExpression({n}) returned {rc}", {}, 0
        opts = (ctypes.c_char_p * len(options))(*[o.encode() for o in options])
        rc = lib.nvrtcCompileProgram(prog, len(options), opts)
        size = ctypes.c_size_t()
        lib.nvrtcGetProgramLogSize(prog, ctypes.byref(size))
        buf = ctypes.create_string_buffer(size.value + 1)
        lib.nvrtcGetProgramLog(prog, buf)
        log = buf.value.decode(errors="replace")
        if rc != 0:
            return False, log, {}, 0
        lowered = {}
        for n in names:
            out = ctypes.c_char_p()
            if lib.nvrtcGetLoweredName(prog, n.encode(), ctypes.byref(out)) == 0:
                lowered[n] = out.value.decode()
        psize = ctypes.c_size_t()
        lib.nvrtcGetPTXSize(prog, ctypes.byref(psize))
        return True, log, lowered, psize.value
    finally:
        lib.nvrtcDestroyProgram(ctypes.byref(prog))
