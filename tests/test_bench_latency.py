"""Small batches and host overhead on the CPU: bench.tp's batch list, the CUDA-graph helper's refusals
without a GPU, the README latency table, and bench.overhead end to end with no-op kernels."""
from __future__ import annotations

import argparse
import math
import re
import time

import pytest
import torch

import models.graphs as G
from bench import overhead as OV
from bench import report
from bench import tp as TP
from bench._tiny import TinyVMamba
from bench.results import read_csv


# ---- bench.tp --batch ----------------------------------------------------------------------------------
def test_batch_list_parsing():
    assert TP.parse_batches("1,8,32,128") == [1, 8, 32, 128]
    assert TP.parse_batches("16") == [16]
    assert TP.parse_batches(" 4, 4 ,2,") == [4, 2]  # duplicates dropped, blanks ignored, order kept
    for bad in ("0", "1,x", "-2", ",", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            TP.parse_batches(bad)
    a = TP.parse_args(["--batch", "1,8"])
    assert a.batches == [1, 8] and a.batch_size == 1
    a = TP.parse_args(["--batch-size", "8"])  # the old spelling, one value
    assert a.batches == [8] and a.batch_size == 8
    with pytest.raises(SystemExit):
        TP.parse_args(["--batch", "1,zero"])


def test_tp_writes_one_row_per_batch_with_ms_per_image(tmp_path):
    rc = TP.main(["--model", "tiny", "--impl", "torch", "--batch", "1,3", "--img-size", "32", "--warmup", "1",
                  "--iters", "1", "--reports-dir", str(tmp_path)],
                 create_model=lambda name, impl=None: TinyVMamba(impl=impl))
    assert rc == 0
    _, rows = read_csv(tmp_path / "models.csv")
    assert [(r["batch"], r["requested_batch"]) for r in rows] == [("1", "1"), ("3", "3")]
    for r in rows:
        assert float(r["ms_per_img"]) == pytest.approx(float(r["ms_per_iter"]) / int(r["batch"]), rel=1e-4)
        assert r["cuda_graphs"] == "false"


def test_tp_cuda_graphs_needs_a_gpu(tmp_path):
    with pytest.raises(SystemExit, match="--cuda-graphs needs a CUDA device"):
        TP.main(["--model", "tiny", "--impl", "torch", "--device", "cpu", "--cuda-graphs", "--no-csv"],
                create_model=lambda name, impl=None: TinyVMamba(impl=impl))


# ---- models.graphs without CUDA -----------------------------------------------------------------------
def test_graph_helpers_refuse_clearly_without_cuda(monkeypatch):
    m = TinyVMamba(impl="torch")
    x, y = torch.randn(1, 3, 32, 32), torch.zeros(1, dtype=torch.long)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="CUDA graphs need a CUDA device"):
        G.capture_inference(m, x)
    with pytest.raises(RuntimeError, match="CUDA graphs need a CUDA device"):
        G.capture_train_step(m, torch.nn.CrossEntropyLoss(), None, x, y)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU, but CPU example inputs
    with pytest.raises(ValueError, match="must be CUDA tensors"):
        G.capture_inference(m, x)
    with pytest.raises(TypeError, match="must be tensors"):
        G.capture_train_step(m, torch.nn.CrossEntropyLoss(), None, [0], y)


def test_graphed_callables_check_shapes():
    # the replay wrappers alone (no capture): a wrong shape is refused before anything is copied
    class NoGraph:
        def replay(self):
            raise AssertionError("replayed")

    f = G.GraphedInference(NoGraph(), torch.zeros(2, 3), torch.zeros(2), None)
    with pytest.raises(ValueError, match=r"captured for inputs of shape \(2, 3\)"):
        f(torch.zeros(1, 3))
    s = G.GraphedTrainStep(NoGraph(), torch.zeros(2, 3), torch.zeros(2), torch.zeros(()), None)
    with pytest.raises(ValueError, match="target of shape"):
        s(torch.zeros(2, 3), torch.zeros(3))


