"""Where a model spends its GPU time: torch.profiler over a few steps, kernels grouped by category.

    python -m bench.profile --model vmamba_t --impl cuda --amp
    python -m bench.profile --model vmamba_t --impl cuda --amp --train --top 3
    python -m bench.profile --model swin_tiny_patch4_window7_224 --amp       # a timm baseline
    python -m bench.profile --model vmamba_t --impl cuda --amp --batch-size 1 --host 15   # a host-bound step

Prints one row per category (share of the device time, ms per step, kernel launches per step), the
categories of reference/anchors_measured.md's table, so the next bottleneck is visible, and first the
split of a step's wall time (timed without the profiler) into kernel time and the rest: a step whose
kernels fill only part of its wall time waits on the host (Python, autograd, launches). Categories come
from kernel names (a heuristic: `--top N` lists the largest kernels of each category to check it).
On a machine without CUDA it profiles CPU operators instead (and says so).
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from collections import defaultdict

import torch

from bench.tp import recompute_arg

# (category, pattern on the lower-cased kernel name); the first match wins, so specific before generic
CATEGORIES = [
    ("selective scan", r"selective_scan|scan_fwd|scan_bwd|_n1_|scan_kernel|chunk_state|ssd"),
    ("cross scan / merge", r"cross_scan|cross_merge|cross_"),
    # csrc's norms and depthwise conv launch through common/launch.cuh's generic body_kernel<K>: their names
    # are the body types' (vmamba::ln::FwdCl<...>, vmamba::dw::DwCl<...>), matched by namespace
    ("fused add + LayerNorm", r"add_layer_norm|add_ln|_layer_norm_(fwd|bwd)|ln_(fwd|bwd)|vmamba::ln::"),
    ("fused depthwise conv", r"dwconv|vmamba::dw::"),
    ("LayerNorm (torch)", r"layer_norm|layernorm"),
    ("convolutions (cudnn, incl. layout transposes)",
     r"conv|fprop|dgrad|wgrad|nchwtonhwc|nhwctonchw|cudnn|implicit_gemm|depthwise|winograd"),
    ("GEMMs", r"gemm|cutlass|cublas|matmul|xmma|sm90_|nvjet"),
    ("copies, permutes, casts", r"copy|aten::cat|cat_|catarray|permute|transpose|contiguous|clone|to_copy"),
    ("softmax / attention", r"softmax|attention|flash|fmha|sdpa"),
    ("other elementwise / reductions", r"elementwise|reduce|vectorized|pointwise|triton_|fill|index|where|"
                                       r"aten::(mul|add|sub|div|silu|gelu|exp|neg|softplus|sum|mean|bernoulli)"),
]


def categorize(name: str) -> str:
    n = name.lower()
    for cat, pat in CATEGORIES:
        if re.search(pat, n):
            return cat
    return "other"


def is_annotation(name: str) -> bool:
    """A range the profiler lists among the GPU events that is not a kernel: torch.compile's
    "## Call CompiledFxGraph ... ##" (it spans the graph's kernels, which are counted themselves)."""
    return name.startswith("## ")


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="vmamba_t", help="a models.list_models() name or a timm model name")
    p.add_argument("--impl", default="auto", help="kernel impl or policy name for VMamba models (default auto)")
    p.add_argument("--unfused", action="store_true", help="run the reference path (fused ops 'off')")
    p.add_argument("--layout", choices=["model", "channels_last", "channels_first"], default="model",
                   help="VMamba models' activation layout (as bench.tp --layout)")
    p.add_argument("--batch-size", type=int, default=None, help="default 128 on CUDA, 2 on the CPU")
    p.add_argument("--img-size", type=int, default=None, help="default 224 on CUDA, 64 on the CPU")
    p.add_argument("--amp", action="store_true", help="autocast (fp16 on CUDA, bf16 on the CPU)")
    p.add_argument("--train", action="store_true", help="forward + cross-entropy + backward instead of inference")
    p.add_argument("--compile", action="store_true", help="torch.compile the model first")
    p.add_argument("--warmup", type=int, default=None, help="warm-up steps (default 10 CUDA, 1 CPU)")
    p.add_argument("--steps", type=int, default=None, help="profiled steps (default 5 CUDA, 1 CPU)")
    p.add_argument("--top", type=int, default=0, help="also list the N largest kernels of each category")
    p.add_argument("--ops", type=int, default=0,
                   help="also list the N operators with the most GPU time of their own, by input shapes (which GEMM "
                        "is the slow one); records shapes, so the profiled steps run a little slower")
    p.add_argument("--host", type=int, default=0,
                   help="also list the N host events (operators, kernel-launch calls) with the most CPU time of their "
                        "own per step, and the kernel launches per step: where a host-bound step (small batches) "
                        "spends its time")
    p.add_argument("--explain", action="store_true",
                   help="with --compile: first print torch._dynamo.explain's graph and graph-break count and the "
                        "break reasons (where the model falls out of the compiled graph), then profile")
    p.add_argument("--recompute", type=recompute_arg, default=None, metavar="all|none|PART[+PART...]",
                   help="VMamba models' training recompute (VSSM.set_recompute: all, none, or parts of norms, delta, "
                        "routes, mlp joined by '+'; default: the model's own)")
    p.add_argument("--device", default=None, help="cuda or cpu (default cuda when available)")
    a = p.parse_args(argv)
    for flag in ("top", "ops", "host"):
        if getattr(a, flag) < 0:
            p.error(f"--{flag} takes a count of rows (0 or more), not {getattr(a, flag)}")
    return a


