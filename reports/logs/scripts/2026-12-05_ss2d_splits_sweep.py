"""#18: the fused SS2D core backward's split count (csrc/ss2d_core/ss2d_splits.h) at every VMamba-T stage, batch 128,
fp16, channels last: the automatic choice against forced S (knob ss2d_bwd_splits)."""
import torch
import vmamba_kernels as vk
from vmamba_kernels.cuda import extension as E

dev = "cuda"
torch.manual_seed(0)


def timed(fn, reps=15):
    for _ in range(3):
        fn()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    for s, e in ev:
        s.record(); fn(); e.record()
    torch.cuda.synchronize()
    t = sorted(s.elapsed_time(e) for s, e in ev)
    return t[len(t) // 2]


for H, D, R in ((56, 96, 6), (28, 192, 12), (14, 384, 24), (7, 768, 48)):
    B, N, L = 128, 1, H * H
    x = torch.randn(B, H, H, D, device=dev, dtype=torch.float16)
    xdbl = (torch.randn(B, L, 4, R + 2 * N, device=dev) * 0.3).half()
    dt_w = (torch.randn(4, D, R, device=dev) * 0.1).half()
    A = -torch.rand(4 * D, N, device=dev) - 0.5
    Dv, bias = torch.randn(4 * D, device=dev), torch.randn(4 * D, device=dev) * 0.1
    dy = torch.randn(B, H, H, D, device=dev)
    bwd = lambda: E.ss2d_core_bwd(x, xdbl, dt_w, A, Dv, bias, dy, "cross2d", True, True)  # noqa: E731
    auto = timed(bwd)
    forced = {}
    for S in (1, 2, 3, 4, 6, 8, 12, 16):
        with vk.tuning("cuda", ss2d_bwd_splits=S):
            forced[S] = timed(bwd)
    best = min(forced, key=forced.get)
    print(f"{H}x{H} D{D} R{R}: auto {auto:.3f} ms; best forced S={best} {forced[best]:.3f} ms; "
          + " ".join(f"S{s}={t:.3f}" for s, t in forced.items()))
