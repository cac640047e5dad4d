"""Host cost of the triton backend's raw functions with direct launches through CudaLauncher.__call__ against
direct launches into its C launch (vmamba_kernels/triton/fast_launch.py), on a machine without a GPU: the kernels
compiled for sm_90 under the stand-in driver of tests/test_triton_fast_launch.py, whose C launch is a Python
stub that drops the launch while timing. What a GPU host saves on top (the C launcher's data_ptr() call and
cuPointerGetAttribute query per tensor argument) is not in these numbers. Run from the repository root:
    python reports/logs/scripts/2026-12-07_triton_c_launch_cpu.py
"""
import sys
import timeit

import torch

sys.path.insert(0, "tests")
import test_triton_fast_launch as T  # noqa: E402
from triton.runtime import driver  # noqa: E402

from vmamba_kernels.triton import dwconv, fast_launch, launch as L, layer_norm  # noqa: E402

torch.set_num_threads(1)
dwconv.sm_count = layer_norm.sm_count = lambda device: 132
d = T._StandInDriver()
driver.set_active(d)
layout = fast_launch._LAYOUT


def best_us(f, n=2000):
    return min(timeit.repeat(f, number=n, repeat=7)) / n * 1e6


def clear():
    for k in T._kernels():
        k.clear()


print(f"triton {T.triton.__version__} (C launch layout {layout}), torch {torch.__version__}; us per raw call "
      "(best of 7 x 2000), C launch stubbed")
print(f"{'case':22s} {'launches':>8s} {'__call__':>9s} {'C launch':>9s} {'saved':>7s}")
for name in sorted(T.CASES):
    fn, make = T.CASES[name](L)
    args = make()
    d.launches.clear()
    fn(*args)
    n = len(d.launches)
    d.record = False
    fast_launch._LAYOUT = None  # remembered configurations keep __call__
    clear()
    fn(*args)
    via_call = best_us(lambda: fn(*args))
    fast_launch._LAYOUT = layout
    clear()
    fn(*args)
    c_launch = best_us(lambda: fn(*args))
    d.record = True
    print(f"{name:22s} {n:8d} {via_call:9.2f} {c_launch:9.2f} {via_call - c_launch:7.2f}")
