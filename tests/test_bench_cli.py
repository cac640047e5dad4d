"""The bench CLIs end to end on the CPU with tiny models and shapes, writing to temp report folders."""
import importlib
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench import kernels as BK
from bench import tp as TP
from bench._tiny import TinyVMamba
from bench.results import read_csv
from bench.shapes import StageShape, stage_shapes

REPO = Path(__file__).resolve().parent.parent
CLIS = ["bench.tp", "bench.kernels", "bench.check", "bench.report", "bench.flops", "bench.build_mamba_ssm",
        "bench.overhead", "bench.profile", "bench.host_step"]


@pytest.mark.parametrize("mod", CLIS)
def test_help(mod, capsys):
    with pytest.raises(SystemExit) as e:
        importlib.import_module(mod).main(["--help"])
    assert e.value.code == 0
    assert "usage: python -m " + mod in capsys.readouterr().out


def _cli_modules() -> list:
    """Every module under bench/ (sub-packages included) that runs as `python -m bench.X`."""
    import pkgutil

    import bench

    found = []
    for info in pkgutil.walk_packages(bench.__path__, "bench."):
        spec = importlib.util.find_spec(info.name)
        origin = getattr(spec, "origin", None)
        if origin and origin.endswith(".py") and 'if __name__ == "__main__"' in Path(origin).read_text():
            found.append(info.name)
    return sorted(found)


def _snapshot() -> dict:
    files = list((REPO / "reports").rglob("*")) + [REPO / "README.md"]
    return {str(f): f.stat().st_mtime_ns for f in files if f.is_file()}