# ---- README latency table --------------------------------------------------------------------------------
def _row(model, impl, batch, ms, mode="infer_amp", ts="1"):
    return dict(model=model, impl=impl, mode=mode, batch=str(batch), requested_batch=str(batch), img_size="224",
                img_per_s=str(batch / ms * 1000), ms_per_iter=str(ms), ms_per_img=str(ms / batch), peak_mem_mb="1",
                gpu="NVIDIA H200", git_sha="s", timestamp=ts, method="official", warmup="5", iters="5")


def test_latency_table_and_throughput_at_the_largest_batch():
    rows = [_row("vmamba_t", "cuda", 128, 25.6), _row("vmamba_t", "cuda", 1, 4.0), _row("vmamba_t", "cuda", 32, 8.0),
            _row("vmamba_t", "cuda:graphs", 1, 1.5), _row("swin_tiny_patch4_window7_224", "timm", 1, 3.0),
            _row("vmamba_b", "cuda", 128, 50.0)]
    lat = report.latency_table(rows)
    lines = {tuple(c.strip() for c in ln.split("|")[1:3]): ln for ln in lat.splitlines() if ln.startswith("| ")}
    cuda = [c.strip() for c in lines[("vmamba_t", "cuda")].split("|")[1:-1]]
    assert cuda[3] == "4.00" and cuda[-2] == "1.25x"  # batch-1 latency; (8/32) / (25.6/128)
    assert ("vmamba_t", "cuda:graphs") in lines and ("swin_tiny_patch4_window7_224", "timm") in lines
    assert ("vmamba_b", "cuda") not in lines  # one batch, not 1: nothing to show
    tp = report.models_table(rows)
    line = next(ln for ln in tp.splitlines() if ln.startswith("| vmamba_t | cuda |"))
    assert "| 5000 |" in line and "| 128 |" in line  # the batch-128 row, not the newer batch-1 one
    assert report.latency_table([_row("vmamba_b", "cuda", 128, 50.0)]) == ""


# ---- bench.overhead -------------------------------------------------------------------------------------
def test_overhead_cli_with_mock_kernels(tmp_path, capsys):
    rc = OV.main(["--impls", "torch", "--mock", "--calls", "5", "--reports-dir", str(tmp_path)])
    assert rc == 0
    ref = re.search(r"host reference on this machine .*: torch.empty ([0-9.]+), torch.add with grad ([0-9.]+)",
                    capsys.readouterr().out)
    assert ref and 0 < float(ref[1]) < 1e4 and 0 < float(ref[2]) < 1e4
    _, rows = read_csv(tmp_path / "overhead.csv")
    got = {(r["op"], r["direction"], r["grad"], r["path"]) for r in rows}
    for op in OV.OPS:
        assert {(op, "fwd", "false", "public"), (op, "fwd", "true", "public"), (op, "fwd+bwd", "true", "public"),
                (op, "fwd", "false", "prepare"), (op, "fwd", "false", "validate"), (op, "fwd", "false", "library_op"),
                (op, "fwd", "false", "raw"),
                (op, "fwd", "true", "raw")} <= got
    assert not any(r["path"] == "raw_jit_run" for r in rows)  # triton only, real kernels only
    assert all(r["kernels"] == "mock" and float(r["host_us"]) > 0 and r["note"].startswith("median of 5 rounds")
               for r in rows)
    # public rows name the key and, with grad, the autograd path they ran (the torch backend: Python autograd)
    assert all(("key" in r["note"]) == (r["path"] == "public") for r in rows)
    assert all("python autograd" in r["note"] for r in rows if r["path"] == "public" and r["grad"] == "true")
    from vmamba_kernels import dispatch
    assert not isinstance(dispatch.get_backend("torch")._impl, type(OV._mock_module(dispatch.get_backend("torch"))))


