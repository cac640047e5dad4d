"""Ran as .gpu/hostprof.py in GPU call 23 (4c1e5c23d289; call 22 ran an earlier version without the dwconv A/B),
reports/logs/2026-12-03_compile_latency_H200.md. Run from the repository root: PYTHONPATH=. python THIS_FILE.

Batch-1 AMP inference host profile on the GPU: VMamba-T (weight cache off / on) and Swin-T."""
import statistics, time
import torch, models

def timed(f, n=60):
    ts = []
    for _ in range(n):
        torch.cuda.synchronize(); t0 = time.perf_counter(); f(); torch.cuda.synchronize(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3

def prof(label, f):
    for _ in range(20): f()
    ms = timed(f)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]) as p:
        for _ in range(5): f()
        torch.cuda.synchronize()
    ka = p.key_averages()
    launches = sum(e.count for e in ka if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernelEx")) / 5
    kern = sum(1 for e in p.events() if e.device_type == torch.autograd.DeviceType.CUDA) / 5
    print(f"\n=== {label}: {ms:.2f} ms per forward (median of 60), {launches:.0f} launch calls, {kern:.0f} kernels per forward")
    rows = sorted(ka, key=lambda e: -e.self_cpu_time_total)[:22]
    for e in rows:
        print(f"  {e.self_cpu_time_total/5/1e3:7.3f} ms  {e.count/5:6.0f}  {e.key[:90]}")
    return ms

x = torch.randn(1, 3, 224, 224, device="cuda")
import models.fused as fused
res, fns = {}, {}
SMALL = fused.SMALL_DWCONV_PIXELS
def with_small(f, small):
    def g():
        fused.SMALL_DWCONV_PIXELS = small
        try:
            return f()
        finally:
            fused.SMALL_DWCONV_PIXELS = SMALL
    return g
for wc, small in ((False, SMALL), (True, 0), (True, SMALL)):
    torch.manual_seed(0)
    m = models.create_model("vmamba_t", impl="cuda", channels_last=True).cuda().eval()
    m.set_weight_cache(wc)
    def f(m=m):
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
            return m(x)
    f = with_small(f, small)
    key = f"vmamba_t wc={int(wc)} dw={'fused' if small else 'cudnn'}"
    res[key] = prof(key, f)
    fns[key] = f
    if wc and small:
        print([r for r in m.impl_table() if r["op"] == "dwconv2d"][:1])
import timm
s = timm.create_model("swin_tiny_patch4_window7_224").cuda().eval()
def g():
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
        return s(x)
res["swin_t"] = prof("swin_tiny", g)
fns["swin_t"] = g
ys = {k: f().float() for k, f in fns.items() if k.startswith("vmamba_t wc=1")}
a, b = ys.values()
print("logits, fused dwconv against cudnn: max abs diff", float((a - b).abs().max()), "max abs", float(b.abs().max()))
# interleaved A/B rounds (the host is noisy)
rounds = {k: [] for k in fns}
for _ in range(3):
    for k, f in fns.items():
        rounds[k].append(round(timed(f, 40), 2))
print("\ninterleaved rounds, ms per batch-1 forward (median of 40 each):")
for k, v in rounds.items():
    print(f"  {k:22s} {v}  median {statistics.median(v):.2f}")