def build(name: str, impl: str, unfused: bool, layout: str = "model"):
    import models  # noqa: PLC0415

    if name in models.list_models():
        impl = None if impl == "auto" else impl
        if unfused:
            impl = models.KernelPolicy.unfused(impl)
        kw = {} if layout == "model" else {"channels_last": layout == "channels_last"}
        return models.create_model(name, impl=impl, **kw)
    try:
        import timm  # noqa: PLC0415
    except ImportError:
        raise SystemExit(f"{name!r} is not a VMamba model (models.list_models()) and timm is not installed") from None
    return timm.create_model(name, pretrained=False)


def profile(a) -> tuple:
    cuda = torch.cuda.is_available() if a.device is None else a.device.startswith("cuda")
    dev = torch.device("cuda" if cuda else "cpu")
    batch = a.batch_size or (128 if cuda else 2)
    size = a.img_size or (224 if cuda else 64)
    warmup = a.warmup if a.warmup is not None else (10 if cuda else 1)
    steps = a.steps if a.steps is not None else (5 if cuda else 1)
    if cuda:
        torch.backends.cudnn.benchmark = True
    model = build(a.model, a.impl, a.unfused, a.layout).to(dev)
    if a.recompute is not None:
        if not hasattr(model, "set_recompute"):
            raise SystemExit(f"--recompute: {a.model} is not a VMamba model (no set_recompute)")
        model.set_recompute(a.recompute)
    model.train(a.train)
    if a.explain:
        if not a.compile:
            raise SystemExit("--explain goes with --compile (it reports torch.compile's graph breaks)")
        print(explain(model, batch, size, dev, a.amp, a.train))
    run = torch.compile(model) if a.compile else model
    x = torch.randn(batch, 3, size, size, device=dev)
    y = torch.randint(0, 1000, (batch,), device=dev)
    amp_dtype = torch.float16 if cuda else torch.bfloat16

    def step():
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=a.amp):
            if a.train:
                loss = torch.nn.functional.cross_entropy(run(x), y)
            else:
                with torch.no_grad():
                    run(x)
        if a.train:
            loss.backward()
            model.zero_grad(set_to_none=True)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    wall_ms = (time.perf_counter() - t0) * 1e3 / steps
    acts = [torch.profiler.ProfilerActivity.CUDA] if cuda else [torch.profiler.ProfilerActivity.CPU]
    if (a.ops or a.host) and cuda:  # the host side: operators (with their shapes for --ops), launch calls
        acts.append(torch.profiler.ProfilerActivity.CPU)
    with torch.profiler.profile(activities=acts, record_shapes=bool(a.ops)) as prof:
        for _ in range(steps):
            step()
        if cuda:
            torch.cuda.synchronize()
    per = defaultdict(lambda: [0.0, 0, []])  # category -> [us, launches, [(us, name)]]
    for evt in prof.key_averages():
        if cuda and evt.device_type != torch.autograd.DeviceType.CUDA:
            continue
        us = evt.self_device_time_total if cuda else evt.self_cpu_time_total
        if us <= 0 or is_annotation(evt.key):
            continue
        cat = categorize(evt.key)
        per[cat][0] += us
        per[cat][1] += evt.count
        per[cat][2].append((us, evt.key))
    ops = top_ops(prof, cuda, a.ops) if a.ops else []
    host = top_host(prof, a.host) if a.host else None
    device = ("GPU " + torch.cuda.get_device_name(dev)) if cuda else \
        "CPU (no CUDA device: CPU operator time, not GPU kernels)"
    return per, steps, dict(ops=ops, host=host, device=device, batch=batch, size=size, wall_ms=wall_ms, cuda=cuda)


def explain(model, batch: int, size: int, dev, amp: bool, train: bool, reasons: int = 10) -> str:
    """torch._dynamo.explain of one forward: how many graphs and breaks, and the first `reasons` break
    reasons with the line of model code where each happened."""
    x = torch.randn(batch, 3, size, size, device=dev)
    amp_dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
    torch._dynamo.reset()
    with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp), torch.set_grad_enabled(train):
        e = torch._dynamo.explain(model)(x)
    torch._dynamo.reset()
    lines = [f"torch.compile: {e.graph_count} graph(s), {e.graph_break_count} graph break(s)"]
    for r in e.break_reasons[:reasons]:
        where = r.user_stack[-1] if r.user_stack else None
        at = f" at {where.filename}:{where.lineno}" if where is not None else ""
        what = " ".join(ln.strip() for ln in r.reason.splitlines()[:2])  # the reason and dynamo's explanation
        lines.append(f"  break{at}: {what[:300]}")
    return "\n".join(lines)


