"""Correctness of every available impl (and mamba_ssm when built) against the float64 reference,
over VMamba's stage shapes at a small batch: forward output and every gradient, per-dtype tolerances.

    python -m bench.check                  # T/S/B stage shapes, batch 2, fp32/fp16/bf16
    python -m bench.check --quick          # vmamba_t, fp32 + fp16
    python -m bench.check --impls cuda,mamba_ssm --models vmamba_b --dtypes bf16

Reference: reference.selective_scan.selective_scan_parallel evaluated in float64 on the same
(rounded) inputs, gradients by autograd; cross_scan / cross_merge against reference.cross_scan in
float64. Tolerances (mamba_ssm's, tests/ops/test_selective_scan.py): out fp32 6e-4/2e-3, fp16
3e-3/5e-3, bf16 3e-2/5e-2 (rtol/atol); du 2x; ddelta 5x rtol, 10x atol; dA 1e-3/5e-3; dB, dC as out;
dD, ddelta_bias 1e-3/1e-3. A value passes when |x - ref| <= atol + rtol |ref| (torch.allclose); the
table shows the worst ratio |x - ref| / (atol + rtol |ref|) per case. Exit status 1 on any failure.
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

from bench import env as envmod
from bench.kernels import DEFAULT_MODELS, DTYPES, MAMBA, available_impls, scan_inputs
from bench.results import CheckRow, append_rows, format_table, reports_dir
from bench.shapes import K, stage_shapes
from bench.timing import Progress

OUT_TOL = {"fp32": (6e-4, 2e-3), "fp16": (3e-3, 5e-3), "bf16": (3e-2, 5e-2)}
RTOLW = ATOLW = 1e-3


def tolerances(dtype: str) -> dict:
    """{quantity: (rtol, atol)} for one input dtype."""
    rtol, atol = OUT_TOL[dtype]
    return {"out": (rtol, atol), "du": (2 * rtol, 2 * atol), "ddelta": (5 * rtol, 10 * atol),
            "dA": (RTOLW, 5 * ATOLW), "dB": (rtol, atol), "dC": (rtol, atol),
            "dD": (RTOLW, ATOLW), "ddelta_bias": (RTOLW, ATOLW)}


def compare(x: torch.Tensor, ref: torch.Tensor, rtol: float, atol: float) -> tuple:
    """(max abs error, worst ratio err/(atol + rtol|ref|), passed)."""
    x = x.detach().to(torch.float64)
    ref = ref.detach().to(torch.float64)
    if x.shape != ref.shape:
        return float("inf"), float("inf"), False
    if x.numel() == 0:
        return 0.0, 0.0, True
    err = (x - ref).abs()
    tol = atol + rtol * ref.abs()
    ratio = torch.where(err == 0, torch.zeros_like(err), err / tol)  # tol 0: exact match required
    finite = bool(torch.isfinite(x).all())
    max_err = float(err.max())
    worst = float(ratio.max()) if finite else float("inf")
    return max_err, worst, finite and worst <= 1.0


def scan_reference(inp: dict, dout: torch.Tensor) -> dict:
    """Float64 reference output and gradients of the scan (softplus on, D and delta_bias given)."""
    from reference.selective_scan import selective_scan_parallel  # noqa: PLC0415

    leaves = {k: v.detach().to(torch.float64).requires_grad_(True) for k, v in inp.items()}
    out = selective_scan_parallel(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"],
                                  leaves["D"], leaves["delta_bias"], delta_softplus=True)
    out.backward(dout.to(torch.float64))
    res = {"out": out.detach()}
    for k in ("u", "delta", "A", "B", "C", "D", "delta_bias"):
        g = leaves[k].grad  # None when the graph does not use it (A at L = 1): the gradient is 0
        res["d" + k] = g.detach() if g is not None else torch.zeros_like(leaves[k])
    return res


def upstream_grad(impl: str, dout: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The gradient `impl`'s backward actually receives for an fp32 `dout`. Our impls return fp32 output
    (out_dtype=float32), so they get dout as is; mamba_ssm returns its output in the input dtype, so
    autograd hands it dout rounded to that dtype. Its reference must be computed from the same rounded
    dout, or the check measures the rounding of dout (it did: four false fp16 failures in dA/dB/dC/dD)."""
    return dout.to(dtype).to(dout.dtype) if impl == MAMBA else dout