def test_overhead_time_calls_takes_the_median_round():
    """One slow round (a garbage collection, the thread descheduled) does not make the figure: host_us and
    wall_us are the median over the rounds."""
    import time  # noqa: PLC0415

    n = [0]

    def fn():
        n[0] += 1
        if n[0] == 5 + 4 + 1:  # warm-up 5, round 1 = calls 6..9, the first call of round 2
            time.sleep(0.05)

    out = OV.time_calls(fn, "cpu", calls=4, rounds=3)
    assert n[0] == 5 + 3 * 4
    assert out["host_us"] < 2000 and out["wall_us"] < 2000, out  # the slow round alone: 12500 us per call


def test_overhead_interleaved_rounds_take_every_row_in_turn():
    """time_interleaved: round r of every entry before round r + 1 of any, each inside its own context; a slow
    stretch (one round of the first entry here) lands in one round of that row and the median drops it; the rows
    report their rounds' spread."""
    import contextlib  # noqa: PLC0415
    import time  # noqa: PLC0415

    order, inside = [], []

    def entry(name, slow_call=None):
        n = [0]

        def fn():
            n[0] += 1
            order.append((name, bool(inside)))
            if n[0] == slow_call:
                time.sleep(0.05)

        @contextlib.contextmanager
        def ctx():
            inside.append(name)
            try:
                yield
            finally:
                inside.pop()

        return fn, ctx

    out = OV.time_interleaved([entry("a", slow_call=2 + 3 + 1), entry("b")], "cpu", calls=3, warmup=2, rounds=3)
    assert all(flag for _, flag in order), "a call ran outside its entry's context"
    timed = [name for name, _ in order[4:]]  # after the warm-ups (2 + 2)
    assert timed == ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3 + ["a"] * 3 + ["b"] * 3
    assert out[0]["host_us"] < 5000 < out[0]["host_max"], out[0]  # the slow round: 50 ms over 3 calls
    assert all(r["host_min"] <= r["host_us"] <= r["host_max"] for r in out)


def test_overhead_cli_interleave_notes_it(tmp_path):
    rc = OV.main(["--impls", "torch", "--mock", "--calls", "5", "--rounds", "2", "--ops", "cross_scan", "--interleave",
                  "--no-breakdown", "--reports-dir", str(tmp_path)])
    assert rc == 0
    _, rows = read_csv(tmp_path / "overhead.csv")
    assert len(rows) == 3 and all(r["note"].startswith("median of 2 interleaved rounds; rounds ") for r in rows)
    from vmamba_kernels import dispatch
    assert not isinstance(dispatch.get_backend("torch")._impl, type(OV._mock_module(dispatch.get_backend("torch"))))


def test_raw_jit_run_rows_turn_triton_direct_launches_off():
    import vmamba_kernels as vk  # noqa: PLC0415

    assert vk.get_tuning("triton").fast_launch
    with OV._launch_mode("raw_jit_run"):
        assert not vk.get_tuning("triton").fast_launch
    assert vk.get_tuning("triton").fast_launch
    with OV._launch_mode("raw"):
        assert vk.get_tuning("triton").fast_launch


def test_raw_python_key_rows_key_triton_launches_in_python():
    pytest.importorskip("triton")
    from vmamba_kernels.triton import fast_launch  # noqa: PLC0415

    fast_launch.use_native_launch_key(True)
    with OV._launch_mode("raw_python_key"):
        assert fast_launch._NATIVE_KEY[0] is None
    assert fast_launch._NATIVE_KEY[0] is fast_launch._untried  # looked up again at the next direct launch
    with OV._launch_mode("raw"):
        assert fast_launch._NATIVE_KEY[0] is fast_launch._untried


def test_mock_kernels_keep_the_contracts_shapes():
    from vmamba_kernels import dispatch

    b = dispatch.get_backend("torch")
    for op in OV.OPS:
        real = OV._inputs(op, "tiny", "cpu", torch.float32, True, "torch").call()
        with OV.mocked_kernels("torch"):
            fake = OV._inputs(op, "tiny", "cpu", torch.float32, True, "torch").call()
        real, fake = (t if isinstance(t, tuple) else (t,) for t in (real, fake))
        assert [(t.shape, t.dtype) for t in real] == [(t.shape, t.dtype) for t in fake], op
    assert b._impl is not None


