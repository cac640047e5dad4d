"""Tuning harness of the Triton kernels (vmamba_kernels/triton/) on VMamba-T[s1l8] stage shapes (batch
128, fp16 in / fp32 out, softplus, D, delta_bias): a block-shape sweep (--sweep) whose winners go into
vmamba_kernels/triton/tuning.py (TritonTuning), and same-run baselines (the cuda and cupy
backends when available, mamba_ssm when `python -m bench.build_mamba_ssm` has built it).

    python -m bench.tuning.triton [--sweep] [--stages] [--out DIR]
    python -m bench.tuning.triton --cross-bands     # the banded channels-last cross scan's block shapes
    python -m bench.tuning.triton --cross-blocks    # the tiled cross scan / merge block shapes (both layouts)
    python -m bench.tuning.triton --n1-variants     # the N = 1 scan kernels around their defaults, against cuda

Every variant runs inside `vmamba_kernels.tuning("triton", ...)`; the findings are in reports/tuning.md.

For the reports use `python -m bench.kernels` (CSV rows); this prints and writes OUT/triton_bench.json.

Prints one table; times are triton.testing.do_bench medians (ms). GB/s counts the bytes each kernel
must move (fwd: u, delta in, out; bwd: u, delta, dout in, du, ddelta out)."""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys

import torch
import triton

import vmamba_kernels as vk
from vmamba_kernels.triton import launch as tk
from vmamba_kernels.triton.tuning import np2 as _np2

DNAME = {torch.float16: "fp16", torch.float32: "fp32"}
STAGES = [(384, 3136, 56), (768, 784, 28), (1536, 196, 14), (3072, 49, 7)]  # KD, L, H


def _inputs(batch, KD, L, N=1, K=4, dtype=torch.float16):
    g = torch.Generator(device="cuda").manual_seed(0)
    u = torch.randn(batch, KD, L, device="cuda", generator=g).to(dtype)
    delta = (0.5 * torch.rand(batch, KD, L, device="cuda", generator=g)).to(dtype)
    A = -0.5 * torch.rand(KD, N, device="cuda", generator=g)
    B = torch.randn(batch, K, N, L, device="cuda", generator=g).to(dtype)
    C = torch.randn(batch, K, N, L, device="cuda", generator=g).to(dtype)
    D = torch.randn(KD, device="cuda", generator=g)
    bias = 0.5 * torch.rand(KD, device="cuda", generator=g)
    return u, delta, A, B, C, D, bias


def _t(fn, rep=40):
    return triton.testing.do_bench(fn, warmup=10, rep=rep, return_mode="median")


def sweep_cross_bands(batch, stages=(0, 1, 2, 3), dtypes=("fp16", "fp32")):
    """Band height x channels per program x warps of the banded channels-last cross2d scan on VMamba-T's
    stage maps (image-last grid), against the cuda kernel and the tiled kernel it replaces
    (band_scan=None) in the same run; results checked bitwise."""
    import importlib

    from reference import cross_scan_ref
    from vmamba_kernels.triton import cross_scan as cs

    importlib.import_module("vmamba_kernels._C")  # registers torch.ops.vmamba_cuda
    default = dict(vk.get_tuning("triton").band_scan)
    for i in stages:
        C, H = STAGES[i][0] // 4, STAGES[i][2]
        for dt in [d for d in (torch.float16, torch.float32) if DNAME[d] in dtypes]:
            x = torch.randn(batch, H, H, C, device="cuda").to(dt)
            ref = cross_scan_ref(x, "cross2d", True)
            nbytes = 5 * x.numel() * x.element_size()
            t_cuda = _t(lambda: torch.ops.vmamba_cuda.cross_scan(x, "cross2d", True))
            res = []
            for band in [b for b in (2, 4, 8, 16) if b <= _np2(H)]:
                for bc in [c for c in (16, 32, 64, 128, 256) if c <= _np2(C)]:
                    for w in (4, 8):
                        # exactly this band and channel block: no whole-map rule, no cap
                        with vk.tuning("triton", band_scan=dict(default, band=band, block_c=bc, warps=w, small_side=0,
                                                                max_elems=1 << 30)):
                            try:
                                ok = torch.equal(cs.cross_scan_fwd(x, "cross2d", True), ref)
                            except triton.runtime.errors.OutOfResources as e:
                                print(f"  band {band} channels {bc} warps {w}: {e}")
                                continue
                            t = _t(lambda: cs.cross_scan_fwd(x, "cross2d", True))
                        res.append((t, band, bc, w, ok))
            with vk.tuning("triton", band_scan=None):
                t0 = _t(lambda: cs.cross_scan_fwd(x, "cross2d", True))
            t_def = _t(lambda: cs.cross_scan_fwd(x, "cross2d", True))
            print(f"{DNAME[dt]} stage {i} B{batch} {H}x{H} C{C}: cuda {t_cuda:.4f} ms, tiled kernel {t0:.4f} "
                  f"({t0 / t_cuda:.2f}x), default bands {t_def:.4f} ({t_def / t_cuda:.2f}x); best bands (ms, x cuda, "
                  f"GB/s, band, channels, warps, exact):")
            for t, band, bc, w, ok in sorted(res)[:8]:
                print(f"  {t:.4f} {t / t_cuda:.2f}x {nbytes / t / 1e6:.0f} {band} {bc} {w} {ok}")


