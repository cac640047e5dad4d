"""Timing of the CUDA fused SS2D core (csrc/ss2d_core/, issue #18) against the unfused chain of cuda ops, on
VMamba-T's four stages, in one process with CUDA events (bench.timing.time_kernel medians):

    python -m bench.tuning.ss2d_core_cuda [--batch 128] [--layouts cf,cl] [--dtype f16] [--stages 1,2,3,4]
                                          [--warps 4|8]   (force the tile size: knob ss2d_warps)

Rows per (stage, layout), forward and backward:
  fused kernel   the raw kernel alone (ss2d_core_fwd / ss2d_core_bwd), GB/s on the issue's bytes: forward x read
                 + xdbl read + y written; backward x, xdbl, dy read + dx, dxdbl written (fp32)
  fused total    what the op's composition runs: the x projection GEMM in pixel order (xdbl) + the raw kernel;
                 backward the raw kernel + the GEMMs dx += dxdbl . W and dW = dxdbl^T . x
  unfused        cross_scan -> x projection (einsum) -> dt projection (einsum) -> selective_scan ->
                 cross_merge with impl "cuda" and the projection weights in the input dtype (as autocast runs
                 them); backward: autograd through that chain (retain_graph, so only the backward is timed)
and the ratios fused total / unfused (issue #18's targets: forward <= 0.3, backward <= 0.4) and the fused
forward kernel's share of copy bandwidth (target >= 70% at stage 1). Prints only; the numbers go to reports/.
"""
from __future__ import annotations

import argparse
import math

import torch

import vmamba_kernels as vk
from bench.timing import copy_bandwidth, time_kernel

DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}
# VMamba-T: dims 96 * 2^i, d_inner = 2 * dim (ssm_ratio 2), dt_rank = ceil(dim / 16), maps 56 / 28 / 14 / 7
STAGES = {1: (192, 56, 6), 2: (384, 28, 12), 3: (768, 14, 24), 4: (1536, 7, 48)}
K = 4


def _inputs(batch, D, H, R, N, dtype, channels_last, device="cuda"):
    W = H
    shape = (batch, H, W, D) if channels_last else (batch, D, H, W)
    x = torch.randn(shape, device=device).to(dtype)
    x_proj_weight = torch.randn(K, R + 2 * N, D, device=device) * D ** -0.5
    dt_w = torch.randn(K, D, R, device=device) * R ** -0.5
    A = -torch.exp(torch.rand(K * D, N, device=device))
    Ds = torch.ones(K * D, device=device)
    dt_bias = torch.log(torch.expm1(0.001 + 0.099 * torch.rand(K * D, device=device)))  # softplus^-1 of [1e-3, 0.1]
    return x, x_proj_weight, dt_w, A, Ds, dt_bias


def _xdbl(x, x_proj_weight, channels_last):
    """The composition's x projection in pixel order: (B, L, K, R + 2N) in x's dtype (one GEMM)."""
    Bn = x.shape[0]
    D = x.shape[-1] if channels_last else x.shape[1]
    L = x.numel() // (Bn * D)
    KC = x_proj_weight.shape[0] * x_proj_weight.shape[1]
    w = x_proj_weight.reshape(KC, D).to(x.dtype)
    xl = x.view(Bn, L, D) if channels_last else x.view(Bn, D, L).transpose(1, 2)
    return torch.matmul(xl, w.t()).view(Bn, L, x_proj_weight.shape[0], x_proj_weight.shape[1])


def _unfused(x, x_proj_weight, dt_w, A, Ds, dt_bias, channels_last):
    Bn = x.shape[0]
    H, W = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[3])
    D = x.shape[-1] if channels_last else x.shape[1]
    L, R = H * W, dt_w.shape[2]
    N = A.shape[1]
    xs = vk.cross_scan(x, "cross2d", channels_last, impl="cuda")  # (B, K, D, L)
    x_dbl = torch.einsum("bkdl,kcd->bkcl", xs, x_proj_weight.to(x.dtype))
    dts, Bs, Cs = torch.split(x_dbl, [R, N, N], dim=2)
    delta = torch.einsum("bkrl,kdr->bkdl", dts, dt_w.to(x.dtype))
    ys = vk.selective_scan(xs.reshape(Bn, K * D, L), delta.reshape(Bn, K * D, L), A, Bs.contiguous(), Cs.contiguous(),
                           Ds, dt_bias, delta_softplus=True, impl="cuda")
    return vk.cross_merge(ys.view(Bn, K, D, L), H, W, "cross2d", channels_last, impl="cuda")


def _row(what, ms, nbytes=None, copy_bw=None):
    s = f"  {what:<14} {ms:8.3f} ms"
    if nbytes is not None:
        gbs = nbytes / (ms * 1e-3) / 1e9
        s += f"  {gbs:7.0f} GB/s  ({100 * gbs / copy_bw:4.0f}% of copy)"
    print(s, flush=True)


