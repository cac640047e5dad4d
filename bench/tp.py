"""Whole-model throughput and peak memory: inference (eval, no_grad) and training (forward +
cross-entropy + backward, optimizer step optional), official and robust timing.

    python -m bench.tp --model vmamba_b --impl cuda
    python -m bench.tp --model all --impl cuda,triton,cupy,torch --amp --train --baselines

Modes: inference in each precision asked for (--fp32 and/or --amp; default fp32 as the official
script), and with --train, training in each precision asked for (default AMP, as the paper's
"train TP"). Official method (default): 50 warm-up + 30 timed iterations, synchronised wall clock
(VMamba's analyze/utils.py). Robust method: CUDA events, median of repeats. Peak memory:
reset_peak_memory_stats after warm-up (before the capture with --cuda-graphs: its graph pool counts),
max_memory_allocated over the timed iterations (MB = 2^20 B).
On out-of-memory the batch is halved (and the row says so). Results are appended to
REPORTS/models.csv.

Small batches: `--batch 1,8,32,128` measures each batch size in turn (one row each, with ms_per_img =
ms per iteration / batch; the batch-1 row's ms_per_iter is the latency). `--cuda-graphs` captures the
inference forward (or the whole training step) once per batch with models.graphs and times replays
(rows flagged cuda_graphs, impl label suffixed ":graphs"): the host's launch cost disappears.

A noisy host: `--rounds 3` measures the whole set three times, round after round (every model, impl,
mode and batch once per round), and writes for each the round with the median time, its note listing
every round's ms per iteration. A slow spell of the host then hits every model alike instead of whichever
ran during it (on the H200 machine one configuration's step time varied by 25% between rounds:
reports/logs/2026-12-03_host_work_H200.md).

Compiled (`--compile`): the first warm-up step runs the compile; each row's note gives that step's time
per round ("first step (compile) 59.1 s"), the wait a user pays before the first batch. Only baselines:
`--model none --baselines --baseline-models NAME` (without `--model none` the default VMamba models run too).

Several GPUs: `torchrun --nproc_per_node=N -m bench.tp --ddp ...` trains DistributedDataParallel replicas
(bench/ddp.py), `--batch` images each; rank 0 writes one row per model and impl (label ":ddpN") with the
aggregate img/s, img/s per GPU and the scaling efficiency against one GPU timed in the same run.

Without a CUDA device (or with --device cpu) it says so and measures on the CPU with small defaults
(batch 2, 1 warm-up + 3 timed iterations; flags given explicitly win), prints the table and writes
nothing unless asked: --save-cpu appends the rows (gpu="cpu") to reports/models.csv, --reports-dir DIR
to DIR/models.csv. Each measurement prints its progress from the first warm-up step on.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
import time
from typing import Callable, Optional

import torch

from bench import env as envmod
from bench.results import GRAPH_PEAK_NOTE, ModelRow, append_rows, format_table, reports_dir
from bench.timing import Progress, sync, time_official, time_robust

HEADLINE = ["vmamba_t", "vmamba_s", "vmamba_b"]
# defaults per device: (batch, official warm-up, official timed, robust warm-up, robust repeats)
GPU_DEFAULTS = dict(batch=128, warmup_official=50, iters_official=30, warmup_robust=10, iters_robust=10)
CPU_DEFAULTS = dict(batch=2, warmup_official=1, iters_official=3, warmup_robust=1, iters_robust=3)
TIMM_BASELINES = ["swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224",
                  "swin_base_patch4_window7_224", "convnext_tiny"]


def parse_batches(text: str) -> list:
    """'1,8,32,128' -> [1, 8, 32, 128] (a single value still works); positive ints, duplicates dropped."""
    out = []
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            b = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(f"batch sizes are positive integers, comma separated; got {part!r}")
        if b < 1:
            raise argparse.ArgumentTypeError(f"batch sizes must be >= 1; got {b}")
        if b not in out:
            out.append(b)
    if not out:
        raise argparse.ArgumentTypeError(f"no batch size in {text!r}")
    return out


def _split(values, default):
    out = []
    for v in values or default:
        out += [s.strip() for s in v.split(",") if s.strip()]
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m bench.tp",
        description="Whole-model throughput (img/s) and peak memory of VMamba models per kernel impl, "
                    "with timm baselines; appends rows to REPORTS/models.csv.")
    p.add_argument("--model", action="append",
                   help="model name(s) from models.list_models(), repeatable or comma list; "
                        f"'all' = {','.join(HEADLINE)} (default all); 'none' with --baselines = baselines only")
    p.add_argument("--impl", action="append",
                   help="kernel impl(s), repeatable or comma list: cuda, triton, cupy, torch, ... or 'auto' "
                        "(the dispatcher's choice); default auto")
    p.add_argument("--baselines", action="store_true",
                   help=f"also measure timm baselines ({', '.join(TIMM_BASELINES)}) when timm is installed")
    p.add_argument("--baseline-models", action="append", default=None,
                   help="with --baselines: which timm models (comma list, default all of the above), e.g. "
                        "swin_tiny_patch4_window7_224")
    p.add_argument("--batch", "--batch-size", dest="batches", type=parse_batches, default=None,
                   help=f"images per iteration, or a comma list measured in turn, e.g. 1,8,32,128 (default "
                        f"{GPU_DEFAULTS['batch']} on a GPU, {CPU_DEFAULTS['batch']} on the CPU)")
    p.add_argument("--cuda-graphs", action="store_true",
                   help="capture the forward (inference) or the whole step (training) in a CUDA graph per batch "
                        "size and time its replays (models.graphs; rows flagged, impl label ':graphs')")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--amp", action="store_true", help="measure with autocast (fp16 on CUDA, bf16 on CPU)")
    p.add_argument("--fp32", action="store_true", help="measure in fp32 (the default when --amp is not given)")
    p.add_argument("--amp-dtype", choices=["fp16", "bf16"], default=None, help="autocast dtype override")
    p.add_argument("--train", action="store_true",
                   help="also measure training (forward + cross-entropy + backward; AMP unless only --fp32)")
    p.add_argument("--train-only", action="store_true", help="measure training only (implies --train)")
    p.add_argument("--optimizer-step", action="store_true",
                   help="include an AdamW step + zero_grad in each training iteration (off: as the paper)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model (default mode)")
    p.add_argument("--memory-format", choices=["contiguous", "channels_last"], default="contiguous",
                   help="torch memory format of the model's weights and input (not the activation layout between "
                        "VMamba's modules, which the variant fixes: its norm_layer)")
    p.add_argument("--channels-last", dest="old_channels_last", action="store_true",
                   help=argparse.SUPPRESS)  # the old name of --memory-format channels_last
    p.add_argument("--cudnn-benchmark", dest="cudnn_benchmark", action="store_true", default=True,
                   help="torch.backends.cudnn.benchmark = True (default, as the official script)")
    p.add_argument("--no-cudnn-benchmark", dest="cudnn_benchmark", action="store_false")
    p.add_argument("--method", choices=["official", "robust"], default="official",
                   help="official: 50 warm-up + 30 timed, wall clock; robust: CUDA events, median of repeats")
    p.add_argument("--warmup", type=int, default=None,
                   help="warm-up iterations (default 50 official, 10 robust; 1 on the CPU)")
    p.add_argument("--iters", type=int, default=None,
                   help="timed iterations (official, default 30) or repeats (robust, default 10 groups of 3); "
                        "3 on the CPU")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default cuda when available)")
    p.add_argument("--flops", action="store_true", help="also count official GFLOPs (bench.flops) per model")
    p.add_argument("--reports-dir", default=None,
                   help="folder of models.csv (default reports/); giving it also writes CPU rows there")
    p.add_argument("--no-csv", action="store_true", help="print only, write nothing")
    p.add_argument("--save-cpu", action="store_true",
                   help="append rows measured on the CPU to reports/models.csv too (by default they are only printed)")
    p.add_argument("--path", choices=["fused", "unfused", "both"], default="fused",
                   help="VMamba models: the fast path (fused add+LayerNorm, depthwise conv; default), the "
                        "reference path (fused ops 'off'), or both in the same run (impl label ':unfused')")
    p.add_argument("--ss2d-core", default="auto", metavar="auto|off|both|IMPL[,...]",
                   help="VMamba models' fused SS2D core (vmamba_kernels.ss2d_core): the policy's default (auto, "
                        "default: see models.policy.CORE_AUTO_OFF), the unfused chain (off: impl label ':core_off'), "
                        "the fused op of IMPL with the rest on --impl (label ':core_IMPL'), or a comma list "
                        "measured in turn in the same run (both = auto,off); --path unfused always runs the chain")
    p.add_argument("--layout", choices=["model", "channels_last", "channels_first", "both"], default="model",
                   help="VMamba models' activation layout: what create_model gives (default: channels last, "
                        "models.registry.DEFAULT_CHANNELS_LAST), or forced (impl label ':cl' / ':cf'; channels_first "
                        "is the v2 variants' released layout); weights and results are the same, only the speed "
                        "differs")
    p.add_argument("--recompute", default="default", metavar="default|all|none|PART[+PART...][,...]",
                   help="VMamba models' training recompute (VSSM.set_recompute): what the backward rebuilds instead "
                        "of keeping: all, none, or parts (norms, delta, routes, mlp) joined by '+', e.g. "
                        "norms+delta; a comma list is measured in turn in the same run (impl label ':rc_WHAT'; "
                        "default: the model's own setting, no label)")
    p.add_argument("--weight-cache", default="off", choices=["off", "on", "both"],
                   help="VMamba models' inference weight cache (VSSM.set_weight_cache: the autocast casts of the "
                        "weights kept across forwards while the weights are unchanged); on: impl label ':wc'; both: "
                        "each VMamba job measured with it off and on in the same run (default off)")
    p.add_argument("--cpp-stages", default="off", choices=["off", "on", "both"],
                   help="VMamba models' inference stages as C++ host code (VSSM.set_cpp_stages: one Python call per "
                        "stage where the blocks run the cuda kernels; inference rows only, training is unchanged); on: "
                        "impl label ':cpp'; both: each VMamba job measured with it off and on in the same run "
                        "(default off)")
    p.add_argument("--ddp", action="store_true",
                   help="train as DistributedDataParallel replicas, one process per GPU (NCCL; gloo with --device "
                        "cpu), launched by torchrun: torchrun --nproc_per_node=N -m bench.tp --ddp ...; implies "
                        "--train-only, --batch is per process; rank 0 also times the plain model alone and writes "
                        "the rows (impl label ':ddpN', aggregate and per-GPU img/s, scaling efficiency)")
    p.add_argument("--rounds", type=int, default=1,
                   help="measure the whole set this many times, one round after another (every model, impl, mode "
                        "and batch once per round: a slow spell of the host hits all of them alike); each row is "
                        "the round with the median time, its note lists every round's ms (default 1); an "
                        "interrupted run (SIGINT) writes the rows of the rounds it finished, noted, and exits 130")
    p.add_argument("--model-factory", default=None,
                   help="module:function used instead of models.create_model (e.g. bench._tiny:create_model)")
    a = p.parse_args(argv)
    if a.rounds < 1:
        p.error(f"--rounds must be >= 1; got {a.rounds}")
    a.cores = ["auto", "off"] if a.ss2d_core == "both" else _split([a.ss2d_core], ["auto"])
    if any(c not in ("auto", "off") for c in a.cores):
        from vmamba_kernels import dispatch  # noqa: PLC0415

        known = [b.name for b in dispatch.backends("ss2d_core")]
        bad = [c for c in a.cores if c not in ("auto", "off") and c not in known]
        if bad:
            p.error(f"--ss2d-core: auto, off, both or impls implementing ss2d_core ({', '.join(known)}), "
                    f"comma-separated; got {', '.join(map(repr, bad))}")
    a.weight_caches = {"off": [False], "on": [True], "both": [False, True]}[a.weight_cache]
    a.cpp_stages = {"off": [False], "on": [True], "both": [False, True]}[a.cpp_stages]
    a.recomputes = _split([a.recompute], ["default"])
    bad = [r for r in a.recomputes if r != "default" and not valid_recompute(r)]
    if bad:
        p.error(f"--recompute: default, all, none or parts of {', '.join(_recompute_parts())} joined by '+', "
                f"comma-separated; got {', '.join(map(repr, bad))}")
    if a.model is None and a.baseline_models:
        print(f"bench.tp: no --model given: the default VMamba models ({', '.join(HEADLINE)}) run before the "
              "baselines; --model none measures the baselines only", file=sys.stderr)
    a.models = _split(a.model, ["all"])
    if "all" in a.models:
        i = a.models.index("all")
        a.models[i:i + 1] = HEADLINE
    a.models = [m for m in a.models if m != "none"]  # --model none --baselines: baselines only
    a.batch_size = a.batches[0] if a.batches else None  # the first (or only) batch size
    a.baseline_models = _split(a.baseline_models, TIMM_BASELINES)
    a.impls = _split(a.impl, ["auto"])
    if a.old_channels_last:
        print("bench.tp: --channels-last is now --memory-format channels_last (the torch memory format)",
              file=sys.stderr)
        a.memory_format = "channels_last"
    if a.ddp:
        if a.cuda_graphs:
            p.error("--ddp with --cuda-graphs is not supported (the replicas' gradient all-reduce runs outside "
                    "a captured step); drop one of them")
        a.train_only = True
    if a.train_only:
        a.train = True
    return a


def device_for(a) -> torch.device:
    return torch.device(a.device) if a.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")


def apply_device_defaults(a, device: torch.device) -> list:
    """Fill the defaults the user left open for `device` (in place); returns notices to print.

    On the CPU: small defaults (a 128-image batch with 80 iterations of VMamba-B would run for hours),
    and rows are written only when asked (--save-cpu, or an explicit --reports-dir)."""
    cpu = device.type == "cpu"
    d = CPU_DEFAULTS if cpu else GPU_DEFAULTS
    official = a.method == "official"
    filled = []
    if a.batch_size is None:
        a.batch_size = d["batch"]
        a.batches = [a.batch_size]
        filled.append(f"batch {a.batch_size}")
    if a.warmup is None:
        a.warmup = d["warmup_official" if official else "warmup_robust"]
        filled.append(f"{a.warmup} warm-up")
    if a.iters is None:
        a.iters = d["iters_official" if official else "iters_robust"]
        filled.append(f"{a.iters} timed" if official else f"{a.iters} repeats")
    a.write_csv = not a.no_csv and (not cpu or a.save_cpu or a.reports_dir is not None)
    if not cpu:
        return []
    why = "no CUDA device is visible" if not torch.cuda.is_available() else f"--device {a.device}"
    notes = [f"{why}: measuring on the CPU"
             + (f" with small CPU defaults ({', '.join(filled)}; set --batch-size / --warmup / --iters to change "
                f"them)" if filled else "")
             + f", image {a.img_size}x{a.img_size}. CPU numbers say nothing about GPU throughput."]
    if not a.write_csv and not a.no_csv:
        notes.append("CPU rows are printed, not written to reports/ (--save-cpu appends them to "
                     "reports/models.csv, --reports-dir DIR writes them to DIR/models.csv).")
    return notes


def modes_for(a) -> list:
    infer, train = [], []
    if a.fp32 or not a.amp:
        infer.append("infer_fp32")
    if a.amp:
        infer.append("infer_amp")
    if a.train:
        if a.amp or not a.fp32:
            train.append("train_amp")
        if a.fp32:
            train.append("train_fp32")
    return train if a.train_only else infer + train


def _policy(impl: str, path: str, core: str = "auto"):
    name = None if impl == "auto" else impl
    if path == "unfused":
        import models  # noqa: PLC0415

        return models.KernelPolicy.unfused(name)
    if core == "auto":
        return name
    import models  # noqa: PLC0415

    return models.KernelPolicy.all(name).merged(models.KernelPolicy(ss2d_core=core))


def _switched_on(model, on: bool, flag: str):
    """model.set_<flag>(True) for a job measured with --<flag> on (VMamba models only); the model as built when off."""
    if not on:
        return model
    method = "set_" + flag.replace("-", "_")
    if not hasattr(model, method):
        raise TypeError(f"--{flag} on: {type(model).__name__} has no {method} (VMamba models only)")
    return getattr(model, method)(True)


def _recompute_parts():
    from models.vmamba import VSSM  # noqa: PLC0415

    return VSSM.RECOMPUTE_PARTS


def valid_recompute(what: str) -> bool:
    """Whether VSSM.set_recompute accepts `what` (also used by bench.profile and bench.host_step)."""
    from models.vmamba import VSSM  # noqa: PLC0415

    try:
        VSSM.recompute_parts(what)
    except ValueError:
        return False
    return True


def recompute_arg(what: str) -> str:
    """argparse type of a single --recompute value."""
    if not valid_recompute(what):
        raise argparse.ArgumentTypeError(f"all, none or parts of {', '.join(_recompute_parts())} joined by '+' "
                                         f"(e.g. norms+delta); got {what!r}")
    return what


def _recompute(model, what: str):
    if what == "default":
        return model
    if not hasattr(model, "set_recompute"):
        raise TypeError(f"--recompute {what}: {type(model).__name__} has no set_recompute (VMamba models only)")
    return model.set_recompute(what)


def _core_label(core: str) -> str:
    return "" if core == "auto" else f":core_{core}"


def _layout_kw(layout: str) -> dict:
    return {} if layout == "model" else {"channels_last": layout == "channels_last"}


def _layout_label(layout: str, name: str, make) -> str:
    """':cl' / ':cf' for the layout a row runs: forced, or for --layout model the one models.create_model gives
    `name` (the default changed on 2026-12-04: the label keeps rows of either side apart); '' for a model of
    another factory left in its own layout."""
    if layout != "model":
        return {"channels_last": ":cl", "channels_first": ":cf"}[layout]
    if make is None or getattr(make, "__module__", "") != "models.registry":
        return ""
    from models.registry import default_channels_last  # noqa: PLC0415

    try:
        return ":cl" if default_channels_last(name) else ":cf"
    except ValueError:  # not a models name: the build reports it
        return ""


def _factory(spec: Optional[str]) -> Callable:
    if spec:
        mod, _, fn = spec.partition(":")
        return getattr(importlib.import_module(mod), fn or "create_model")
    models = importlib.import_module("models")
    return models.create_model


def _timm_factory(name, img_size: int = 224):
    """A timm baseline for img_size x img_size inputs: models built for a fixed size (Swin: its relative
    position tables and window masks) are created for img_size; size-agnostic ones (ConvNeXt) take no
    such argument and are created as they are."""
    import timm  # noqa: PLC0415

    if img_size == 224:
        return timm.create_model(name, pretrained=False)
    try:
        return timm.create_model(name, pretrained=False, img_size=img_size)
    except TypeError:  # the model's constructor has no img_size: it runs at any size
        return timm.create_model(name, pretrained=False)


def _is_oom(e: BaseException) -> bool:
    if isinstance(e, torch.OutOfMemoryError):
        return True
    msg = str(e)
    return "out of memory" in msg.lower() and isinstance(e, RuntimeError)


def _free(device):
    gc.collect()
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()


class StepProgress:
    """Progress of one measurement from its first warm-up step: a line at the first step, then at most
    one every `every` seconds, and one at the end ('\\r' updates on a terminal). On a GPU a step returns
    when it is queued, so the lines show the host's progress; the last one comes after a sync."""

    def __init__(self, label: str, warmup: int, timed: int, stream=None, every: float = 2.0):
        self.label, self.warmup, self.timed, self.every = label, warmup, timed, every
        self.stream = stream or sys.stderr
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.n, self.t0, self.last = 0, time.perf_counter(), None
        self._line()  # before the first step, which can take many seconds on a CPU

    def _line(self, final: bool = False) -> None:
        el = time.perf_counter() - self.t0
        if self.n <= self.warmup:
            what = f"warm-up {self.n}/{self.warmup}"
        else:
            what = f"timed {self.n - self.warmup}/{self.timed}"
        msg = f"  {self.label}: {what}, {el:.1f} s" + (" (done)" if final else "")
        if self.tty:
            self.stream.write("\r" + msg.ljust(70) + ("\n" if final else ""))
        else:
            self.stream.write(msg + "\n")
        self.stream.flush()
        self.last = time.perf_counter()

    def tick(self) -> None:
        self.n += 1
        if self.last is None or time.perf_counter() - self.last >= self.every:
            self._line()

    def wrap(self, step):
        def counted():
            out = step()
            self.tick()
            return out
        return counted

    def done(self) -> None:
        self._line(final=True)


