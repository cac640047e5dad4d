"""What the cupy backend compiles: the cuda extension's own device code in csrc/ (no copies), through
NVRTC, one kernel template instance per module. Importable without CuPy (the CPU tests compile every
instance with NVRTC directly: tests/test_cupy_sources.py).

- Sources: a one-line translation unit per op family that includes the torch-free csrc header holding
  the kernels (SCAN_HEADER / CROSS_HEADER); include paths point into csrc/ and at the CUDA headers
  (cuda_fp16.h / cuda_bf16.h). Host-only code in those headers is behind __CUDACC_RTC__.
- Cache key: CuPy's on-disk cache hashes the source text and options but not the included headers,
  so the source carries a digest of every csrc header it can reach (`csrc_digest`): a changed
  header gives a new source text, hence a fresh compile.
- Options: the extension's nvcc flags that change code generation (setup.py NVCC_FLAGS), so both
  backends run the same arithmetic.
"""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path
from typing import Optional

CSRC = Path(os.environ.get("VMAMBA_CSRC") or Path(__file__).resolve().parents[2] / "csrc")
SCAN_HEADER = "selective_scan/selective_scan_kernels.cuh"
CROSS_HEADER = "cross_scan/cross_scan_kernels.cuh"
# the csrc folders whose headers the two translation units can include
HEADER_DIRS = ("common", "selective_scan", "cross_scan")
OPTIONS = ("-std=c++17", "--use_fast_math")

# C++ spelling of each torch dtype's storage type in the kernels (keyed by the dtype's name, so this
# module needs no torch)
CTYPE = {"float32": "float", "float16": "__half", "bfloat16": "__nv_bfloat16"}
SCAN_NS = "vmamba::scan::"
CROSS_NS = "vmamba::cross::"


def missing_reason() -> Optional[str]:
    """None when the csrc/ headers are where the backend looks for them."""
    for h in (SCAN_HEADER, CROSS_HEADER):
        if not (CSRC / h).is_file():
            return (f"the CUDA sources are not at {CSRC} (missing {h}): the cupy backend compiles csrc/ at run "
                    f"time, so it needs a source checkout (pip install -e .) or VMAMBA_CSRC pointing at csrc/")
    return None


@lru_cache(maxsize=None)
def csrc_digest() -> str:
    h = hashlib.sha256()
    for d in HEADER_DIRS:
        for p in sorted((CSRC / d).glob("*")):
            if p.suffix in (".h", ".cuh"):
                h.update(p.name.encode())
                h.update(p.read_bytes())
    return h.hexdigest()[:16]


def source(header: str) -> str:
    """The translation unit NVRTC compiles for the kernels of `header` (SCAN_HEADER or CROSS_HEADER)."""
    return f'// csrc digest {csrc_digest()}\n#include "{header}"\n'


def cuda_include_dirs() -> list:
    """Folders holding cuda_fp16.h: $CUDA_PATH / $CUDA_HOME, the pip wheel torch brings (nvidia/cu*), the
    usual toolkit folder. NVRTC itself declares the CUDA built-ins; only the 16-bit type headers come from here."""
    cands = []
    for env in ("CUDA_PATH", "CUDA_HOME"):
        if os.environ.get(env):
            cands.append(Path(os.environ[env]) / "include")
    try:
        import nvidia  # the CUDA wheels torch depends on (namespace package)

        for base in getattr(nvidia, "__path__", []):
            cands += sorted(Path(base).glob("cu*/include"), reverse=True)
            cands += sorted(Path(base).glob("cuda_runtime/include"))
    except ImportError:
        pass
    cands.append(Path("/usr/local/cuda/include"))
    out = []
    for c in cands:
        if (c / "cuda_fp16.h").is_file() and str(c) not in out:
            out.append(str(c))
    return out[:1]


def options(extra_include: tuple = ()) -> tuple:
    return OPTIONS + tuple(f"-I{d}" for d in (str(CSRC), *extra_include, *cuda_include_dirs()))


