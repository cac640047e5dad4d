"""Kernel sweeps under pytest-benchmark: `pytest bench --benchmark-only`.

Every registered impl (except torch_sequential) and mamba_ssm, forward and backward, at batch 128.
Default: VMamba-T's four stages in fp16 (72 cases, a few minutes on an H100, one line per case);
`--full-sweep` (or VMAMBA_BENCH_FULL=1): VMamba T/S/B in fp32/fp16/bf16 (648 cases). Each test also
appends its row (CUDA-event median, GB/s against the measured copy bandwidth) to REPORTS/kernels.csv,
as `python -m bench.kernels` does. Choose the grid with environment variables (comma lists):
VMAMBA_BENCH_MODELS, VMAMBA_BENCH_OPS, VMAMBA_BENCH_DTYPES, VMAMBA_BENCH_IMPLS; VMAMBA_REPORTS_DIR
picks the reports folder. Skipped (with the reason, summarised at the end) without CUDA, for impls that
are not available, and for unsupported cases.
"""
import itertools
import os

import pytest
import torch

pytest.importorskip("pytest_benchmark", reason="pytest-benchmark not installed: pip install pytest-benchmark")

from bench import env as envmod  # noqa: E402
from bench import kernels as K  # noqa: E402
from bench.results import KernelRow, append_rows, reports_dir  # noqa: E402
from bench.timing import copy_bandwidth  # noqa: E402


NO_GPU = "needs a CUDA device: these benchmarks time GPU kernels (run them on a machine with an NVIDIA GPU)"


def _env_list(name, default):
    v = os.environ.get(name)
    return [s for s in v.split(",") if s] if v else list(default)


DEFAULT_GRID = {"models": ("vmamba_t",), "dtypes": ("fp16",)}  # a few minutes; --full-sweep for the rest
FULL_GRID = {"models": K.DEFAULT_MODELS, "dtypes": tuple(K.DTYPES)}


def _env_full() -> bool:
    return os.environ.get("VMAMBA_BENCH_FULL", "").strip().lower() in ("1", "true", "yes", "on")


def _all_impls():
    try:
        import vmamba_kernels as vk

        names = [r["name"] for r in vk.list_impls() if r["name"] not in K.SKIP_BY_DEFAULT]
    except Exception:  # noqa: BLE001
        names = []
    return _env_list("VMAMBA_BENCH_IMPLS", names + [K.MAMBA])


def _id(case):
    # stages numbered 1-4 as in the paper (the CSV keeps the 0-based index)
    return f"{case.op}-{case.direction}-{case.dtype}-{case.shape.model}-s{case.shape.stage + 1}"


def params(full: bool) -> list:
    grid = FULL_GRID if full else DEFAULT_GRID
    models = _env_list("VMAMBA_BENCH_MODELS", grid["models"])
    dtypes = _env_list("VMAMBA_BENCH_DTYPES", grid["dtypes"])
    ops = _env_list("VMAMBA_BENCH_OPS", K.OPS)
    cases = K.build_cases(models, ops, dtypes, ("fwd", "bwd"), batch=128, img_size=224)
    return [pytest.param(c, i, id=f"{_id(c)}-{i}") for c, i in itertools.product(cases, _all_impls())
            if not (i == K.MAMBA and c.op != "selective_scan")]


PARAMS = params(_env_full())  # the grid at import, for tools that read it; pytest uses pytest_generate_tests


def pytest_generate_tests(metafunc):
    if {"case", "impl"} <= set(metafunc.fixturenames):
        full = bool(metafunc.config.getoption("full_sweep", default=False)) or _env_full()
        metafunc.parametrize("case,impl", params(full))


@pytest.fixture(scope="session")
def bench_env():
    if not torch.cuda.is_available():
        pytest.skip(NO_GPU)
    dev = torch.device("cuda")
    env = envmod.capture(dev)
    return {"device": dev, "copy": copy_bandwidth(dev), "env_json": envmod.env_json(env),
            "gpu": envmod.gpu_label(dev), "sha": envmod.git_sha_label(),
            "csv": reports_dir() / "kernels.csv", "available": {}}


@pytest.mark.gpu
def test_kernel(benchmark, bench_env, case, impl, record_property):
    dev = bench_env["device"]
    avail = bench_env["available"]
    if case.op not in avail:
        avail[case.op] = K.available_impls(case.op, None, dev)
    if impl not in avail[case.op]:
        pytest.skip(f"impl {impl} is not available for {case.op} here")
    out_dtype = torch.float32
    reasons = K.why_not(impl, case, K.cheap_inputs(case, dev, out_dtype), out_dtype)
    if reasons:
        pytest.skip("; ".join(reasons))
    r = K.time_case(impl, case, dev, out_dtype, warmup=10, reps=50, max_ms=1000.0)
    fn, *_ = K.make_runner(impl, case, dev, out_dtype)
    counter = itertools.count()

    def call():
        fn(next(counter))
        torch.cuda.synchronize(dev)

    benchmark.pedantic(call, rounds=max(3, min(r["reps"], 20)), warmup_rounds=2, iterations=1)
    copy = bench_env["copy"]
    benchmark.extra_info.update(ms_p50=r["ms_p50"], gbps=r["gbps"], pct_of_copy=100 * r["gbps"] / copy,
                                copy_gbps=copy, shape=case.label(), out_dtype=r["out_dtype"])
    row = KernelRow(op=case.op, impl=impl, direction=case.direction, dtype=case.dtype, shape=case.label(),
                    ms_p50=r["ms_p50"], gbps=r["gbps"], gpu=bench_env["gpu"], git_sha=bench_env["sha"],
                    timestamp=envmod.utc_now(), ms_p20=r["ms_p20"], ms_p80=r["ms_p80"], copy_gbps=copy,
                    pct_of_copy=100 * r["gbps"] / copy, model=case.shape.model, stage=case.shape.stage,
                    out_dtype=r["out_dtype"], batch=case.shape.batch, bytes=r["bytes"], reps=r["reps"],
                    method="pytest-benchmark+cuda_events_p50", note=f"{r['n_sets']} rotating input sets",
                    env_json=bench_env["env_json"])
    append_rows(bench_env["csv"], [row])
    record_property("result", f"{r['ms_p50']:.3f} ms, {r['gbps']:.0f} GB/s ({100 * r['gbps'] / copy:.0f}% of copy)")
    assert r["ms_p50"] > 0