def _reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)


def measure(model, mode: str, batch: int, img_size: int, device, a, num_classes: int = 1000,
            label: str = "") -> dict:
    """Time one mode at one batch size; raises on OOM (caller halves)."""
    dev = torch.device(device)
    amp = mode.endswith("_amp")
    train = mode.startswith("train")
    amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(
        a.amp_dtype or "", torch.float16 if dev.type == "cuda" else torch.bfloat16)
    fmt = torch.channels_last if a.memory_format == "channels_last" else torch.contiguous_format
    x = torch.randn(batch, 3, img_size, img_size, device=dev).contiguous(memory_format=fmt)
    y = torch.randint(0, num_classes, (batch,), device=dev)
    crit = torch.nn.CrossEntropyLoss()
    graphs = bool(getattr(a, "cuda_graphs", False))
    # a captured optimizer step keeps its step counters on the GPU (capturable)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, **({"capturable": True} if graphs else {})) \
        if (train and a.optimizer_step) else None

    def autocast():
        return torch.autocast(device_type=dev.type, dtype=amp_dtype, enabled=amp)

    if graphs:
        from models.graphs import capture_inference, capture_train_step  # noqa: PLC0415

        _reset_peak(dev)  # the graph's memory pool is allocated at capture: the peak must count it
        model.train(train)
        if train:
            graphed = capture_train_step(model, crit, opt, x, y, autocast=amp_dtype if amp else None)

            def step():
                graphed(x, y)
        else:
            graphed = capture_inference(model, x, autocast=amp_dtype if amp else None)

            def step():
                graphed(x)
    elif train:
        model.train()

        def step():
            with autocast():
                loss = crit(model(x), y)
            loss.backward()
            if opt is not None:
                opt.step()
                opt.zero_grad(set_to_none=True)
    else:
        model.eval()

        def step():
            with torch.no_grad(), autocast():
                model(x)

    cuda = dev.type == "cuda"
    official = a.method == "official"
    d = GPU_DEFAULTS if cuda else CPU_DEFAULTS
    warmup = a.warmup if a.warmup is not None else d["warmup_official" if official else "warmup_robust"]
    iters = a.iters if a.iters is not None else d["iters_official" if official else "iters_robust"]
    steps = StepProgress(label or mode, warmup, iters * (1 if official else 3))
    first_step_s = float("nan")  # the first step alone: with --compile, what a user waits for the compile
    for i in range(warmup):
        t0 = time.perf_counter()
        step()
        if i == 0:
            sync(dev)
            first_step_s = time.perf_counter() - t0
        steps.tick()
    sync(dev)
    if not graphs:
        _reset_peak(dev)
    counted = steps.wrap(step)  # one call of a counter per step: negligible against a model's forward
    if official:
        r = time_official(counted, dev, warmup=0, iters=iters)
    else:
        r = time_robust(counted, dev, warmup=0, repeats=iters, inner=3)
    steps.done()
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if cuda else float("nan")
    if train:
        model.zero_grad(set_to_none=True)
    del x, y, opt
    if graphs:
        del graphed, step
    return {"ms": r["ms_p50"], "ms_p20": r["ms_p20"], "ms_p80": r["ms_p80"], "peak_mb": peak,
            "img_per_s": batch / (r["ms_p50"] / 1000.0), "warmup": warmup, "iters": iters, "first_step_s": first_step_s}


