"""The allocations of the triton and cupy raw kernels: torch.empty per tensor (as before 2026-12-07) against one
_C.empty_many call, at VMamba-T stage 3, batch 1 (CPU tensors; on a GPU both add the caching allocator's cost).
us per call, min of 5 x 20000."""
import time

import torch

from vmamba_kernels import _C


def best_us(fn, n=20000):
    best = 1e9
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t) / n * 1e6)
    return best


f16, f32 = torch.float16, torch.float32
b, KD, L, N, K, C, H = 1, 1536, 196, 1, 4, 384, 14
u = torch.zeros(b, KD, L, dtype=f16)
x = torch.zeros(b, H, H, C, dtype=f16)
e, el, dev = torch.empty, torch.empty_like, u.device
cases = {
    "scan fwd (3)": (lambda: (e((b, KD, L), device=dev, dtype=f16), e((b, KD, N), device=dev, dtype=f32),
                              e((b, KD, 1, N), device=dev, dtype=f32)),
                     lambda: _C.empty_many(u, ((b, KD, L), f16), ((b, KD, N), f32), ((b, KD, 1, N), f32))),
    "scan bwd, triton (7)": (
        lambda: (el(u), el(u), e((b, KD, N), device=dev, dtype=f32), e((b, 12, N, L), device=dev, dtype=f32),
                 e((b, 12, N, L), device=dev, dtype=f32), e((b, KD), device=dev, dtype=f32),
                 e((b, KD), device=dev, dtype=f32)),
        lambda: _C.empty_many(u, (u.shape, u.dtype), (u.shape, u.dtype), ((b, KD, N), f32), ((b, 12, N, L), f32),
                              ((b, 12, N, L), f32), ((b, KD), f32), ((b, KD), f32))),
    "add + LayerNorm fwd (4)": (
        lambda: (e(x.shape, dtype=f16, device=dev), el(x), e(b, H * H, dtype=f32, device=dev),
                 e(b, H * H, dtype=f32, device=dev)),
        lambda: _C.empty_many(x, (x.shape, f16), (x.shape, x.dtype), ((b, H * H), f32), ((b, H * H), f32))),
    "cross scan (1)": (lambda: e((b, 4, C, H * H), device=dev, dtype=f16),
                       lambda: _C.empty_many(x, ((b, 4, C, H * H), f16))),
    "dwconv fwd (1)": (lambda: el(x), lambda: _C.empty_many(x, (x.shape, x.dtype))),
}
print(f"torch {torch.__version__}")
print("allocations | torch.empty | empty_many")
for name, (old, new) in cases.items():
    print(f"{name} | {best_us(old):.2f} | {best_us(new):.2f}")
