"""Plots and the README results table, from reports/*.csv.

    python -m bench.report [--reports-dir reports] [--readme README.md] [--include-cpu] [--git-sha PREFIX]

Writes into the reports folder:
- throughput.png: img/s per model and impl (timm baselines included), one panel per mode;
- kernels_gbps_<dtype>.png: achieved GB/s per VMamba stage and impl for each op/direction (and map
  layout for the cross ops), against the measured copy bandwidth;
- history_models.png / history_memory.png / history_kernels.png: throughput, training peak memory
  and kernel GB/s over the git history (ordered by timestamp, labelled by git sha) to show regressions;
and replaces the text between `<!-- results:start -->` and `<!-- results:end -->` in the README with
tables built from the latest rows (per model/impl/mode and per kernel case) of one GPU type: throughput
(at each row's largest requested batch), inference latency and ms per image by batch size (rows of
`bench.tp --batch 1,8,32,128`), and the selective scan's kernels.
Rows with gpu == "cpu" are left out unless --include-cpu.

Every plot gives each backend the same colour (IMPL_COLORS) and names every series in a legend; stages
are shown as the paper numbers them, 1-4 (the CSVs store the 0-based index, 0-3).
"""
from __future__ import annotations

import argparse
import math
import sys
from collections import OrderedDict, defaultdict
from pathlib import Path

from bench.results import GRAPH_PEAK_NOTE, read_csv, reports_dir, to_float

START, END = "<!-- results:start -->", "<!-- results:end -->"
MODE_ORDER = ["infer_fp32", "infer_amp", "train_amp", "train_fp32"]
IMPL_ORDER = ["cuda", "triton", "cupy", "torch", "torch_sequential"]


def _pair_key(pair, first_seen):
    """Table order: our models (by first appearance) with impls in IMPL_ORDER, then the baselines."""
    model, impl = pair
    base = impl.split(":")[0]  # "cuda:cl:graphs" ranks as cuda, "timm:graphs" is a baseline
    baseline = base == "timm"
    rank = IMPL_ORDER.index(base) if base in IMPL_ORDER else len(IMPL_ORDER)
    return (baseline, first_seen[model], rank, impl)
REPO = Path(__file__).resolve().parent.parent


# ---- data ------------------------------------------------------------------------------------------
def load(path: Path, include_cpu: bool) -> list:
    _, rows = read_csv(path)
    return [r for r in rows if include_cpu or (r.get("gpu") or "cpu") != "cpu"]


def main_gpu(rows: list):
    """The GPU with the most recent row (tables and plots show one card at a time)."""
    if not rows:
        return None
    return max(rows, key=lambda r: r.get("timestamp", ""))["gpu"]


def latest(rows: list, key_fields: tuple) -> "OrderedDict":
    """key -> the newest row (by timestamp) for each key; keys in first-seen order."""
    out = OrderedDict()
    for r in rows:
        k = tuple(r.get(f, "") for f in key_fields)
        if k not in out or r.get("timestamp", "") >= out[k].get("timestamp", ""):
            out[k] = r
    return out


def newest_sha(rows: list) -> dict:
    """impl -> git_sha of its newest row: cells measured at another commit get a dagger in the tables."""
    out = {}
    for r in sorted(rows, key=lambda r: r.get("timestamp", "")):
        out[r["impl"]] = r.get("git_sha", "")
    return out


GRAPH_PEAK_FOOT = ("‡ a CUDA-graph row whose peak memory excludes the graph's pool (measured before bench.tp reset "
                   "the peak counter ahead of the capture): not shown.")
STALE = " †"
STALE_NOTE = ("† measured at an earlier commit than this impl's newest results (its kernels may have changed "
              "since; see git_sha in the CSV).")


def _order(values, preferred):
    vals = list(OrderedDict.fromkeys(values))
    return [v for v in preferred if v in vals] + [v for v in vals if v not in preferred]


# ---- README tables ----------------------------------------------------------------------------------
def _num(s, fmt="{:.0f}"):
    v = to_float(s)
    return "–" if v != v else fmt.format(v)


def _batch_of(r: dict) -> int:
    """The batch a row asked for (requested_batch; batch for rows from before that column)."""
    try:
        return int(r.get("requested_batch") or r.get("batch") or 0)
    except ValueError:
        return 0


def largest_batch(rows: list) -> list:
    """The rows at the largest requested batch of their (model, impl, mode): the throughput views
    (`bench.tp --batch 1,8,32,128` also writes small-batch rows, which the latency table shows)."""
    top = defaultdict(int)
    for r in rows:
        k = (r["model"], r["impl"], r["mode"])
        top[k] = max(top[k], _batch_of(r))
    return [r for r in rows if _batch_of(r) == top[(r["model"], r["impl"], r["mode"])]]


