"""Build the CUDA extension `vmamba_kernels._C` where it can (the package metadata is pyproject.toml's).

    pip install --no-build-isolation -e ".[dev]"   # torch, setuptools, wheel and ninja already installed

(--no-build-isolation: the extension compiles against the environment's torch.)

The extension is compiled (ninja) from every .cpp and .cu file under csrc/: `cuda_sources()` below is
the one source list, and CMakeLists.txt reads it through `python setup.py --list-sources`. It is
skipped, with the reason printed, when torch is missing or CPU-only, when no CUDA toolkit is found,
and when no GPU is visible and nothing asked for a build anyway (TORCH_CUDA_ARCH_LIST or
VMAMBA_KERNELS_FORCE_BUILD): the compile takes minutes and its result could not run here.

Environment
    TORCH_CUDA_ARCH_LIST            architectures to compile for (default: the visible GPU's); setting it
                                    also builds on a machine without a visible GPU
    CUDA_HOME / CUDA_PATH           the CUDA toolkit folder (default: found from `nvcc` on PATH)
    MAX_JOBS                        parallel compile jobs
    VMAMBA_KERNELS_SKIP_CUDA_BUILD=1  never build the extension
    VMAMBA_KERNELS_FORCE_BUILD=1      build even without a visible GPU (for sm_90 unless TORCH_CUDA_ARCH_LIST
                                      says otherwise), and make a skipped or failed build an error (CI)
    VMAMBA_KERNELS_ONLY=cross_scan    build only these csrc/ subfolders (comma-separated; module.cpp
                                      and csrc/common always)
"""
from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.abspath(__file__))
EXT_NAME = "vmamba_kernels._C"

NVCC_FLAGS = [
    "-O3", "--use_fast_math", "--expt-relaxed-constexpr", "--expt-extended-lambda", "-lineinfo",
    "-U__CUDA_NO_HALF_OPERATORS__", "-U__CUDA_NO_HALF_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT16_OPERATORS__", "-U__CUDA_NO_BFLOAT16_CONVERSIONS__",
    "-U__CUDA_NO_BFLOAT162_OPERATORS__", "-U__CUDA_NO_BFLOAT162_CONVERSIONS__",
    "--threads", "4",
]
# No -std flag: torch's cpp_extension adds the standard its headers need (C++20 for torch >= 2.10);
# the sources themselves are C++17.
CXX_FLAGS = ["-O3"]


def _say(msg: str) -> None:
    print(f"vmamba_kernels: {msg}", flush=True)


def _truthy(name: str, environ=None) -> bool:
    environ = os.environ if environ is None else environ
    return environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


# ---- the one source list -------------------------------------------------------------------------
def cuda_sources(root: str = ROOT, only=None) -> list:
    """Every .cpp and .cu file under csrc/, relative to `root`, sorted, '/'-separated.

    `only` (default $VMAMBA_KERNELS_ONLY) restricts it to csrc/module.cpp, csrc/common/ and the named
    csrc/ subfolders, e.g. "cross_scan".
    """
    if only is None:
        only = os.environ.get("VMAMBA_KERNELS_ONLY", "")
    keep = [s.strip().strip("/") for s in only.split(",") if s.strip()]
    found = []
    for pattern in ("*.cpp", "*.cu"):
        found += glob.glob(os.path.join(root, "csrc", "**", pattern), recursive=True)
    rel = sorted(os.path.relpath(f, root).replace(os.sep, "/") for f in found)
    if keep:
        allowed = ("csrc/common/",) + tuple(f"csrc/{k}/" for k in keep)
        rel = [f for f in rel if f == "csrc/module.cpp" or f.startswith(allowed)]
    return rel


def folder_defines(sources) -> list:
    """-DVMAMBA_WITH_<FOLDER> for each csrc/ op folder among `sources`: module.cpp binds only the entry points of
    the ops that are built (VMAMBA_KERNELS_ONLY may leave some out)."""
    folders = sorted({f.split("/")[1] for f in sources if f.count("/") >= 2 and not f.startswith("csrc/common/")})
    return [f"-DVMAMBA_WITH_{f.upper()}" for f in folders]


# ---- finding the CUDA toolkit -------------------------------------------------------------------
def _is_toolkit(path: str) -> bool:
    return bool(path) and os.path.isfile(os.path.join(path, "bin", "nvcc")) and os.path.isdir(
        os.path.join(path, "lib64"))