def bench_stage(ops, stage, batch, dtype, channels_last, copy_bw, reps):
    D, H, R = STAGES[stage]
    N, L = 1, H * H
    x, xpw, dt_w, A, Ds, bias = _inputs(batch, D, H, R, N, dtype, channels_last)
    es = x.element_size()
    C = R + 2 * N
    lay = "cl" if channels_last else "cf"
    print(f"stage {stage} ({lay}): B={batch} D={D} H=W={H} R={R} N={N} {str(dtype)[6:]}", flush=True)
    xdbl = _xdbl(x, xpw, channels_last)
    # forward
    t_kf = time_kernel(lambda i: ops.ss2d_core_fwd(x, xdbl, dt_w, A, Ds, bias, "cross2d", channels_last, True, dtype),
                       "cuda", reps=reps)["ms_p50"]
    fwd_bytes = 2 * x.numel() * es + xdbl.numel() * xdbl.element_size()

    def fused_total(i):
        xd = _xdbl(x, xpw, channels_last)
        return ops.ss2d_core_fwd(x, xd, dt_w, A, Ds, bias, "cross2d", channels_last, True, dtype)

    t_tf = time_kernel(fused_total, "cuda", reps=reps)["ms_p50"]
    with torch.no_grad():
        t_uf = time_kernel(lambda i: _unfused(x, xpw, dt_w, A, Ds, bias, channels_last), "cuda", reps=reps)["ms_p50"]
    _row("fused kernel", t_kf, fwd_bytes, copy_bw)
    _row("fused total", t_tf)
    _row("unfused", t_uf)
    print(f"  forward: fused total / unfused = {t_tf / t_uf:.3f} (target <= 0.3)", flush=True)
    # backward
    dy = torch.randn(x.shape, device="cuda").to(dtype)
    t_kb = time_kernel(lambda i: ops.ss2d_core_bwd(x, xdbl, dt_w, A, Ds, bias, dy, "cross2d", channels_last, True),
                       "cuda", reps=reps)["ms_p50"]
    bwd_bytes = 3 * x.numel() * es + xdbl.numel() * xdbl.element_size() + 4 * x.numel() + 4 * xdbl.numel()
    KC = K * C
    w2 = xpw.reshape(KC, D)

    def fused_bwd_total(i):
        dx, dxdbl = ops.ss2d_core_bwd(x, xdbl, dt_w, A, Ds, bias, dy, "cross2d", channels_last, True)[:2]
        g = dxdbl.view(batch, L, KC)
        dxp = torch.matmul(g, w2)  # (B, L, D)
        dx_total = dx + (dxp.view(x.shape) if channels_last else dxp.transpose(1, 2).reshape(x.shape))
        xl = x.view(batch, L, D) if channels_last else x.view(batch, D, L).transpose(1, 2)
        dw = torch.einsum("blc,bld->cd", g, xl.float())
        return dx_total, dw

    t_tb = time_kernel(fused_bwd_total, "cuda", reps=reps)["ms_p50"]
    leaves = [x.detach().requires_grad_(True), xpw.detach().requires_grad_(True), dt_w.detach().requires_grad_(True),
              A.detach().requires_grad_(True), Ds.detach().requires_grad_(True), bias.detach().requires_grad_(True)]
    y = _unfused(*leaves, channels_last)
    t_ub = time_kernel(lambda i: torch.autograd.grad(y, leaves, dy, retain_graph=True), "cuda", reps=reps)["ms_p50"]
    del y
    _row("fused kernel", t_kb, bwd_bytes, copy_bw)
    _row("fused total", t_tb)
    _row("unfused", t_ub)
    print(f"  backward: fused total / unfused = {t_tb / t_ub:.3f} (target <= 0.4)", flush=True)
    torch.cuda.empty_cache()
    return {"stage": stage, "layout": lay, "fwd_kernel_ms": t_kf, "fwd_total_ms": t_tf, "fwd_unfused_ms": t_uf,
            "bwd_kernel_ms": t_kb, "bwd_total_ms": t_tb, "bwd_unfused_ms": t_ub}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.tuning.ss2d_core_cuda",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--layouts", default="cf,cl")
    ap.add_argument("--dtype", default="f16", choices=sorted(DTYPES))
    ap.add_argument("--stages", default="1,2,3,4")
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--warps", type=int, choices=(4, 8), default=None,
                    help="channels per block (default: by occupancy)")
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA device")
    from vmamba_kernels.cuda import extension  # noqa: F401  (loads the ops)

    ops = torch.ops.vmamba_cuda
    copy_bw = copy_bandwidth("cuda")
    print(f"{torch.cuda.get_device_name(0)}: copy {copy_bw:.0f} GB/s (read + write)", flush=True)
    rows = []
    with vk.tuning("cuda", ss2d_warps=a.warps):
        for stage in (int(s) for s in a.stages.split(",")):
            for lay in a.layouts.split(","):
                rows.append(bench_stage(ops, stage, a.batch, DTYPES[a.dtype], lay == "cl", copy_bw, a.reps))
    print("\nstage layout  fwd: kernel total unfused ratio | bwd: kernel total unfused ratio   (ms)")
    for r in rows:
        print(f"{r['stage']:>5} {r['layout']:>6}  {r['fwd_kernel_ms']:7.3f} {r['fwd_total_ms']:7.3f} "
              f"{r['fwd_unfused_ms']:7.3f} {r['fwd_total_ms'] / r['fwd_unfused_ms']:5.2f} | {r['bwd_kernel_ms']:7.3f} "
              f"{r['bwd_total_ms']:7.3f} {r['bwd_unfused_ms']:7.3f} {r['bwd_total_ms'] / r['bwd_unfused_ms']:5.2f}")
    assert all(math.isfinite(v) for r in rows for k, v in r.items() if k.endswith("_ms"))


if __name__ == "__main__":
    main()