def latency_table(rows: list) -> str:
    """Inference latency and per-image time per batch size: one line per (model, impl, mode) measured at
    more than one batch or at batch 1; ms per image at each batch (newest row per batch), the batch-1
    latency, the per-image time at batch 32 over batch 128, and the run (its timestamp: lines of one run compare;
    the host of a lent machine differs between runs, and at small batches the host sets the time). Empty when
    there is no such row."""
    gpu = main_gpu(rows)
    rows = [r for r in rows if r["gpu"] == gpu and r["mode"].startswith("infer")]
    # one run of bench.tp writes its rows with one timestamp: a line shows the newest such sweep, so that the
    # b32/b128 ratio never divides rows of two runs
    runs = OrderedDict()
    for r in rows:
        runs.setdefault((r["model"], r["impl"], r["mode"], r.get("git_sha", ""), r.get("timestamp", "")),
                        {})[_batch_of(r)] = r
    per = OrderedDict()
    for (model, impl, mode, _, ts), by in sorted(runs.items(), key=lambda kv: kv[0][4]):
        if len(by) > 1 or 1 in by:
            per.pop((model, impl, mode), None)
            per[(model, impl, mode)] = by
    per = OrderedDict(sorted(per.items(), key=lambda kv: min(r.get("timestamp", "") for r in kv[1].values())))
    if not per:
        return ""
    batches = sorted({b for v in per.values() for b in v})
    first_seen = {m: i for i, m in enumerate(OrderedDict.fromkeys(k[0] for k in per))}
    keys = sorted(per, key=lambda k: (MODE_ORDER.index(k[2]) if k[2] in MODE_ORDER else 9,
                                      _pair_key((k[0], k[1]), first_seen)))
    head = ["model", "impl", "mode", "latency b1 ms"] + [f"ms/img b{b}" for b in batches] + ["b32/b128", "run"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def per_img(r):
        return to_float(r.get("ms_per_img")) if r.get("ms_per_img") else to_float(r["ms_per_iter"]) / int(r["batch"])

    for k in keys:
        by = per[k]
        cells = [k[0], k[1], k[2].replace("_", " "), _num(by[1]["ms_per_iter"], "{:.2f}") if 1 in by else "–"]
        cells += [_num(per_img(by[b]), "{:.3f}") if b in by else "–" for b in batches]
        ratio = per_img(by[32]) / per_img(by[128]) if 32 in by and 128 in by else float("nan")
        cells.append("–" if ratio != ratio else f"{ratio:.2f}x")
        cells.append(max(r.get("timestamp", "") for r in by.values())[:16].replace("T", " "))
        lines.append("| " + " | ".join(cells) + " |")
    when = max(r["timestamp"] for v in per.values() for r in v.values())
    shas = sorted({r.get("git_sha", "") for v in per.values() for r in v.values()})
    foot = (f"\nInference latency (batch 1: ms per forward) and ms per image by batch size, {gpu}, eager unless the "
            f"impl ends in \":graphs\" (CUDA graph replays), git {', '.join(shas)}, latest {when}. Compare lines "
            f"of one run (same run column): at small batches the host sets the time, and it differs between lent "
            f"machines. "
            f"Source: reports/models.csv (`python -m bench.tp --batch 1,8,32,128 [--cuda-graphs]`).")
    return "\n".join(lines) + "\n" + foot


def models_table(rows: list) -> str:
    gpu = main_gpu(rows)
    rows = largest_batch([r for r in rows if r["gpu"] == gpu])
    lat = latest(rows, ("model", "impl", "mode"))
    modes = _order([k[2] for k in lat], MODE_ORDER)
    pairs = list(OrderedDict.fromkeys((k[0], k[1]) for k in lat))
    first_seen = {m: i for i, m in enumerate(OrderedDict.fromkeys(p[0] for p in pairs))}
    pairs.sort(key=lambda p: _pair_key(p, first_seen))
    head = ["model", "impl"] + [f"{m.replace('_', ' ')} img/s" for m in modes]
    train_modes = [m for m in modes if m.startswith("train")]
    if train_modes:
        head.append(f"{train_modes[0].replace('_', ' ')} peak MB")
    head += ["batch", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    metas = set()
    fresh = newest_sha(rows)
    any_stale = any_uncounted = False
    for model, impl in pairs:
        cells = [model, impl]
        notes, batches = [], set()
        for m in modes:
            r = lat.get((model, impl, m))
            stale = bool(r) and r.get("git_sha", "") != fresh.get(impl)
            any_stale |= stale
            cells.append(_num(r["img_per_s"]) + (STALE if stale else "") if r else "–")
            if r:
                batches.add(r["batch"])
                if r.get("note"):
                    notes.append(f"{m}: {r['note']}")
                metas.add((r.get("method", ""), r.get("cudnn_benchmark", ""), r.get("compile", ""),
                           r.get("channels_last", ""), r.get("git_sha", "")))
        if train_modes:
            r = lat.get((model, impl, train_modes[0]))
            uncounted = bool(r) and r.get("cuda_graphs") == "true" and GRAPH_PEAK_NOTE not in (r.get("note") or "")
            any_uncounted |= uncounted
            cells.append("– ‡" if uncounted else _num(r["peak_mem_mb"]) if r else "–")
        cells += ["/".join(sorted(batches, key=lambda b: -int(b or 0))), "; ".join(notes)]
        lines.append("| " + " | ".join(cells) + " |")
    methods = sorted({m[0] for m in metas})
    shas = sorted({m[4] for m in metas})
    when = max(r["timestamp"] for r in rows)
    how = {"official": "official method (warm-up + timed iterations, wall clock)",
           "robust": "robust method (CUDA events, median of repeats)"}
    iters = sorted({f"{r.get('warmup')}+{r.get('iters')}" for r in lat.values()})
    foot = (f"\nWhole model, {gpu}, {', '.join(how.get(m, m) for m in methods)}, warm-up+timed {', '.join(iters)}, "
            f"cudnn.benchmark {'/'.join(sorted({m[1] for m in metas}))}, compile {'/'.join(sorted({m[2] for m in metas}))}, "
            f"git {', '.join(shas)}, latest {when}. Source: reports/models.csv."
            + (f" {STALE_NOTE}" if any_stale else "")
            + (f" {GRAPH_PEAK_FOOT}" if any_uncounted else ""))
    return "\n".join(lines) + "\n" + foot


def kernels_table(rows: list, dtype: str = "fp16") -> str:
    gpu = main_gpu(rows)
    rows = [r for r in rows if r["gpu"] == gpu and r["dtype"] == dtype and r["op"] == "selective_scan"]
    if not rows:
        return ""
    lat = latest(rows, ("model", "stage", "direction", "impl"))
    impls = list(OrderedDict.fromkeys(k[3] for k in lat))
    cases = list(OrderedDict.fromkeys((k[0], k[1]) for k in lat))
    # each model's stages together, models in the order first measured
    model_order = list(OrderedDict.fromkeys(m for m, _ in cases))
    cases.sort(key=lambda c: (model_order.index(c[0]), int(c[1]) if str(c[1]).isdigit() else c[1]))
    head = ["model", "stage", "shape"] + [f"{i} fwd" for i in impls] + [f"{i} bwd" for i in impls]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    copy = sorted({r.get("copy_gbps") for r in rows if r.get("copy_gbps")})
    fresh = newest_sha(rows)
    any_stale = False
    for model, stage in cases:
        shape = next(r["shape"] for k, r in lat.items() if k[0] == model and k[1] == stage)
        cells = [model, stage_label(stage), shape]  # the paper's stage numbers, 1-4
        for d in ("fwd", "bwd"):
            for i in impls:
                r = lat.get((model, stage, d, i))
                stale = bool(r) and r.get("git_sha", "") != fresh.get(i)
                any_stale |= stale
                cells.append(f"{to_float(r['ms_p50']):.3f} ms ({to_float(r['gbps']):.0f} GB/s)" + (STALE if stale else "")
                             if r else "–")
        lines.append("| " + " | ".join(cells) + " |")
    cp = f"{to_float(copy[-1]):.0f} GB/s" if copy else "not measured"
    outs = sorted({f"{r['impl']}: {r['out_dtype']}" for r in rows})
    return ("\n".join(lines) + f"\n\nSelective scan alone, {dtype} inputs (out dtype {', '.join(outs)}), {gpu}, "
            f"median of {', '.join(sorted({r.get('method', '') for r in rows}))}; measured copy bandwidth {cp}. "
            "Source: reports/kernels.csv." + (f" {STALE_NOTE}" if any_stale else ""))


def gpus_of(r: dict) -> int:
    try:
        return int(r.get("gpus") or 1)
    except ValueError:
        return 1


def one_gpu(rows: list) -> list:
    """The rows of one device: the throughput, latency and history views (data-parallel rows, whose img/s is
    the sum over their replicas, go to scaling_table)."""
    return [r for r in rows if gpus_of(r) == 1]


def scaling_table(rows: list) -> str:
    """Data-parallel training (bench.tp --ddp): aggregate and per-GPU img/s and the scaling efficiency against
    one GPU of the same run, newest row per (model, impl, mode, gpus); empty without such rows."""
    gpu = main_gpu(rows)
    rows = [r for r in rows if r["gpu"] == gpu and gpus_of(r) > 1]
    if not rows:
        return ""
    lat = latest(rows, ("model", "impl", "mode", "gpus"))
    lines = ["| model | impl | mode | GPUs | batch per GPU | img/s | img/s per GPU | scaling efficiency |",
             "|---|---|---|---|---|---|---|---|"]
    for (model, impl, mode, g), r in lat.items():
        lines.append(f"| {model} | {impl} | {mode.replace('_', ' ')} | {g} | {r['batch']} | {_num(r['img_per_s'])} | "
                     f"{_num(r['img_per_s_per_gpu'])} | {_num(r['scaling_efficiency'], '{:.2f}')} |")
    shas = sorted({r.get("git_sha", "") for r in lat.values()})
    return ("\n".join(lines) + f"\n\nData-parallel training (torchrun ... -m bench.tp --ddp), {gpu}, git "
            f"{', '.join(shas)}. Source: reports/models.csv.")


DEFAULT_SIZE = 224  # the paper's (and the main tables') image size


def _size_of(r: dict) -> int:
    try:
        return int(float(r.get("img_size") or DEFAULT_SIZE))
    except ValueError:
        return DEFAULT_SIZE


def labelled(rows: list) -> list:
    """The rows with a torch.compile'd run's impl marked ':compiled' (a compiled row must not take the eager
    cell of its impl)."""
    return [dict(r, impl=r["impl"] + ":compiled") if str(r.get("compile", "")).lower() == "true" else r
            for r in rows]


def size_table(rows: list) -> str:
    """Rows at image sizes other than DEFAULT_SIZE (bench.tp --img-size): newest per (model, impl, size,
    batch), inference and training img/s and the training peak; empty without such rows."""
    gpu = main_gpu(rows)
    rows = [r for r in rows if r["gpu"] == gpu and _size_of(r) != DEFAULT_SIZE]
    if not rows:
        return ""
    lat = latest(rows, ("model", "impl", "img_size", "requested_batch", "mode"))
    per = OrderedDict()
    for (model, impl, size, _, mode), r in lat.items():
        per.setdefault((model, impl, _size_of(r), _batch_of(r)), {})[mode] = r
    lines = ["| model | impl | image | batch | infer amp img/s | train amp img/s | train amp peak MB |",
             "|---|---|---|---|---|---|---|"]
    for (model, impl, size, batch), by in per.items():
        inf, tr = by.get("infer_amp"), by.get("train_amp")
        lines.append(f"| {model} | {impl} | {size}x{size} | {batch} | {_num(inf['img_per_s']) if inf else '–'} | "
                     f"{_num(tr['img_per_s']) if tr else '–'} | {_num(tr['peak_mem_mb']) if tr else '–'} |")
    shas = sorted({r.get("git_sha", "") for r in lat.values()})
    return ("\n".join(lines) + f"\n\nWhole model at other image sizes (bench.tp --img-size), {gpu}, git "
            f"{', '.join(shas)}. Source: reports/models.csv.")


def main_view(rows: list) -> list:
    """The rows of the throughput and latency tables and plots: one device, DEFAULT_SIZE images, compiled runs
    labelled as their own impl."""
    return [r for r in labelled(one_gpu(rows)) if _size_of(r) == DEFAULT_SIZE]


def readme_block(model_rows: list, kernel_rows: list) -> str:
    parts = []
    single = labelled(one_gpu(model_rows))
    main = main_view(model_rows)
    if main:
        parts.append(models_table(main))
        lt = latency_table(main)
        if lt:
            parts.append(lt)
    other = size_table(single)
    if other:
        parts.append(other)
    st = scaling_table(model_rows)
    if st:
        parts.append(st)
    if kernel_rows:
        kt = kernels_table(kernel_rows, "fp16") or kernels_table(kernel_rows, "fp32")
        if kt:
            parts.append(kt)
    return "\n\n".join(parts)


def replace_between_markers(path: Path, body: str) -> bool:
    """Replace the text between the markers in `path`; False (file untouched) when absent."""
    text = path.read_text()
    i, j = text.find(START), text.find(END)
    if i < 0 or j < 0 or j < i:
        return False
    new = text[: i + len(START)] + "\n" + body.strip() + "\n" + text[j:]
    if new != text:
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(new)
        tmp.replace(path)
    return True


# ---- plots ---------------------------------------------------------------------------------------
# One colour per backend in every plot (and the same order everywhere). A variant label of a backend
# ("cuda:cl", "cuda:unfused:cf", "cuda-unfused", ...) is a shade of that backend's colour: darker and lighter
# in turn, in the order the labels are first drawn in this process (bench.report draws in a fixed order,
# so a label keeps its shade across the figures of one run), so no two labels of one backend share a
# colour. A label of any other backend takes a spare colour chosen by its name.
IMPL_COLORS = {"cuda": "#1f77b4", "triton": "#ff7f0e", "cupy": "#2ca02c", "torch": "#9467bd",
               "torch_sequential": "#8c564b", "mamba_ssm": "#d62728", "timm": "#7f7f7f"}
_SPARE_COLORS = ["#17becf", "#bcbd22", "#e377c2", "#393b79", "#637939", "#8c6d31", "#843c39", "#7b4173"]
# mix with black (< 0) or white (> 0): the shades of a backend's variants, in order of first use
_SHADES = (-0.5, 0.45, -0.8, 0.75, -0.2, 0.15, -0.65, 0.6)
_VARIANTS: dict = {}  # backend -> its variant labels, in order of first use
LEGEND_ORDER = IMPL_COLORS.keys()
MODEL_ORDER = ["vmamba_t", "vmamba_s", "vmamba_b", "vanilla_vmamba_tiny", "vanilla_vmamba_small",
               "vanilla_vmamba_base"]
MODEL_MARKERS = ["o", "s", "^", "D", "v", "<", ">", "P", "X", "*", "h", "p"]
DTYPE_STYLES = {"fp16": "-", "fp32": "--", "bf16": ":"}
DTYPE_MARKERS = {"fp16": "o", "fp32": "s", "bf16": "^"}  # a lone point has no line style to tell it by


def _backend_of(impl: str) -> str:
    base = impl.split(":")[0]
    return base[: -len("-unfused")] if base.endswith("-unfused") else base


def _shade(color: str, f: float) -> str:
    rgb = [int(color[i:i + 2], 16) for i in (1, 3, 5)]
    mixed = [round(c + (255 - c) * f) if f > 0 else round(c * (1 + f)) for c in rgb]
    return "#" + "".join(f"{c:02x}" for c in mixed)


def impl_color(impl: str) -> str:
    if impl in IMPL_COLORS:
        return IMPL_COLORS[impl]
    base = _backend_of(impl)
    if base in IMPL_COLORS:
        seen = _VARIANTS.setdefault(base, [])
        if impl not in seen:
            seen.append(impl)
        i = seen.index(impl)
        return _shade(IMPL_COLORS[base], _SHADES[i % len(_SHADES)] * (1 if i < len(_SHADES) else 0.5))
    return _SPARE_COLORS[sum(map(ord, impl)) % len(_SPARE_COLORS)]


def _impl_order(impls) -> list:
    return _order(impls, list(LEGEND_ORDER))


def _model_order(models) -> list:
    """Our models in a fixed order (T, S, B, vanilla), then any other, then the timm baselines."""
    models = list(OrderedDict.fromkeys(models))
    ours = [m for m in models if not _is_baseline(m)]
    return _order(ours, MODEL_ORDER) + [m for m in models if _is_baseline(m)]


def _is_baseline(model: str) -> bool:
    return model.startswith(("swin_", "convnext", "deit", "resnet", "vit_"))


def _stage_key(stage) -> tuple:
    s = str(stage)
    return (0, int(s)) if s.lstrip("-").isdigit() else (1, s)


def stage_label(stage) -> str:
    """The paper's stage number (1-4) of a CSV stage index (0-3)."""
    s = str(stage)
    return str(int(s) + 1) if s.lstrip("-").isdigit() else s


def layout_of(row: dict) -> str:
    return "channels-last" if str(row.get("shape", "")).endswith("channels_last") else "channels-first"


def _plt():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def _short_model(m: str) -> str:
    return (m.replace("_patch4_window7_224", "").replace("vanilla_vmamba_", "Vanilla-VMamba-")
            .replace("vmamba_", "VMamba-").replace("swin_", "Swin-").replace("convnext_", "ConvNeXt-")
            .replace("-tiny", "-T").replace("-small", "-S").replace("-base", "-B").replace("-t", "-T")
            .replace("-s", "-S").replace("-b", "-B"))


def _impl_handles(impls) -> list:
    from matplotlib.patches import Patch  # noqa: PLC0415

    return [Patch(facecolor=impl_color(i), label=i) for i in _impl_order(impls)]


def plot_throughput(rows: list, out: Path):
    """img/s per model (rows) and impl (coloured bars), one panel per mode, 2 panels a row: readable
    at normal size, the values written at the bar ends, one legend for every impl in the figure."""
    plt = _plt()
    gpu = main_gpu(rows)
    rows = largest_batch([r for r in rows if r["gpu"] == gpu])
    lat = latest(rows, ("model", "impl", "mode"))
    modes = _order([k[2] for k in lat], MODE_ORDER)
    models = _model_order(k[0] for k in lat)
    impls = _impl_order(k[1] for k in lat)
    newest = newest_sha(rows)  # a bar from an older commit than its impl's newest row: hatched, value marked †
    stale_any = False
    ncol = min(2, len(modes))
    nrow = math.ceil(len(modes) / ncol)
    # each model gets as many bar slots as it has impls in any mode (a baseline one), plus a gap
    slots = {m: max(1, len({k[1] for k in lat if k[0] == m})) for m in models}
    centre, y0 = {}, 0.0
    for m in models:
        centre[m] = y0 + (slots[m] - 1) / 2
        y0 += slots[m] + 0.8
    fig, axes = plt.subplots(nrow, ncol, figsize=(6.5 * ncol, 0.17 * y0 * nrow + 1.4 * nrow + 0.6), squeeze=False)
    for ax in axes.flat[len(modes):]:
        ax.set_visible(False)
    for ax, mode in zip(axes.flat, modes):
        top = 0.0
        for m in models:
            present = [impl for impl in impls if (m, impl, mode) in lat]
            for j, impl in enumerate(present):
                r = lat[(m, impl, mode)]
                v = to_float(r["img_per_s"])
                stale = r.get("git_sha", "") != newest.get(impl, "")
                stale_any |= stale
                y = centre[m] + j - (len(present) - 1) / 2
                ax.barh(y, v, 0.85, color=impl_color(impl), hatch="///" if stale else None,
                        edgecolor="white" if stale else None)
                ax.text(v, y, f" {v:.0f}" + (STALE if stale else ""), va="center", ha="left", fontsize=7)
                top = max(top, v)
            if not present:
                ax.text(0, centre[m], " not measured", va="center", ha="left", fontsize=7, color="0.5")
        ax.set_yticks([centre[m] for m in models])
        ax.set_yticklabels([_short_model(m) for m in models], fontsize=8)
        ax.set_ylim(y0 - 0.4, -0.9)  # first model on top
        ax.set_xlim(0, top * 1.15 if top > 0 else 1)
        ax.set_title(mode.replace("_", " "), fontsize=10)
        ax.set_xlabel("images / s")
        ax.grid(axis="x", alpha=0.3)
    per_row = 6  # legend entries per row: the figure's width holds about six labels
    rows_of_legend = math.ceil(len(impls) / per_row)
    height = fig.get_size_inches()[1]
    fig.set_size_inches(fig.get_size_inches()[0], height + 0.25 * (rows_of_legend - 1))
    top = 1 - (0.45 + 0.25 * rows_of_legend) / fig.get_size_inches()[1]  # room for the title and the legend
    fig.legend(handles=_impl_handles(impls), loc="upper center", ncol=min(len(impls), per_row), fontsize=9,
               frameon=False, bbox_to_anchor=(0.5, 1 - 0.35 / fig.get_size_inches()[1]))
    title = f"Whole-model throughput, {gpu} (newest row per model, impl and mode; timm = baselines)"
    if stale_any:
        title += "\nhatched, † : measured at an earlier commit than the impl's newest row"
    fig.suptitle(title, fontsize=11, y=0.995)
    fig.tight_layout(rect=(0, 0, 1, top))
    path = out / "throughput.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _kernel_cases(lat, op, d, layout) -> list:
    cases = list(OrderedDict.fromkeys((k[3], k[4]) for k in lat if k[:3] == (op, d, layout)))
    order = _model_order(m for m, _ in cases)
    return sorted(cases, key=lambda c: (order.index(c[0]), _stage_key(c[1])))


def plot_kernels(rows: list, out: Path) -> list:
    """GB/s per stage (1-4, grouped by model) and impl, one panel per op, direction and layout, with
    the copy bandwidth as a dashed line named in the legend."""
    plt = _plt()
    from matplotlib.lines import Line2D  # noqa: PLC0415

    gpu = main_gpu(rows)
    rows = [dict(r, layout=layout_of(r)) for r in rows if r["gpu"] == gpu]
    paths = []
    for dtype in _order([r["dtype"] for r in rows], ["fp16", "bf16", "fp32"]):
        sub = [r for r in rows if r["dtype"] == dtype]
        lat = latest(sub, ("op", "direction", "layout", "model", "stage", "impl"))
        panels = _order(list(OrderedDict.fromkeys(k[:3] for k in lat)),
                        [(o, d, lay) for o in ("selective_scan", "cross_scan", "cross_merge") for d in ("fwd", "bwd")
                         for lay in ("channels-first", "channels-last")])
        fig, axes = plt.subplots(len(panels), 1, figsize=(12, 3.4 * len(panels) + 0.6), squeeze=False)
        for ax, (op, d, layout) in zip(axes[:, 0], panels):
            cases = _kernel_cases(lat, op, d, layout)
            impls = _impl_order(k[5] for k in lat if k[:3] == (op, d, layout))
            width = 0.8 / max(len(impls), 1)
            for j, impl in enumerate(impls):
                xs, ys = [], []
                for i, (m, s) in enumerate(cases):
                    r = lat.get((op, d, layout, m, s, impl))
                    if r:
                        xs.append(i + (j - (len(impls) - 1) / 2) * width)
                        ys.append(to_float(r["gbps"]))
                ax.bar(xs, ys, width * 0.95, color=impl_color(impl), label=impl)
            handles = _impl_handles(impls)
            copies = [to_float(r.get("copy_gbps")) for r in sub
                      if (r["op"], r["direction"], r["layout"]) == (op, d, layout)]
            copies = [c for c in copies if c == c]
            if copies:
                c = max(copies)
                ax.axhline(c, color="k", ls="--", lw=1)
                handles.append(Line2D([], [], color="k", ls="--", lw=1, label=f"copy bandwidth {c:.0f} GB/s"))
                ax.set_ylim(0, c * 1.08)
            ax.set_xticks(range(len(cases)))
            ax.set_xticklabels([stage_label(s) for _, s in cases], fontsize=8)
            # model names under their stages, separated by thin lines below the axis (not across the bars)
            starts = [i for i, (m, _) in enumerate(cases) if i == 0 or cases[i - 1][0] != m]
            for n, i in enumerate(starts):
                end = (starts[n + 1] if n + 1 < len(starts) else len(cases)) - 1
                ax.annotate(_short_model(cases[i][0]), xy=((i + end) / 2, 0), xycoords=("data", "axes fraction"),
                            xytext=(0, -26), textcoords="offset points", ha="center", va="top", fontsize=8)
                if i > 0:
                    ax.axvline(i - 0.5, color="0.85", lw=0.8, zorder=0)
            ax.set_xlim(-0.6, len(cases) - 0.4)
            ax.set_xlabel("stage", fontsize=8, labelpad=22)
            ax.xaxis.set_label_coords(-0.035, -0.04)
            ax.set_ylabel("GB/s (min traffic)", fontsize=8)
            what = f"{op} {'backward' if d == 'bwd' else 'forward'}"
            if op != "selective_scan":
                what += f", {layout} map"
            ax.set_title(f"{what} ({dtype} in)", fontsize=10)
            ax.grid(axis="y", alpha=0.3)
            ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.005, 1.0), frameon=False)
        fig.suptitle(f"Kernel bandwidth per VMamba stage against the copy bandwidth, {gpu}", fontsize=11)
        fig.tight_layout(rect=(0, 0, 1, 0.985), h_pad=2.2)
        path = out / f"kernels_gbps_{dtype}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    return paths


