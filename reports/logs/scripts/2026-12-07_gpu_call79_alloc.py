"""Call 79: what allocation costs on this host: torch.empty from Python, the extension's empty_many (per tensor), and the
raw cuda scan forward / add + LayerNorm forward (min of 7 x 2000 calls, us per call)."""
import time
import torch
from vmamba_kernels import _C
from vmamba_kernels.cuda import extension as ext


def us(fn, n=2000):
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    best = []
    for _ in range(7):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best.append((time.perf_counter() - t) / n * 1e6)
        torch.cuda.synchronize()
    best.sort()
    return f"min {best[0]:.2f} median {best[3]:.2f}"


f16, f32 = torch.float16, torch.float32
u = torch.randn(1, 1536, 196, device="cuda", dtype=f16)
e, d = torch.empty, u.device
print("3 x torch.empty (cuda)", us(lambda: (e((1, 1536, 196), dtype=f16, device=d), e((1, 1536, 1), dtype=f32, device=d), e((1, 1536, 1, 1), dtype=f32, device=d))))
print("empty_many x3 (cuda)  ", us(lambda: _C.empty_many(u, ((1, 1536, 196), f16), ((1, 1536, 1), f32), ((1, 1536, 1, 1), f32))))
print("empty_many x1 (cuda)  ", us(lambda: _C.empty_many(u, ((1, 1536, 196), f16))))
delta = torch.rand_like(u)
A = -torch.rand(1536, 1, device="cuda")
B = torch.randn(1, 4, 1, 196, device="cuda", dtype=f16)
C = torch.randn_like(B)
print("raw cuda scan fwd     ", us(lambda: ext.selective_scan_fwd(u, delta, A, B, C, None, None, True, f16)))
x = torch.randn(1, 14, 14, 384, device="cuda", dtype=f16)
w = torch.randn(384, device="cuda")
print("raw cuda LN fwd       ", us(lambda: ext.add_layer_norm_fwd(x, x, w, w, None, 1e-5, True, None)))
print("raw cuda LN infer     ", us(lambda: ext.add_layer_norm_infer(x, x, w, w, None, 1e-5, True, None)))
