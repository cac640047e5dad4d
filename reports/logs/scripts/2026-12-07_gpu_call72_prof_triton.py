"""Call 72: where the public triton call with grad (scan, add_layer_norm) spends host time: cProfile of 1000 calls."""
import cProfile, io, pstats, time
import torch
from bench import overhead as ov
for op in ("selective_scan", "add_layer_norm"):
    case = ov._inputs(op, "t_s3", torch.device("cuda"), torch.float16, True, "triton")
    for _ in range(50):
        case.call()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(1000):
        case.call()
    dt = (time.perf_counter() - t) / 1000 * 1e6
    torch.cuda.synchronize()
    pr = cProfile.Profile(); pr.enable()
    for _ in range(1000):
        case.call()
    pr.disable(); torch.cuda.synchronize()
    s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(16)
    print(f"==== triton {op} public with grad: {dt:.1f} us/call unprofiled")
    print("\n".join(l[:160] for l in s.getvalue().splitlines()[6:28]))
