"""Plots and the README results table, from reports/*.csv.

    python -m bench.report [--reports-dir reports] [--readme README.md] [--include-cpu]

Writes into the reports folder:
- throughput.png: img/s per model and impl (timm baselines included), one panel per mode, with
  peak memory of the training runs;
- kernels_gbps_<dtype>.png: achieved GB/s per VMamba stage and impl for each op/direction, against
  the measured copy-bandwidth roofline;
- history_models.png / history_memory.png / history_kernels.png: throughput, training peak memory
  and kernel GB/s over the git history (ordered by
  timestamp, labelled by git sha) to show regressions;
and replaces the text between `<!-- results:start -->` and `<!-- results:end -->` in the README with
tables built from the latest rows (per model/impl/mode and per kernel case) of one GPU type.
Rows with gpu == "cpu" are left out unless --include-cpu.
"""
from __future__ import annotations

import argparse
import math
import sys
from collections import OrderedDict, defaultdict
from pathlib import Path

from bench.results import read_csv, reports_dir, to_float

START, END = "<!-- results:start -->", "<!-- results:end -->"
MODE_ORDER = ["infer_fp32", "infer_amp", "train_amp", "train_fp32"]
IMPL_ORDER = ["cuda", "triton", "cupy", "torch", "torch_sequential"]


def _pair_key(pair, first_seen):
    """Table order: our models (by first appearance) with impls in IMPL_ORDER, then the baselines."""
    model, impl = pair
    baseline = impl == "timm"
    rank = IMPL_ORDER.index(impl) if impl in IMPL_ORDER else len(IMPL_ORDER)
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


def models_table(rows: list) -> str:
    gpu = main_gpu(rows)
    rows = [r for r in rows if r["gpu"] == gpu]
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
    any_stale = False
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
            cells.append(_num(r["peak_mem_mb"]) if r else "–")
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
            + (f" {STALE_NOTE}" if any_stale else ""))
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
        cells = [model, stage, shape]
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


def readme_block(model_rows: list, kernel_rows: list) -> str:
    parts = []
    if model_rows:
        parts.append(models_table(model_rows))
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
def _plt():
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    return plt


def plot_throughput(rows: list, out: Path):
    plt = _plt()
    gpu = main_gpu(rows)
    rows = [r for r in rows if r["gpu"] == gpu]
    lat = latest(rows, ("model", "impl", "mode"))
    modes = _order([k[2] for k in lat], MODE_ORDER)
    models = list(OrderedDict.fromkeys(k[0] for k in lat))
    impls = list(OrderedDict.fromkeys(k[1] for k in lat))
    fig, axes = plt.subplots(1, len(modes), figsize=(max(6, 1.2 * len(models)) * len(modes) / 1.5 + 2, 4.5),
                             squeeze=False)
    width = 0.8 / max(len(impls), 1)
    for ax, mode in zip(axes[0], modes):
        for j, impl in enumerate(impls):
            xs, ys = [], []
            for i, m in enumerate(models):
                r = lat.get((m, impl, mode))
                if r:
                    xs.append(i + (j - (len(impls) - 1) / 2) * width)
                    ys.append(to_float(r["img_per_s"]))
            if xs:
                bars = ax.bar(xs, ys, width, label=impl)
                for b, y in zip(bars, ys):
                    ax.annotate(f"{y:.0f}", (b.get_x() + b.get_width() / 2, y), ha="center", va="bottom",
                                fontsize=6, rotation=90)
        ax.set_xticks(range(len(models)))
        ax.set_xticklabels([_short_model(m) for m in models], rotation=30, ha="right", fontsize=8)
        ax.set_title(mode.replace("_", " "))
        ax.set_ylabel("images / s")
        ax.grid(axis="y", alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"Whole-model throughput, {gpu} (latest rows per model/impl/mode)", fontsize=10)
    fig.tight_layout()
    path = out / "throughput.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _short_model(m: str) -> str:
    return (m.replace("_patch4_window7_224", "").replace("vmamba_", "VMamba-").replace("swin_", "Swin-")
            .replace("convnext_", "ConvNeXt-"))


