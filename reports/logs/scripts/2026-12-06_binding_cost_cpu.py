"""Host cost of one call of a 9-argument C++ op (selective_scan_fwd's signature, a body that returns its inputs)
through torch.ops (the dispatcher: schema-driven argument parsing) against a direct pybind11 binding of the same
function, on the CPU (no GPU needed). Builds a throwaway extension with torch.utils.cpp_extension.load.

    python reports/logs/scripts/2026-12-06_binding_cost_cpu.py
"""
import os
import tempfile
import time

import torch
from torch.utils.cpp_extension import load

SRC = r"""
#include <torch/extension.h>
#include <torch/library.h>
#include <tuple>
using at::Tensor;
std::tuple<Tensor, Tensor, Tensor> fwd(const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
    const Tensor& C, const std::optional<Tensor>& D, const std::optional<Tensor>& bias, bool softplus,
    at::ScalarType out_dtype) {
  return {u, delta, A};
}
TORCH_LIBRARY(binding_cost, m) {
  m.def("fwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? bias, bool softplus, "
        "ScalarType out_dtype) -> (Tensor, Tensor, Tensor)");
}
TORCH_LIBRARY_IMPL(binding_cost, CPU, m) { m.impl("fwd", &fwd); }
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("fwd", &fwd);
  m.def("fwd_release", &fwd, pybind11::call_guard<pybind11::gil_scoped_release>());
}
"""


def best_us(f, n=50000, rounds=5):
    for _ in range(1000):
        f()
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            f()
        best = min(best, (time.perf_counter() - t) / n * 1e6)
    return best


def main():
    d = tempfile.mkdtemp()
    path = os.path.join(d, "binding_cost.cpp")
    with open(path, "w") as f:
        f.write(SRC)
    mod = load("binding_cost", [path], extra_cflags=["-O2"], build_directory=d, verbose=False)
    torch.set_num_threads(1)
    u = torch.randn(1, 384, 196)
    A = torch.randn(384, 1)
    B = torch.randn(1, 4, 1, 196)
    D = torch.randn(384)
    args = (u, u, A, B, B, D, D, True, torch.float16)
    print(f"torch {torch.__version__}; us per call, best of 5 x 50000")
    for label, fn in (("torch.ops (dispatcher)", torch.ops.binding_cost.fwd),
                      ("pybind11, GIL held", mod.fwd), ("pybind11, GIL released", mod.fwd_release)):
        print(f"  {label:26s} {best_us(lambda: fn(*args)):6.2f}")


if __name__ == "__main__":
    main()
