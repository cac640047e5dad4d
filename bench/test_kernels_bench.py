"""Kernel sweeps under pytest-benchmark: `pytest bench --benchmark-only`.

Every registered impl (except torch_sequential) and mamba_ssm, over VMamba T/S/B stage shapes at batch
128, fp32/fp16/bf16, forward and backward; each test also appends its row (CUDA-event median, GB/s
against the measured copy bandwidth) to REPORTS/kernels.csv, as `python -m bench.kernels` does.
Narrow the grid with environment variables (comma lists): VMAMBA_BENCH_MODELS, VMAMBA_BENCH_OPS,
VMAMBA_BENCH_DTYPES, VMAMBA_BENCH_IMPLS; VMAMBA_REPORTS_DIR picks the reports folder.
Skipped (with the reason) without CUDA, for impls that are not available, and for unsupported cases.
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


def _env_list(name, default):
    v = os.environ.get(name)
    return [s for s in v.split(",") if s] if v else list(default)


MODELS = _env_list("VMAMBA_BENCH_MODELS", K.DEFAULT_MODELS)
OPS = _env_list("VMAMBA_BENCH_OPS", K.OPS)
DTYPES = _env_list("VMAMBA_BENCH_DTYPES", K.DTYPES)


def _all_impls():
    try:
        import vmamba_kernels as vk

        names = [r["name"] for r in vk.list_impls() if r["name"] not in K.SKIP_BY_DEFAULT]
    except Exception:  # noqa: BLE001
        names = []
    return _env_list("VMAMBA_BENCH_IMPLS", names + [K.MAMBA])


IMPLS = _all_impls()
CASES = K.build_cases(MODELS, OPS, DTYPES, ("fwd", "bwd"), batch=128, img_size=224)


def _id(case):
    return f"{case.op}-{case.direction}-{case.dtype}-{case.shape.model}-s{case.shape.stage}"


PARAMS = [pytest.param(c, i, id=f"{_id(c)}-{i}") for c, i in itertools.product(CASES, IMPLS)
          if not (i == K.MAMBA and c.op != "selective_scan")]


@pytest.fixture(scope="session")
def bench_env():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device: kernel sweeps time GPU kernels (run on the GPU machine)")
    dev = torch.device("cuda")
    env = envmod.capture(dev)
    return {"device": dev, "copy": copy_bandwidth(dev), "env_json": envmod.env_json(env),
            "gpu": envmod.gpu_label(dev), "sha": envmod.git_sha_label(),
            "csv": reports_dir() / "kernels.csv", "available": {}}


@pytest.mark.gpu
@pytest.mark.parametrize("case,impl", PARAMS)
def test_kernel(benchmark, bench_env, case, impl):
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
    assert r["ms_p50"] > 0
