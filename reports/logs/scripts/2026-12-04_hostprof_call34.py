"""Batch-1 AMP inference host profile on the GPU (call 34): cProfile of VMamba-T's eager forward (cuda, cl, weight
cache on) to find Python hot spots, torch.profiler self-CPU top ops, and the median latency of VMamba-T and Swin-T."""
import cProfile, pstats, statistics, time, sys
import torch, models

def timed(f, n=60):
    ts = []
    for _ in range(n):
        torch.cuda.synchronize(); t0 = time.perf_counter(); f(); torch.cuda.synchronize(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3

x = torch.randn(1, 3, 224, 224, device="cuda")
torch.manual_seed(0)
m = models.create_model("vmamba_t", impl="cuda").cuda().eval()
m.set_weight_cache(True)
def f():
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        return m(x)
import timm
s = timm.create_model("swin_tiny_patch4_window7_224").cuda().eval()
def g():
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        return s(x)
for _ in range(20): f(); g()
for r in range(3):
    print(f"round {r}: vmamba_t {timed(f):.2f} ms  swin_t {timed(g):.2f} ms")
pr = cProfile.Profile(); pr.enable()
for _ in range(50): f()
torch.cuda.synchronize(); pr.disable()
pstats.Stats(pr).sort_stats("tottime").print_stats(40)
pstats.Stats(pr).sort_stats("cumulative").print_stats(40)
with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as p:
    for _ in range(5): f()
    torch.cuda.synchronize()
ka = sorted(p.key_averages(), key=lambda e: -e.self_cpu_time_total)[:40]
for e in ka:
    print(f"  {e.self_cpu_time_total/5/1e3:7.3f} ms  {e.count/5:6.0f}  {e.key[:90]}")