def measure_ddp(model, mode: str, batch: int, device, a, d, num_classes: int, label: str) -> dict:
    """`measure` for --ddp (bench/ddp.py): rank 0 times the plain model alone (the one-GPU baseline), then every
    rank its DDP replica; the slowest rank's step time and the largest peak memory count."""
    from bench import ddp  # noqa: PLC0415

    single = float("nan")
    if d.is_main:
        alone = torch.compile(model) if a.compile else model
        single = measure(alone, mode, batch, a.img_size, device, a, num_classes, label=f"{label}, one process")[
            "img_per_s"]
        del alone
    ddp.barrier(d)
    replica = ddp.wrap(model, d)
    runner = torch.compile(replica) if a.compile else replica
    res = measure(runner, mode, batch, a.img_size, device, a, num_classes, label=f"{label}, {d.world} replicas")
    ms = ddp.reduce_max(res["ms"], d)
    peak = ddp.reduce_max(res["peak_mb"] if res["peak_mb"] == res["peak_mb"] else -1.0, d)
    per_gpu = batch / (ms / 1000.0)
    return dict(res, ms=ms, peak_mb=peak if peak >= 0 else float("nan"), img_per_s=per_gpu * d.world,
                img_per_s_per_gpu=per_gpu, gpus=d.world, scaling_efficiency=per_gpu / single if d.is_main else
                float("nan"))