def _toolkit_from_nvcc(nvcc: str):
    """The toolkit folder (holding bin/nvcc and lib64) behind an nvcc executable, or None."""
    real = os.path.realpath(nvcc)
    parent = os.path.dirname(os.path.dirname(real))
    if _is_toolkit(parent):
        return parent
    # nvcc on PATH can be a wrapper script (here /usr/local/bin/nvcc execs /usr/local/cuda-13.0/bin/nvcc,
    # so torch's guess, /usr/local, has no lib64 and linking cudart fails): ask nvcc where it lives.
    try:
        with tempfile.TemporaryDirectory() as d:
            src = os.path.join(d, "probe.cu")
            open(src, "w").close()
            out = subprocess.run([nvcc, "-dryrun", "-c", src, "-o", os.path.join(d, "probe.o")],
                                 capture_output=True, text=True, timeout=60)
        m = re.search(r"^#\$ TOP=(.+)$", out.stdout + out.stderr, re.M)
        if m:
            top = os.path.realpath(m.group(1).strip())
            if _is_toolkit(top):
                return top
    except (OSError, subprocess.SubprocessError):
        pass
    return None


def find_cuda_home(environ=None):
    """(toolkit folder or None, how it was found / why not).

    $CUDA_HOME or $CUDA_PATH if it holds bin/nvcc and lib64; else the toolkit behind `nvcc` on $PATH
    (through symlinks, and through wrapper scripts by asking `nvcc -dryrun`).
    """
    environ = os.environ if environ is None else environ
    for var in ("CUDA_HOME", "CUDA_PATH"):
        path = environ.get(var)
        if path:
            if _is_toolkit(path):
                return path, f"${var}"
            _say(f"ignoring ${var}={path}: it holds no bin/nvcc and lib64")
    import shutil

    nvcc = shutil.which("nvcc", path=environ.get("PATH", ""))
    if nvcc is None:
        return None, "no nvcc on PATH and no CUDA_HOME (install the CUDA toolkit to build the extension)"
    home = _toolkit_from_nvcc(nvcc)
    if home is None:
        return None, f"found {nvcc} but no toolkit folder with bin/nvcc and lib64 behind it; set CUDA_HOME"
    return home, f"from {nvcc}"


# ---- what to build ----------------------------------------------------------------------------
def _arch_list(torch) -> str:
    """$TORCH_CUDA_ARCH_LIST, else the visible GPU's compute capability, else 9.0 (H100)."""
    env = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if env:
        _say(f"TORCH_CUDA_ARCH_LIST={env} (from the environment)")
        return env
    try:
        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            arch = f"{major}.{minor}"
            _say(f"TORCH_CUDA_ARCH_LIST={arch} (the visible GPU, {torch.cuda.get_device_name(0)})")
            return arch
    except Exception as e:  # a broken driver must not stop a CPU-side install
        _say(f"could not query the GPU ({e})")
    _say("TORCH_CUDA_ARCH_LIST=9.0 (no GPU visible: default H100)")
    return "9.0"


def _arch_token(archs: str) -> str:
    """'8.0;9.0+PTX' -> 'sm_80+sm_90_PTX' (a preprocessor-safe token for build_info)."""
    parts = [a for a in re.split(r"[;\s,]+", archs) if a]
    return "+".join("sm_" + a.replace("+PTX", "_PTX").replace(".", "") for a in parts) or "none"


def _gpu_visible(torch) -> bool:
    try:
        return bool(torch.cuda.is_available())
    except Exception:  # a broken driver counts as no GPU
        return False


def no_gpu_reason(environ, gpu_visible: bool):
    """Why a build that could succeed should still be skipped: no GPU is visible and nothing asked for
    the build (TORCH_CUDA_ARCH_LIST or VMAMBA_KERNELS_FORCE_BUILD); None when the build should go on."""
    if gpu_visible or environ.get("TORCH_CUDA_ARCH_LIST", "").strip() or _truthy("VMAMBA_KERNELS_FORCE_BUILD", environ):
        return None
    return ("no CUDA device is visible, so the extension could not run here and compiling it would only cost "
            "minutes; to compile it anyway (e.g. for another machine) set TORCH_CUDA_ARCH_LIST=9.0 (your GPU's "
            "compute capability) or VMAMBA_KERNELS_FORCE_BUILD=1 and reinstall")


