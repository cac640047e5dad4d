"""bench.report: plots and the README table from CSV (synthetic rows in temp folders only)."""
from pathlib import Path

import pytest

from bench import report
from bench.results import GRAPH_PEAK_NOTE, KernelRow, ModelRow, append_rows

README = """# title

## Results

<!-- results:start -->
old text
<!-- results:end -->

tail stays
"""


def _rows(tmp_path):
    gpu = "NVIDIA H100 80GB HBM3"
    m = []
    for sha, ts, scale in (("aaa", "2026-01-01T00:00:00Z", 1.0), ("bbb", "2026-01-02T00:00:00Z", 1.1)):
        for model in ("vmamba_t", "swin_tiny_patch4_window7_224"):
            impl = "timm" if model.startswith("swin") else "cuda"
            for mode, tp in (("infer_amp", 3000.0), ("train_amp", 1000.0)):
                m.append(ModelRow(model=model, impl=impl, mode=mode, batch=128, img_size=224, img_per_s=tp * scale,
                                  peak_mem_mb=12000.0, gpu=gpu, git_sha=sha, timestamp=ts, method="official",
                                  warmup=50, iters=30))
    m.append(ModelRow(model="vmamba_t", impl="cpu_only_impl", mode="infer_amp", batch=2, img_size=32,
                      img_per_s=5.0, peak_mem_mb=float("nan"), gpu="cpu", git_sha="ccc",
                      timestamp="2026-01-03T00:00:00Z"))
    k = []
    for stage, L in ((0, 3136), (3, 49)):
        for impl in ("cuda", "mamba_ssm"):
            for d in ("fwd", "bwd"):
                k.append(KernelRow(op="selective_scan", impl=impl, direction=d, dtype="fp16",
                                   shape=f"B128 KD384 L{L} N1 K4", ms_p50=1.0 + stage, gbps=900.0 - stage * 100,
                                   gpu=gpu, git_sha="bbb", timestamp="2026-01-02T00:00:00Z", copy_gbps=3000.0,
                                   model="vmamba_t", stage=stage, out_dtype="fp32" if impl == "cuda" else "fp16",
                                   method="cuda_events_p50"))
    append_rows(tmp_path / "models.csv", m)
    append_rows(tmp_path / "kernels.csv", k)


