"""CPU: the public selective_scan call with dispatch fast_call off and on, impl triton with bench.overhead stand-in
kernels, at the "tiny" and VMamba-T stage 3 shapes, with and without grad; order off, on, off, on; min / median of 15
rounds x 2000 calls, us (2026-12-08, reports/logs/2026-12-08_fast_call.md)."""
import os, statistics, time
os.environ.setdefault("TRITON_INTERPRET", "1")
import torch
from vmamba_kernels import dispatch
from bench import overhead as ov
def rounds(fn, n=2000, r=15):
    for _ in range(200): fn()
    out = []
    for _ in range(r):
        t = time.perf_counter()
        for _ in range(n): fn()
        out.append((time.perf_counter() - t) / n * 1e6)
    return "min %5.2f med %5.2f" % (min(out), statistics.median(out))
with ov.mocked_kernels("triton"):
    for shape in ("tiny", "t_s3"):
        for grad in (True, False):
            case = ov._inputs("selective_scan", shape, torch.device("cpu"), torch.float16, grad, "triton")
            for on in (False, True, False, True):
                dispatch.use_fast_call(on)
                print(shape, grad, on, rounds(case.call))
