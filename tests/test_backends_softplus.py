"""The polynomial tables behind the kernels' softplus and its derivative, read from the kernel sources.

Only the tables are checked here: each fits its function on its whole domain, and the CUDA and Triton
copies agree (the cupy backend compiles the CUDA source itself: tests/test_cupy_sources.py). How the
kernels use them (max(v, 0), the threshold 20, the small-dt branch of the derivative) is tested through the kernels themselves, on inputs that cross every branch, against torch's
softplus in float64: tests/scan_cases.SOFTPLUS_SWEEP and make_inputs(ranges="vmamba"), run by
test_backends.py (every backend), test_reference.py, test_triton.py and the GPU test files.
"""
import math
import re
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
CUDA = ROOT / "csrc" / "selective_scan" / "selective_scan_kernels.cuh"
TRITON = ROOT / "vmamba_kernels" / "triton" / "selective_scan.py"
_NUM = r"(-?[0-9.]+(?:e-?[0-9]+)?f?(?: / [0-9.]+f?)?)"


def _c_function(src: Path, name: str) -> str:
    text = src.read_text()
    start = text.index(f"float {name}(float")
    return text[start:text.index("\n}", start)]


def _c_horner(body: str) -> list:
    """[first, then each fmaf(q, z, c) constant] in order: the polynomial's coefficients, highest first."""
    first = re.search(r"float q = " + _NUM + ";", body).group(1)
    rest = re.findall(r"q = fmaf\(q, [xz], " + _NUM + r"\);", body)
    return [float(eval(c.replace("f", ""))) for c in [first, *rest]]  # "1.f / 720.f" -> 1/720


def _triton_horner() -> list:
    text = TRITON.read_text()
    body = text[text.index("def _softplus(x, z):"):text.index("return tl.maximum(x, 0.0)")]
    first = re.search(r"p = ([0-9.e-]+) \* z ([-+]) ([0-9.e-]+)", body)
    coeffs = [float(first.group(1)), float(first.group(2) + first.group(3))]
    coeffs += [float(s + c) for s, c in re.findall(r"p = p \* z ([-+]) ([0-9.e-]+)", body)]
    return coeffs


def _poly64(coeffs, z):
    q = torch.full_like(z, coeffs[0])
    for c in coeffs[1:]:
        q = q * z + c
    return q


def test_log1p_table_fits_on_its_domain():
    """softplus(v) = max(v, 0) + log1p(z), z = exp(-|v|) in (0, 1]: log1p(z) = z P(z) for every such z
    (the fit's own error, in float64: the kernels' comments state 2e-7)."""
    coeffs = _c_horner(_c_function(CUDA, "softplus20"))
    assert len(coeffs) == 9  # degree 8
    z = torch.cat([torch.logspace(-30, 0, 20001, dtype=torch.float64), torch.linspace(0, 1, 20001, dtype=torch.float64)[1:]])
    rel = ((z * _poly64(coeffs, z) - torch.log1p(z)).abs() / torch.log1p(z)).max().item()
    assert rel < 2e-7, rel


def test_cuda_and_triton_use_the_same_softplus_table():
    assert _triton_horner() == _c_horner(_c_function(CUDA, "softplus20"))


def test_expm1_table_is_the_taylor_series():
    """softplus'(v) = sigmoid(v) = 1 - exp(-dt) = dt q(-dt): q is the Taylor series of -expm1(x) / x
    (x = -dt), coefficients 1 / (k + 1)!, highest first."""
    coeffs = _c_horner(_c_function(CUDA, "softplus_grad"))
    assert coeffs == [1 / math.factorial(k + 1) for k in range(len(coeffs) - 1, -1, -1)]
    assert len(coeffs) == 7  # through x^6: truncation below 1e-8 relative for dt <= 0.5
