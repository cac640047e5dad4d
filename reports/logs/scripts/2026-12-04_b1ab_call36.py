"""Call 36 (issue #20), as call 35 plus the inference LayerNorm without statistics ("new": views + infer, "old":
copies + the full forward's statistics); originally: Call 35 (issue #20): eager AMP inference latency of VMamba-T (cuda, channels last, weight cache on) at batch 1 / 32 /
128 with B and C read in place (strided_bc, the new default) against copied (strided_bc off), and with the fused SS2D
core (ss2d_core cuda), interleaved rounds, Swin-T in the same rounds. Prints ms per forward (median of 40) per round."""
import statistics, time
import torch, models, timm
from models import KernelPolicy
from vmamba_kernels import dispatch
import models.chain as chain

def timed(f, n=40):
    ts = []
    for _ in range(n):
        torch.cuda.synchronize(); t0 = time.perf_counter(); f(); torch.cuda.synchronize(); ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3

cuda_b = dispatch.get_backend("cuda")
def mk(core):
    torch.manual_seed(0)
    pol = KernelPolicy.all("cuda").merged(KernelPolicy(ss2d_core="cuda")) if core else "cuda"
    m = models.create_model("vmamba_t", impl=pol).cuda().eval()
    m.set_weight_cache(True)
    return m
from vmamba_kernels.cuda import extension as ext
INFER = ext.add_layer_norm_infer
ms = {"new": (mk(False), True), "old": (mk(False), False)}
s = timm.create_model("swin_tiny_patch4_window7_224").cuda().eval()
for bs in (1, 32, 128):
    x = torch.randn(bs, 3, 224, 224, device="cuda")
    fns = {}
    for k, (m, strided) in ms.items():
        def f(m=m, strided=strided):
            if cuda_b.strided_bc != strided:
                cuda_b.strided_bc = strided; chain.clear_plans()
                if strided: ext.add_layer_norm_infer = INFER
                else: del ext.add_layer_norm_infer
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
                return m(x)
        fns[k] = f
    def g():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.float16):
            return s(x)
    fns["swin_t"] = g
    with torch.no_grad():
        ya, yb = fns["new"](), fns["old"]()
        print(f"batch {bs}: new vs old max |dlogit| {(ya.float() - yb.float()).abs().max().item():.3e}")
    res = {k: [] for k in fns}
    for r in range(3):
        for k, f in fns.items():
            for _ in range(5): f()
            res[k].append(timed(f, 40 if bs < 128 else 15))
    print(f"batch {bs}: " + "  ".join(f"{k} {statistics.median(v):.3f} ms ({', '.join(f'{t:.2f}' for t in v)})" for k, v in res.items()))
cuda_b.strided_bc = True; ext.add_layer_norm_infer = INFER
