"""bench.results: CSV schemas and crash-safe appends."""
import csv
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bench import results as R

REPO = Path(__file__).resolve().parent.parent


def _kernel_row(**kw):
    base = dict(op="selective_scan", impl="cuda", direction="fwd", dtype="fp16", shape="B1 KD4 L7 N1 K4",
                ms_p50=0.5, gbps=100.0, gpu="cpu", git_sha="abc", timestamp="2026-01-01T00:00:00Z")
    base.update(kw)
    return R.KernelRow(**base)


def _model_row(**kw):
    base = dict(model="vmamba_t", impl="cuda", mode="infer_fp32", batch=128, img_size=224, img_per_s=1000.0,
                peak_mem_mb=1.0, gpu="cpu", git_sha="abc", timestamp="2026-01-01T00:00:00Z")
    base.update(kw)
    return R.ModelRow(**base)


def test_schemas_start_with_the_required_columns():
    assert R.columns(R.KernelRow)[:10] == ["op", "impl", "direction", "dtype", "shape", "ms_p50", "gbps", "gpu",
                                           "git_sha", "timestamp"]
    assert R.columns(R.ModelRow)[:10] == ["model", "impl", "mode", "batch", "img_size", "img_per_s", "peak_mem_mb",
                                          "gpu", "git_sha", "timestamp"]
    for c in ("method", "cudnn_benchmark", "compile", "channels_last", "note"):
        assert c in R.columns(R.ModelRow)
    for c in ("ms_p20", "ms_p80", "copy_gbps", "pct_of_copy", "model", "stage", "out_dtype", "env_json"):
        assert c in R.columns(R.KernelRow)


def test_append_creates_then_extends(tmp_path):
    p = tmp_path / "sub" / "kernels.csv"
    R.append_rows(p, [_kernel_row()])
    R.append_rows(p, [_kernel_row(impl="triton", ms_p50=0.25), _kernel_row(impl="cupy")])
    header, rows = R.read_csv(p)
    assert header == R.columns(R.KernelRow)
    assert [r["impl"] for r in rows] == ["cuda", "triton", "cupy"]
    assert float(rows[1]["ms_p50"]) == 0.25
    assert rows[0]["ms_p20"] == ""  # NaN written as empty
    assert list(tmp_path.joinpath("sub").iterdir()) == [p]  # no temp or lock files left


def test_old_schema_is_migrated(tmp_path):
    p = tmp_path / "models.csv"
    p.write_text("model,impl,mode,legacy\nvmamba_s,torch,infer_amp,x\n")
    R.append_rows(p, [_model_row(note="OOM at batch 128: halved to 64")])
    header, rows = R.read_csv(p)
    assert header[: len(R.columns(R.ModelRow))] == R.columns(R.ModelRow)
    assert header[-1] == "legacy"
    assert rows[0]["model"] == "vmamba_s" and rows[0]["legacy"] == "x" and rows[0]["batch"] == ""
    assert rows[1]["note"] == "OOM at batch 128: halved to 64" and rows[1]["batch"] == "128"


def test_failure_mid_write_leaves_old_file(tmp_path, monkeypatch):
    p = tmp_path / "kernels.csv"
    R.append_rows(p, [_kernel_row()])
    before = p.read_bytes()

    def boom(tmp):
        assert Path(tmp).read_text().count("\n") == 3  # the full new file was written to the temp file
        raise KeyboardInterrupt

    monkeypatch.setattr(R, "_BEFORE_REPLACE", boom)
    with pytest.raises(KeyboardInterrupt):
        R.append_rows(p, [_kernel_row(impl="triton")])
    assert p.read_bytes() == before
    assert [q.name for q in tmp_path.iterdir()] == ["kernels.csv"]


def test_killed_process_never_corrupts(tmp_path):
    """A writer SIGKILLed between writing the temp file and the rename: the CSV is still the old one,
    intact, and a later append works."""
    p = tmp_path / "kernels.csv"
    R.append_rows(p, [_kernel_row()])
    before = p.read_bytes()
    code = textwrap.dedent(f"""
        import os, signal, sys
        sys.path.insert(0, {str(REPO)!r})
        from bench import results as R
        from tests.test_bench_results import _kernel_row
        R._BEFORE_REPLACE = lambda tmp: os.kill(os.getpid(), signal.SIGKILL)
        R.append_rows({str(p)!r}, [_kernel_row(impl="killed") for _ in range(1000)])
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert p.read_bytes() == before
    R.append_rows(p, [_kernel_row(impl="after")])
    _, rows = R.read_csv(p)
    assert [r["impl"] for r in rows] == ["cuda", "after"]
    with open(p, newline="") as f:
        assert all(len(line) == len(R.columns(R.KernelRow)) for line in csv.reader(f))


def test_format_table_aligns():
    t = R.format_table([{"a": "x", "b": 1234.5}, {"a": "long name", "b": 0.5}], ["a", "b"])
    lines = t.splitlines()
    assert len(lines) == 4 and lines[0].startswith("a") and lines[2].endswith("1234") and lines[3].endswith("0.5")


def test_reports_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("VMAMBA_REPORTS_DIR", str(tmp_path))
    assert R.reports_dir() == tmp_path
    assert R.reports_dir("x") == Path("x")
    monkeypatch.delenv("VMAMBA_REPORTS_DIR")
    assert R.reports_dir() == REPO / "reports"


def test_reports_readme_documents_every_column():
    text = (REPO / "reports" / "README.md").read_text()
    for cls in (R.KernelRow, R.ModelRow, R.CheckRow, R.OverheadRow):
        for col in R.columns(cls):
            assert col in text, f"{cls.__name__}.{col} is not described in reports/README.md"