# ---- bench.kernels' host-inclusive columns ------------------------------------------------------------------
def test_kernels_rows_carry_host_inclusive_times(tmp_path):
    from bench import kernels as BK

    rc = BK.main(["--impls", "torch", "--models", "vmamba_t", "--dtypes", "fp32", "--batch-size", "1",
                  "--img-size", "32", "--stages", "4", "--reps", "3", "--warmup", "1", "--reports-dir", str(tmp_path)])
    assert rc == 0
    _, rows = read_csv(tmp_path / "kernels.csv")
    assert {(r["op"], r["direction"]) for r in rows} == {("selective_scan", "fwd"), ("selective_scan", "bwd"),
                                                          ("cross_scan", "fwd"), ("cross_merge", "fwd")}
    for r in rows:
        assert float(r["wall_ms"]) > 0 and float(r["api_wall_ms"]) > 0, r


# ---- bench.tp --rounds ------------------------------------------------------------------------------------
def test_tp_rounds_interleave_models_and_report_the_median_round(tmp_path, monkeypatch):
    """--rounds 3: the whole set runs three times, one model after the other in each round (a slow spell of
    the host hits both alike), and each row is the round with the median time, every round listed."""
    times = {"a": [10.0, 30.0, 20.0], "b": [7.0, 5.0, 6.0]}
    order = []

    def fake_measure(model, mode, batch, img_size, device, a, num_classes=1000, label=""):
        name = label.split("/")[0]
        order.append(name)
        ms = times[name][sum(1 for n in order if n == name) - 1]
        return {"ms": ms, "ms_p20": ms - 1, "ms_p80": ms + 1, "peak_mb": ms * 100, "img_per_s": batch / ms * 1e3,
                "warmup": 1, "iters": 1}

    monkeypatch.setattr(TP, "measure", fake_measure)
    rc = TP.main(["--model", "a,b", "--impl", "torch", "--batch", "2", "--img-size", "32", "--rounds", "3",
                  "--reports-dir", str(tmp_path)], create_model=lambda name, impl=None: TinyVMamba(impl=impl))
    assert rc == 0
    assert order == ["a", "b"] * 3
    _, rows = read_csv(tmp_path / "models.csv")
    by = {r["model"]: r for r in rows}
    assert len(rows) == 2
    assert float(by["a"]["ms_per_iter"]) == 20.0 and float(by["a"]["peak_mem_mb"]) == 2000.0  # one round's row
    assert float(by["b"]["ms_per_iter"]) == 6.0
    assert by["a"]["note"] == "median of 3 rounds, ms/iter 10.00, 30.00, 20.00"
    with pytest.raises(SystemExit):
        TP.parse_args(["--rounds", "0"])


def test_tp_interrupted_run_writes_what_it_measured(tmp_path, monkeypatch, capsys):
    """An interrupt (timeout -s INT, Ctrl-C) in the second round: the rows of the finished measurements are
    written, each note says how many rounds it got, and the exit status is 130."""
    calls = []

    def fake_measure(model, mode, batch, img_size, device, a, num_classes=1000, label=""):
        calls.append(label)
        if len(calls) == 3:  # round 2, model a
            raise KeyboardInterrupt
        return {"ms": 10.0 + len(calls), "ms_p20": 9.0, "ms_p80": 12.0, "peak_mb": 100.0, "img_per_s": 100.0,
                "warmup": 1, "iters": 1}

    monkeypatch.setattr(TP, "measure", fake_measure)
    rc = TP.main(["--model", "a,b", "--impl", "torch", "--batch", "2", "--img-size", "32", "--rounds", "3",
                  "--reports-dir", str(tmp_path)], create_model=lambda name, impl=None: TinyVMamba(impl=impl))
    assert rc == 130
    assert "interrupted" in capsys.readouterr().err
    _, rows = read_csv(tmp_path / "models.csv")
    assert [r["model"] for r in rows] == ["a", "b"]
    assert all(r["note"] == "run interrupted: 1 of 3 rounds" for r in rows), [r["note"] for r in rows]
    assert float(rows[0]["ms_per_iter"]) == 11.0 and float(rows[1]["ms_per_iter"]) == 12.0


