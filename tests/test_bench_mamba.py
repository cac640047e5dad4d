"""bench.build_mamba_ssm / bench.mamba_ref: what can be checked without a GPU (and a GPU test)."""
import os
from pathlib import Path

import pytest
import torch

from bench import build_mamba_ssm as BM
from bench import mamba_ref as MR

SDIST = BM.DEFAULT_SDIST


def test_extract_sources(tmp_path):
    if not SDIST.is_file():
        pytest.skip(f"sdist not present at {SDIST} (download: MAMBA_SKIP_CUDA_BUILD=TRUE pip download --no-deps "
                    f"--no-build-isolation mamba-ssm==2.3.2.post1 -d .sdist)")
    srcs = BM.extract_sources(SDIST, tmp_path / "src")
    assert [s.name for s in srcs] == list(BM.SOURCES)
    names = sorted(p.name for p in (tmp_path / "src").iterdir())
    assert "selective_scan.h" in names and "static_switch.h" in names and "reverse_scan.cuh" in names
    assert all("/" not in n for n in names)
    cpp = (tmp_path / "src" / "selective_scan.cpp").read_text()
    # both complex .cu files and the complex dispatch branch are kept: consistent
    assert "ComplexFloat" in cpp and "selective_scan_bwd_fp32_complex.cu" in BM.SOURCES
    mtime = srcs[0].stat().st_mtime_ns
    BM.extract_sources(SDIST, tmp_path / "src")  # unchanged sdist: no re-extraction
    assert srcs[0].stat().st_mtime_ns == mtime


def test_missing_sdist_says_how_to_get_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="pip download"):
        BM.extract_sources(tmp_path / "nope.tar.gz", tmp_path / "src")


def test_arch_selection(monkeypatch):
    assert BM.pick_arch("9.0") == "9.0"
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")
    assert BM.pick_arch(None) == "8.0"
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "9.0+PTX")
    assert BM.pick_arch(None) == "9.0"
    assert BM.gencode_flags("9.0") == ["-gencode", "arch=compute_90,code=sm_90"]
    with pytest.raises(SystemExit):
        BM.pick_arch("sm90")
    # mamba's flags minus its architectures and minus -std (torch picks the standard)
    assert not any("arch" in f or f.startswith("-std") for f in BM.NVCC_FLAGS)
    assert "--use_fast_math" in BM.NVCC_FLAGS


def test_cuda_home_found():
    home = BM.find_cuda_home()
    if home is None:
        pytest.skip("no CUDA toolkit on this machine")
    assert (Path(home) / "bin" / "nvcc").exists()


def test_loader_reports_a_reason(monkeypatch, tmp_path):
    monkeypatch.setattr(MR, "search_paths", lambda: [tmp_path])
    monkeypatch.setattr(MR, "MODULE", "selective_scan_cuda_that_does_not_exist")
    monkeypatch.setattr(MR, "_STATE", {})
    assert MR.load_selective_scan_cuda() is None
    assert "bench.build_mamba_ssm" in MR.unavailable_reason()


@pytest.mark.gpu
def test_mamba_wrapper_matches_reference():
    if MR.load_selective_scan_cuda() is None:
        pytest.skip(MR.unavailable_reason())
    from reference.selective_scan import selective_scan_ref

    g = torch.Generator().manual_seed(0)
    b, kd, L, n = 2, 8, 197, 4
    u, delta = torch.randn(b, kd, L, generator=g), torch.rand(b, kd, L, generator=g) * 0.5
    A, B, C = -torch.rand(kd, n, generator=g) - 0.5, torch.randn(b, 4, n, L, generator=g), torch.randn(b, 4, n, L, generator=g)
    D, bias = torch.randn(kd, generator=g), torch.rand(kd, generator=g) * 0.5
    args = [t.cuda().requires_grad_() for t in (u, delta, A, B, C, D, bias)]
    out, last = MR.mamba_selective_scan(*args[:5], args[5], args[6], softplus=True, return_last_state=True)
    ref_args = [t.detach().double().requires_grad_() for t in args]
    ref, ref_last = selective_scan_ref(*ref_args[:5], ref_args[5], ref_args[6], delta_softplus=True,
                                       return_last_state=True)
    torch.testing.assert_close(out.double(), ref, rtol=6e-4, atol=2e-3)
    torch.testing.assert_close(last.double(), ref_last.double(), rtol=6e-4, atol=2e-3)
    dout = torch.randn_like(out)
    out.backward(dout)
    ref.backward(dout.double())
    for a, r in zip(args, ref_args):
        torch.testing.assert_close(a.grad.double(), r.grad, rtol=5e-3, atol=1e-2)
