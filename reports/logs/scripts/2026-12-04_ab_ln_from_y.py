"""A/B: cuda add_layer_norm backward from s (float32) vs from y (16-bit), VMamba-T stage shapes, batch 128."""
import torch
from vmamba_kernels.cuda import extension as E

def t(fn, n=40):
    for _ in range(5): fn()
    a, b = torch.cuda.Event(True), torch.cuda.Event(True)
    torch.cuda.synchronize(); a.record()
    for _ in range(n): fn()
    b.record(); torch.cuda.synchronize()
    return a.elapsed_time(b) / n * 1000

for C, HW in ((96, 56), (192, 28), (384, 14), (768, 7)):
    for kind in ("norm", "out_norm"):
        shp = (128, HW, HW, C)
        if kind == "norm":
            x = torch.randn(shp, device="cuda"); br = torch.randn(shp, device="cuda", dtype=torch.float16); hb = True
        else:
            x = torch.randn(shp, device="cuda", dtype=torch.float16); br = None; hb = False
        w = torch.rand(C, device="cuda") + 0.5; b = torch.randn(C, device="cuda")
        y, s, mean, rstd = E.add_layer_norm_fwd(x, br, w, b, None, 1e-5, True, torch.float16)
        dy = torch.randn_like(y)
        ds = torch.randn_like(x) if hb else None
        f0 = lambda: E.add_layer_norm_bwd(dy, ds, s, w, b, mean, rstd, None, hb, True, x.dtype)
        f1 = lambda: E.add_layer_norm_bwd(dy, ds, y, w, b, mean, rstd, None, hb, True, x.dtype, from_y=True)
        us0, us1 = t(f0), t(f1)
        n = x.numel()
        print(f"C{C} {HW}x{HW} {kind:8s} bwd from s {us0:7.1f} us  from y {us1:7.1f} us  ratio {us1/us0:.2f}")