def top_ops(prof, cuda: bool, n: int) -> list:
    """[(us, count, name, shapes)]: the n aten operators with the most device time of their own (CPU time on the
    CPU), grouped by input shapes."""
    rows = []
    for evt in prof.key_averages(group_by_input_shape=True):
        if evt.device_type != torch.autograd.DeviceType.CPU or not evt.key.startswith("aten::"):
            continue
        us = evt.self_device_time_total if cuda else evt.self_cpu_time_total
        if us > 0:
            rows.append((us, evt.count, evt.key, str(evt.input_shapes)))
    return sorted(rows, reverse=True)[:n]


LAUNCH_CALLS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx")


def top_host(prof, n: int) -> dict:
    """{"rows": [(self CPU us, count, name)] of the n host events with the most CPU time of their own, "total_us":
    every host event's own time, "launches": kernel-launch API calls} over the profiled steps."""
    evts = [e for e in prof.key_averages() if e.device_type == torch.autograd.DeviceType.CPU
            and e.self_cpu_time_total > 0 and not is_annotation(e.key)]
    rows = sorted(((e.self_cpu_time_total, e.count, e.key) for e in evts), reverse=True)[:n]
    return {"rows": rows, "total_us": sum(e.self_cpu_time_total for e in evts),
            "launches": sum(e.count for e in evts if e.key in LAUNCH_CALLS)}


def format_host(host: dict, steps: int) -> str:
    lines = [f"host: {host['total_us'] / 1000 / steps:.2f} ms of CPU time in events per step (profiler overhead "
             f"included), {host['launches'] / steps:.0f} kernel launches per step",
             f"{'ms/step':>8s}  {'calls/step':>10s}  {'us/call':>8s}  event"]
    for us, count, name in host["rows"]:
        lines.append(f"{us / 1000 / steps:8.3f}  {count / steps:10.1f}  {us / max(count, 1):8.1f}  {name[:110]}")
    return "\n".join(lines)


def format_ops(ops: list, steps: int) -> str:
    lines = [f"{'ms/step':>8s}  {'calls/step':>10s}  operator  input shapes"]
    for us, count, name, shapes in ops:
        lines.append(f"{us / 1000 / steps:8.3f}  {count / steps:10.1f}  {name}  {shapes[:160]}")
    return "\n".join(lines)


def format_split(wall_ms: float, busy_ms: float, cuda: bool) -> str:
    """One line: a step's wall time against the time its kernels (or, on the CPU, its operators) took."""
    what = "kernels" if cuda else "operators (self time)"
    line = f"step: {wall_ms:.2f} ms wall, {what} {busy_ms:.2f} ms ({100 * busy_ms / max(wall_ms, 1e-9):.0f}%)"
    if cuda and busy_ms < 0.9 * wall_ms:
        line += f"; the GPU idles {wall_ms - busy_ms:.2f} ms a step waiting on the host"
    return line


def format_report(per: dict, steps: int, top: int = 0) -> str:
    total = sum(v[0] for v in per.values()) or 1.0
    rows = sorted(per.items(), key=lambda kv: -kv[1][0])
    w = max([len(c) for c in per] + [8])
    lines = [f"{'category':{w}s}  {'share':>6s}  {'ms/step':>8s}  {'launches/step':>13s}"]
    for cat, (us, n, ks) in rows:
        lines.append(f"{cat:{w}s}  {100 * us / total:5.1f}%  {us / 1000 / steps:8.3f}  {n / steps:13.0f}")
        for kus, name in sorted(ks, reverse=True)[:top]:
            lines.append(f"    {kus / 1000 / steps:8.3f} ms  {name[:110]}")
    lines.append(f"{'total':{w}s}  100.0%  {total / 1000 / steps:8.3f}  "
                 f"{sum(v[1] for v in per.values()) / steps:13.0f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    a = parse_args(argv)
    per, steps, info = profile(a)
    mode = ("train" if a.train else "inference") + (" AMP" if a.amp else " fp32")
    print(f"{a.model} impl {a.impl}{' (unfused)' if a.unfused else ''}, layout {a.layout}, {mode}, batch {info['batch']}, "
          f"{info['size']}x{info['size']}, {steps} profiled steps on {info['device']}")
    print(format_split(info["wall_ms"], sum(v[0] for v in per.values()) / 1000 / steps, info["cuda"]))
    print(format_report(per, steps, a.top))
    if info["ops"]:
        print("\noperators with the most " + ("GPU" if info["cuda"] else "CPU") + " time of their own, by input shapes")
        print(format_ops(info["ops"], steps))
    if info["host"] is not None:
        print("\nhost events with the most CPU time of their own")
        print(format_host(info["host"], steps))
    return 0


if __name__ == "__main__":
    sys.exit(main())
