"""Time the CuPy backend on the VMamba-T[s1l8] stage shapes (batch 128, K=4, N=1, fp16 in, fp32 out,
softplus, D and delta_bias) with triton.testing.do_bench, next to the CUDA backend and mamba_ssm when
they are importable in this process; report the first-call (cold) compile time.

    python -m vmamba_kernels.cupy._bench [--batch 128] [--csv PATH]

Set CUPY_CACHE_DIR to an empty folder to measure a cold compile (CuPy caches cubins on disk).
"""
from __future__ import annotations

import argparse
import csv
import time

import torch

STAGES = ((384, 3136), (768, 784), (1536, 196), (3072, 49))  # (KD, L) of VMamba-T stages 1..4
MAMBA_BRIEF = {384: (1.065, 2.857), 768: (0.536, 1.389), 1536: (0.297, 0.884), 3072: (0.309, 0.926)}


def _inputs(batch, KD, L, N=1, K=4, dtype=torch.float16):
    g = torch.Generator(device="cuda").manual_seed(KD + L)
    u = torch.randn(batch, KD, L, device="cuda", generator=g).to(dtype)
    delta = (0.5 * torch.rand(batch, KD, L, device="cuda", generator=g)).to(dtype)
    A = -0.5 * torch.rand(KD, N, device="cuda", generator=g)
    B = torch.randn(batch, K, N, L, device="cuda", generator=g).to(dtype)
    C = torch.randn(batch, K, N, L, device="cuda", generator=g).to(dtype)
    D = torch.randn(KD, device="cuda", generator=g)
    bias = 0.5 * torch.rand(KD, device="cuda", generator=g)
    return u, delta, A, B, C, D, bias


def _cuda_backend():
    try:
        from vmamba_kernels.cuda import kernels as ck
        return ck
    except Exception:  # noqa: BLE001
        return None


def _mamba():
    try:
        from bench import mamba_ref
        return mamba_ref if mamba_ref.load_selective_scan_cuda() is not None else None
    except Exception:  # noqa: BLE001
        return None


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--csv", default=None)
    a = ap.parse_args(argv)
    from triton.testing import do_bench

    from vmamba_kernels.cupy import kernels as k

    # cold first call: compiles the fp16 N=1 forward and backward modules
    ins = _inputs(2, 8, 3136)
    t = time.perf_counter()
    y, last, aux = k.selective_scan_fwd(*ins, True, torch.float32)
    torch.cuda.synchronize()
    t_fwd = time.perf_counter() - t
    t = time.perf_counter()
    k.selective_scan_bwd(*ins, True, torch.randn_like(y), aux)
    torch.cuda.synchronize()
    t_bwd = time.perf_counter() - t
    st = k.compile_stats()
    print(f"first call (cold, incl. NVRTC compile): fwd {t_fwd:.2f} s, bwd {t_bwd:.2f} s; "
          f"modules {st['compiles']}, compile seconds {st['compile_seconds']:.2f}: {st['log']}", flush=True)

    ck, mr = _cuda_backend(), _mamba()
    rows = []
    for KD, L in STAGES:
        ins = _inputs(a.batch, KD, L)
        y, last, aux = k.selective_scan_fwd(*ins, True, torch.float32)
        dout = torch.randn_like(y)
        r = {"KD": KD, "L": L,
             "cupy_fwd": do_bench(lambda: k.selective_scan_fwd(*ins, True, torch.float32)),
             "cupy_bwd": do_bench(lambda: k.selective_scan_bwd(*ins, True, dout, aux))}
        r["cuda_fwd"] = r["cuda_bwd"] = float("nan")
        if ck is not None:
            try:
                _, _, caux = ck.selective_scan_fwd(*ins, True, torch.float32)
                r["cuda_fwd"] = do_bench(lambda: ck.selective_scan_fwd(*ins, True, torch.float32))
                r["cuda_bwd"] = do_bench(lambda: ck.selective_scan_bwd(*ins, True, dout, caux))
            except Exception as e:  # noqa: BLE001
                print(f"cuda backend not timed at KD={KD}: {type(e).__name__}: {str(e)[:120]}")
        if mr is not None:  # mamba_ssm writes out in the input dtype (fp16) and takes dout in it
            _, mx = mr.mamba_fwd(*ins, True)
            d16 = dout.half()
            r["mamba_fwd"] = do_bench(lambda: mr.mamba_fwd(*ins, True))
            r["mamba_bwd"] = do_bench(lambda: mr.mamba_bwd(*ins, True, d16, mx))
        else:
            r["mamba_fwd"], r["mamba_bwd"] = MAMBA_BRIEF[KD]
            r["mamba_src"] = "brief (not built here)"
        rows.append(r)
        del ins, y, aux, dout
        torch.cuda.empty_cache()
    print(f"\n{torch.cuda.get_device_name()}  batch {a.batch}, K=4, N=1, fp16 in / fp32 out, ms (do_bench median)")
    print(f"{'KD':>5} {'L':>5} | {'cupy fwd':>8} {'cuda fwd':>8} {'mamba fwd':>9} | {'cupy bwd':>8} {'cuda bwd':>8} "
          f"{'mamba bwd':>9} | fwd/mamba bwd/mamba")
    for r in rows:
        print(f"{r['KD']:>5} {r['L']:>5} | {r['cupy_fwd']:8.3f} {r['cuda_fwd']:8.3f} {r['mamba_fwd']:9.3f} | "
              f"{r['cupy_bwd']:8.3f} {r['cuda_bwd']:8.3f} {r['mamba_bwd']:9.3f} | "
              f"{r['cupy_fwd'] / r['mamba_fwd']:9.2f} {r['cupy_bwd'] / r['mamba_bwd']:9.2f}"
              + ("  (mamba: brief)" if "mamba_src" in r else ""))
    if a.csv:
        with open(a.csv, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=sorted({k for r in rows for k in r}))
            w.writeheader()
            w.writerows(rows)


if __name__ == "__main__":
    main()