def _history(rows, key_fields, value, agg_geomean=False):
    """{series key: [(timestamp, sha, value)]}: one point per series and git sha (latest timestamp;
    with agg_geomean the geometric mean over the rows of that sha)."""
    groups = defaultdict(lambda: defaultdict(list))
    for r in rows:
        v = to_float(r.get(value))
        if v != v or v <= 0:
            continue
        groups[tuple(r.get(f, "") for f in key_fields)][r.get("git_sha", "")].append((r.get("timestamp", ""), v))
    series = {}
    for k, by_sha in groups.items():
        pts = []
        for sha, vals in by_sha.items():
            ts = max(t for t, _ in vals)
            if agg_geomean:
                v = math.exp(sum(math.log(x) for _, x in vals) / len(vals))
            else:
                v = max(vals)[1]
            pts.append((ts, sha, v))
        series[k] = sorted(pts)
    return series


def plot_history(model_rows: list, kernel_rows: list, out: Path) -> list:
    plt = _plt()
    paths = []
    if model_rows:
        gpu = main_gpu(model_rows)
        rows = [r for r in model_rows if r["gpu"] == gpu]
        s = _history(rows, ("mode", "model", "impl"), "img_per_s")
        paths.append(_model_history_fig(plt, s, "images / s (log scale)",
                                        f"Whole-model throughput over git history, {gpu}", out / "history_models.png"))
        s = _history([r for r in rows if r["mode"].startswith("train")], ("mode", "model", "impl"), "peak_mem_mb")
        if s:
            paths.append(_model_history_fig(plt, s, "peak MB (max_memory_allocated)",
                                            f"Training peak memory over git history, {gpu}",
                                            out / "history_memory.png", log=False))
    if kernel_rows:
        gpu = main_gpu(kernel_rows)
        rows = [dict(r, layout=layout_of(r)) for r in kernel_rows if r["gpu"] == gpu]
        # one model's stages only: a mean over whatever shapes a commit happened to measure would jump
        # with the shape mix, not with the kernels
        counts = defaultdict(int)
        for r in rows:
            counts[r.get("model", "")] += 1
        model = "vmamba_t" if counts.get("vmamba_t") else max(counts, key=counts.get)
        s = _history([r for r in rows if r.get("model", "") == model], ("op", "direction", "layout", "impl", "dtype"),
                     "gbps", agg_geomean=True)
        paths.append(_kernel_history_fig(plt, s, f"Kernel bandwidth over git history, {gpu} (geometric mean over "
                                                 f"{_short_model(model)}'s stages measured at each commit)",
                                         out / "history_kernels.png"))
    return paths


