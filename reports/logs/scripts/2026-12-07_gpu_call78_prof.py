"""Call 78: where the host time of a few public calls goes (cProfile, 2000 calls each), plus unprofiled us/call."""
import cProfile, io, pstats, time
import torch
from bench import overhead as ov
for impl, op, grad, raw in (("cuda", "selective_scan", True, False), ("cuda", "add_layer_norm", True, False),
                            ("cuda", "selective_scan", False, False), ("cupy", "cross_scan", False, True),
                            ("triton", "cross_merge", True, False)):
    case = ov._inputs(op, "t_s3", torch.device("cuda"), torch.float16, grad, impl)
    fn = case.raw if raw else case.call
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(1000):
            fn()
        best = min(best, (time.perf_counter() - t) / 1000 * 1e6)
        torch.cuda.synchronize()
    pr = cProfile.Profile(); pr.enable()
    for _ in range(2000):
        fn()
    pr.disable(); torch.cuda.synchronize()
    s = io.StringIO(); pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(12)
    print(f"==== {impl} {op} {'raw' if raw else 'public'} grad={grad}: {best:.1f} us/call unprofiled (min of 5 x 1000)")
    print("\n".join(l[:160] for l in s.getvalue().splitlines()[6:22]))

# What allocation costs on this host: torch.empty from Python against the extension's empty_many (at::empty in C++)
from vmamba_kernels import _C  # noqa: E402
u = torch.zeros(1, 1536, 196, device="cuda", dtype=torch.float16)
f16, f32 = torch.float16, torch.float32


def us(fn, n=5000):
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n * 1e6)
        torch.cuda.synchronize()
    return best


e, d = torch.empty, u.device
print("==== allocation, us per call")
print("3 x torch.empty (cuda)", round(us(lambda: (e((1, 1536, 196), dtype=f16, device=d), e((1, 1536, 1), dtype=f32, device=d), e((1, 1536, 1, 1), dtype=f32, device=d))), 2))
print("empty_many x3 (cuda)  ", round(us(lambda: _C.empty_many(u, ((1, 1536, 196), f16), ((1, 1536, 1), f32), ((1, 1536, 1, 1), f32))), 2))
print("empty_many x1 (cuda)  ", round(us(lambda: _C.empty_many(u, ((1, 1536, 196), f16))), 2))
print("empty_many x0 (cuda)  ", round(us(lambda: _C.empty_many(u)), 2))
ga, gb = torch.zeros(8, device="cuda", requires_grad=True), torch.zeros(8, device="cuda", requires_grad=True)
print("torch.add grad (cuda) ", round(us(lambda: torch.add(ga, gb)), 2))