def median_round(outs: list) -> dict:
    """The round with the median time (the lower middle one of an even count): a row from one real measurement."""
    ranked = sorted(outs, key=lambda o: o["res"]["ms"])
    return ranked[(len(ranked) - 1) // 2]


def _measure_job(a, model, mname, impl, modes, device, d, prog, rounds: dict, j: int):
    """Yield (mode, requested batch, {"res", "batch", "notes", "params_m", "gflops"}) for every mode and batch of
    one built model. A later round starts at the batch an earlier round settled on (after an OOM halving)."""
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    gflops = float("nan")
    if a.flops:
        try:
            from bench.flops import model_flops  # noqa: PLC0415

            gflops = model_flops(model, img_size=a.img_size) / 1e9
        except Exception as e:  # noqa: BLE001
            print(f"flops failed for {mname}: {_short(e)}", file=sys.stderr)
    runner = torch.compile(model) if a.compile else model
    for mode, requested in ((m, b) for m in modes for b in (a.batches or [a.batch_size])):
        earlier = [o for o in rounds.get((j, mode, requested), []) if o["res"] is not None]
        batch, notes = (earlier[0]["batch"], list(earlier[0]["notes"])) if earlier else (requested, [])
        res = None
        while batch >= 1:
            failure = None
            try:
                ncls = getattr(model, "num_classes", 1000) or 1000
                what = f"{mname}/{impl}/{mode} batch {batch}"
                res = measure(runner, mode, batch, a.img_size, device, a, num_classes=ncls, label=what) \
                    if d is None else measure_ddp(model, mode, batch, device, a, d, ncls, what)
            except Exception as e:  # noqa: BLE001
                failure = (_is_oom(e), _short(e))
            # outside the except clause: the exception and its frames (holding the failed batch's
            # tensors) are gone, so the memory can really be released before retrying
            if failure is None:
                break
            model.zero_grad(set_to_none=True)
            _free(device)
            if failure[0] and batch > 1 and d is None:  # (replicas must agree on a batch: no halving)
                notes.append(f"OOM at batch {batch}: halved to {batch // 2}")
                print(f"\n{mname}/{impl}/{mode}: out of memory at batch {batch}, halving to {batch // 2}",
                      file=sys.stderr)
                batch //= 2
                continue
            notes.append(f"failed: {failure[1]}")
            break
        prog.update(f"{mname}/{impl}/{mode} batch {requested}")
        yield mode, requested, {"res": res, "batch": batch, "notes": notes, "params_m": params_m, "gflops": gflops}
        _free(device)
    del runner


def run(a, create_model: Optional[Callable] = None) -> tuple:
    """Measure everything `a` asks for; returns (rows written, table rows incl. skips)."""
    d = None
    if getattr(a, "ddp", False):
        from bench import ddp  # noqa: PLC0415

        d = ddp.from_env(a.device)
        ddp.init(d)
        device = d.device
        if not d.is_main:  # one voice: rank 0 prints and writes, the other ranks only train
            sys.stdout = sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)
    else:
        device = device_for(a)
    for note in apply_device_defaults(a, device):
        print(note, file=sys.stderr)
    if d is not None and not d.is_main:
        a.write_csv = False
    if device.type == "cuda":
        torch.backends.cudnn.enabled = True
        torch.backends.cudnn.benchmark = a.cudnn_benchmark
        torch.backends.cudnn.deterministic = True  # as the official scripts
    modes = modes_for(a)
    if a.cuda_graphs and device.type != "cuda":
        raise SystemExit(f"bench.tp: --cuda-graphs needs a CUDA device (measuring on {device}); drop the flag")
    graphs_label = (":graphs" if a.cuda_graphs else "") + (f":ddp{d.world}" if d is not None else "")
    jobs = []  # (label model, impl label, factory thunk)
    make = create_model
    if make is None and (a.models or not a.baselines):
        try:
            make = _factory(a.model_factory)
        except Exception as e:  # noqa: BLE001
            print(f"cannot import the model factory ({type(e).__name__}: {e}); only baselines can run",
                  file=sys.stderr)
    paths = ["fused", "unfused"] if a.path == "both" else [a.path]
    cores = a.cores
    layouts = ["channels_last", "channels_first"] if a.layout == "both" else [a.layout]
    for m in a.models:
        for impl in a.impls:
            for path, core in [(p, c) for p in paths for c in (cores if p == "fused" else ["auto"])]:
                for layout, rc, wc, cpp in [(lay, r, w, c) for lay in layouts for r in a.recomputes
                                            for w in a.weight_caches for c in a.cpp_stages]:
                    label = impl + (":unfused" if path == "unfused" else "") + _core_label(core) + \
                        _layout_label(layout, m, make) + \
                        ("" if rc == "default" else f":rc_{rc}") + (":wc" if wc else "") + (":cpp" if cpp else "") + \
                        graphs_label
                    jobs.append((m, label, (lambda m=m, impl=impl, path=path, layout=layout, core=core, rc=rc, wc=wc,
                                            cpp=cpp:
                                            _switched_on(_switched_on(_recompute(make(m, impl=_policy(impl, path, core),
                                                                                        **_layout_kw(layout)), rc),
                                                                      wc, "weight-cache"), cpp, "cpp-stages"))
                                 if make is not None else None))
    if a.baselines:
        try:
            import timm  # noqa: PLC0415, F401

            for b in a.baseline_models:
                jobs.append((b, "timm" + graphs_label, lambda b=b: _timm_factory(b, a.img_size)))
        except ImportError:
            print("timm not installed: baselines skipped", file=sys.stderr)
    env0 = envmod.capture(device)
    print(envmod.summary_line(env0), file=sys.stderr)
    out_csv = reports_dir(a.reports_dir) / "models.csv"
    written, measured, table = [], [], []
    prog = Progress(len(jobs) * len(modes) * len(a.batches or [a.batch_size]) * a.rounds, "tp")
    # per (job, mode, requested batch): what each round measured; jobs whose model could not be built
    rounds: dict = {}
    broken: dict = {}
    a.interrupted = False
    try:
        _run_rounds(a, jobs, modes, device, d, prog, rounds, broken)
    except KeyboardInterrupt:  # `timeout -s INT`, Ctrl-C: keep what the finished measurements gave
        if d is not None:
            raise  # DDP: the other ranks may be inside a collective; nothing is written
        a.interrupted = True
        print("\nbench.tp: interrupted; writing the rows measured so far (their note says so)", file=sys.stderr)
    _write_rows(a, jobs, modes, device, rounds, broken, out_csv, written, measured, table)
    prog.close()
    a.measured = measured
    if d is not None:
        from bench import ddp  # noqa: PLC0415

        ddp.shutdown()
    return written, table


