"""Build mamba_ssm's selective-scan CUDA extension (`selective_scan_cuda`) from its PyPI sdist.

    python -m bench.build_mamba_ssm [--sdist .sdist/mamba_ssm-2.3.2.post1.tar.gz] [--out build/mamba_ssm]

Only the `csrc/selective_scan` sources are compiled (all of them: fp32/fp16/bf16 forward and the
real and complex backward files, so the dispatch macros stay consistent), for one GPU architecture:
`--arch`, else $TORCH_CUDA_ARCH_LIST (first entry), else the local GPU's compute capability.
Parallelism comes from `--jobs` (default $MAX_JOBS, else the CPU count) through ninja.

Nothing is written outside `--out`: the sources are extracted to OUT/src, the ninja build lives in
OUT/build and the module ends up as OUT/build/selective_scan_cuda*.so, which
`bench.mamba_ref.load_selective_scan_cuda()` finds. The `mamba_ssm` Python package itself is never
imported (its __init__ pulls in transformers and more).

Expected time: about 2.5 minutes for sm_90 with 16 jobs (143 s measured on the H100 machine);
several times that with 2 jobs.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tarfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SDIST = REPO / ".sdist" / "mamba_ssm-2.3.2.post1.tar.gz"
DEFAULT_OUT = REPO / "build" / "mamba_ssm"
SRC_SUBDIR = "csrc/selective_scan/"
MODULE_NAME = "selective_scan_cuda"

# the .cpp binding plus every .cu translation unit of the release (order as in mamba's setup.py)
SOURCES = (
    "selective_scan.cpp",
    "selective_scan_fwd_fp32.cu",
    "selective_scan_fwd_fp16.cu",
    "selective_scan_fwd_bf16.cu",
    "selective_scan_bwd_fp32_real.cu",
    "selective_scan_bwd_fp32_complex.cu",
    "selective_scan_bwd_fp16_real.cu",
    "selective_scan_bwd_fp16_complex.cu",
    "selective_scan_bwd_bf16_real.cu",
    "selective_scan_bwd_bf16_complex.cu",
)

# the flags of mamba's setup.py (minus its hard-coded list of ~9 architectures)
# No -std flag: torch's cpp_extension adds the standard its headers need (C++17 for torch <= 2.9,
# C++20 for newer torch, whose ATen.h refuses older standards).
NVCC_FLAGS = (
    "-O3",
    "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
    "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math", "-lineinfo",
)
CXX_FLAGS = ("-O3",)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def extract_sources(sdist: Path, dest: Path) -> list:
    """Extract csrc/selective_scan/* of the sdist into `dest` (flat); return the source paths to
    compile. Members outside that folder, links and unsafe names are ignored. Re-extracts only when
    the sdist changed (stamp file holds its sha256)."""
    if not sdist.is_file():
        raise FileNotFoundError(
            f"sdist not found: {sdist}. Download it (on a machine with network) with\n"
            f"  MAMBA_SKIP_CUDA_BUILD=TRUE pip download --no-deps --no-build-isolation "
            f"mamba-ssm==2.3.2.post1 -d .sdist")
    digest = sha256(sdist)
    stamp = dest / ".sdist-sha256"
    if not (stamp.is_file() and stamp.read_text().strip() == digest
            and all((dest / s).is_file() for s in SOURCES)):
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        n = 0
        with tarfile.open(sdist, "r:gz") as tar:
            for m in tar.getmembers():
                parts = m.name.split("/", 1)
                if len(parts) != 2 or not parts[1].startswith(SRC_SUBDIR) or not m.isfile():
                    continue
                name = parts[1][len(SRC_SUBDIR):]
                if not name or "/" in name or name.startswith(".") or ".." in name:
                    continue
                with tar.extractfile(m) as src, open(dest / name, "wb") as dst:
                    shutil.copyfileobj(src, dst)
                n += 1
        missing = [s for s in SOURCES if not (dest / s).is_file()]
        if missing:
            raise RuntimeError(f"{sdist} lacks expected sources {missing} under {SRC_SUBDIR}")
        stamp.write_text(digest + "\n")
    return [dest / s for s in SOURCES]


def pick_arch(arch_arg) -> str:
    """'9.0' style compute capability: --arch, else $TORCH_CUDA_ARCH_LIST's first entry, else the GPU."""
    if arch_arg:
        arch = arch_arg
    elif os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip():
        arch = os.environ["TORCH_CUDA_ARCH_LIST"].replace(",", ";").replace(" ", ";").split(";")[0]
    else:
        import torch  # noqa: PLC0415

        if not torch.cuda.is_available():
            raise SystemExit("no GPU visible and no --arch / TORCH_CUDA_ARCH_LIST given: "
                             "say which architecture to build for, e.g. --arch 9.0")
        major, minor = torch.cuda.get_device_capability()
        arch = f"{major}.{minor}"
    arch = arch.strip().removesuffix("+PTX")
    try:
        major, minor = arch.split(".")
        int(major), int(minor)
    except ValueError:
        raise SystemExit(f"cannot read architecture {arch!r}: expected e.g. 9.0") from None
    return arch


def gencode_flags(arch: str) -> list:
    cc = arch.replace(".", "")
    # sm_90 needs the "a" suffix only for wgmma/TMA features, which these kernels do not use
    return ["-gencode", f"arch=compute_{cc},code=sm_{cc}"]


def find_cuda_home():
    """CUDA_HOME if set, else the folder above the nvcc on PATH, else /usr/local/cuda*."""
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    nvcc = shutil.which("nvcc")
    if nvcc:
        return str(Path(nvcc).resolve().parent.parent)
    for cand in sorted(Path("/usr/local").glob("cuda*"), reverse=True):
        if (cand / "bin" / "nvcc").is_file():
            return str(cand)
    return None


def build(sdist: Path, out: Path, arch: str, jobs: int, verbose: bool = False):
    """Extract and compile; return (module, seconds)."""
    src = out / "src"
    bld = out / "build"
    sources = extract_sources(sdist, src)
    bld.mkdir(parents=True, exist_ok=True)
    cuda_home = find_cuda_home()
    if cuda_home is None:
        raise SystemExit("nvcc not found: set CUDA_HOME or put nvcc on PATH")
    os.environ["CUDA_HOME"] = cuda_home
    os.environ["MAX_JOBS"] = str(jobs)
    # the build must not fall back to a cache elsewhere
    os.environ["TORCH_EXTENSIONS_DIR"] = str(bld)
    from torch.utils import cpp_extension  # noqa: PLC0415 (reads CUDA_HOME at import)

    nvcc_flags = list(NVCC_FLAGS) + gencode_flags(arch) + ["--threads", "4"]
    t0 = time.perf_counter()
    mod = cpp_extension.load(
        name=MODULE_NAME, sources=[str(s) for s in sources], extra_cflags=list(CXX_FLAGS),
        extra_cuda_cflags=nvcc_flags, extra_include_paths=[str(src)], build_directory=str(bld),
        with_cuda=True, verbose=verbose, is_python_module=True)
    return mod, time.perf_counter() - t0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.build_mamba_ssm",
        description="Compile mamba_ssm's selective_scan_cuda extension from its sdist, for one GPU "
                    "architecture, into --out (nothing cached elsewhere).")
    p.add_argument("--sdist", type=Path, default=DEFAULT_SDIST, help="mamba_ssm sdist (default %(default)s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default %(default)s)")
    p.add_argument("--arch", default=None,
                   help="compute capability, e.g. 9.0 (default: $TORCH_CUDA_ARCH_LIST, else the local GPU)")
    p.add_argument("--jobs", type=int, default=int(os.environ.get("MAX_JOBS", 0)) or (os.cpu_count() or 1),
                   help="parallel compile jobs (default $MAX_JOBS, else the CPU count)")
    p.add_argument("--extract-only", action="store_true", help="extract the sources and stop")
    p.add_argument("--clean", action="store_true", help="remove --out first")
    p.add_argument("-v", "--verbose", action="store_true", help="show the compiler commands")
    a = p.parse_args(argv)

    out = a.out.resolve()
    if a.clean and out.exists():
        shutil.rmtree(out)
    if a.extract_only:
        srcs = extract_sources(a.sdist, out / "src")
        print(f"extracted {len(srcs)} sources to {out / 'src'}")
        return 0
    arch = pick_arch(a.arch)
    print(f"building {MODULE_NAME} from {a.sdist} for sm_{arch.replace('.', '')} with {a.jobs} jobs "
          f"into {out} (expect ~2.5 min with 16 jobs)", flush=True)
    mod, secs = build(a.sdist, out, arch, a.jobs, a.verbose)
    so = getattr(mod, "__file__", "?")
    print(f"\n{'module':10s} {MODULE_NAME}\n{'file':10s} {so}\n{'arch':10s} sm_{arch.replace('.', '')}\n"
          f"{'jobs':10s} {a.jobs}\n{'seconds':10s} {secs:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
