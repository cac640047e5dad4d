"""The build (CPU): setup.py's one source list, CMake reading it, the CUDA toolkit finder, the
skip-without-nvcc path, and (when built) the compiled extension's op schemas."""
from __future__ import annotations

import importlib.util
import glob
import os
import re
import shutil
import stat
import subprocess
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _load_setup():
    spec = importlib.util.spec_from_file_location("vmamba_setup", os.path.join(ROOT, "setup.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # setup() runs only under __main__
    return mod


setup_py = _load_setup()


def _walk_sources():
    found = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "csrc")):
        for f in files:
            if f.endswith((".cu", ".cpp")):
                found.append(os.path.relpath(os.path.join(dirpath, f), ROOT).replace(os.sep, "/"))
    return sorted(found)


# ---- one source list ----------------------------------------------------------------------------------
def test_source_list_is_every_cpp_and_cu_under_csrc(monkeypatch):
    monkeypatch.delenv("VMAMBA_KERNELS_ONLY", raising=False)
    srcs = setup_py.cuda_sources()
    assert srcs == _walk_sources()
    assert "csrc/module.cpp" in srcs
    assert {"csrc/cross_scan/cross_scan.cpp", "csrc/cross_scan/cross_scan_kernels.cu"} <= set(srcs)
    # the fused LayerNorm and the depthwise conv: the op files, the dispatchers and every per-dtype unit
    norm_dw = {"csrc/layer_norm/layer_norm.cpp", "csrc/layer_norm/layer_norm_launch.cu",
               "csrc/dwconv/dwconv.cpp", "csrc/dwconv/dwconv_launch.cu"}
    norm_dw |= {f"csrc/layer_norm/layer_norm_{d}_{t}.cu" for d in ("fwd", "bwd") for t in ("f32", "f16", "bf16")}
    norm_dw |= {f"csrc/dwconv/dwconv_{lay}_{t}.cu" for lay in ("cf", "cl") for t in ("f32", "f16", "bf16")}
    assert norm_dw <= set(srcs), sorted(norm_dw - set(srcs))