def test_tp_graphed_peak_counts_the_capture(monkeypatch):
    """With --cuda-graphs the peak counter is reset before the capture (the graph's memory pool is part of what
    the replays need), not after it; without graphs it is reset after the warm-up."""
    events = []
    monkeypatch.setattr(TP, "_reset_peak", lambda dev: events.append("reset"))

    def capture(model, x, autocast=None):
        events.append("capture")
        return lambda xx: events.append("replay")

    monkeypatch.setattr(G, "capture_inference", capture)
    a = TP.parse_args(["--batch", "1", "--warmup", "1", "--iters", "1", "--cuda-graphs"])
    TP.measure(TinyVMamba(impl="torch"), "infer_fp32", 1, 32, "cpu", a)
    assert events[:2] == ["reset", "capture"] and events.count("reset") == 1
    events.clear()
    a = TP.parse_args(["--batch", "1", "--warmup", "1", "--iters", "1"])
    TP.measure(TinyVMamba(impl="torch"), "infer_fp32", 1, 32, "cpu", a)
    assert events == ["reset"]


def test_compiled_rows_note_the_first_step(tmp_path, monkeypatch):
    """--compile: each row's note gives the first warm-up step's time (the compile a user waits for), per round;
    rows without --compile carry no such note."""
    firsts = iter([41.25, 3.5])

    def fake_measure(model, mode, batch, img_size, device, a, num_classes=1000, label=""):
        return {"ms": 10.0, "ms_p20": 9.0, "ms_p80": 11.0, "peak_mb": 1.0, "img_per_s": 100.0, "warmup": 1,
                "iters": 1, "first_step_s": next(firsts)}

    monkeypatch.setattr(TP, "measure", fake_measure)
    make = lambda name, impl=None: TinyVMamba(impl=impl)  # noqa: E731
    args = ["--model", "a", "--impl", "torch", "--batch", "2", "--img-size", "32", "--reports-dir", str(tmp_path)]
    assert TP.main(args + ["--compile", "--rounds", "2"], create_model=make) == 0
    firsts = iter([7.0])
    assert TP.main(args, create_model=make) == 0
    _, rows = read_csv(tmp_path / "models.csv")
    assert rows[0]["compile"] == "true" and rows[0]["note"].startswith("first step (compile) 41.2 s, 3.5 s; median")
    assert rows[1]["compile"] == "false" and "first step" not in rows[1]["note"]


def test_measure_times_the_first_warmup_step():
    a = TP.parse_args(["--device", "cpu", "--warmup", "2", "--iters", "1", "--img-size", "16"])
    calls = []

    class Slow(torch.nn.Module):
        def forward(self, x):
            calls.append(1)
            if len(calls) == 1:
                time.sleep(0.05)  # the first call only (as a compile)
            return x.mean((2, 3)).repeat(1, 4)

    r = TP.measure(Slow(), "infer_fp32", 1, 16, "cpu", a, num_classes=12)
    assert r["first_step_s"] >= 0.05 and r["ms"] < 50
    a.warmup = 0
    assert math.isnan(TP.measure(Slow(), "infer_fp32", 1, 16, "cpu", a, num_classes=12)["first_step_s"])


def test_baseline_models_alone_say_the_default_models_run_too(capsys):
    TP.parse_args(["--baselines", "--baseline-models", "convnext_tiny"])
    assert "--model none measures the baselines only" in capsys.readouterr().err
    a = TP.parse_args(["--model", "none", "--baselines", "--baseline-models", "convnext_tiny"])
    assert a.models == [] and capsys.readouterr().err == ""