def skip_reason(environ=None, gpu_visible=None):
    """Why the extension cannot or should not be built here, or None (also sets CUDA_HOME).

    gpu_visible: None asks torch (torch.cuda.is_available() in the build environment)."""
    environ = os.environ if environ is None else environ
    if _truthy("VMAMBA_KERNELS_SKIP_CUDA_BUILD", environ):
        return "VMAMBA_KERNELS_SKIP_CUDA_BUILD is set"
    try:
        import torch
    except ImportError:
        return "torch is not installed in the build environment (install torch first and use --no-build-isolation)"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    home, how = find_cuda_home(environ)
    if home is None:
        return how
    reason = no_gpu_reason(environ, _gpu_visible(torch) if gpu_visible is None else gpu_visible)
    if reason is not None:
        return reason
    environ["CUDA_HOME"] = home  # before torch.utils.cpp_extension reads it
    _say(f"CUDA_HOME={home} ({how})")
    return None


# pip shows a build's output only with -v: the reason a build was skipped is also left here, where the
# cuda backend reads it to say why it is unavailable (vmamba_kernels/cuda/kernels.py)
SKIP_NOTE = os.path.join(ROOT, "vmamba_kernels", "_build_skipped.txt")


def _note_skip(reason) -> None:
    try:
        if reason is None:
            if os.path.exists(SKIP_NOTE):
                os.remove(SKIP_NOTE)
        else:
            with open(SKIP_NOTE, "w") as f:
                f.write(reason + "\n")
    except OSError:  # a read-only source tree must not stop the install
        pass


def extension_modules():
    reason = skip_reason()
    if reason is not None:
        if _truthy("VMAMBA_KERNELS_FORCE_BUILD"):
            raise SystemExit(f"vmamba_kernels: VMAMBA_KERNELS_FORCE_BUILD is set but the extension cannot be built: {reason}")
        _say(f"skipping the CUDA extension {EXT_NAME}: {reason}")
        _note_skip(f"the install skipped building it: {reason}")
        return [], {}
    _note_skip(None)
    import shutil

    import torch
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    # pip does not put the environment's bin/ on PATH; torch looks for `ninja` there
    env_bin = os.path.dirname(sys.executable)
    if shutil.which("ninja") is None and os.path.isfile(os.path.join(env_bin, "ninja")):
        os.environ["PATH"] = env_bin + os.pathsep + os.environ.get("PATH", "")
    if shutil.which("ninja") is None:
        _say("ninja not found: the build will be slow and serial (pip install ninja)")
    archs = _arch_list(torch)
    os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    sources = cuda_sources()
    _say(f"building {EXT_NAME} from {len(sources)} sources: {' '.join(sources)}")
    defines = [f"-DVMAMBA_BUILD_ARCHS={_arch_token(archs)}", "-DVMAMBA_BUILDER=setup.py"] + folder_defines(sources)
    ext = CUDAExtension(EXT_NAME, sources, extra_compile_args={"cxx": CXX_FLAGS + defines, "nvcc": NVCC_FLAGS + defines})

    class BuildExt(BuildExtension):
        """Times the build; a failed build skips the extension unless VMAMBA_KERNELS_FORCE_BUILD is set."""

        def build_extensions(self):
            start = time.time()
            try:
                super().build_extensions()
            except Exception as e:
                if _truthy("VMAMBA_KERNELS_FORCE_BUILD"):
                    raise
                _say(f"building {EXT_NAME} failed ({type(e).__name__}: {e}); installing without it "
                     "(set VMAMBA_KERNELS_FORCE_BUILD=1 to make this an error)")
                _note_skip(f"the install tried to build it and failed ({type(e).__name__}); reinstall with "
                           "`pip install -v ...` to see the compiler's output")
                self.extensions = []
                return
            _say(f"built {EXT_NAME} for {archs} in {time.time() - start:.1f} s "
                 f"(MAX_JOBS={os.environ.get('MAX_JOBS', 'auto')})")

    return [ext], {"build_ext": BuildExt.with_options(use_ninja=True)}


if __name__ == "__main__":
    if "--list-sources" in sys.argv:  # read by CMakeLists.txt; imports nothing heavy
        print(";".join(cuda_sources()))
        sys.exit(0)

    from setuptools import setup

    ext_modules, cmdclass = extension_modules()
    setup(ext_modules=ext_modules, cmdclass=cmdclass)  # name, packages, extras: pyproject.toml