def test_list_sources_cli_prints_the_same_list(monkeypatch):
    monkeypatch.delenv("VMAMBA_KERNELS_ONLY", raising=False)
    env = {k: v for k, v in os.environ.items() if k != "VMAMBA_KERNELS_ONLY"}
    out = subprocess.run([sys.executable, "setup.py", "--list-sources"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout.strip()
    assert out.split(";") == setup_py.cuda_sources()


def test_only_filter_keeps_module_common_and_named_folders():
    srcs = setup_py.cuda_sources(only="cross_scan")
    assert "csrc/module.cpp" in srcs
    assert all(s == "csrc/module.cpp" or s.startswith(("csrc/cross_scan/", "csrc/common/")) for s in srcs)
    assert not any(s.startswith("csrc/selective_scan/") for s in srcs)
    srcs = setup_py.cuda_sources(only="layer_norm,dwconv")
    assert any(s.startswith("csrc/layer_norm/") for s in srcs) and any(s.startswith("csrc/dwconv/") for s in srcs)
    assert not any(s.startswith(("csrc/cross_scan/", "csrc/selective_scan/")) for s in srcs)


def test_folder_defines_name_the_built_op_folders():
    """module.cpp binds an op's entry points only under VMAMBA_WITH_<FOLDER> (a partial build has no others to
    link); every folder with entry points in csrc/ops.h has its define in a full build."""
    full = setup_py.folder_defines(setup_py.cuda_sources())
    assert full == [f"-DVMAMBA_WITH_{f}" for f in ("AUTOGRAD", "CROSS_SCAN", "DWCONV", "LAYER_NORM", "SELECTIVE_SCAN",
                                                   "SS2D_CORE", "VSS_STAGE")]
    assert setup_py.folder_defines(setup_py.cuda_sources(only="cross_scan")) == ["-DVMAMBA_WITH_CROSS_SCAN"]
    with open(os.path.join(ROOT, "csrc", "module.cpp")) as f:
        module = f.read()
    for d in full:
        assert f"#ifdef {d[2:]}" in module


def test_cmake_reads_setup_py_list():
    text = open(os.path.join(ROOT, "CMakeLists.txt")).read()
    assert "setup.py --list-sources" in text
    # no second list: the library's sources are exactly the variable filled from setup.py
    assert re.search(r"add_library\(\s*\S+\s+SHARED\s+\$\{VMAMBA_SOURCES\}\s*\)", text)
    assert "GLOB" not in text


@pytest.mark.skipif(shutil.which("cmake") is None, reason="needs cmake")
def test_cmake_configure_uses_the_same_sources(tmp_path):
    home, how = setup_py.find_cuda_home()
    if home is None or torch.version.cuda is None:
        pytest.skip(f"needs a CUDA toolkit and a CUDA build of torch ({how})")
    res = subprocess.run(
        ["cmake", "-S", ROOT, "-B", str(tmp_path), f"-DCMAKE_CUDA_COMPILER={home}/bin/nvcc",
         f"-DPython3_EXECUTABLE={sys.executable}"],
        capture_output=True, text=True, env={k: v for k, v in os.environ.items() if k != "VMAMBA_KERNELS_ONLY"})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    m = re.search(r"vmamba_kernels: (\d+) sources from setup.py", res.stdout)
    assert m and int(m.group(1)) == len(_walk_sources()), res.stdout[-2000:]


# ---- CUDA_HOME finder -----------------------------------------------------------------------------------
def _exe(path, text):
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


@pytest.fixture
def fake_toolkit(tmp_path):
    """tmp/cuda-13.0/{bin/nvcc, lib64}: an nvcc that answers -dryrun like the real one."""
    tk = tmp_path / "cuda-13.0"
    (tk / "bin").mkdir(parents=True)
    (tk / "lib64").mkdir()
    _exe(tk / "bin" / "nvcc", f'#!/bin/sh\necho "#$ TOP={tk}/bin/.." >&2\nexit 0\n')
    return tk


def test_finder_without_nvcc_reports_why(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    home, why = setup_py.find_cuda_home({"PATH": str(empty)})
    assert home is None and "nvcc" in why


def test_finder_follows_symlinked_nvcc(tmp_path, fake_toolkit):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(fake_toolkit / "bin" / "nvcc", bindir / "nvcc")
    home, _ = setup_py.find_cuda_home({"PATH": str(bindir)})
    assert home == os.path.realpath(fake_toolkit)


def test_finder_sees_through_a_wrapper_script(tmp_path, fake_toolkit):
    # like /usr/local/bin/nvcc here: a script that execs the real one; torch would guess /usr/local
    local = tmp_path / "usr_local"
    (local / "bin").mkdir(parents=True)
    (local / "lib").mkdir()  # a lib but no lib64: not a toolkit
    _exe(local / "bin" / "nvcc", f'#!/bin/sh\nexec {fake_toolkit}/bin/nvcc "$@"\n')
    home, how = setup_py.find_cuda_home({"PATH": str(local / "bin")})
    assert home == os.path.realpath(fake_toolkit), how
    # a CUDA_HOME that is no toolkit is ignored in favour of the real one
    home, _ = setup_py.find_cuda_home({"PATH": str(local / "bin"), "CUDA_HOME": str(local)})
    assert home == os.path.realpath(fake_toolkit)


def test_finder_honours_cuda_home(tmp_path, fake_toolkit):
    empty = tmp_path / "empty"
    empty.mkdir()
    home, how = setup_py.find_cuda_home({"PATH": str(empty), "CUDA_HOME": str(fake_toolkit)})
    assert home == str(fake_toolkit) and how == "$CUDA_HOME"


@pytest.mark.skipif(not os.path.exists("/usr/local/bin/nvcc"), reason="this machine's nvcc wrapper is absent")
def test_finder_on_this_machine():
    home, how = setup_py.find_cuda_home({"PATH": "/usr/local/bin:/usr/bin:/bin"})
    assert home is not None and os.path.isdir(os.path.join(home, "lib64")), how
    assert os.path.realpath(home) != "/usr/local"


# ---- skipping -----------------------------------------------------------------------------------------
def test_skip_reason_without_nvcc(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    reason = setup_py.skip_reason({"PATH": str(empty)})
    if torch.version.cuda is None:
        assert "CPU-only" in reason
    else:
        assert reason is not None and "nvcc" in reason


def test_skip_env_and_force(tmp_path, monkeypatch, capsys):
    assert "VMAMBA_KERNELS_SKIP_CUDA_BUILD" in setup_py.skip_reason({"VMAMBA_KERNELS_SKIP_CUDA_BUILD": "1"})
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.delenv("VMAMBA_KERNELS_FORCE_BUILD", raising=False)
    note = tmp_path / "_build_skipped.txt"
    monkeypatch.setattr(setup_py, "SKIP_NOTE", str(note))
    assert setup_py.extension_modules() == ([], {})
    assert "skipping the CUDA extension" in capsys.readouterr().out
    assert note.read_text().startswith("the install skipped building it: ")  # what the cuda backend reports
    monkeypatch.setenv("VMAMBA_KERNELS_FORCE_BUILD", "1")
    with pytest.raises(SystemExit, match="cannot be built"):
        setup_py.extension_modules()


# ---- no GPU visible: skip unless asked ----------------------------------------------------------------
@pytest.mark.parametrize("environ,gpu,skips", [
    ({}, False, True),                                             # a laptop / CI runner without a GPU
    ({}, True, False),                                             # a GPU machine: build for its GPU
    ({"TORCH_CUDA_ARCH_LIST": "9.0"}, False, False),               # asked for: build for another machine
    ({"TORCH_CUDA_ARCH_LIST": "  "}, False, True),                 # blank is not asking
    ({"VMAMBA_KERNELS_FORCE_BUILD": "1"}, False, False),           # CI: compile errors must fail
    ({"VMAMBA_KERNELS_FORCE_BUILD": "0"}, False, True),
    ({"VMAMBA_KERNELS_FORCE_BUILD": "1", "TORCH_CUDA_ARCH_LIST": "9.0"}, False, False),  # .ci/run's setting
])
def test_no_gpu_decision(environ, gpu, skips):
    reason = setup_py.no_gpu_reason(environ, gpu)
    assert (reason is not None) == skips
    if skips:  # why, and how to force it
        assert "no CUDA device is visible" in reason
        assert "TORCH_CUDA_ARCH_LIST=9.0" in reason and "VMAMBA_KERNELS_FORCE_BUILD=1" in reason


def test_skip_reason_without_gpu_with_a_toolkit(fake_toolkit):
    if torch.version.cuda is None:
        pytest.skip("a CPU-only torch is skipped before the GPU question")
    env = {"PATH": "/nonexistent", "CUDA_HOME": str(fake_toolkit)}
    assert "no CUDA device is visible" in setup_py.skip_reason(dict(env), gpu_visible=False)
    assert setup_py.skip_reason(dict(env), gpu_visible=True) is None
    forced = dict(env, TORCH_CUDA_ARCH_LIST="9.0")
    assert setup_py.skip_reason(forced, gpu_visible=False) is None and forced["CUDA_HOME"] == str(fake_toolkit)


def test_ci_keeps_forcing_the_build():
    text = open(os.path.join(ROOT, ".ci", "run")).read()
    assert re.search(r"export VMAMBA_KERNELS_FORCE_BUILD=1 TORCH_CUDA_ARCH_LIST=9\.0", text)


def test_readme_and_setup_agree_on_python():
    req = re.search(r'requires-python = ">=(3\.\d+)"', open(os.path.join(ROOT, "pyproject.toml")).read()).group(1)
    readme = open(os.path.join(ROOT, "README.md")).read()
    assert f"Python {req} or newer" in readme
    for var in ("VMAMBA_KERNELS_SKIP_CUDA_BUILD", "TORCH_CUDA_ARCH_LIST", "download.pytorch.org/whl/cpu"):
        assert var in readme, var


def test_cuda_backend_reports_the_skip_note(tmp_path):
    """The note setup.py leaves is what `list_impls` shows for an unbuilt extension."""
    code = ("import importlib.util, sys\n"
            "from vmamba_kernels.cuda import extension\n")
    if importlib.util.find_spec("vmamba_kernels._C") is not None:
        pytest.skip("the extension is built here")
    note = os.path.join(ROOT, "vmamba_kernels", "_build_skipped.txt")
    if os.path.exists(note):
        pytest.skip("a real skip note exists in this checkout")
    try:
        with open(note, "w") as f:
            f.write("the install skipped building it: planted reason\n")
        r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    finally:
        os.remove(note)
    assert "ImportError: the compiled extension vmamba_kernels._C is not built (the install skipped building it: " \
           "planted reason)" in r.stderr, r.stderr[-2000:]


def test_arch_token():
    assert setup_py._arch_token("9.0") == "sm_90"
    assert setup_py._arch_token("8.0;9.0+PTX") == "sm_80+sm_90_PTX"


# ---- the built extension (when present) -------------------------------------------------------------
def _built():
    try:
        import vmamba_kernels._C as C  # noqa: F401
    except ImportError as e:
        pytest.skip(f"vmamba_kernels._C is not built here ({e})")
    return C


def test_built_extension_schemas():
    C = _built()
    info = C.build_info()
    assert info["builder"] == "setup.py" and info["archs"].startswith("sm_")
    ops = torch.ops.vmamba_cuda
    assert str(ops.cross_scan.default._schema) == \
        "vmamba_cuda::cross_scan(Tensor x, str mode, bool channels_last) -> Tensor"
    assert str(ops.cross_merge.default._schema) == \
        "vmamba_cuda::cross_merge(Tensor y, int H, int W, str mode, bool channels_last) -> Tensor"


def test_built_extension_scan_schemas():
    _built()
    if not any(s.startswith("csrc/selective_scan/") for s in _walk_sources()):
        pytest.skip("csrc/selective_scan has no sources yet")
    try:
        fwd = torch.ops.vmamba_cuda.selective_scan_fwd.default._schema
        bwd = torch.ops.vmamba_cuda.selective_scan_bwd.default._schema
    except (AttributeError, RuntimeError):
        pytest.fail("the extension was built without the selective scan ops (VMAMBA_KERNELS_ONLY?)")
    assert str(fwd) == ("vmamba_cuda::selective_scan_fwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, "
                        "Tensor? D, Tensor? delta_bias, bool delta_softplus, ScalarType out_dtype) "
                        "-> (Tensor, Tensor, Tensor)")
    assert str(bwd).startswith("vmamba_cuda::selective_scan_bwd(Tensor u, Tensor delta, Tensor A, Tensor B, "
                               "Tensor C, Tensor? D, Tensor? delta_bias, bool delta_softplus, Tensor dout, "
                               "Tensor aux) -> (")


def test_built_extension_norm_dwconv_schemas():
    _built()
    ops = torch.ops.vmamba_cuda
    try:
        schemas = {n: str(getattr(ops, n).default._schema) for n in
                   ("add_layer_norm_fwd", "add_layer_norm_infer", "add_layer_norm_bwd", "dwconv2d_fwd", "dwconv2d_bwd")}
    except (AttributeError, RuntimeError):
        pytest.fail("the extension was built without the layer norm / depthwise conv ops (VMAMBA_KERNELS_ONLY?)")
    assert schemas["add_layer_norm_fwd"] == (
        "vmamba_cuda::add_layer_norm_fwd(Tensor x, Tensor? branch, Tensor weight, Tensor? bias, Tensor? branch_scale, "
        "float eps, bool channels_last, ScalarType? out_dtype) -> (Tensor, Tensor, Tensor, Tensor)")
    assert schemas["add_layer_norm_infer"] == (
        "vmamba_cuda::add_layer_norm_infer(Tensor x, Tensor? branch, Tensor weight, Tensor? bias, Tensor? branch_scale, "
        "float eps, bool channels_last, ScalarType? out_dtype) -> (Tensor, Tensor)")
    assert schemas["add_layer_norm_bwd"] == (
        "vmamba_cuda::add_layer_norm_bwd(Tensor dy, Tensor? ds, Tensor s, Tensor weight, Tensor? bias, Tensor? mean, "
        "Tensor rstd, Tensor? branch_scale, bool has_branch, bool channels_last, ScalarType x_dtype, "
        "bool from_y=False) -> (Tensor, Tensor, Tensor, Tensor)")
    assert schemas["dwconv2d_fwd"] == (
        "vmamba_cuda::dwconv2d_fwd(Tensor x, Tensor weight, Tensor? bias, str act, bool channels_last) -> Tensor")
    assert schemas["dwconv2d_bwd"] == (
        "vmamba_cuda::dwconv2d_bwd(Tensor dy, Tensor x, Tensor weight, Tensor? bias, str act, bool channels_last) "
        "-> (Tensor, Tensor, Tensor)")


def test_tune_harness_compiles_with_nvcc_sm90(tmp_path):
    """bench/tuning/scan.cu includes the scan kernels and their launch units: keep it
    compiling (it is not part of the extension build, so nothing else would notice it rot)."""
    from tests.test_cupy import IN_CI, _nvcc

    nvcc = _nvcc()
    if nvcc is None:
        if IN_CI:
            pytest.fail("nvcc not found: CI must have nvcc")
        pytest.skip("nvcc not found (PATH, $CUDA_HOME, /usr/local/cuda-13.0)")
    cmd = [nvcc, "-std=c++17", "-O1", "--use_fast_math", "-arch=sm_90", f"-I{os.path.join(ROOT, 'csrc')}",
           "-c", os.path.join(ROOT, "bench", "tuning", "scan.cu"), "-o", str(tmp_path / "tune.o")]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"nvcc failed on bench/tuning/scan.cu:\n{r.stderr[-4000:]}"


def test_built_extension_reports_its_scan_chunk_and_takes_knobs():
    """build_info carries the scan chunk Python declares the aux shape with; the knob ops (no GPU needed)
    take vmamba_kernels.tuning("cuda", ...) and give the environment's value back on exit."""
    C = _built()
    import vmamba_kernels as vk
    from vmamba_kernels.cuda import extension

    text = open(os.path.join(ROOT, "csrc", "selective_scan", "selective_scan.h")).read()
    items = int(re.search(r"constexpr int kItems = (\d+);", text).group(1))
    assert C.build_info()["scan_chunk"] == str(32 * items) and extension.scan_chunk() == 32 * items
    env = extension.knobs()
    assert set(env) >= {"VMAMBA_SCAN_POISON", "VMAMBA_CROSS_CL_TILE"}
    with vk.tuning("cuda", scan_poison=True, cross_cl_tile="5x7x16"):
        now = extension.knobs()
        assert now["VMAMBA_SCAN_POISON"] == "1" and now["VMAMBA_CROSS_CL_TILE"] == "5x7x16"
    assert extension.knobs() == env
    with pytest.raises(RuntimeError, match="unknown knob 'VMAMBA_NOPE'"):
        torch.ops.vmamba_cuda.set_knob("VMAMBA_NOPE", "1")


def _call_args(text: str, start: int) -> list:
    """The top-level comma-separated arguments of the call whose '(' is at text[start] (strings and nesting kept)."""
    depth, args, cur, i, quote = 0, [], [], start, None
    while i < len(text):
        c = text[i]
        if quote:
            cur.append(c)
            if c == "\\":
                cur.append(text[i + 1])
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
            cur.append(c)
        elif c in "([{":
            depth += 1
            if depth > 1:
                cur.append(c)
        elif c in ")]}":
            depth -= 1
            if depth == 0:
                args.append("".join(cur).strip())
                return args
            cur.append(c)
        elif c == "," and depth == 1:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    raise AssertionError(f"unbalanced call at {start}")


def test_check_messages_are_built_without_streams():
    """Every TORCH_CHECK in csrc/ builds its message with vmamba::detail::message (csrc/common/common.h): on the GPU
    machine a message that streamed a number through c10::str crashed the process instead of raising (2026-11-26,
    and GPU calls 66-67's bad-pack test of csrc/vss_stage). Planted: a TORCH_CHECK(cond, "got ", n) fails this."""
    bad = []
    for path in sorted(glob.glob(os.path.join(ROOT, "csrc", "**", "*.*"), recursive=True)):
        if not path.endswith((".cpp", ".cu", ".h", ".cuh")):
            continue
        text = open(path).read()
        for m in re.finditer(r"\bTORCH_CHECK\s*\(", text):
            args = _call_args(text, m.end() - 1)
            if len(args) != 2 or not re.match(r"(::)?vmamba::detail::message\(", args[1]):
                line = text.count("\n", 0, m.start()) + 1
                bad.append(f"{os.path.relpath(path, ROOT)}:{line}: {' '.join(text[m.start():m.start() + 90].split())}")
    assert not bad, "TORCH_CHECK messages must be ::vmamba::detail::message(...):\n" + "\n".join(bad)