def _run_rounds(a, jobs, modes, device, d, prog, rounds, broken) -> None:
    for r in range(a.rounds):
        for j, (mname, impl, thunk) in enumerate(jobs):
            if j in broken:
                continue
            what = f" (round {r + 1}/{a.rounds})" if a.rounds > 1 else ""
            try:
                if thunk is None:
                    raise RuntimeError("no model factory")
                print(f"  {mname}/{impl}: building the model on {device}{what}", file=sys.stderr, flush=True)
                model = thunk().to(device)
                if a.memory_format == "channels_last":
                    model = model.to(memory_format=torch.channels_last)
            except Exception as e:  # noqa: BLE001 (an unavailable impl must not stop the other runs)
                broken[j] = _short(e)
                for _ in range(len(modes) * len(a.batches or [a.batch_size]) * (a.rounds - r)):
                    prog.update(f"{mname}/{impl} skipped")
                continue
            for mode, requested, out in _measure_job(a, model, mname, impl, modes, device, d, prog, rounds, j):
                rounds.setdefault((j, mode, requested), []).append(out)
            del model
            _free(device)


def _write_rows(a, jobs, modes, device, rounds, broken, out_csv, written, measured, table) -> None:
    for j, (mname, impl, _) in enumerate(jobs):
        if j in broken:
            for mode in modes:
                table.append({"model": mname, "impl": impl, "mode": mode, "note": f"skipped: {broken[j]}"})
            continue
        for mode, requested in ((m, b) for m in modes for b in (a.batches or [a.batch_size])):
            outs = rounds.get((j, mode, requested), [])
            done = [o for o in outs if o["res"] is not None]
            if not done:
                notes = outs[-1]["notes"] if outs else ["not measured"]
                table.append({"model": mname, "impl": impl, "mode": mode, "batch": requested, "note": "; ".join(notes)})
                continue
            pick = median_round(done)
            res, batch, notes = pick["res"], pick["batch"], list(pick["notes"])
            if a.cuda_graphs:
                notes.append(GRAPH_PEAK_NOTE)
            first = [o["res"].get("first_step_s", float("nan")) for o in done]
            if a.compile and any(f == f for f in first):  # (nan: no warm-up step was timed)
                notes.append("first step (compile) " + ", ".join(f"{f:.1f} s" for f in first if f == f))
            if len(outs) > 1:
                notes.append(f"median of {len(outs)} rounds, ms/iter " + ", ".join(
                    f"{o['res']['ms']:.2f}" if o["res"] is not None else "failed" for o in outs))
            if a.interrupted and len(outs) < a.rounds:
                notes.append(f"run interrupted: {len(outs)} of {a.rounds} rounds")
            env = envmod.capture(device)
            row = ModelRow(
                model=mname, impl=impl, mode=mode, batch=batch, img_size=a.img_size,
                img_per_s=res["img_per_s"], peak_mem_mb=res["peak_mb"], gpu=envmod.gpu_label(device),
                git_sha=envmod.git_sha_label(), timestamp=envmod.utc_now(), method=a.method,
                cudnn_benchmark=bool(a.cudnn_benchmark) if device.type == "cuda" else False,
                compile=a.compile, channels_last=a.memory_format == "channels_last", note="; ".join(notes),
                requested_batch=requested, ms_per_iter=res["ms"], ms_p20=res["ms_p20"], ms_p80=res["ms_p80"],
                params_m=pick["params_m"], gflops=pick["gflops"],
                optimizer_step=bool(a.optimizer_step and mode.startswith("train")),
                warmup=res["warmup"], iters=res["iters"], env_json=envmod.env_json(env),
                ms_per_img=res["ms"] / batch, cuda_graphs=bool(a.cuda_graphs), gpus=res.get("gpus", 1),
                img_per_s_per_gpu=res.get("img_per_s_per_gpu", float("nan")),
                scaling_efficiency=res.get("scaling_efficiency", float("nan")))
            if a.write_csv:
                append_rows(out_csv, [row])
                written.append(row)
            measured.append(row)
            table.append({"model": mname, "impl": impl, "mode": mode, "batch": batch,
                          "img/s": res["img_per_s"], "ms/iter": res["ms"], "ms/img": res["ms"] / batch,
                          "peak MB": res["peak_mb"],
                          "params M": pick["params_m"], "GFLOPs": pick["gflops"], "note": row.note, "GPUs": row.gpus,
                          "img/s/GPU": row.img_per_s_per_gpu, "scaling": row.scaling_efficiency})