def test_report_writes_plots_and_readme_table(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="matplotlib not installed: pip install matplotlib")
    _rows(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(README)
    rc = report.main(["--reports-dir", str(tmp_path), "--readme", str(readme)])
    assert rc == 0
    for name in ("throughput.png", "kernels_gbps_fp16.png", "history_models.png", "history_memory.png", "history_kernels.png"):
        p = tmp_path / name
        assert p.is_file() and p.read_bytes()[:4] == b"\x89PNG", name
    text = readme.read_text()
    assert text.startswith("# title\n\n## Results\n\n<!-- results:start -->\n")
    assert text.endswith("<!-- results:end -->\n\ntail stays\n")
    assert "old text" not in text
    body = text.split("<!-- results:start -->")[1].split("<!-- results:end -->")[0]
    assert "| vmamba_t | cuda | 3300 | 1100 | 12000 | 128 |" in body  # the newest sha's rows
    assert "swin_tiny_patch4_window7_224 | timm" in body
    assert "cpu_only_impl" not in body  # cpu rows excluded by default
    assert "mamba_ssm fwd" in body and "1.000 ms (900 GB/s)" in body and "3000 GB/s" in body


def test_cpu_rows_only_with_flag(tmp_path):
    _rows(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert report.main(["--reports-dir", str(tmp_path), "--readme", str(readme), "--no-plots", "--include-cpu"]) == 0
    assert "cpu_only_impl" in readme.read_text()


def test_missing_markers_leave_readme_alone(tmp_path):
    _rows(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    assert report.main(["--reports-dir", str(tmp_path), "--readme", str(readme), "--no-plots"]) == 2
    assert readme.read_text() == "# no markers\n"


def test_no_rows_no_change(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert report.main(["--reports-dir", str(tmp_path), "--readme", str(readme), "--no-plots"]) == 0
    assert readme.read_text() == README


def test_history_points_per_sha():
    rows = [{"model": "m", "impl": "i", "mode": "x", "img_per_s": str(v), "git_sha": s, "timestamp": t}
            for v, s, t in ((10, "a", "1"), (12, "a", "2"), (8, "b", "3"))]
    s = report._history(rows, ("model", "impl", "mode"), "img_per_s")
    assert s[("m", "i", "x")] == [("2", "a", 12.0), ("3", "b", 8.0)]


def test_cells_from_an_older_commit_are_marked():
    gpu = "NVIDIA H100 80GB HBM3"

    def row(impl, stage, sha, ts):
        return dict(op="selective_scan", impl=impl, direction="fwd", dtype="fp16", shape=f"S{stage}", ms_p50="1.0",
                    gbps="900", gpu=gpu, git_sha=sha, timestamp=ts, model="vmamba_t", stage=str(stage),
                    out_dtype="fp32", method="cuda_events_p50", copy_gbps="3000")

    rows = [row("cuda", 0, "old", "2026-01-01T00:00:00Z"), row("cuda", 1, "old", "2026-01-01T00:00:00Z"),
            row("cuda", 0, "new", "2026-01-02T00:00:00Z"), row("cupy", 1, "old", "2026-01-01T00:00:00Z")]
    table = report.kernels_table(rows)
    line0 = next(ln for ln in table.splitlines() if ln.startswith("| vmamba_t | 1 |"))  # stage index 0 = stage 1
    line1 = next(ln for ln in table.splitlines() if ln.startswith("| vmamba_t | 2 |"))
    assert report.STALE not in line0                      # cuda's newest commit
    cuda_cell, cupy_cell = line1.split(" | ")[3:5]
    assert cuda_cell.endswith(report.STALE.strip())       # cuda stage 1 only measured at the old commit
    assert not cupy_cell.endswith(report.STALE.strip())   # cupy's newest commit is "old"
    assert report.STALE_NOTE in table


def test_models_table_groups_each_model_then_baselines():
    gpu = "NVIDIA H100 80GB HBM3"

    def row(model, impl, ts):
        return dict(model=model, impl=impl, mode="infer_amp", batch="128", img_size="224", img_per_s="1000",
                    peak_mem_mb="1", gpu=gpu, git_sha="s", timestamp=ts, method="official", warmup="50", iters="30")

    rows = [row("vmamba_t", "triton", "1"), row("swin_tiny_patch4_window7_224", "timm", "2"),
            row("vmamba_b", "cupy", "3"), row("vmamba_t", "cuda", "4"), row("vmamba_t", "torch", "5")]
    lines = [ln for ln in report.models_table(rows).splitlines() if ln.startswith("| vmamba") or ln.startswith("| swin")]
    order = [tuple(c.strip() for c in ln.split("|")[1:3]) for ln in lines]
    assert order == [("vmamba_t", "cuda"), ("vmamba_t", "triton"), ("vmamba_t", "torch"), ("vmamba_b", "cupy"),
                     ("swin_tiny_patch4_window7_224", "timm")]


def test_kernels_table_keeps_each_models_stages_together():
    gpu = "NVIDIA H100 80GB HBM3"

    def row(model, stage, ts):
        return dict(op="selective_scan", impl="cuda", direction="fwd", dtype="fp16", shape=f"{model}{stage}",
                    ms_p50="1.0", gbps="900", gpu=gpu, git_sha="s", timestamp=ts, model=model, stage=str(stage),
                    out_dtype="fp32", method="cuda_events_p50", copy_gbps="3000")

    # vmamba_b's later stages were measured after the vanilla rows (two separate runs)
    rows = [row("vmamba_b", 0, "1"), row("vanilla_vmamba_tiny", 0, "2"), row("vanilla_vmamba_tiny", 1, "3"),
            row("vmamba_b", 1, "4"), row("vmamba_b", 10, "5")]
    lines = [ln for ln in report.kernels_table(rows).splitlines() if ln.startswith("| v")]
    order = [tuple(c.strip() for c in ln.split("|")[1:3]) for ln in lines]
    assert order == [("vmamba_b", "1"), ("vmamba_b", "2"), ("vmamba_b", "11"), ("vanilla_vmamba_tiny", "1"),
                     ("vanilla_vmamba_tiny", "2")]  # shown as the paper numbers stages: index + 1


# ---- plots: what a reader needs from them ---------------------------------------------------------
def _open_figures(monkeypatch):
    """Keep the figures the plot functions draw (they close them after saving) for inspection."""
    pytest.importorskip("matplotlib", reason="matplotlib not installed: pip install matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.close("all")
    monkeypatch.setattr(plt, "close", lambda *a, **k: None)
    return plt


def _legend_labels(fig, ax=None) -> list:
    legends = ([ax.get_legend()] if ax is not None else []) + list(fig.legends)
    return [t.get_text() for lg in legends if lg is not None for t in lg.get_texts()]


def _png_size(path):
    data = Path(path).read_bytes()
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _synthetic_models():
    gpu = "NVIDIA H100 80GB HBM3"
    rows = []
    for sha, ts in (("aaa", "2026-01-01T00:00:00Z"), ("bbb", "2026-01-02T00:00:00Z")):
        for model, impls in (("vmamba_b", ("cuda", "triton")), ("vmamba_t", ("cuda", "triton", "torch")),
                             ("swin_tiny_patch4_window7_224", ("timm",))):
            for impl in impls:
                for mode in ("infer_fp32", "infer_amp", "train_amp", "train_fp32"):
                    if impl == "torch" and mode != "infer_amp":
                        continue  # torch only in one panel, not the last (its legend entry went missing)
                    rows.append(dict(model=model, impl=impl, mode=mode, batch="128", img_size="224",
                                     img_per_s=str(1000 + len(model) * 10 + len(impl)), peak_mem_mb="9000", gpu=gpu,
                                     git_sha=sha, timestamp=ts, method="official", warmup="50", iters="30"))
    return rows


def test_throughput_plot_marks_bars_from_older_commits(tmp_path, monkeypatch):
    """A bar whose newest row is at an older commit than its impl's newest row (a model not re-measured) is hatched
    and its value marked †, and the title says so; with every bar current, nothing is marked."""
    plt = _open_figures(monkeypatch)
    rows = [r for r in _synthetic_models() if not (r["git_sha"] == "bbb" and r["model"] == "vmamba_b")]
    report.plot_throughput(rows, tmp_path)
    fig = plt.gcf()
    labels = [t.get_text() for ax in fig.axes for t in ax.texts]
    stale = [t for t in labels if t.endswith("†")]
    # vmamba_b's cuda and triton bars in each of the four panels
    assert len(stale) == 8, labels
    assert "earlier commit" in fig._suptitle.get_text()
    hatched = [p for ax in fig.axes for p in ax.patches if p.get_hatch()]
    assert len(hatched) == 8
    plt.close("all")
    report.plot_throughput(_synthetic_models(), tmp_path)
    fig = plt.gcf()
    assert not [t for ax in fig.axes for t in ax.texts if t.get_text().endswith("†")]
    assert "earlier commit" not in fig._suptitle.get_text()


def test_throughput_plot_is_readable_and_names_every_impl(tmp_path, monkeypatch):
    plt = _open_figures(monkeypatch)
    path = report.plot_throughput(_synthetic_models(), tmp_path)
    w, h = _png_size(path)
    assert w <= 1600 and w / h <= 2.5, (w, h)  # a page, not a 3312 x 540 strip
    fig = plt.gcf()
    assert sorted(_legend_labels(fig)) == ["cuda", "timm", "torch", "triton"]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        names = [t.get_text() for t in ax.get_yticklabels()]
        assert names == ["VMamba-T", "VMamba-B", "Swin-T"]  # our models in order, then baselines
        for bar in ax.patches:  # no rotated labels; every bar has one backend colour
            assert bar.get_facecolor()[:3] in {matplotlib_rgb(c) for c in report.IMPL_COLORS.values()}
        assert all(t.get_rotation() == 0 for t in ax.texts)


def matplotlib_rgb(color):
    from matplotlib.colors import to_rgb

    return tuple(to_rgb(color))


def test_kernel_plot_orders_stages_and_keeps_colours(tmp_path, monkeypatch):
    plt = _open_figures(monkeypatch)
    gpu = "NVIDIA H100 80GB HBM3"
    rows = []
    # measured out of order: stage 3 first, vmamba_b before vmamba_t, a channels-last cross row
    for model, stage, impl in (("vmamba_b", 0, "cupy"), ("vmamba_t", 3, "cuda"), ("vmamba_t", 0, "cuda"),
                               ("vmamba_t", 1, "mamba_ssm"), ("vmamba_t", 0, "mamba_ssm"), ("vmamba_b", 2, "cuda")):
        rows.append(dict(op="selective_scan", impl=impl, direction="fwd", dtype="fp16", shape=f"{model} {stage}",
                         ms_p50="1", gbps=str(1000 + stage), gpu=gpu, git_sha="s", timestamp=f"{stage}",
                         model=model, stage=str(stage), copy_gbps="3000"))
    rows.append(dict(op="cross_scan", impl="triton", direction="fwd", dtype="fp16", shape="B1 D96 H8 W8 channels_last",
                     ms_p50="1", gbps="2000", gpu=gpu, git_sha="s", timestamp="9", model="vmamba_t", stage="0",
                     copy_gbps="3000"))
    report.plot_kernels(rows, tmp_path)
    fig = plt.gcf()
    scan, cross = [ax for ax in fig.axes]
    assert [t.get_text() for t in scan.get_xticklabels()] == ["1", "2", "4", "1", "3"]  # T's stages, then B's
    assert [a.get_text() for a in scan.texts] == ["VMamba-T", "VMamba-B"]  # model names under their stages
    assert _legend_labels(fig, scan) == ["cuda", "cupy", "mamba_ssm", "copy bandwidth 3000 GB/s"]
    assert "channels-last" in cross.get_title() and _legend_labels(fig, cross)[0] == "triton"
    colours = {matplotlib_rgb(report.IMPL_COLORS[i]) for i in ("cuda", "cupy", "mamba_ssm")}
    assert {b.get_facecolor()[:3] for b in scan.patches} == colours


def test_history_plots_name_every_series(tmp_path, monkeypatch):
    plt = _open_figures(monkeypatch)
    rows = _synthetic_models()
    report.plot_history(rows, [], tmp_path)
    figs = [plt.figure(n) for n in plt.get_fignums()]
    titles = {f._suptitle.get_text().split(" over")[0]: f for f in figs}
    thr = titles["Whole-model throughput"]
    series = {(r["model"], r["impl"]) for r in rows}
    assert len(_legend_labels(thr)) == len(series)
    assert "VMamba-T, torch" in _legend_labels(thr) and "Swin-T, timm" in _legend_labels(thr)
    for ax in thr.axes:  # each line drawn in its backend's colour
        for line in ax.get_lines():
            impl = line.get_label().split(", ")[1]
            assert matplotlib_rgb(line.get_color()) == matplotlib_rgb(report.IMPL_COLORS[impl])
    assert "Training peak memory" in titles


def test_impl_colours_are_fixed_and_distinct():
    known = ["cuda", "triton", "cupy", "torch", "torch_sequential", "mamba_ssm", "timm"]
    assert len({report.impl_color(i) for i in known}) == len(known)
    assert report.impl_color("new_backend") == report.impl_color("new_backend")
    assert report.stage_label("0") == "1" and report.stage_label(3) == "4"


def test_variants_of_a_backend_get_distinct_shades_of_its_colour():
    labels = ["cuda:cl", "cuda:cf", "cuda:unfused:cl", "cuda:unfused:cf", "cuda:core_off:cl", "cuda:core_cuda:cl",
              "cuda-unfused"]
    colours = [report.impl_color(x) for x in labels]
    assert len(set(colours)) == len(labels), colours  # hashing once gave cuda:core_off:cl triton:cf's colour
    assert report.impl_color("cuda:cf") == colours[1]  # stable for the run
    r, g, b = (int(report.IMPL_COLORS["cuda"][i:i + 2], 16) for i in (1, 3, 5))
    for c in colours:  # a shade of cuda's blue: the channels keep their order
        cr, cg, cb = (int(c[i:i + 2], 16) for i in (1, 3, 5))
        assert cb >= cg >= cr, c
    assert not set(colours) & {report.impl_color(x) for x in ("triton:cf", "triton:cl", "triton")}


def test_ddp_rows_get_their_own_table_not_the_one_gpu_views():
    base = dict(model="vmamba_t", mode="train_amp", batch="128", requested_batch="128", img_size="224",
                peak_mem_mb="9000", gpu="NVIDIA H200", git_sha="abc", method="official", warmup="5", iters="5")
    one = dict(base, impl="cuda", img_per_s="1600", timestamp="2026-12-03T00:00:00Z", gpus="1")
    eight = dict(base, impl="cuda:ddp8", img_per_s="12000", img_per_s_per_gpu="1500", scaling_efficiency="0.9375",
                 timestamp="2026-12-03T00:01:00Z", gpus="8")
    old = dict(one, gpus="")  # rows from before the column: one GPU
    block = report.readme_block([one, eight, old], [])
    models_part = block.split("\n\n")[0]  # the throughput table comes first
    assert "| vmamba_t | cuda |" in models_part and "cuda:ddp8" not in models_part
    assert "| vmamba_t | cuda:ddp8 | train amp | 8 | 128 | 12000 | 1500 | 0.94 |" in block
    assert report.one_gpu([one, eight, old]) == [one, old]
    assert report.scaling_table([one, old]) == ""


def test_models_table_hides_graphed_peaks_that_miss_the_graph_pool():
    """A CUDA-graph row measured before bench.tp counted the capture shows no peak (its number was only what the
    replays allocated); one whose note says the capture counts shows its peak."""
    gpu = "NVIDIA H200"

    def row(impl, peak, note=""):
        return dict(model="vmamba_t", impl=impl, mode="train_amp", batch="128", img_size="224", img_per_s="1000",
                    peak_mem_mb=peak, gpu=gpu, git_sha="s", timestamp="1", method="official", warmup="50",
                    iters="30", cuda_graphs="true" if impl.endswith("graphs") else "false", note=note)

    table = report.models_table([row("cuda:cl", "12000"), row("cuda:cl:graphs", "512"),
                                 row("cuda:graphs", "13000", GRAPH_PEAK_NOTE)])
    cells = {ln.split(" | ")[1]: ln.split(" | ")[3] for ln in table.splitlines() if ln.startswith("| vmamba_t")}
    assert cells == {"cuda:cl": "12000", "cuda:cl:graphs": "– ‡", "cuda:graphs": "13000"}
    assert report.GRAPH_PEAK_FOOT in table
    assert report.GRAPH_PEAK_FOOT not in report.models_table([row("cuda:cl", "12000")])


def test_compiled_and_other_size_rows_do_not_take_the_eager_224_cells():
    """A torch.compile'd row is its own impl (':compiled'); rows at another image size go to their own table
    (before, a compiled row and a 1024x1024 row replaced VMamba-T's eager 224 cells in the README)."""
    base = dict(model="vmamba_t", impl="cuda:cl", batch="128", requested_batch="128", img_size="224",
                peak_mem_mb="12000", gpu="NVIDIA H200", git_sha="abc", method="official", warmup="5", iters="5",
                compile="False")
    eager = [dict(base, mode=m, img_per_s=v, timestamp="2026-12-03T00:00:00Z")
             for m, v in (("infer_amp", "6000"), ("train_amp", "2500"))]
    compiled = [dict(r, img_per_s="4700", compile="True", timestamp="2026-12-03T00:01:00Z") for r in eager]
    big = [dict(r, img_size="1024", batch="32", requested_batch="32", img_per_s=v, timestamp="2026-12-03T00:02:00Z")
           for r, v in zip(eager, ("469", "167"))]
    block = report.readme_block(eager + compiled + big, [])
    models_part = block.split("\n\n")[0]
    assert "| vmamba_t | cuda:cl | 6000 | 2500 | 12000 | 128 |" in models_part
    assert "| vmamba_t | cuda:cl:compiled | 4700 | 4700 |" in models_part
    assert "469" not in models_part and "1024" not in models_part
    assert "| vmamba_t | cuda:cl | 1024x1024 | 32 | 469 | 167 | 12000 |" in block
    assert report.size_table(eager + compiled) == ""
    assert [r["impl"] for r in report.main_view(eager + compiled + big)] == ["cuda:cl"] * 2 + ["cuda:cl:compiled"] * 2


def test_latency_line_comes_from_one_sweep():
    """The per-batch line and its b32/b128 ratio come from one bench.tp run (one timestamp): a later batch-128-only
    run does not replace the sweep's batch-128 cell."""
    base = dict(model="vmamba_t", impl="cuda:cl", mode="infer_amp", img_size="224", peak_mem_mb="1", gpu="NVIDIA H200",
                git_sha="abc", method="official", warmup="5", iters="5")
    sweep = [dict(base, batch=str(b), requested_batch=str(b), ms_per_iter=str(ms), img_per_s=str(1000 * b / ms),
                  timestamp="2026-12-03T16:43:09Z") for b, ms in ((1, 13.0), (32, 9.6), (128, 15.2))]
    later = dict(base, batch="128", requested_batch="128", ms_per_iter="21.6", img_per_s="5926", git_sha="def",
                 timestamp="2026-12-03T19:08:17Z")
    table = report.latency_table(sweep + [later])
    line = [ln for ln in table.splitlines() if ln.startswith("| vmamba_t")]
    assert line == ["| vmamba_t | cuda:cl | infer amp | 13.00 | 13.000 | 0.300 | 0.119 | 2.53x | 2026-12-03 16:43 |"]
    assert "def" not in table.split("git ")[1].split(",")[0]


def test_git_sha_builds_the_tables_from_one_commit(tmp_path):
    """--git-sha PREFIX: the README's model table holds only that commit's rows (the older commit's throughput, not
    the newest), and an unknown commit leaves the README alone with an error."""
    _rows(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(README)
    assert report.main(["--reports-dir", str(tmp_path), "--readme", str(readme), "--no-plots", "--git-sha", "aa"]) == 0
    text = readme.read_text()
    assert "| vmamba_t | cuda | 3000 | 1000 |" in text and "3300" not in text and "bbb" not in text.split("Kernel")[0]
    readme.write_text(README)
    assert report.main(["--reports-dir", str(tmp_path), "--readme", str(readme), "--no-plots", "--git-sha", "zzz"]) == 2
    assert readme.read_text() == README
