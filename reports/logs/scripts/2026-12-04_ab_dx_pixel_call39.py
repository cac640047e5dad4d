"""Ran as .gpu/ab_dx2.py in GPU call 39 at f64c385f9a45, with models/chain_old.py = `git show f57b66a:models/chain.py`
(copied in by the call's script, never committed). GPU call 39: A/B, interleaved rounds, of the chain backward's x gradient: "pixel" (this commit: cross_merge(du) plus
the projection term as one GEMM in pixel order) against "route" (the previous commit's backward: the (B, K, D, L)
route-order product added to du, then merged; models/chain_old.py, copied there by the call's script), VMamba-B / -S /
-T training b128, impl cuda, channels-last, AMP fp16; Swin in the same rounds. Also the gradients of one step
compared between the two (max relative difference per parameter, fp16)."""
import time, statistics, sys, torch, timm
import models, models.chain as chain, models.chain_old as chain_old
NEW_BWD = chain._Chain.backward
torch.backends.cudnn.benchmark = True
x = torch.randn(128, 3, 224, 224, device="cuda"); y = torch.randint(0, 1000, (128,), device="cuda")

def use(which):
    chain._Chain.backward = NEW_BWD if which == "pixel" else chain_old._Chain.backward

def step(m):
    with torch.autocast("cuda", dtype=torch.float16):
        loss = torch.nn.functional.cross_entropy(m(x), y)
    loss.backward()

def run(m, n=12, warm=4):
    for _ in range(warm): step(m)
    torch.cuda.synchronize(); ts = []
    for _ in range(n):
        t0 = time.perf_counter(); step(m); torch.cuda.synchronize(); ts.append((time.perf_counter() - t0) * 1e3)
    m.zero_grad(set_to_none=True)
    return statistics.median(ts)

for name, base in (("vmamba_b", "swin_base_patch4_window7_224"), ("vmamba_s", "swin_small_patch4_window7_224"),
                   ("vmamba_t", "swin_tiny_patch4_window7_224")):
    torch.manual_seed(0)
    vm = models.create_model(name, impl="cuda", drop_path_rate=0.0).cuda().train()
    grads = {}
    for which in ("pixel", "route"):
        use(which); vm.zero_grad(set_to_none=True); step(vm)
        grads[which] = {n: p.grad.float().clone() for n, p in vm.named_parameters() if p.grad is not None}
    worst = max(((grads["pixel"][n] - grads["route"][n]).abs().max() / grads["route"][n].abs().max().clamp_min(1e-30)).item()
                for n in grads["route"])
    print(f"{name}: pixel vs route, largest per-parameter max |dgrad| / max |grad|: {worst:.2e}", flush=True)
    vm.zero_grad(set_to_none=True)
    sw = timm.create_model(base).cuda().train()
    res = {}
    for rnd in range(3):
        for key in ("pixel", "route", "swin"):
            if key != "swin": use(key)
            res.setdefault(key, []).append(run(sw if key == "swin" else vm))
    use("pixel")
    print(f"{name}: " + "  ".join(f"{k} {statistics.median(v):.2f} ms {[round(t, 2) for t in v]}" for k, v in res.items()), flush=True)
    del vm, sw; torch.cuda.empty_cache()
