"""compute-sanitizer over the CUDA backend on small cases: memcheck, racecheck, synccheck, initcheck.

    python -m bench.sanitize                      # every tool, every case (a few minutes)
    python -m bench.sanitize --tools racecheck    # one tool
    python -m bench.sanitize --cases              # run the cases once, no sanitizer (what each tool runs)

Each tool runs `python -m bench.sanitize --cases` under `compute-sanitizer --tool T --error-exitcode 1`
and the table says whether it reported nothing. The cases cover every kernel of impl "cuda": the
selective scan forward and backward for fp32/fp16/bf16 with d_state 1 (the d_state = 1 kernels), 4
and 16 (the warp-per-row kernels, then again with the row-per-thread ones forced), L from 1 to 600 (one chunk, packed rows, several chunks, ragged last
chunk), grouped and ungrouped B/C; the cross scan and cross merge for every mode in both layouts on
odd, non-square, square and 1-wide maps, channels-last also with the tiled kernels and the banded scan
forced. Outputs are checked against the float64 reference as well, so a
case that runs clean but computes garbage still fails. Exit status: number of tools that failed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

TOOLS = ("memcheck", "racecheck", "synccheck", "initcheck")

# (batch, KD, K, N, L, dtype) for the scan
SCAN_CASES = [
    (1, 4, 1, 1, 1, "fp32"),
    (2, 8, 2, 1, 49, "fp16"),
    (1, 16, 4, 1, 300, "bf16"),
    (2, 8, 2, 1, 600, "fp32"),
    (1, 8, 2, 4, 130, "fp16"),
    (2, 4, 1, 16, 300, "fp32"),
    (1, 8, 4, 16, 7, "bf16"),
]
# (batch, C, H, W, dtype) for the cross ops
CROSS_CASES = [(1, 3, 7, 7, "fp32"), (2, 5, 13, 1, "fp16"), (1, 4, 1, 1, "bf16"), (1, 8, 6, 14, "fp32"),
               (1, 16, 9, 9, "fp16")]
# channels-last cross kernels run as chosen (None), then forced: tiled ("1"), banded scan ("b")
CL_PATHS = (None, "1", "b")


def run_cases(impl: str = "cuda", device: str = "cuda") -> int:
    """Run every case once with `impl` on `device`, compare with the reference; 0 when all agree."""
    import torch  # noqa: PLC0415

    import vmamba_kernels as vk  # noqa: PLC0415

    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    tol = {"fp32": 2e-3, "fp16": 2e-2, "bf16": 1e-1}
    g = torch.Generator(device=device).manual_seed(0)
    bad = 0

    def rnd(*shape, dt=torch.float32):
        return torch.randn(*shape, generator=g, device=device).to(dt)

    cases = [(c, False) for c in SCAN_CASES] + [(c, True) for c in SCAN_CASES if c[3] > 1]
    for (batch, KD, K, N, L, dn), seq in cases:
        # seq: the row-per-thread kernels of 1 < d_state <= 16, forced (they start at many rows)
        with vk.tuning("cuda", scan_seq_min_rows=0 if seq else 1 << 62):
            bad += _scan_case(vk, impl, rnd, g, device, dtypes, tol, batch, KD, K, N, L, dn, seq)
    for batch, Cc, H, W, dn in CROSS_CASES:
        for mode in ("cross2d", "unidi", "bidi"):
            for cl, path in [(False, None)] + [(True, q) for q in CL_PATHS]:
                with vk.tuning("cuda", cross_cl_tiled=path):
                    bad += _cross_case(vk, impl, rnd, dtypes, tol, batch, Cc, H, W, dn, mode, cl, path)
    if device == "cuda":
        torch.cuda.synchronize()
    return 1 if bad else 0


def _scan_case(vk, impl, rnd, g, device, dtypes, tol, batch, KD, K, N, L, dn, seq) -> int:
    """One selective-scan case against the float64 reference; 1 when it fails."""
    import torch  # noqa: PLC0415

    from reference.selective_scan import selective_scan_parallel  # noqa: PLC0415

    dt = dtypes[dn]
    u, delta = rnd(batch, KD, L, dt=dt), (rnd(batch, KD, L) * 0.5 - 2).to(dt)
    A = -torch.rand(KD, N, generator=g, device=device) - 0.5
    B, C = rnd(batch, K, N, L, dt=dt), rnd(batch, K, N, L, dt=dt)
    D, bias = rnd(KD), rnd(KD) * 0.1
    leaves = [t.requires_grad_() for t in (u, delta, A, B, C, D, bias)]
    y = vk.selective_scan(*leaves[:5], D=leaves[5], delta_bias=leaves[6], delta_softplus=True,
                          out_dtype=torch.float32, impl=impl)
    dy = rnd(*y.shape)
    grads = torch.autograd.grad(y, leaves, dy)
    ref_leaves = [t.detach().double().requires_grad_() for t in leaves]
    yr = selective_scan_parallel(*ref_leaves[:5], D=ref_leaves[5], delta_bias=ref_leaves[6],
                                 delta_softplus=True)
    # allow_unused: with L = 1 the reference never multiplies by exp(dt A) (the state starts at 0)
    ref_grads = torch.autograd.grad(yr, ref_leaves, dy.double(), allow_unused=True)
    ref_grads = [torch.zeros_like(x) if gr is None else gr for x, gr in zip(ref_leaves, ref_grads)]
    errs = [float((a.detach().double() - b.detach()).abs().max() / (1 + b.detach().abs().max()))
            for a, b in zip([y, *grads], [yr, *ref_grads])]
    ok = max(errs) <= tol[dn]
    print(f"scan  B{batch} KD{KD} K{K} N{N} L{L} {dn}{' row-per-thread' if seq else ''}: max scaled error {max(errs):.1e} {'ok' if ok else 'FAIL'}")
    return int(not ok)


def _cross_case(vk, impl, rnd, dtypes, tol, batch, Cc, H, W, dn, mode, cl, path) -> int:
    """One cross scan + merge case against the float64 reference; 1 when it fails."""
    from reference.cross_scan import cross_merge_ref, cross_scan_ref  # noqa: PLC0415

    x = rnd(batch, H, W, Cc, dt=dtypes[dn]) if cl else rnd(batch, Cc, H, W, dt=dtypes[dn])
    ys = vk.cross_scan(x, mode=mode, channels_last=cl, impl=impl)
    xm = vk.cross_merge(ys, H, W, mode=mode, channels_last=cl, impl=impl)
    ys_r = cross_scan_ref(x.double(), mode, channels_last=cl)
    xm_r = cross_merge_ref(ys.double(), H, W, mode, channels_last=cl)
    err = max(float((ys.double() - ys_r).abs().max()), float((xm.double() - xm_r).abs().max() /
                                                             (1 + xm_r.abs().max())))
    ok = err <= tol[dn]
    print(f"cross B{batch} C{Cc} {H}x{W} {mode} {'cl' if cl else 'cf'}"
          f"{'' if path is None else ' cross_cl_tiled=' + path} {dn}: {err:.1e} {'ok' if ok else 'FAIL'}")
    return int(not ok)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sanitize", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma list of {', '.join(TOOLS)}")
    ap.add_argument("--cases", action="store_true", help="run the cases once without a sanitizer")
    args = ap.parse_args(argv)
    if args.cases:
        return run_cases()
    tools = [t for t in args.tools.split(",") if t]
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        ap.error(f"unknown tool(s) {', '.join(unknown)}; tools are {', '.join(TOOLS)}")
    exe = shutil.which("compute-sanitizer") or os.path.join(os.environ.get("CUDA_HOME", "/usr/local/cuda"),
                                                            "bin", "compute-sanitizer")
    if not os.path.exists(exe):
        print("compute-sanitizer not found: put the CUDA toolkit's bin/ on PATH or set CUDA_HOME", file=sys.stderr)
        return len(tools)
    failed = 0
    rows = []
    for tool in tools:
        cmd = [exe, "--tool", tool, "--error-exitcode", "1"]
        if tool == "memcheck":
            cmd += ["--leak-check", "no"]
        cmd += [sys.executable, "-m", "bench.sanitize", "--cases"]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        summary = [ln for ln in proc.stdout.splitlines() + proc.stderr.splitlines() if "ERROR SUMMARY" in ln
                   or "RACECHECK SUMMARY" in ln]
        clean = proc.returncode == 0
        failed += not clean
        rows.append((tool, "clean" if clean else f"FAILED (rc {proc.returncode})", f"{time.time() - t0:.0f} s",
                     summary[-1].strip() if summary else ""))
        if not clean:
            print("\n".join((proc.stdout + proc.stderr).splitlines()[-40:]))
    for r in rows:
        print(f"{r[0]:<10} {r[1]:<18} {r[2]:>6}  {r[3]}")
    return failed


if __name__ == "__main__":
    sys.exit(main())