def test_every_cli_answers_help_without_side_effects(monkeypatch, capsys):
    import runpy
    import warnings

    mods = _cli_modules()
    assert set(CLIS) <= set(mods), mods  # the walk finds the CLIs we know of (and any added later)
    before = _snapshot()
    for mod in mods:
        monkeypatch.setattr(sys, "argv", [mod, "--help"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # runpy: module already imported
            with pytest.raises(SystemExit) as e:
                runpy.run_module(mod, run_name="__main__", alter_sys=False)
        out = capsys.readouterr()
        assert e.value.code == 0, f"{mod} --help: exit {e.value.code}\n{out.err[-2000:]}"
        assert f"usage: python -m {mod}" in out.out, f"{mod} --help printed:\n{out.out[:500]}"
    assert _snapshot() == before  # --help wrote nothing (no rows, no plots, no README)


def test_gpu_only_tuning_clis_refuse_without_a_gpu(capsys):
    if torch.cuda.is_available():
        pytest.skip("checks the refusal on a machine without CUDA")
    mods = [m for m in _cli_modules() if m in ("bench.tuning.cross_scan", "bench.tuning.triton")]
    assert len(mods) == 2, mods
    for mod in mods:
        assert importlib.import_module(mod).main([]) == 2
        assert "needs a CUDA device" in capsys.readouterr().err


def test_tp_arguments():
    a = TP.parse_args(["--model", "all", "--impl", "cuda,triton", "--impl", "cupy", "--amp", "--train"])
    assert a.models == TP.HEADLINE and a.impls == ["cuda", "triton", "cupy"]
    assert TP.apply_device_defaults(a, torch.device("cuda")) == [] and a.write_csv
    assert (a.batch_size, a.warmup, a.iters) == (128, 50, 30)
    assert a.img_size == 224 and a.cudnn_benchmark and a.method == "official"
    assert TP.modes_for(a) == ["infer_amp", "train_amp"]
    assert TP.modes_for(TP.parse_args([])) == ["infer_fp32"]
    assert TP.modes_for(TP.parse_args(["--fp32", "--amp", "--train"])) == ["infer_fp32", "infer_amp", "train_amp",
                                                                          "train_fp32"]
    assert TP.modes_for(TP.parse_args(["--train-only"])) == ["train_amp"]
    assert not TP.parse_args(["--no-cudnn-benchmark"]).cudnn_benchmark
    assert TP.parse_args(["--model", "none", "--baselines"]).models == []


def test_tp_device_defaults_on_the_cpu():
    a = TP.parse_args([])
    notes = TP.apply_device_defaults(a, torch.device("cpu"))
    assert (a.batch_size, a.warmup, a.iters) == (2, 1, 3) and not a.write_csv
    assert "measuring on the CPU with small CPU defaults (batch 2, 1 warm-up, 3 timed" in notes[0]
    assert "--save-cpu" in notes[1]
    a = TP.parse_args(["--batch-size", "8", "--warmup", "0", "--iters", "5", "--method", "robust"])
    TP.apply_device_defaults(a, torch.device("cpu"))
    assert (a.batch_size, a.warmup, a.iters) == (8, 0, 5)  # explicit flags win
    for flags in (["--save-cpu"], ["--reports-dir", "somewhere"]):  # asked to keep CPU rows
        a = TP.parse_args(flags)
        TP.apply_device_defaults(a, torch.device("cpu"))
        assert a.write_csv
    a = TP.parse_args(["--save-cpu", "--no-csv"])
    TP.apply_device_defaults(a, torch.device("cpu"))
    assert not a.write_csv


def _tiny(name, impl=None):
    return TinyVMamba(impl=impl)


def test_tp_on_the_cpu_prints_and_writes_nothing(tmp_path, monkeypatch, capsys):
    """No reports/ rows from a CPU run unless asked; notice and progress from the first warm-up step."""
    csv = REPO / "reports" / "models.csv"
    before = csv.read_bytes() if csv.exists() else None
    monkeypatch.setenv("VMAMBA_REPORTS_DIR", str(tmp_path))  # where a wrong default would write
    rc = TP.main(["--model", "tiny", "--impl", "torch", "--img-size", "32", "--iters", "2", "--device", "cpu"],
                 create_model=_tiny)
    out = capsys.readouterr()
    assert rc == 0, out.out + out.err
    assert not (tmp_path / "models.csv").exists()
    assert (csv.read_bytes() if csv.exists() else None) == before
    assert "measuring on the CPU with small CPU defaults (batch 2, 1 warm-up" in out.err
    assert "tiny/torch/infer_fp32 batch 2: warm-up 0/1" in out.err  # printed before the first step runs
    assert "tiny/torch/infer_fp32 batch 2: timed 2/2" in out.err
    assert "nothing written: CPU rows stay out of reports/" in out.out
    assert "GFLOPs" not in out.out
    rc = TP.main(["--model", "tiny", "--impl", "torch", "--img-size", "32", "--iters", "1", "--device", "cpu",
                  "--save-cpu"], create_model=_tiny)
    assert rc == 0
    _, rows = read_csv(tmp_path / "models.csv")
    assert len(rows) == 1 and rows[0]["gpu"] == "cpu" and rows[0]["batch"] == "2"


def test_tp_tiny_end_to_end(tmp_path):
    cmd = [sys.executable, "-m", "bench.tp", "--model-factory", "bench._tiny:create_model", "--model", "tiny",
           "--impl", "torch", "--amp", "--fp32", "--train", "--batch-size", "4", "--img-size", "32",
           "--warmup", "1", "--iters", "2", "--reports-dir", str(tmp_path), "--flops"]
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "img/s" in r.stdout and "4 rows" in r.stdout
    header = next(ln for ln in r.stdout.splitlines() if ln.startswith("model "))
    assert header.split()[-2:] == ["GFLOPs", "note"]  # --flops: the column is printed, not only stored
    header, rows = read_csv(tmp_path / "models.csv")
    assert [x["mode"] for x in rows] == ["infer_fp32", "infer_amp", "train_amp", "train_fp32"]
    for x in rows:
        assert x["gpu"] == "cpu" and x["model"] == "tiny" and x["impl"] == "torch" and x["batch"] == "4"
        assert float(x["img_per_s"]) > 0 and x["method"] == "official" and x["warmup"] == "1"
        assert float(x["gflops"]) > 0 and x["env_json"].startswith("{")


class _OOMAbove(TinyVMamba):
    """Raises CUDA-style OOM for batches above `limit` (simulates a card that is too small)."""

    limit = 2

    def forward(self, x):
        if x.shape[0] > self.limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1 GiB (simulated)")
        return super().forward(x)


def test_tp_halves_batch_on_oom(tmp_path, capsys):
    rc = TP.main(["--model", "tiny", "--impl", "torch", "--batch-size", "8", "--img-size", "32", "--warmup", "1",
                  "--iters", "1", "--reports-dir", str(tmp_path), "--train"],
                 create_model=lambda name, impl=None: _OOMAbove(impl=impl))
    assert rc == 0
    _, rows = read_csv(tmp_path / "models.csv")
    assert len(rows) == 2
    for x in rows:
        assert x["batch"] == "2" and x["requested_batch"] == "8"
        assert x["note"] == "OOM at batch 8: halved to 4; OOM at batch 4: halved to 2"
    out = capsys.readouterr()
    assert "halved to 2" in out.out and "out of memory at batch 8" in out.err


def test_tp_unavailable_impl_is_reported_not_written(tmp_path, capsys):
    rc = TP.main(["--model", "tiny", "--impl", "cuda", "--batch-size", "2", "--img-size", "32", "--warmup", "1",
                  "--iters", "1", "--reports-dir", str(tmp_path), "--method", "robust"],
                 create_model=lambda name, impl=None: TinyVMamba(impl=impl))
    assert rc == 1  # nothing measured
    assert not (tmp_path / "models.csv").exists()
    assert "failed" in capsys.readouterr().out


def test_tp_robust_method(tmp_path):
    rc = TP.main(["--model", "tiny", "--impl", "torch", "--batch-size", "2", "--img-size", "32", "--warmup", "1",
                  "--iters", "3", "--reports-dir", str(tmp_path), "--method", "robust", "--memory-format",
                  "channels_last"],
                 create_model=lambda name, impl=None: TinyVMamba(impl=impl))
    assert rc == 0
    _, rows = read_csv(tmp_path / "models.csv")
    x = rows[0]
    assert x["method"] == "robust" and x["channels_last"] == "true"
    assert float(x["ms_p20"]) <= float(x["ms_per_iter"]) <= float(x["ms_p80"])


def test_tp_real_model_on_cpu(tmp_path):
    try:
        import models

        names = set(models.list_models())
    except Exception as e:  # noqa: BLE001
        pytest.skip(f"models/ not usable yet ({type(e).__name__}: {e})")
    if "vmamba_t" not in names:
        pytest.skip("models.list_models() has no vmamba_t yet")
    rc = TP.main(["--model", "vmamba_t", "--impl", "torch", "--batch-size", "1", "--img-size", "32", "--warmup", "1",
                  "--iters", "1", "--reports-dir", str(tmp_path), "--fp32", "--train"])
    assert rc == 0
    _, rows = read_csv(tmp_path / "models.csv")
    assert [x["mode"] for x in rows] == ["infer_fp32", "train_fp32"]
    assert abs(float(rows[0]["params_m"]) - 30.249064) < 1e-3


def test_stage_shapes_follow_the_configs():
    from bench.shapes import stage_sizes

    assert stage_sizes(224) == [56, 28, 14, 7] and stage_sizes(16) == [4, 2, 1, 1]
    t = stage_shapes("vmamba_t", 128, 224, prefer_models=False)
    assert [(s.KD, s.L, s.N) for s in t] == [(384, 3136, 1), (768, 784, 1), (1536, 196, 1), (3072, 49, 1)]
    b = stage_shapes("vmamba_b", 128, 224, prefer_models=False)
    assert [(s.D, s.H) for s in b] == [(256, 56), (512, 28), (1024, 14), (2048, 7)]
    v = stage_shapes("vanilla_vmamba_tiny", 1, 224, prefer_models=False)
    assert v[0].KD == 768 and v[0].N == 16
    for name in ("vmamba_t", "vmamba_s", "vmamba_b", "vanilla_vmamba_tiny"):  # agree with the models package
        assert stage_shapes(name, 2, 224) == stage_shapes(name, 2, 224, prefer_models=False)


def test_stage_shapes_of_the_mamba2_variant_are_what_its_scan_sees():
    # the m2 mixer keeps A_logs per head (K, heads); its scan runs over (K * d_inner, d_state = 64)
    import models

    shapes = stage_shapes("vmamba_tiny_m2", 2, 224)
    m = models.create_model("vmamba_tiny_m2", impl="torch")
    mixers = [mod for name, mod in m.named_modules() if hasattr(mod, "d_state") and ".blocks.0." in f".{name}."]
    assert [(s.D, s.N) for s in shapes] == [(mx.d_inner, mx.d_state) for mx in mixers]
    assert all(s.N == 64 for s in shapes)


def test_scan_bytes_reproduce_the_anchor_bandwidth():
    # a measured anchor: T[s1l8] stage (384, 3136), batch 128, fp16 in: oflex (fp32 out) 1.101 ms = 1126 GB/s,
    # mamba_ssm (fp16 out) 1.065 ms = 874 GB/s
    sh = StageShape("vmamba_t", 0, 128, 96, 1, 56, 56)
    assert abs(BK.scan_bytes(sh, torch.float16, torch.float32, "fwd") / 1.101e-3 / 1e9 - 1126) < 2
    assert abs(BK.scan_bytes(sh, torch.float16, torch.float16, "fwd") / 1.065e-3 / 1e9 - 874) < 2
    assert BK.cross_bytes(sh, torch.float16) == 5 * 128 * 96 * 3136 * 2
    assert BK.n_sets_for(10, "cpu") == 1


def test_kernels_cli_on_cpu(tmp_path, capsys):
    rc = BK.main(["--impls", "torch", "--models", "vmamba_t", "--dtypes", "fp32,bf16", "--batch-size", "1",
                  "--img-size", "32", "--stages", "1,4", "--reps", "3", "--warmup", "1", "--reports-dir", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "selective_scan" in out and "copy bandwidth" in out
    _, rows = read_csv(tmp_path / "kernels.csv")
    # 2 stages x 2 dtypes x (scan fwd, scan bwd, cross_scan, cross_merge)
    assert len(rows) == 16
    assert {(r["op"], r["direction"]) for r in rows} == {("selective_scan", "fwd"), ("selective_scan", "bwd"),
                                                          ("cross_scan", "fwd"), ("cross_merge", "fwd")}
    for r in rows:  # the CSV keeps the 0-based index; printed tables show the paper's 1-4
        assert r["gpu"] == "cpu" and r["impl"] == "torch" and r["stage"] in ("0", "3")
        assert abs(float(r["gbps"]) - int(r["bytes"]) / (float(r["ms_p50"]) * 1e-3) / 1e9) < 1e-3 * float(r["gbps"]) + 1e-6
    assert any(r["shape"] == "B1 KD384 L64 N1 K4" for r in rows)


def test_kernels_cli_channels_last_cross_ops(tmp_path, capsys):
    rc = BK.main(["--impls", "torch", "--models", "vmamba_t", "--dtypes", "fp32", "--ops", "cross_scan,cross_merge",
                  "--layouts", "cf,cl", "--batch-size", "1", "--img-size", "32", "--stages", "1", "--reps", "2",
                  "--warmup", "1", "--reports-dir", str(tmp_path)])
    assert rc == 0
    _, rows = read_csv(tmp_path / "kernels.csv")
    assert sorted(r["shape"] for r in rows) == ["B1 D96 H8 W8", "B1 D96 H8 W8", "B1 D96 H8 W8 channels_last",
                                                "B1 D96 H8 W8 channels_last"]
    with pytest.raises(SystemExit):
        BK.main(["--layouts", "nhwc", "--no-csv"])


def test_kernels_cli_stage_numbers_and_cpu_rows(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("VMAMBA_REPORTS_DIR", str(tmp_path))  # where a wrong default would write
    rc = BK.main(["--impls", "torch", "--models", "vmamba_t", "--dtypes", "fp32", "--ops", "cross_scan",
                  "--batch-size", "1", "--img-size", "32", "--stages", "4", "--reps", "2", "--warmup", "1",
                  "--device", "cpu"])
    out = capsys.readouterr()
    assert rc == 0 and not (tmp_path / "kernels.csv").exists()
    assert "rows are printed, not written" in out.err and "(not written)" in out.out
    line = next(ln for ln in out.out.splitlines() if ln.startswith("cross_scan"))
    assert line.split()[3:5] == ["vmamba_t", "4"]  # the paper's stage 4: the 1 x 1 map at 32 px
    for bad in ("0", "5", "x"):
        with pytest.raises(SystemExit):
            BK.main(["--stages", bad, "--no-csv"])
    assert "numbered 1-4" in capsys.readouterr().err


def test_kernels_skip_unavailable_and_unsupported(tmp_path):
    cases = BK.build_cases(["vmamba_t"], ["selective_scan"], ["fp32"], ["fwd"], batch=1, img_size=32)[:1]
    rows, skipped = BK.sweep(cases, ["torch", "cuda", "mamba_ssm"], "cpu", torch.float32, 1, 3, 100.0, tmp_path, False)
    assert [r.impl for r in rows] == ["torch"]  # cuda/mamba_ssm are not offered on the CPU at all
    assert not (tmp_path / "kernels.csv").exists()


def test_check_cli_on_cpu(tmp_path, capsys):
    from bench import check

    rc = check.main(["--impls", "torch", "--models", "vmamba_t", "--batch-size", "1", "--img-size", "32",
                     "--reports-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "summary per impl" in out and " 0 failed" in out
    _, rows = read_csv(tmp_path / "check.csv")
    qs = {r["quantity"] for r in rows}
    assert {"out", "du", "ddelta", "dA", "dB", "dC", "dD", "ddelta_bias", "cross_scan", "cross_merge"} <= qs
    assert all(r["passed"] == "true" for r in rows)


def test_check_fails_on_a_wrong_impl(tmp_path, monkeypatch, capsys):
    from bench import check

    real = check.scan_impl

    def wrong(impl, inp, dout):
        got = real(impl, inp, dout)
        got["dA"] = got["dA"] * 1.01  # a 1% error in one gradient must fail
        return got

    monkeypatch.setattr(check, "scan_impl", wrong)
    rc = check.main(["--impls", "torch", "--models", "vmamba_t", "--dtypes", "fp32", "--ops", "selective_scan",
                     "--batch-size", "1", "--img-size", "16", "--no-csv"])
    assert rc == 1
    assert "failed: dA" in capsys.readouterr().out


def test_check_tolerance_table():
    from bench.check import compare, tolerances

    t = tolerances("fp16")
    assert t["out"] == (3e-3, 5e-3) and t["du"] == (6e-3, 1e-2) and t["ddelta"] == (1.5e-2, 5e-2)
    assert t["dA"] == (1e-3, 5e-3) and t["dD"] == (1e-3, 1e-3) and tolerances("bf16")["dB"] == (3e-2, 5e-2)
    ref = torch.tensor([1.0, -2.0])
    assert compare(ref + 1e-3, ref, 0.0, 2e-3)[2] and not compare(ref + 3e-3, ref, 0.0, 2e-3)[2]
    assert not compare(torch.tensor([float("nan"), 0.0]), ref, 1.0, 1.0)[2]
    assert compare(ref.clone(), ref, 0.0, 0.0)[2]


def test_pytest_benchmark_sweep_collects(monkeypatch):
    """bench/test_kernels_bench.py: a small default grid (VMamba-T fp16), the full one on request."""
    pytest.importorskip("pytest_benchmark", reason="pytest-benchmark not installed")
    import bench.test_kernels_bench as tkb

    monkeypatch.delenv("VMAMBA_BENCH_MODELS", raising=False)
    monkeypatch.delenv("VMAMBA_BENCH_DTYPES", raising=False)
    monkeypatch.setenv("VMAMBA_BENCH_IMPLS", "cuda,triton,cupy,torch,mamba_ssm")
    ids = [p.id for p in tkb.params(full=False)]
    assert len(ids) == len(set(ids)) == 4 * (2 * 5 + 2 * 4)  # 4 stages x (scan fwd/bwd x 5, cross ops x 4)
    assert {i.split("-")[3] for i in ids} == {"vmamba_t"} and {i.split("-")[2] for i in ids} == {"fp16"}
    assert "selective_scan-bwd-fp16-vmamba_t-s1-mamba_ssm" in ids  # stages numbered 1-4
    assert not any("-s0-" in i for i in ids)
    assert not any(i.startswith("cross_scan-bwd") for i in ids)
    full = [p.id for p in tkb.params(full=True)]
    assert len(full) == 3 * 3 * len(ids)  # T/S/B x fp32/fp16/bf16
    monkeypatch.setenv("VMAMBA_BENCH_MODELS", "vmamba_s")
    assert {p.id.split("-")[3] for p in tkb.params(full=False)} == {"vmamba_s"}
    monkeypatch.delenv("VMAMBA_BENCH_IMPLS")
    assert not any(p.id.endswith("torch_sequential") for p in tkb.params(full=False))


pytest_plugins = ["pytester"]


def test_bench_conftest_shows_progress_and_skip_reasons(pytester):
    """The bench/ conftest: a result line per finished benchmark, skip reasons counted at the end
    without -rs, and --full-sweep registered."""
    bench_dir = pytester.mkdir("bench")
    (bench_dir / "conftest.py").write_text((REPO / "bench" / "conftest.py").read_text())
    (bench_dir / "test_fake.py").write_text(
        "import pytest\n"
        "@pytest.mark.parametrize('i', range(3))\n"
        "def test_skipped(i):\n"
        "    pytest.skip('needs a CUDA device: planted')\n"
        "def test_measured(record_property, request):\n"
        "    record_property('result', '0.123 ms, 456 GB/s')\n"
        "    assert request.config.getoption('full_sweep')\n")
    res = pytester.runpytest("bench", "--full-sweep", "-p", "no:cacheprovider")
    res.assert_outcomes(passed=1, skipped=3)
    out = res.stdout.str()
    assert "test_measured: 0.123 ms, 456 GB/s" in out
    assert "bench: skipped benchmarks by reason" in out and "3 x needs a CUDA device: planted" in out
    assert "bench: " in out.splitlines()[2] or any(ln.startswith("bench: ") for ln in out.splitlines()[:8])


def test_check_feeds_mamba_the_rounded_upstream_gradient():
    # mamba_ssm returns fp16 output for fp16 input, so its backward sees dout rounded to fp16; the
    # reference it is compared with must use the same dout (our impls return fp32 and get dout as is)
    from bench import check as CK

    dout = torch.randn(2, 3, 5, dtype=torch.float32) * 3
    assert CK.upstream_grad("cuda", dout, torch.float16) is dout
    assert CK.upstream_grad(CK.MAMBA, dout, torch.float32) is dout
    g = CK.upstream_grad(CK.MAMBA, dout, torch.float16)
    assert g.dtype == torch.float32 and torch.equal(g, dout.half().float()) and not torch.equal(g, dout)


def test_tp_memory_format_flag_and_its_old_name(capsys):
    assert TP.parse_args([]).memory_format == "contiguous"
    assert TP.parse_args(["--memory-format", "channels_last"]).memory_format == "channels_last"
    assert TP.parse_args(["--channels-last"]).memory_format == "channels_last"
    assert "--memory-format channels_last" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        TP.parse_args(["--memory-format", "nhwc"])


def test_tp_path_and_layout_choices():
    """--path / --layout build the policy and layout each row is measured with (labels :unfused / :cl / :cf)."""
    import models

    a = TP.parse_args(["--model", "vmamba_t", "--path", "both", "--layout", "both"])
    assert (a.path, a.layout) == ("both", "both")
    assert TP._policy("cuda", "fused") == "cuda" and TP._policy("auto", "fused") is None
    assert TP._policy("cuda", "unfused") == models.KernelPolicy.unfused("cuda")
    assert TP._layout_kw("model") == {} and TP._layout_kw("channels_last") == {"channels_last": True}
    assert TP._layout_kw("channels_first") == {"channels_last": False}


def test_layout_label_names_the_layout_a_default_row_ran(monkeypatch):
    import models  # noqa: PLC0415
    import models.registry as R  # noqa: PLC0415

    assert TP._layout_label("channels_first", "vmamba_t", models.create_model) == ":cf"
    assert TP._layout_label("model", "vmamba_t", models.create_model) == ":cl"  # models run channels last
    assert TP._layout_label("model", "vanilla_vmamba_tiny", models.create_model) == ":cl"
    assert TP._layout_label("model", "tiny", lambda name, impl=None: None) == ""  # another factory: its own layout
    assert TP._layout_label("model", "no_such_model", models.create_model) == ""
    monkeypatch.setattr(R, "DEFAULT_CHANNELS_LAST", False)  # the released layouts
    assert TP._layout_label("model", "vmamba_t", models.create_model) == ":cf"
    assert TP._layout_label("model", "vanilla_vmamba_tiny", models.create_model) == ":cl"  # v0: channels last only


class _Recomputing(TinyVMamba):
    """Records the set_recompute calls bench.tp makes."""

    calls: list = []

    def set_recompute(self, what):
        self.calls.append(what)
        return self


def test_tp_recompute_list(tmp_path, capsys):
    _Recomputing.calls = []
    rc = TP.main(["--model", "tiny", "--impl", "torch", "--img-size", "32", "--warmup", "1", "--iters", "1",
                  "--batch-size", "2", "--train-only", "--reports-dir", str(tmp_path), "--save-cpu",
                  "--recompute", "none,default,all"], create_model=lambda name, impl=None: _Recomputing(impl=impl))
    assert rc == 0, capsys.readouterr().err
    _, rows = read_csv(tmp_path / "models.csv")
    assert [x["impl"] for x in rows] == ["torch:rc_none", "torch", "torch:rc_all"]
    assert _Recomputing.calls == ["none", "all"]  # default: the model as built
    assert TP.parse_args(["--recompute", "norms+delta,routes,all"]).recomputes == ["norms+delta", "routes", "all"]
    for bad in ("routes+bogus", "mlp,gelu", "all+mlp"):
        with pytest.raises(SystemExit):
            TP.parse_args(["--recompute", bad])
        assert "--recompute: default, all, none or parts of norms, delta, routes, mlp" in capsys.readouterr().err
    # a model without set_recompute: that row is skipped with the reason, the run goes on
    rc = TP.main(["--model", "tiny", "--impl", "torch", "--img-size", "32", "--warmup", "1", "--iters", "1",
                  "--batch-size", "2", "--train-only", "--no-csv", "--recompute", "mlp"], create_model=_tiny)
    assert rc == 1  # nothing measured
    assert "TinyVMamba has no set_recompute" in capsys.readouterr().out


class _Switched(TinyVMamba):
    """Records the set_weight_cache / set_cpp_stages calls bench.tp makes."""

    calls: list = []

    def set_weight_cache(self, on=True):
        self.calls.append(("set_weight_cache", on))
        return self

    def set_cpp_stages(self, on=True):
        self.calls.append(("set_cpp_stages", on))
        return self


@pytest.mark.parametrize("flag,method,label", [("--weight-cache", "set_weight_cache", "wc"),
                                               ("--cpp-stages", "set_cpp_stages", "cpp")])
def test_tp_model_switches_both(tmp_path, capsys, flag, method, label):
    _Switched.calls = []
    rc = TP.main(["--model", "tiny", "--impl", "torch", "--img-size", "32", "--warmup", "1", "--iters", "1",
                  "--batch-size", "2", "--reports-dir", str(tmp_path), "--save-cpu", flag, "both"],
                 create_model=lambda name, impl=None: _Switched(impl=impl))
    assert rc == 0, capsys.readouterr().err
    _, rows = read_csv(tmp_path / "models.csv")
    assert [x["impl"] for x in rows] == ["torch", f"torch:{label}"]
    assert _Switched.calls == [(method, True)]  # off: the model as built
    rc = TP.main(["--model", "tiny", "--impl", "torch", "--img-size", "32", "--warmup", "1", "--iters", "1",
                  "--batch-size", "2", "--no-csv", flag, "on"], create_model=_tiny)
    assert rc == 1
    assert f"TinyVMamba has no {method}" in capsys.readouterr().out


def test_timm_baseline_built_for_the_image_size(monkeypatch):
    """bench.tp --img-size 1024 must time Swin at 1024 (timm's Swin refuses other sizes unless built for
    them) and still build size-agnostic baselines whose constructors take no img_size (ConvNeXt)."""
    import types

    calls = []

    def create_model(name, pretrained=False, **kw):
        calls.append((name, kw))
        if name == "convnext_tiny" and kw:
            raise TypeError("__init__() got an unexpected keyword argument 'img_size'")
        return name

    monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=create_model))
    assert TP._timm_factory("swin_tiny_patch4_window7_224", 1024) == "swin_tiny_patch4_window7_224"
    assert calls[-1] == ("swin_tiny_patch4_window7_224", {"img_size": 1024})
    assert TP._timm_factory("convnext_tiny", 1024) == "convnext_tiny"
    assert calls[-1] == ("convnext_tiny", {})
    TP._timm_factory("swin_tiny_patch4_window7_224", 224)
    assert calls[-1] == ("swin_tiny_patch4_window7_224", {})
