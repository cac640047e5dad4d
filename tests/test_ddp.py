"""bench.tp --ddp and bench/ddp.py (issue #23) on the CPU with gloo, two processes: DDP replicas on slices of a
batch train like one process on the whole batch (VMamba with impl torch, and the tiny stand-in), the check
fails without DDP's gradient averaging, and `torchrun -m bench.tp --ddp` writes one row from rank 0 only."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from bench import ddp
from bench import tp as TP

REPO = Path(__file__).resolve().parents[1]
# gloo finds its address through the host name, which a sandbox may not resolve: the loopback device always works
LOOPBACK = {"GLOO_SOCKET_IFNAME": os.environ.get("GLOO_SOCKET_IFNAME", "lo")}


def _make(name):
    if name == "policy":  # a per-layer kernel policy: stage 1 on another backend than the rest
        import models  # noqa: PLC0415

        return models.create_model("vmamba_t", impl={"*": "torch", "layers.1.*": "torch_sequential"},
                                   depths=(1, 1, 1, 1), dims=8, drop_path_rate=0.0, num_classes=10)
    if name in ("tiny", "tiny_compiled"):
        from bench._tiny import create_model  # noqa: PLC0415

        return create_model("tiny", impl="torch")
    import models  # noqa: PLC0415

    return models.create_model(name, impl="torch", depths=(1, 1, 1, 1), dims=8, drop_path_rate=0.0,
                               num_classes=10)


def _no_ddp(model, d):
    return model  # each replica steps on its own slice's gradient: what DDP's averaging prevents


def _compiled_ddp(model, d):
    return torch.compile(ddp.wrap(model, d))


def _worker(rank, world, store, name, out, plain):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), **LOOPBACK)
    torch.set_num_threads(1)
    d = ddp.from_env("cpu")
    ddp.init(d, init_method=f"file://{store}", timeout_s=120)  # a file rendezvous: no port to race for
    try:
        kw = {"replicate": _no_ddp} if plain else {"replicate": _compiled_ddp} if name == "tiny_compiled" else {}
        res = ddp.check_equivalence(lambda: _make(name), d, **kw)
    finally:
        ddp.shutdown()
    if d.is_main:
        Path(out).write_text(json.dumps(res))


def _run(tmp_path, name, plain=False):
    out = tmp_path / f"{name}_{plain}.json"
    ctx = mp.spawn(_worker, args=(2, str(tmp_path / f"store_{name}_{plain}"), name, str(out), plain), nprocs=2,
                   join=False)
    deadline = time.monotonic() + 300
    while not ctx.join(timeout=5):  # raises if a worker failed
        if time.monotonic() > deadline:  # a hung collective must not hang the suite
            for p in ctx.processes:
                p.kill()
            pytest.fail("the DDP workers did not finish in 300 s")
    return json.loads(out.read_text())


@pytest.mark.parametrize("name", ["tiny", "vmamba_t", "policy", "tiny_compiled"])
def test_ddp_on_two_processes_trains_like_one_on_the_whole_batch(tmp_path, name):
    """Also with a per-layer kernel policy, and with the DDP replica under torch.compile (the reference stays
    eager: the bound covers inductor's reordered float32 arithmetic)."""
    res = _run(tmp_path, name)
    assert res["moved"] > 1e-3, res["moved"]  # the steps changed the parameters
    worst = max(res["err"].items(), key=lambda kv: kv[1])
    assert worst[1] < (1e-4 if name == "tiny_compiled" else 1e-5), worst


def test_the_check_fails_without_gradient_averaging(tmp_path):
    res = _run(tmp_path, "tiny", plain=True)
    assert max(res["err"].values()) > 1e-3, res


def test_ddp_outside_torchrun_names_the_launcher(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    with pytest.raises(SystemExit, match="torchrun --nproc_per_node=N -m bench.tp --ddp"):
        ddp.from_env("cpu")


def test_ddp_flags():
    a = TP.parse_args(["--ddp"])
    assert a.ddp and a.train_only and a.train
    with pytest.raises(SystemExit):
        TP.parse_args(["--ddp", "--cuda-graphs"])


def test_tp_ddp_under_torchrun_writes_one_row_from_rank_0(tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "bench.tp",
           "--ddp", "--device", "cpu", "--model-factory", "bench._tiny:create_model", "--model", "tiny", "--impl", "torch",
           "--batch", "2", "--warmup", "1", "--iters", "2", "--img-size", "32", "--reports-dir", str(tmp_path)]
    env = dict(os.environ, OMP_NUM_THREADS="1", **LOOPBACK)
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = list(csv.DictReader(open(tmp_path / "models.csv")))
    assert len(rows) == 1, rows  # rank 0 only
    row = rows[0]
    assert row["impl"] == "torch:ddp2" and row["mode"] == "train_amp" and row["gpus"] == "2"
    per_gpu, total = float(row["img_per_s_per_gpu"]), float(row["img_per_s"])
    assert total == pytest.approx(2 * per_gpu, rel=1e-5)
    assert float(row["scaling_efficiency"]) > 0
    assert r.stdout.count("torch:ddp2") == 1, r.stdout  # one table, printed by rank 0


def test_shutdown_waits_for_every_rank_unless_an_exception_unwinds(monkeypatch):
    calls = []
    monkeypatch.setattr(ddp.dist, "is_initialized", lambda: True)
    monkeypatch.setattr(ddp.dist, "barrier", lambda: calls.append("barrier"))
    monkeypatch.setattr(ddp.dist, "destroy_process_group", lambda: calls.append("destroy"))
    ddp.shutdown()
    assert calls == ["barrier", "destroy"]
    calls.clear()
    try:
        try:
            raise RuntimeError("a rank failed")
        finally:
            ddp.shutdown()  # as the workers' finally blocks call it
    except RuntimeError:
        pass
    assert calls == ["destroy"]


def _gpu_worker(rank, world, store, impl, out):
    # one GPU, two processes: NCCL refuses two ranks on one device, gloo reduces CUDA tensors (through the host);
    # DDP's bucketing and averaging are the same, and the custom ops run under it on the GPU
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK="0", **LOOPBACK)
    torch.backends.cudnn.allow_tf32 = False  # the stem conv in TF32 would differ between batch sizes by ~1e-3
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.cuda.set_device(0)
    d = ddp.Dist(rank, world, 0, torch.device("cuda", 0), "gloo")
    ddp.init(d, init_method=f"file://{store}", timeout_s=120)
    try:
        import models  # noqa: PLC0415

        res = ddp.check_equivalence(lambda: models.create_model("vmamba_t", impl=impl, depths=(1, 1, 2, 1), dims=32,
                                                                 drop_path_rate=0.0, num_classes=10), d,
                                    img_size=56)
    finally:
        ddp.shutdown()
    if d.is_main:
        Path(out).write_text(json.dumps(res))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("impl", ["cuda", "triton"])
def test_gpu_ddp_two_processes_train_like_one(tmp_path, impl):
    """The GPU kernels under DDP (two replicas on one GPU, gloo): the same parameters as one process on the whole
    batch after three SGD steps, within float32 reduction-order rounding."""
    import vmamba_kernels as vk  # noqa: PLC0415

    row = next(r for r in vk.list_impls("selective_scan") if r["name"] == impl)
    if not row["available"]:
        pytest.skip(f"impl {impl}: {row['reason']}")
    out = tmp_path / f"gpu_{impl}.json"
    ctx = mp.spawn(_gpu_worker, args=(2, str(tmp_path / f"store_gpu_{impl}"), impl, str(out)), nprocs=2, join=False)
    deadline = time.monotonic() + 300
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the DDP workers did not finish in 300 s")
    res = json.loads(out.read_text())
    assert res["moved"] > 1e-3, res["moved"]
    worst = max(res["err"].items(), key=lambda kv: kv[1])
    assert worst[1] < 1e-4, worst
