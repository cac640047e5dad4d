"""Host cost of the triton backend's raw functions with direct launches keyed by the Python loop against the
compiled extension's launch_key (vmamba_kernels/triton/fast_launch.py, csrc/common/arg_key.h), on a machine
without a GPU: the kernels compiled for sm_90 under the stand-in driver of tests/test_triton_fast_launch.py,
whose C launch is a Python stub that drops the launch while timing. Rounds alternate the two keys. Run from the
repository root, with the extension built:
    python reports/logs/scripts/2026-12-07_triton_launch_key_cpu.py [rounds]
"""
import statistics
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
rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
native, why = T._native_launch_key()
assert native is not None, why


def best_us(f, n=2000):
    return min(timeit.repeat(f, number=n, repeat=7)) / n * 1e6


print(f"triton {T.triton.__version__} (C launch layout {fast_launch._LAYOUT}), torch {torch.__version__}; us per raw "
      f"call (best of 7 x 2000), C launch stubbed; median of {rounds} alternating rounds")
res = {}
for name in sorted(T.CASES):
    fn, make = T.CASES[name](L)
    args = make()
    d.launches.clear()
    fn(*args)
    n = len(d.launches)
    d.record = False
    for r in range(rounds):
        for on in (False, True):
            fast_launch.use_native_launch_key(on)
            fn(*args)
            fn(*args)
            res.setdefault((name, on), []).append(best_us(lambda: fn(*args)))
    assert fast_launch.native_launch_key()
    d.record = True
    py, c = statistics.median(res[(name, False)]), statistics.median(res[(name, True)])
    print(f"{name:22s} launches {n}  python key {py:7.2f}  native key {c:7.2f}  saved {py - c:6.2f}   "
          f"rounds python {' '.join(f'{v:.2f}' for v in res[(name, False)])} native "
          f"{' '.join(f'{v:.2f}' for v in res[(name, True)])}")
