"""Host cost of the triton backend's raw functions, launches through JITFunction.run against direct launches,
on a machine without a GPU: the kernels compiled for sm_90, the launcher stubbed by the stand-in driver of
tests/test_triton_fast_launch.py (while timing it drops the launch). Run from the repository root:
    python reports/logs/scripts/2026-12-05_triton_fast_launch_cpu.py
"""
import sys
import timeit

import torch

sys.path.insert(0, "tests")
import test_triton_fast_launch as T  # noqa: E402
from triton.runtime import driver  # noqa: E402

import vmamba_kernels as vk  # noqa: E402
from vmamba_kernels.triton import dwconv, launch as L, layer_norm  # noqa: E402

torch.set_num_threads(1)
dwconv.sm_count = layer_norm.sm_count = lambda device: 132
d = T._StandInDriver()
driver.set_active(d)


def best_us(f, n=2000):
    return min(timeit.repeat(f, number=n, repeat=7)) / n * 1e6


print(f"triton {T.triton.__version__}, torch {torch.__version__}; us per raw call (best of 7 x 2000), launcher stubbed")
print(f"{'case':22s} {'launches':>8s} {'JIT run':>8s} {'direct':>8s} {'saved':>7s}")
for name in sorted(T.CASES):
    fn, make = T.CASES[name](L)
    args = make()
    with vk.tuning("triton", fast_launch=False):
        fn(*args)
        d.launches.clear()
        fn(*args)
        n = len(d.launches)
        d.record = False
        jit = best_us(lambda: fn(*args))
    fn(*args)
    direct = best_us(lambda: fn(*args))
    d.record = True
    d.launches.clear()
    print(f"{name:22s} {n:8d} {jit:8.2f} {direct:8.2f} {jit - direct:7.2f}")