def plot_kernels(rows: list, out: Path) -> list:
    plt = _plt()
    gpu = main_gpu(rows)
    rows = [r for r in rows if r["gpu"] == gpu]
    paths = []
    for dtype in _order([r["dtype"] for r in rows], ["fp16", "bf16", "fp32"]):
        sub = [r for r in rows if r["dtype"] == dtype]
        lat = latest(sub, ("op", "direction", "model", "stage", "impl"))
        panels = list(OrderedDict.fromkeys((k[0], k[1]) for k in lat))
        fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.2 * len(panels)), squeeze=False)
        for ax, (op, d) in zip(axes[:, 0], panels):
            cases = list(OrderedDict.fromkeys((k[2], k[3]) for k in lat if k[0] == op and k[1] == d))
            impls = list(OrderedDict.fromkeys(k[4] for k in lat if k[0] == op and k[1] == d))
            width = 0.8 / max(len(impls), 1)
            for j, impl in enumerate(impls):
                xs, ys = [], []
                for i, (m, s) in enumerate(cases):
                    r = lat.get((op, d, m, s, impl))
                    if r:
                        xs.append(i + (j - (len(impls) - 1) / 2) * width)
                        ys.append(to_float(r["gbps"]))
                ax.bar(xs, ys, width, label=impl)
            copies = [to_float(r.get("copy_gbps")) for r in sub if r["op"] == op and r["direction"] == d]
            copies = [c for c in copies if c == c]
            if copies:
                c = max(copies)
                ax.axhline(c, color="k", ls="--", lw=1)
                ax.text(len(cases) - 0.5, c, f" copy {c:.0f} GB/s", va="bottom", ha="right", fontsize=7)
            ax.set_xticks(range(len(cases)))
            ax.set_xticklabels([f"{_short_model(m)} s{s}" for m, s in cases], rotation=30, ha="right", fontsize=7)
            ax.set_ylabel("GB/s (min traffic)")
            ax.set_title(f"{op} {d} ({dtype})", fontsize=9)
            ax.grid(axis="y", alpha=0.3)
            ax.legend(fontsize=7, ncol=min(len(impls), 6))
        fig.suptitle(f"Kernel bandwidth per VMamba stage vs copy roofline, {gpu}", fontsize=10)
        fig.tight_layout()
        path = out / f"kernels_gbps_{dtype}.png"
        fig.savefig(path, dpi=110)
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
        s = _history([r for r in model_rows if r["gpu"] == gpu], ("model", "impl", "mode"), "img_per_s")
        paths.append(_history_fig(plt, s, "images / s", f"Whole-model throughput over git history, {gpu}",
                                  out / "history_models.png"))
        s = _history([r for r in model_rows if r["gpu"] == gpu and r["mode"].startswith("train")],
                     ("model", "impl", "mode"), "peak_mem_mb")
        if s:
            paths.append(_history_fig(plt, s, "peak MB (max_memory_allocated)",
                                      f"Training peak memory over git history, {gpu}", out / "history_memory.png"))
    if kernel_rows:
        gpu = main_gpu(kernel_rows)
        s = _history([r for r in kernel_rows if r["gpu"] == gpu], ("op", "direction", "dtype", "impl"), "gbps",
                     agg_geomean=True)
        paths.append(_history_fig(plt, s, "GB/s (geomean over shapes)", f"Kernel bandwidth over git history, {gpu}",
                                  out / "history_kernels.png"))
    return paths


def _history_fig(plt, series, ylabel, title, path):
    shas = []
    for pts in series.values():
        for ts, sha, _ in pts:
            shas.append((ts, sha))
    order = list(OrderedDict.fromkeys(sha for _, sha in sorted(shas)))
    fig, ax = plt.subplots(figsize=(10, 5))
    for k, pts in series.items():
        xs = [order.index(sha) for _, sha, _ in pts]
        ax.plot(xs, [v for _, _, v in pts], marker="o", ms=3, lw=1, label=" ".join(k))
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([s[:12] for s in order], rotation=30, ha="right", fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    if len(series) <= 40:
        ax.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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
        if model_rows:
            written.append(plot_throughput(model_rows, out))
        if kernel_rows:
            written += plot_kernels(kernel_rows, out)
        written += plot_history(model_rows, kernel_rows, out)
    rc = 0
    block = readme_block(model_rows, kernel_rows)
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
