"""CPU A/B: public calls with dispatch's fast_call on and off (dispatch.use_fast_call), impl triton with bench.overhead's
stand-in kernels (they only allocate their outputs), VMamba-T stage 3 shapes, fp16, batch 1. With grad the calls run
the C++ nodes around triton's (stand-in) raw kernels: fast_call runs them natively; without grad they run the raw
kernels as bodies: fast_call runs its Python entry (the prepared call without dispatch.prepare). Order off, on, off,
on; min and median of 15 rounds x 2000 calls, us per call."""
import os, statistics, time
os.environ.setdefault("TRITON_INTERPRET", "1")
import torch
from vmamba_kernels import dispatch
from bench import overhead as ov


def rounds(fn, n=2000, r=15):
    for _ in range(200):
        fn()
    out = []
    for _ in range(r):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        out.append((time.perf_counter() - t) / n * 1e6)
    return min(out), statistics.median(out)


with ov.mocked_kernels("triton"):
    res = {}
    for op in ("selective_scan", "add_layer_norm", "cross_scan", "cross_merge", "dwconv2d"):
        for grad in (True, False):
            case = ov._inputs(op, "t_s3", torch.device("cpu"), torch.float16, grad, "triton")
            for on in (False, True, False, True):
                dispatch.use_fast_call(on)
                res.setdefault((op, grad, on), []).append(rounds(case.call))
    print("stats (native hits, python hits, misses):", dispatch.fast_call_stats())
    for (op, grad, on), v in res.items():
        print(f"{op:15s} grad={str(grad):5s} fast_call={'on ' if on else 'off'} "
              + "  ".join(f"min {a:5.2f} median {m:5.2f}" for a, m in v))