def scan_impl(impl: str, inp: dict, dout: torch.Tensor) -> dict:
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in inp.items()}
    if impl == MAMBA:
        from bench.mamba_ref import mamba_selective_scan  # noqa: PLC0415

        out = mamba_selective_scan(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], leaves["D"],
                                   leaves["delta_bias"], softplus=True)
    else:
        import vmamba_kernels as vk  # noqa: PLC0415

        out = vk.selective_scan(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], leaves["D"],
                                leaves["delta_bias"], delta_softplus=True, out_dtype=torch.float32, impl=impl)
    out.backward(dout.to(out.dtype))
    res = {"out": out.detach()}
    for k in ("u", "delta", "A", "B", "C", "D", "delta_bias"):
        g = leaves[k].grad
        res["d" + k] = g.detach() if g is not None else torch.full_like(leaves[k], float("nan"))
    return res


def check_cross(impl: str, sh, dtype, device) -> list:
    """[(quantity, max_err, worst, passed, rtol, atol)] for cross_scan and cross_merge."""
    import vmamba_kernels as vk  # noqa: PLC0415
    from reference.cross_scan import cross_merge_ref, cross_scan_ref  # noqa: PLC0415

    g = torch.Generator(device="cpu").manual_seed(3)
    x = torch.randn(sh.batch, sh.D, sh.H, sh.W, generator=g).to(device, dtype)
    y = torch.randn(sh.batch, K, sh.D, sh.L, generator=g).to(device, dtype)
    rtol, atol = OUT_TOL[{torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}[dtype]]
    out = []
    xs = vk.cross_scan(x, impl=impl)
    out.append(("cross_scan", *compare(xs, cross_scan_ref(x.double()), 0.0, 0.0), 0.0, 0.0))
    ym = vk.cross_merge(y, sh.H, sh.W, impl=impl)
    out.append(("cross_merge", *compare(ym, cross_merge_ref(y.double(), sh.H, sh.W), rtol, atol), rtol, atol))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.check",
        description="Check every available impl (and mamba_ssm) against the float64 reference on VMamba stage "
                    "shapes: output and all gradients; prints a pass/fail table; exit 1 on any failure.")
    p.add_argument("--impls", default=None, help="comma list (default: every available impl except "
                                                  "torch_sequential, + mamba_ssm when built)")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS))
    p.add_argument("--dtypes", default="fp32,fp16,bf16")
    p.add_argument("--ops", default="selective_scan,cross_scan")
    p.add_argument("--batch-size", type=int, default=2)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--quick", action="store_true", help="vmamba_t, fp32 and fp16 only")
    p.add_argument("--device", default=None)
    p.add_argument("--reports-dir", default=None)
    p.add_argument("--no-csv", action="store_true", help="do not append to REPORTS/check.csv")
    p.add_argument("--verbose", action="store_true", help="one line per quantity instead of per case")
    a = p.parse_args(argv)
    if a.quick:
        a.models, a.dtypes = "vmamba_t", "fp32,fp16"
    device = torch.device(a.device) if a.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    include = a.impls.split(",") if a.impls else None
    ops = a.ops.split(",")
    gpu, sha = envmod.gpu_label(device), envmod.git_sha_label()
    shapes = [s for m in a.models.split(",") for s in stage_shapes(m, a.batch_size, a.img_size)]
    dtypes = a.dtypes.split(",")
    scan_impls = available_impls("selective_scan", include, device) if "selective_scan" in ops else []
    cross_impls = available_impls("cross_scan", include, device) if "cross_scan" in ops else []
    if include:
        missing = [i for i in include if i not in scan_impls + cross_impls]
        for i in missing:
            print(f"note: impl {i} is not available here (or not for {device.type}); not checked", file=sys.stderr)
    print(envmod.summary_line(envmod.capture(device)), file=sys.stderr)
    rows, table = [], []
    n = len(shapes) * len(dtypes) * (len(scan_impls) + len(cross_impls))
    prog = Progress(n, "check")
    t0 = time.perf_counter()
    for sh in shapes:
        for dt in dtypes:
            dtype = DTYPES[dt]
            if scan_impls:
                inp = scan_inputs(sh, dtype, device, seed=11)
                dout = torch.randn(sh.batch, sh.KD, sh.L, generator=torch.Generator().manual_seed(12)).to(device)
                refs = {}  # one reference per distinct upstream gradient
                tol = tolerances(dt)
                for impl in scan_impls:
                    results = []
                    try:
                        g = upstream_grad(impl, dout, dtype)
                        key = g.dtype if g is dout else dtype
                        if key not in refs:
                            refs[key] = scan_reference(inp, g)
                        ref = refs[key]
                        got = scan_impl(impl, inp, g)
                        for q, (rt, at) in tol.items():
                            results.append((q, *compare(got[q], ref[q], rt, at), rt, at))
                        note = ""
                    except Exception as e:  # noqa: BLE001 (a crash is a failure, reported)
                        results = [("run", float("inf"), float("inf"), False, 0.0, 0.0)]
                        note = f"{type(e).__name__}: {str(e).splitlines()[0][:150]}"
                    _record(rows, table, "selective_scan", impl, dt, sh.scan_label(), sh, results, note, gpu, sha,
                            a.verbose)
                    prog.update(f"scan {impl} {dt} {sh.model} s{sh.stage + 1}")
                del refs, inp
            for impl in cross_impls:
                try:
                    results, note = check_cross(impl, sh, dtype, device), ""
                except Exception as e:  # noqa: BLE001
                    results = [("run", float("inf"), float("inf"), False, 0.0, 0.0)]
                    note = f"{type(e).__name__}: {str(e).splitlines()[0][:150]}"
                _record(rows, table, "cross_scan/merge", impl, dt, sh.cross_label(), sh, results, note, gpu, sha,
                        a.verbose)
                prog.update(f"cross {impl} {dt} {sh.model} s{sh.stage + 1}")
    prog.close()
    if rows and not a.no_csv:
        append_rows(reports_dir(a.reports_dir) / "check.csv", rows)
    print()
    print(format_table(table, ["op", "impl", "dtype", "model", "stage", "shape", "worst", "ratio", "result", "note"]))
    fails = sum(1 for r in table if r["result"] == "FAIL")
    summary = {}
    for r in table:
        k = (r["op"], r["impl"])
        s = summary.setdefault(k, {"op": r["op"], "impl": r["impl"], "cases": 0, "failed": 0, "worst ratio": 0.0})
        s["cases"] += 1
        s["failed"] += r["result"] == "FAIL"
        s["worst ratio"] = max(s["worst ratio"], r["ratio"])
    print("\nsummary per impl:")
    print(format_table(list(summary.values()), ["op", "impl", "cases", "failed", "worst ratio"]))
    print(f"\n{len(table) - fails} passed, {fails} failed ({len(table)} cases; ratio = max |err| / "
          f"(atol + rtol |ref|), pass <= 1); {time.perf_counter() - t0:.0f} s")
    if not table:
        print("nothing was checked: no impl available for these ops on this device", file=sys.stderr)
        return 1
    return 1 if fails else 0


