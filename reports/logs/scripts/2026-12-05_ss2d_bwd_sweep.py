"""#18: what limits the cuda fused SS2D core backward? Time it at VMamba-T stage-2 size (B128 D384 14x14, N1, fp16,
channels last) while varying dt_rank R (the xdbl row C = R + 2N that every channel tile reduces and read-modify-writes
into its split's fp32 slice) and the split count S. If time grows with R, the per-tile dxdbl accumulation dominates
(plan: write ddelta, do d(dts) and ddt_w as GEMMs)."""
import torch
import vmamba_kernels as vk
from vmamba_kernels.cuda import extension as E

torch.manual_seed(0)
dev = "cuda"


def timed(fn, reps=20):
    for _ in range(3):
        fn()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    for s, e in ev:
        s.record(); fn(); e.record()
    torch.cuda.synchronize()
    t = sorted(s.elapsed_time(e) for s, e in ev)
    return t[len(t) // 2]


def case(B=128, D=384, H=14, W=14, R=24, N=1):
    L = H * W
    x = torch.randn(B, H, W, D, device=dev, dtype=torch.float16)
    xdbl = (torch.randn(B, L, 4, R + 2 * N, device=dev) * 0.3).half()
    dt_w = (torch.randn(4, D, R, device=dev) * 0.1).half()
    A = -torch.rand(4 * D, N, device=dev) - 0.5
    Dv, bias = torch.randn(4 * D, device=dev), torch.randn(4 * D, device=dev) * 0.1
    dy = torch.randn(B, H, W, D, device=dev)
    fwd = lambda: E.ss2d_core_fwd(x, xdbl, dt_w, A, Dv, bias, "cross2d", True, True, torch.float32)  # noqa: E731
    bwd = lambda: E.ss2d_core_bwd(x, xdbl, dt_w, A, Dv, bias, dy, "cross2d", True, True)  # noqa: E731
    return fwd, bwd


print("R sweep (S automatic):")
for R in (1, 6, 12, 24):
    fwd, bwd = case(R=R)
    print(f"  R={R:2d}  fwd {timed(fwd):7.3f} ms  bwd {timed(bwd):7.3f} ms")
print("S sweep (R=24):")
fwd, bwd = case()
for S in (1, 2, 4, 8, 16):
    with vk.tuning("cuda", ss2d_bwd_splits=S):
        print(f"  S={S:2d}  bwd {timed(bwd):7.3f} ms")
print("D sweep (R=24): tiles per batch scale with D")
for D in (96, 192, 384):
    fwd, bwd = case(D=D)
    print(f"  D={D:3d}  fwd {timed(fwd):7.3f} ms  bwd {timed(bwd):7.3f} ms")