def _sha_axis(series) -> list:
    shas = [(ts, sha) for pts in series.values() for ts, sha, _ in pts]
    return list(OrderedDict.fromkeys(sha for _, sha in sorted(shas)))


def _plain_log_axis(ax):
    """Log y axis with plain numbers (200, 500, 1000) instead of 2 x 10^2."""
    from matplotlib.ticker import FuncFormatter, LogLocator  # noqa: PLC0415

    ax.set_yscale("log")
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))


def _finish_history_axis(ax, order):
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([s[:8] for s in order], rotation=45, ha="right", fontsize=7)
    ax.set_xlim(-0.5, len(order) - 0.5)
    ax.grid(alpha=0.3)


def _model_history_fig(plt, series, ylabel, title, path, log=True):
    """One panel per mode; colour = impl, marker = model; one legend naming every (model, impl) line."""
    order = _sha_axis(series)
    modes = _order([k[0] for k in series], MODE_ORDER)
    models = _model_order(k[1] for k in series)
    marker = {m: MODEL_MARKERS[i % len(MODEL_MARKERS)] for i, m in enumerate(models)}
    ncol = min(2, len(modes))
    nrow = math.ceil(len(modes) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(7.2 * ncol + 3.2, 4.2 * nrow + 0.6), squeeze=False)
    for ax in axes.flat[len(modes):]:
        ax.set_visible(False)
    labels = {}  # (model, impl) -> a line drawn with that style
    for ax, mode in zip(axes.flat, modes):
        keys = sorted((k for k in series if k[0] == mode),
                      key=lambda k: (models.index(k[1]), list(LEGEND_ORDER).index(k[2]) if k[2] in LEGEND_ORDER else 99))
        for k in keys:
            pts = series[k]
            line, = ax.plot([order.index(sha) for _, sha, _ in pts], [v for _, _, v in pts], color=impl_color(k[2]),
                            marker=marker[k[1]], ms=5, lw=1.2, label=f"{_short_model(k[1])}, {k[2]}")
            labels.setdefault((k[1], k[2]), line)
        if log:
            _plain_log_axis(ax)
        else:
            ax.set_ylim(bottom=0)
        ax.set_title(mode.replace("_", " "), fontsize=10)
        ax.set_ylabel(ylabel, fontsize=8)
        _finish_history_axis(ax, order)
    keys = sorted(labels, key=lambda k: (models.index(k[0]), _impl_order(i for m, i in labels).index(k[1])))
    fig.legend(handles=[labels[k] for k in keys], loc="center right", fontsize=8, frameon=False,
               title="model, impl", title_fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1 - 2.4 / (7.2 * ncol + 3.2), 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _kernel_history_fig(plt, series, title, path):
    """One panel per op, direction and layout; colour = impl, line style = dtype; one legend naming
    every (impl, dtype) line."""
    from matplotlib.lines import Line2D  # noqa: PLC0415

    order = _sha_axis(series)
    panels = _order(list(OrderedDict.fromkeys(k[:3] for k in series)),
                    [(o, d, lay) for o in ("selective_scan", "cross_scan", "cross_merge") for d in ("fwd", "bwd")
                     for lay in ("channels-first", "channels-last")])
    ncol = 2
    nrow = math.ceil(len(panels) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(7.2 * ncol + 2.6, 3.6 * nrow + 0.6), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    used = {}
    for ax, (op, d, layout) in zip(axes.flat, panels):
        for k in sorted((k for k in series if k[:3] == (op, d, layout)),
                        key=lambda k: (_impl_order([k[3]])[0], k[4])):
            impl, dtype = k[3], k[4]
            pts = series[k]
            ax.plot([order.index(sha) for _, sha, _ in pts], [v for _, _, v in pts], color=impl_color(impl),
                    ls=DTYPE_STYLES.get(dtype, "-."), marker=DTYPE_MARKERS.get(dtype, "D"), ms=4, lw=1.2)
            used[(impl, dtype)] = True
        what = f"{op} {'backward' if d == 'bwd' else 'forward'}" + (f", {layout}" if op != "selective_scan" else "")
        ax.set_title(what, fontsize=10)
        ax.set_ylabel("GB/s", fontsize=8)
        _finish_history_axis(ax, order)
    handles = [Line2D([], [], color=impl_color(i), ls=DTYPE_STYLES.get(dt, "-."), marker=DTYPE_MARKERS.get(dt, "D"),
                      ms=4, label=f"{i}, {dt}")
               for i, dt in sorted(used, key=lambda k: (_impl_order([k[0]])[0], k[1]))]
    handles.sort(key=lambda h: (list(LEGEND_ORDER).index(h.get_label().split(",")[0])
                                if h.get_label().split(",")[0] in LEGEND_ORDER else 99, h.get_label()))
    fig.legend(handles=handles, loc="center right", fontsize=8, frameon=False, title="impl, dtype", title_fontsize=8,
               handlelength=3.5)
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1 - 2.4 / (7.2 * ncol + 2.6), 0.97))
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# ---- CLI -------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report",
                                description="Draw plots from reports/*.csv and regenerate the README results table.")
    p.add_argument("--reports-dir", default=None, help="folder with models.csv / kernels.csv (default reports/)")
    p.add_argument("--out-dir", default=None, help="where PNGs go (default: the reports folder)")
    p.add_argument("--readme", default=str(REPO / "README.md"), help="README to update between the markers")
    p.add_argument("--no-readme", action="store_true", help="do not touch the README")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--include-cpu", action="store_true", help="include rows measured on the CPU (gpu == cpu)")
    p.add_argument("--git-sha", default=None, metavar="PREFIX",
                   help="build the README's model tables from the rows of this one commit only (git_sha prefix); "
                        "the plots keep every commit")
    a = p.parse_args(argv)
    rep = reports_dir(a.reports_dir)
    out = Path(a.out_dir) if a.out_dir else rep
    out.mkdir(parents=True, exist_ok=True)
    model_rows = load(rep / "models.csv", a.include_cpu)
    kernel_rows = load(rep / "kernels.csv", a.include_cpu)
    print(f"{len(model_rows)} model rows, {len(kernel_rows)} kernel rows from {rep}"
          f"{'' if a.include_cpu else ' (cpu rows excluded)'}")
    written = []
    if not a.no_plots:
        plotted = main_view(model_rows)
        if plotted:
            written.append(plot_throughput(plotted, out))
        if kernel_rows:
            written += plot_kernels(kernel_rows, out)
        written += plot_history(plotted, kernel_rows, out)
    rc = 0
    table_rows = model_rows
    if a.git_sha:
        table_rows = [r for r in model_rows if r.get("git_sha", "").startswith(a.git_sha)]
        if not table_rows:
            print(f"no model rows of commit {a.git_sha!r} in {rep / 'models.csv'}: README left as it is",
                  file=sys.stderr)
            return 2
        print(f"README tables from the {len(table_rows)} model rows of commit {a.git_sha}")
    block = readme_block(table_rows, kernel_rows)
    if not a.no_readme:
        if not block:
            print("no rows to tabulate: README left as it is")
        elif not replace_between_markers(Path(a.readme), block):
            print(f"markers {START} ... {END} not found in {a.readme}: README not updated", file=sys.stderr)
            rc = 2
        else:
            print(f"updated results table in {a.readme}")
    for pth in written:
        print(f"wrote {pth}")
    if block:
        print()
        print(block)
    return rc


if __name__ == "__main__":
    sys.exit(main())