def _short(e: BaseException, n: int = 160) -> str:
    s = f"{type(e).__name__}: {e}".replace("\n", " ")
    return s if len(s) <= n else s[: n - 3] + "..."


def main(argv=None, create_model: Optional[Callable] = None) -> int:
    a = parse_args(argv)
    t0 = time.perf_counter()
    written, table = run(a, create_model)
    print()
    cols = ["model", "impl", "mode", "batch", "img/s", "ms/iter", "ms/img", "peak MB", "params M"]
    ddp_cols = ["GPUs", "img/s/GPU", "scaling"] if a.ddp else []
    print(format_table(table, cols + ddp_cols + (["GFLOPs"] if a.flops else []) + ["note"]))
    if a.no_csv:
        dest = "nothing written (--no-csv)"
    elif not a.write_csv:
        dest = "nothing written: CPU rows stay out of reports/ (--save-cpu or --reports-dir DIR to keep them)"
    else:
        dest = f"{len(written)} rows -> {reports_dir(a.reports_dir) / 'models.csv'}"
    print(f"\n{dest}; {time.perf_counter() - t0:.0f} s")
    if a.interrupted:
        return 130  # as a shell reports an interrupted command
    return 0 if a.measured or not table else 1


if __name__ == "__main__":
    sys.exit(main())