def _record(rows, table, op, impl, dt, shape, sh, results, note, gpu, sha, verbose):
    ts = envmod.utc_now()
    for q, max_err, worst, ok, rt, at in results:
        rows.append(CheckRow(op=op if q not in ("cross_scan", "cross_merge") else q, impl=impl, dtype=dt,
                             shape=shape, quantity=q, max_abs_err=max_err, worst_ratio=worst, rtol=rt, atol=at,
                             passed=ok, gpu=gpu, git_sha=sha, timestamp=ts, reference="float64 reference/",
                             note=note))
    if verbose:
        for q, max_err, worst, ok, rt, at in results:
            table.append({"op": op, "impl": impl, "dtype": dt, "model": sh.model, "stage": str(sh.stage + 1),
                          "shape": shape, "worst": q, "ratio": worst, "result": "ok" if ok else "FAIL", "note": note})
        return
    worst_q = max(results, key=lambda r: (not r[3], r[2]))
    all_ok = all(r[3] for r in results)
    bad = [r[0] for r in results if not r[3]]
    table.append({"op": op, "impl": impl, "dtype": dt, "model": sh.model, "stage": str(sh.stage + 1), "shape": shape,
                  "worst": worst_q[0], "ratio": worst_q[2], "result": "ok" if all_ok else "FAIL",
                  "note": note or (f"failed: {', '.join(bad)}" if bad else "")})


if __name__ == "__main__":
    sys.exit(main())