# ---- the kernel instances (name expressions) ------------------------------------------------------
def scan_fwd_name(kernel: str, t: str, out: str, ns: int = 0) -> str:
    """kernel: fwd_kernel, fwd_n1_kernel, fwd_n1_packed_kernel, fwd_seq_kernel (ns = 4, 8, 16)."""
    args = f"{CTYPE[t]}, {CTYPE[out]}" + (f", {ns}" if kernel == "fwd_seq_kernel" else "")
    return f"{SCAN_NS}{kernel}<{args}>"


def scan_bwd_name(kernel: str, t: str, dout: str, ns: int = 0) -> str:
    """kernel: bwd_kernel, bwd_n1_kernel, bwd_n1_one_kernel (bwd_n1_kernel's one-chunk instance, kOne = true),
    bwd_seq_kernel (ns = 8, 16)."""
    args = f"{CTYPE[t]}, {CTYPE[dout]}" + (f", {ns}" if kernel == "bwd_seq_kernel" else "")
    if kernel == "bwd_n1_one_kernel":
        kernel, args = "bwd_n1_kernel", args + ", true"
    return f"{SCAN_NS}{kernel}<{args}>"


def scan_finalize_bc_name(t: str) -> str:
    return f"{SCAN_NS}finalize_bc_kernel<{CTYPE[t]}>"


SCAN_FINALIZE_SMALL = f"{SCAN_NS}finalize_small_kernel"


def all_scan_names() -> list:
    """Every scan kernel instance the cupy backend may launch (the CPU test compiles each)."""
    names = []
    for t in CTYPE:
        for o in sorted({"float32", t}):
            names += [scan_fwd_name(k, t, o) for k in ("fwd_kernel", "fwd_n1_kernel", "fwd_n1_packed_kernel")]
            names += [scan_fwd_name("fwd_seq_kernel", t, o, ns) for ns in (4, 8, 16)]
            names += [scan_bwd_name(k, t, o) for k in ("bwd_kernel", "bwd_n1_kernel", "bwd_n1_one_kernel")]
            names += [scan_bwd_name("bwd_seq_kernel", t, o, ns) for ns in (8, 16)]
        names.append(scan_finalize_bc_name(t))
    names.append(SCAN_FINALIZE_SMALL)
    return names


# The cross scan moves raw bits (a permutation): its kernels are instantiated on the unsigned integer of
# the element's size; the merge adds in fp32 and is instantiated on the float type.
BITS = {"float32": "uint32_t", "float16": "uint16_t", "bfloat16": "uint16_t"}


def cross_vecs(elem_bytes: int) -> tuple:
    """Vector widths (elements) with an instance: up to 16 bytes."""
    return (1, 2, 4, 8) if elem_bytes == 2 else (1, 2, 4)


def cross_name(kernel: str, dtype: str, vec: int = 0) -> str:
    """kernel: cross_{scan,merge}_{plane,tiled,direct}_kernel or cross_scan_band_kernel."""
    t = BITS[dtype] if kernel.startswith("cross_scan") else CTYPE[dtype]
    return f"{CROSS_NS}{kernel}<{t}>" if kernel.endswith("direct_kernel") else f"{CROSS_NS}{kernel}<{t}, {vec}>"


def all_cross_names() -> list:
    names = []
    for dt, eb in (("float32", 4), ("float16", 2)):
        for k in ("cross_scan_plane_kernel", "cross_scan_tiled_kernel", "cross_scan_band_kernel"):
            names += [cross_name(k, dt, v) for v in cross_vecs(eb)]
        names.append(cross_name("cross_scan_direct_kernel", dt))
    for dt, eb in (("float32", 4), ("float16", 2), ("bfloat16", 2)):
        for k in ("cross_merge_plane_kernel", "cross_merge_tiled_kernel"):
            names += [cross_name(k, dt, v) for v in cross_vecs(eb)]
        names.append(cross_name("cross_merge_direct_kernel", dt))
    return names
