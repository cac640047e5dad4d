"""CPU A/B: a public call without grad through the Python body (kind "body") against the raw kernel as the body (kind
"body_native"), triton with bench.overhead's stand-in kernels; min and median of 15 rounds x 2000 calls, us per call."""
import os, statistics, time
os.environ.setdefault("TRITON_INTERPRET", "1")
import torch
import vmamba_kernels as vk
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
    b = dispatch.get_backend("triton")
    mod = b._impl
    native = dict(mod.body_ops_native)
    res = {}
    for op in ("selective_scan", "add_layer_norm", "cross_scan", "cross_merge", "dwconv2d"):
        case = ov._inputs(op, "t_s3", torch.device("cpu"), torch.float16, False, "triton")
        for label, bodies in (("body", {}), ("body_native", native), ("body ", {}), ("body_native ", native)):
            mod.body_ops_native = bodies
            dispatch.clear_choice_cache()
            res.setdefault((op, label.strip()), []).append(rounds(case.call))
    for (op, label), v in res.items():
        print(f"{op:15s} {label:12s} " + "  ".join(f"min {a:5.2f} median {m:5.2f}" for a, m in v))
