"""Ran as .gpu/ab_dx.py in GPU call 25 at 069ac54 (models.chain.fused_dx_add existed only there; reverted),
reports/logs/2026-12-03_compile_latency_H200.md.

A/B on the GPU, interleaved rounds: the chain backward's dxs = du + xw^T dx_dbl as one baddbmm (models.chain.
fused_dx_add) on/off, VMamba-B training b128, impl cuda, channels-last, AMP fp16; Swin-B in the same rounds."""
import time, statistics, torch, timm
import models, models.chain as chain
torch.backends.cudnn.benchmark = True
torch.manual_seed(0)
x = torch.randn(128, 3, 224, 224, device="cuda"); y = torch.randint(0, 1000, (128,), device="cuda")
vm = models.create_model("vmamba_b", impl="cuda", channels_last=True).cuda().train()
sw = timm.create_model("swin_base_patch4_window7_224").cuda().train()
def run(m, n=12, warm=4):
    def step():
        with torch.autocast("cuda", dtype=torch.float16):
            loss = torch.nn.functional.cross_entropy(m(x), y)
        loss.backward()
    for _ in range(warm): step()
    torch.cuda.synchronize(); ts = []
    for _ in range(n):
        t0 = time.perf_counter(); step(); torch.cuda.synchronize(); ts.append((time.perf_counter() - t0) * 1e3)
    m.zero_grad(set_to_none=True)
    return statistics.median(ts)
res = {}
for rnd in range(3):
    for key in ("vmamba_b fused_dx_add=0", "vmamba_b fused_dx_add=1", "swin_b"):
        chain.fused_dx_add = key.endswith("=1")
        res.setdefault(key, []).append(run(sw if key == "swin_b" else vm))
for k, v in res.items():
    print(f"{k:26s} median of rounds {statistics.median(v):7.2f} ms  rounds {[round(t, 2) for t in v]}")
