"""The closed forms the CUDA and CuPy scan kernels use for softplus and its derivative, checked on the
CPU: the coefficients are read from the kernel sources and the formulas evaluated in float32 exactly as
the kernels do (fused multiply-adds aside), against float64 torch."""
import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
CUDA = ROOT / "csrc" / "selective_scan" / "selective_scan_kernels.cuh"
CUPY = ROOT / "vmamba_kernels" / "cupy" / "csrc" / "selective_scan.cu"


def _function(src: Path, name: str) -> str:
    text = src.read_text()
    start = text.index(f"float {name}(float")
    return text[start:text.index("\n}", start)]


def _horner_coeffs(body: str) -> list:
    """[first, then each fmaf(q, z, c) constant] in order: the polynomial's coefficients, highest first."""
    first = re.search(r"float q = ([-0-9.ef/ ]+);", body).group(1)
    rest = re.findall(r"q = fmaf\(q, [xz], ([-0-9.ef/ ]+)\);", body)
    return [float(eval(c.replace("f", ""))) for c in [first, *rest]]  # "1.f / 720.f" -> 1/720


def _poly(coeffs, z):
    q = torch.full_like(z, coeffs[0])
    for c in coeffs[1:]:
        q = (q * z + torch.tensor(c, dtype=torch.float32)).to(torch.float32)
    return q


@pytest.mark.parametrize("src", [CUDA, CUPY], ids=["cuda", "cupy"])
def test_softplus_matches_torch(src):
    coeffs = _horner_coeffs(_function(src, "softplus20"))
    assert len(coeffs) == 9  # degree 8
    v = torch.linspace(-30, 25, 400001, dtype=torch.float32)
    z = torch.exp(-v.abs())
    y = torch.where(v > 20, v, z * _poly(coeffs, z) + v.clamp(min=0))
    ref = torch.nn.functional.softplus(v.double(), beta=1, threshold=20)
    rel = ((y.double() - ref).abs() / ref.abs()).max().item()
    assert rel < 5e-7, rel


def test_cuda_and_cupy_use_the_same_softplus():
    assert _horner_coeffs(_function(CUDA, "softplus20")) == _horner_coeffs(_function(CUPY, "softplus20"))


def test_softplus_grad_from_dt_matches_sigmoid():
    coeffs = _horner_coeffs(_function(CUDA, "softplus_grad"))
    v = torch.linspace(-30, 30, 400001, dtype=torch.float32)
    dt = torch.nn.functional.softplus(v, threshold=20)
    x = -dt
    g = torch.where(dt < 0.5, -x * _poly(coeffs, x), 1 - torch.exp(x))
    ref = torch.where(v.double() > 20, torch.ones_like(v.double()), torch.sigmoid(v.double()))
    rel = ((g.double() - ref).abs() / ref).max().item()
    assert rel < 1e-6, rel
