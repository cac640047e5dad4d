"""Data-parallel training for `bench.tp --ddp` (torch.distributed, DistributedDataParallel) and the check that
DDP on N processes trains like one process on N times the batch (issue #23).

    torchrun --nproc_per_node=8 -m bench.tp --ddp --model vmamba_t --impl cuda --amp --batch 128

One process per GPU (cuda:LOCAL_RANK, NCCL), or per CPU worker with gloo (`--device cpu`, and where no GPU is
visible). `bench.tp --ddp` measures training only: rank 0 first times the plain model alone (the one-GPU
baseline of the same run, the other ranks waiting), then every rank trains its DDP replica on its own batch of
`--batch` images; the slowest rank's time per step counts. Rank 0 alone writes the row (impl label ':ddpN'):
aggregate img/s, img/s per GPU, the number of GPUs and the scaling efficiency (per-GPU img/s over the
one-GPU img/s).
"""
from __future__ import annotations

import copy
import datetime
import os
import sys
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

LAUNCH_HINT = "torchrun --nproc_per_node=N -m bench.tp --ddp ..."


@dataclass(frozen=True)
class Dist:
    """This process's place in the job."""

    rank: int
    world: int
    local_rank: int
    device: torch.device
    backend: str  # nccl (GPUs) or gloo (CPU)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env(device: str | None = None) -> Dist:
    """Rank, world size and device from torchrun's environment; SystemExit naming the launcher without it."""
    if "WORLD_SIZE" not in os.environ or "RANK" not in os.environ:
        raise SystemExit(f"bench.tp --ddp runs one process per GPU under torchrun (RANK / WORLD_SIZE are not set): "
                         f"{LAUNCH_HINT}")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    cuda = device.startswith("cuda") if device else torch.cuda.is_available()
    if not cuda:
        return Dist(rank, world, local, torch.device("cpu"), "gloo")
    if not torch.cuda.is_available():
        raise SystemExit("bench.tp --ddp --device cuda: no CUDA device is visible (--device cpu runs gloo on the CPU)")
    n = torch.cuda.device_count()
    if local >= n:
        raise SystemExit(f"bench.tp --ddp: LOCAL_RANK {local}, but only {n} GPU(s) are visible: "
                         f"use --nproc_per_node at most {n}")
    torch.cuda.set_device(local)
    return Dist(rank, world, local, torch.device("cuda", local), "nccl")


def init(d: Dist, init_method: str | None = None, timeout_s: float | None = None) -> None:
    """Join the process group (torchrun's env:// rendezvous unless `init_method`, e.g. a file:// path, is given);
    `timeout_s` bounds each collective (torch's default: 10 minutes for NCCL, 30 for gloo)."""
    if not dist.is_initialized():
        kw = {"timeout": datetime.timedelta(seconds=timeout_s)} if timeout_s else {}
        dist.init_process_group(d.backend, init_method=init_method, rank=d.rank, world_size=d.world, **kw)


def shutdown() -> None:
    if dist.is_initialized():
        # on the normal path every rank gets here before any tears down: a rank that destroys its gloo pairs while
        # a peer still reads them can abort the peer ("terminate called without an active exception", seen once in
        # CI). Not while an exception unwinds: the peers may be waiting in another collective, and a barrier would
        # hang until the timeout where tearing down makes them fail at once.
        if sys.exc_info()[0] is None:
            dist.barrier()
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, d: Dist) -> torch.nn.Module:
    """The model as a DDP replica (its parameters broadcast from rank 0)."""
    from torch.nn.parallel import DistributedDataParallel as DDP  # noqa: PLC0415

    return DDP(model, device_ids=[d.local_rank] if d.device.type == "cuda" else None)


def reduce_max(value: float, d: Dist) -> float:
    """The largest `value` over the ranks (the slowest rank's step time, the largest peak memory)."""
    t = torch.tensor([value], dtype=torch.float64, device=d.device if d.backend == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return float(t.item())


def barrier(d: Dist) -> None:
    dist.barrier(device_ids=[d.local_rank]) if d.backend == "nccl" else dist.barrier()


# ---- correctness: N replicas on N slices = one model on the whole batch ------------------------------------
def _train(model, xs, ys, lr: float) -> None:
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    crit = torch.nn.CrossEntropyLoss()
    for x, y in zip(xs, ys):
        crit(model(x), y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


def check_equivalence(make_model: Callable[[], torch.nn.Module], d: Dist, steps: int = 3, batch: int = 2,
                      img_size: int = 32, num_classes: int = 10, lr: float = 0.05, seed: int = 0,
                      replicate: Callable = wrap) -> dict:
    """Train `steps` SGD steps of the DDP replicas, rank r on images r*batch .. (r+1)*batch-1 of a global batch
    of world*batch; on rank 0 also train a copy of the same initial model without DDP on the whole global
    batch (the cross-entropy is a mean, so the replicas' averaged gradient is the global batch's). Returns, on
    rank 0, {"err": {parameter: max |ddp - single| / max |single|}, "moved": the largest change of a parameter
    element over the steps (the check means nothing if training did not move them)}; {} on the other ranks.
    `make_model` must build the same model on every rank (seeded here) with no randomness in training
    (drop path 0). `replicate` makes the replica (tests pass one that is not DDP to see the check fail)."""
    torch.manual_seed(seed)
    model = make_model().to(d.device).train()
    single = copy.deepcopy(model) if d.is_main else None
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    g = torch.Generator().manual_seed(seed + 1)
    xs = torch.randn(steps, d.world * batch, 3, img_size, img_size, generator=g).to(d.device)
    ys = torch.randint(0, num_classes, (steps, d.world * batch), generator=g).to(d.device)
    mine = slice(d.rank * batch, (d.rank + 1) * batch)
    _train(replicate(model, d), xs[:, mine], ys[:, mine], lr)
    if not d.is_main:
        return {}
    _train(single, xs, ys, lr)
    ref = dict(single.named_parameters())
    err = {n: ((p - ref[n]).abs().max() / ref[n].abs().max().clamp_min(1e-12)).item()
           for n, p in model.named_parameters()}
    moved = max((ref[n] - s).abs().max().item() for n, s in start.items())
    return {"err": err, "moved": moved}