# block shapes (BLOCK_H, BLOCK_W, BLOCK_C, warps) --cross-blocks tries on stage 1, per layout
CROSS_BLOCKS = {
    False: [(32, 32, 1, 4), (64, 64, 1, 8), (64, 64, 1, 16), (32, 64, 1, 8), (16, 64, 1, 4), (16, 64, 2, 8),
            (64, 64, 2, 16), (8, 64, 4, 8)],
    True: [(16, 16, 32, 4), (8, 64, 32, 8), (16, 64, 16, 8), (8, 64, 16, 4), (32, 32, 16, 8), (4, 64, 32, 4),
           (16, 32, 32, 8), (8, 32, 32, 4), (16, 16, 16, 4), (8, 16, 32, 4), (16, 32, 16, 4), (32, 16, 32, 8),
           (8, 8, 64, 4)],
}


def sweep_cross_blocks(batch, C=96, H=56, layouts=("cf", "cl"), dtypes=("fp16", "fp32")):
    """Block shapes of the tiled cross scan / merge kernel (TritonTuning.cross_block_override) on stage 1,
    both layouts and fp16 / fp32, against the cuda kernels and a copy of the same bytes in the same run. The
    channels-last cross2d scan takes the banded kernel, so its column does not change with the shape.
    Each shape also runs with "+g", backwards reads done forwards in groups (reverse_groups), and "+o", the
    grid in image-last order (hw_first)."""
    import importlib

    from reference import cross_merge_ref, cross_scan_ref
    from vmamba_kernels.triton import cross_scan as cs

    importlib.import_module("vmamba_kernels._C")  # registers torch.ops.vmamba_cuda
    ops = torch.ops.vmamba_cuda
    us = lambda f: _t(f, rep=100) * 1e3  # noqa: E731

    def copy_us(n, dt):
        src = torch.empty(n, dtype=dt, device="cuda").normal_()
        return us(lambda: src.clone())

    for dt in [d for d in (torch.float16, torch.float32) if DNAME[d] in dtypes]:
        esz = torch.tensor([], dtype=dt).element_size()
        nbytes = 5 * batch * C * H * H * esz
        t_copy = copy_us(nbytes // 2 // esz, dt)
        for cl in [c for c in (False, True) if ("cl" if c else "cf") in layouts]:
            x = torch.randn((batch, H, H, C) if cl else (batch, C, H, H), device="cuda").to(dt)
            y = torch.randn(batch, 4, C, H * H, device="cuda").to(dt)
            ys_ref, ym_ref = cross_scan_ref(x, "cross2d", cl), cross_merge_ref(y.float(), H, H, "cross2d", cl)
            cu_s = us(lambda: ops.cross_scan(x, "cross2d", cl))
            cu_m = us(lambda: ops.cross_merge(y, H, H, "cross2d", cl))
            print(f"{DNAME[dt]} {'cl' if cl else 'cf'} B{batch} {H}x{H} C{C}: cuda scan {cu_s:.1f} us, merge {cu_m:.1f} us; "
                  f"copy {t_copy:.1f} us")
            for cand, groups, order in [(b, g, o) for b in [None] + CROSS_BLOCKS[cl] for g in (False, True)
                                        for o in (False, True)]:
                pins = {(cl, False, C, H, H): cand, (cl, True, C, H, H): cand} if cand else {}
                with vk.tuning("triton", reverse_groups=groups, hw_first=order, cross_block_override=pins):
                    ok = torch.equal(cs.cross_scan_fwd(x, "cross2d", cl), ys_ref) and torch.allclose(
                        cs.cross_merge_fwd(y, H, H, "cross2d", cl).float(), ym_ref, rtol=1e-2, atol=1e-2)
                    ts = us(lambda: cs.cross_scan_fwd(x, "cross2d", cl))
                    tm = us(lambda: cs.cross_merge_fwd(y, H, H, "cross2d", cl))
                name = str(cand or "default") + ("+g" if groups else "") + ("+o" if order else "")
                print(f"  {name:>20} scan {ts:6.1f} us ({ts / cu_s:4.2f}x cuda, {t_copy / ts:4.2f} of copy)"
                      f"  merge {tm:6.1f} us ({tm / cu_m:4.2f}x cuda, {t_copy / tm:4.2f} of copy)  ok={ok}")


# (kind, variant) pairs --n1-variants times per VMamba-T stage: {} = the defaults; "fwd" / "bwd" = (BLOCK_D,
# warps) pinned in TritonTuning.block_override, "fwd_sub" / "bwd_sub" = chunks per iteration, "PIPE_fwd" /
# "PIPE_bwd" = TritonTuning.pipeline_fwd / pipeline_bwd
N1_VARIANTS = {
    0: [("fwd", {}), ("fwd", {"PIPE_fwd": 1}), ("fwd", {"fwd": (8, 1)}), ("bwd", {}), ("bwd", {"bwd": (4, 2)}),
        ("bwd", {"bwd": (8, 2)}), ("bwd", {"bwd_sub": 2}), ("bwd", {"PIPE_bwd": 1})],
    1: [("fwd", {}), ("fwd", {"fwd_sub": 1}), ("bwd", {}), ("bwd", {"bwd": (4, 2)}), ("bwd", {"bwd": (8, 2)})],
    2: [("fwd", {}), ("fwd", {"fwd": (2, 1)}), ("fwd", {"fwd": (8, 4)}), ("bwd", {}), ("bwd", {"bwd": (4, 2)}),
        ("bwd", {"bwd": (1, 1)})],
    3: [("fwd", {}), ("fwd", {"fwd": (8, 2)}), ("fwd", {"fwd": (16, 2)}), ("bwd", {}), ("bwd", {"bwd": (4, 2)}),
        ("bwd", {"bwd": (8, 2)})],
}


def sweep_n1_variants(batch, stages):
    """The N = 1 kernels' block shapes, tile lengths and pipelining around their defaults on VMamba-T's
    stage shapes (fp16 in, fp32 out), against the cuda backend in the same run; each variant's results
    are compared with cuda's (largest difference relative to the largest cuda value)."""
    from vmamba_kernels.cuda import extension as cu

    for i, (KD, L, _) in enumerate(STAGES):
        if str(i) not in stages.split(","):
            continue
        G = KD // 4
        u, delta, A, B, C, D, bias = _inputs(batch, KD, L)
        dout = torch.randn(batch, KD, L, device="cuda")
        fwd_c = lambda m: m.selective_scan_fwd(u, delta, A, B, C, D, bias, True, torch.float32)  # noqa: E731
        y_c, last_c, aux_c = fwd_c(cu)
        g_c = cu.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux_c)
        t_c = {"fwd": _t(lambda: fwd_c(cu)), "bwd": _t(lambda: cu.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux_c))}
        print(f"stage {i + 1} KD{KD} L{L}: cuda fwd {t_c['fwd']:.3f} ms, bwd {t_c['bwd']:.3f} ms", flush=True)
        for kind, var in N1_VARIANTS[i]:
            changes, pins = {}, {}
            for k, v in var.items():
                if k.startswith("PIPE_"):
                    changes["pipeline_" + k[5:]] = v
                elif k.endswith("_sub"):
                    pins[(k, 1, L)] = v
                else:
                    pins[(k, G, 1, L)] = v
            with vk.tuning("triton", block_override=pins, **changes):
                y, last, aux = fwd_c(tk)
                if kind == "fwd":
                    got, want = (y, last), (y_c, last_c)
                    t = _t(lambda: fwd_c(tk))
                else:
                    got = tk.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux)
                    want = g_c
                    t = _t(lambda: tk.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux))
            err = max(((p.float() - q.float()).abs().max() / q.float().abs().max().clamp_min(1e-6)).item()
                      for p, q in zip(got, want) if q is not None)
            print(f"  {kind} {str(var or 'default'):>20} {t:.3f} ms ({t / t_c[kind]:.2f}x cuda), "
                  f"max |diff| / max |cuda| {err:.1e}", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m bench.tuning.triton", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sweep", action="store_true")
    ap.add_argument("--out", default=os.environ.get("OUT", "."))
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--only-stages", default="0,1,2,3",
                    help="0-based stage indices to run (0 is the paper's stage 1)")
    ap.add_argument("--cross-bands", action="store_true",
                    help="only sweep the banded channels-last cross scan (TritonTuning.band_scan) on --only-stages")
    ap.add_argument("--stages", action="store_true",
                    help="sweep the chunk loops' pipelining depth (TritonTuning.pipeline_fwd / pipeline_bwd)")
    ap.add_argument("--sweep-stages", default="1,2,3", help="depths --stages tries")
    ap.add_argument("--cross-blocks", action="store_true",
                    help="only sweep the tiled cross scan / merge block shapes (TritonTuning.cross_block_override) "
                         "on stage 1")
    ap.add_argument("--layouts", default="cf,cl", help="layouts --cross-blocks sweeps")
    ap.add_argument("--dtypes", default="fp16,fp32", help="dtypes --cross-blocks / --cross-bands sweep")
    ap.add_argument("--n1-variants", action="store_true",
                    help="only time the N = 1 kernels' block shapes / tiles / pipelining around the defaults")
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("bench.tuning.triton times Triton kernels on a GPU: it needs a CUDA device (none is visible here)",
              file=sys.stderr)
        return 2
    if a.n1_variants:
        sweep_n1_variants(a.batch, a.only_stages)
        return
    if a.cross_blocks:
        sweep_cross_blocks(a.batch, layouts=a.layouts.split(","), dtypes=a.dtypes.split(","))
        return
    if a.cross_bands:
        sweep_cross_bands(a.batch, [int(i) for i in a.only_stages.split(",")], a.dtypes.split(","))
        return
    try:
        from vmamba_kernels.cupy import launch as ck
        if ck.unavailable_reason() is not None:
            ck = None
    except ImportError:
        ck = None
    try:
        from vmamba_kernels.cuda import extension as cu
        if cu.unavailable_reason() is not None:
            cu = None
    except ImportError:
        cu = None
    from bench import mamba_ref
    mm = mamba_ref if mamba_ref.unavailable_reason() is None else None
    rows, sweep, tuned = [], [], {}
    tuned_chunk, tuned_blocks = {}, {}
    keep = contextlib.ExitStack()  # the tuned shapes found by --sweep stay in force for the rest of the run
    for i, (KD, L, H) in enumerate(STAGES):
        if str(i) not in a.only_stages.split(","):
            continue
        u, delta, A, B, C, D, bias = _inputs(a.batch, KD, L)
        G = KD // 4
        n = u.numel()
        y, last, aux = tk.selective_scan_fwd(u, delta, A, B, C, D, bias, True, torch.float32)
        dout = torch.randn_like(y)
        if a.sweep:
            ref = (y, tk.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux))
            best = {}
            for T in (64, 128, 256):
                if T > max(64, _np2(L)):
                    continue
                with vk.tuning("triton", chunk_override={(L, 1): T}):
                    yT, lT, auxT = tk.selective_scan_fwd(u, delta, A, B, C, D, bias, True, torch.float32)
                    for kind in ("fwd", "bwd"):
                        for bd in (4, 8, 16):
                            if G % bd or not (256 <= bd * T <= 4096):
                                continue
                            for w in (2, 4, 8):
                                with vk.tuning("triton", block_override={(kind, G, 1, L): (bd, w)}):
                                    if kind == "fwd":
                                        t = _t(lambda: tk.selective_scan_fwd(u, delta, A, B, C, D, bias, True,
                                                                             torch.float32), 25)
                                    else:
                                        t = _t(lambda: tk.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout,
                                                                             auxT), 25)
                                sweep.append(dict(kind=kind, KD=KD, L=L, T=T, bd=bd, warps=w, ms=t))
                                if (T, kind) not in best or t < best[(T, kind)][0]:
                                    best[(T, kind)] = (t, bd, w)
            Ts = sorted({T for T, _ in best})
            Tb = min(Ts, key=lambda T: best[(T, "fwd")][0] + best[(T, "bwd")][0])
            (_, bdf, wf), (_, bdb, wb) = best[(Tb, "fwd")], best[(Tb, "bwd")]
            for T in Ts:
                print(f"sweep KD{KD} L{L} T{T}: fwd {best[(T, 'fwd')]} bwd {best[(T, 'bwd')]}", flush=True)
            tuned_chunk[(L, 1)] = Tb
            tuned_blocks[(G, 1, L)] = ((bdf, wf), (bdb, wb))
            keep.enter_context(vk.tuning("triton", tuned_chunk=tuned_chunk, tuned_blocks=tuned_blocks))
            tuned[f"{G},1,{L}"] = dict(T=Tb, fwd=(bdf, wf), bwd=(bdb, wb))
            y, last, aux = tk.selective_scan_fwd(u, delta, A, B, C, D, bias, True, torch.float32)
            g = tk.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux)
            ok = torch.allclose(y, ref[0], rtol=1e-4, atol=1e-4) and all(
                torch.allclose(p.float(), q.float(), rtol=1e-2, atol=1e-2) for p, q in zip(g, ref[1]) if p is not None)
            print(f"tuned KD{KD} L{L}: T={Tb} fwd bd={bdf} w={wf} bwd bd={bdb} w={wb}; matches default config: {ok}",
                  flush=True)
        if a.stages:
            ref = (y, tk.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux))
            for kind in ("fwd", "bwd"):
                res = []
                for st in (int(v) for v in a.sweep_stages.split(",")):
                    with vk.tuning("triton", **{f"pipeline_{kind}": st}):
                        if kind == "fwd":
                            t = _t(lambda: tk.selective_scan_fwd(u, delta, A, B, C, D, bias, True, torch.float32), 25)
                            same = torch.equal(tk.selective_scan_fwd(u, delta, A, B, C, D, bias, True,
                                                                     torch.float32)[0], ref[0])
                        else:
                            t = _t(lambda: tk.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux), 25)
                            got = tk.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux)
                            same = all(torch.equal(p, q) for p, q in zip(got, ref[1]) if p is not None)
                    sweep.append(dict(kind=kind, KD=KD, L=L, stages=st, ms=t, same=same))
                    res.append(f"{st}: {t:.3f} ms{'' if same else ' (DIFFERS)'}")
                print(f"stages KD{KD} L{L} {kind}: " + ", ".join(res), flush=True)
        tf = _t(lambda: tk.selective_scan_fwd(u, delta, A, B, C, D, bias, True, torch.float32))
        tb = _t(lambda: tk.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, aux))
        cf = cb = uf = ub = mf = mb = float("nan")
        if cu is not None:
            yu, lu, auxu = cu.selective_scan_fwd(u, delta, A, B, C, D, bias, True, torch.float32)
            uf = _t(lambda: cu.selective_scan_fwd(u, delta, A, B, C, D, bias, True, torch.float32))
            ub = _t(lambda: cu.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, auxu))
        if mm is not None:
            ym, xm = mm.mamba_fwd(u, delta, A, B, C, D, bias, True)
            d16 = dout.to(u.dtype)
            mf = _t(lambda: mm.mamba_fwd(u, delta, A, B, C, D, bias, True))
            mb = _t(lambda: mm.mamba_bwd(u, delta, A, B, C, D, bias, True, d16, xm))
        if ck is not None:
            yc, lc, auxc = ck.selective_scan_fwd(u, delta, A, B, C, D, bias, True, torch.float32)
            cf = _t(lambda: ck.selective_scan_fwd(u, delta, A, B, C, D, bias, True, torch.float32))
            cb = _t(lambda: ck.selective_scan_bwd(u, delta, A, B, C, D, bias, True, dout, auxc))
        x = torch.randn(a.batch, KD // 4, H, H, device="cuda").to(torch.float16)
        ys = tk.cross_scan_fwd(x, "cross2d", False)
        tcs = _t(lambda: tk.cross_scan_fwd(x, "cross2d", False))
        tcm = _t(lambda: tk.cross_merge_fwd(ys, H, H, "cross2d", False))
        xl = x.permute(0, 2, 3, 1).contiguous()
        tcs_l = _t(lambda: tk.cross_scan_fwd(xl, "cross2d", True))
        tcm_l = _t(lambda: tk.cross_merge_fwd(ys, H, H, "cross2d", True))
        tcopy = _t(lambda: ys.clone())  # same bytes as scan (read 1/4 of it + write) ~ 2*|y| vs 1.25*|y|
        ccs = ccm = float("nan")
        if ck is not None:
            ccs = _t(lambda: ck.cross_scan_fwd(x, "cross2d", False))
            ccm = _t(lambda: ck.cross_merge_fwd(ys, H, H, "cross2d", False))
        rows.append(dict(stage=i, KD=KD, L=L, fwd=tf, bwd=tb, fwd_GBs=8 * n / tf / 1e6, bwd_GBs=12 * n / tb / 1e6,
                         cupy_fwd=cf, cupy_bwd=cb, cuda_fwd=uf, cuda_bwd=ub, mamba_fwd=mf, mamba_bwd=mb,
                         cs=tcs, cm=tcm, cs_cl=tcs_l, cm_cl=tcm_l, cs_GBs=2.5 * ys.numel() / tcs / 1e6,
                         cupy_cs=ccs, cupy_cm=ccm, clone_y=tcopy))
    keep.close()
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "triton_bench.json"), "w") as f:
        json.dump(dict(device=torch.cuda.get_device_name(), triton=triton.__version__, rows=rows, sweep=sweep, tuned=tuned), f,
                  indent=1)
    print(f"device {torch.cuda.get_device_name()} triton {triton.__version__} torch {torch.__version__}")
    print("stage KD    L    | fwd ms (GB/s)  cuda  cupy  mamba  x/cuda x/mamba | bwd ms (GB/s)  cuda  cupy  mamba "
          " x/cuda x/mamba | cs ms cm ms cs_cl cm_cl (cupy cs/cm) clone(y)")
    for r in rows:
        print(f"{r['stage']}  {r['KD']:5d} {r['L']:5d} | {r['fwd']:.3f} ({r['fwd_GBs']:.0f}) {r['cuda_fwd']:.3f} "
              f"{r['cupy_fwd']:.3f} {r['mamba_fwd']:.3f} {r['fwd'] / r['cuda_fwd']:.2f} {r['fwd'] / r['mamba_fwd']:.2f} | "
              f"{r['bwd']:.3f} ({r['bwd_GBs']:.0f}) {r['cuda_bwd']:.3f} {r['cupy_bwd']:.3f} {r['mamba_bwd']:.3f} "
              f"{r['bwd'] / r['cuda_bwd']:.2f} {r['bwd'] / r['mamba_bwd']:.2f} | {r['cs']:.3f} {r['cm']:.3f} "
              f"{r['cs_cl']:.3f} {r['cm_cl']:.3f} ({r['cupy_cs']:.3f}/{r['cupy_cm']:.3f}) {r['clone_y']:.3f}")
    if tuned:
        print("TUNED", json.dumps(tuned))
    print("baselines measured in this run; nan = not available here")


if __name__ == "__main__":
    sys.exit(main())
