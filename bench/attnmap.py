"""The selective scan's implicit attention in one VMamba block, per scan route and merged, as a figure.

    python -m bench.attnmap --model vmamba_t --stage 3 --block 1 --query 16,16
    python -m bench.attnmap --model vmamba_t --pretrained vssm1_tiny_0230s_ckpt_epoch_264.pth --allow-pickle \
        --image cat.jpg

Stages are numbered 1-4 as in the paper (stage S is the model's layers.{S-1}); --block J is the
block's index within its stage from 0, as in the module name layers.{S-1}.blocks.J. The model runs
once on the image (or a random input); `models.record_scans` keeps what that block handed its
selective scan. For fixed delta, B, C the scan is linear in its input u:
y = W u + D u per channel, with W = reference.selective_scan_attention(...) (lower-triangular in
route order). Route k of SS2D reads the feature map in its own order (0: rows, 1: columns, 2: rows
reversed, 3: columns reversed; reference.route_index), so the row of W at the query's position in
route k, put back on the pixels it reads, is that route's attention of the query pixel over the map.
The block's cross merge sums the four routes per channel, so the merged map is their per-channel sum:
exactly the linear map from the scan's input map to its merged output (before out_norm; the D skip,
a self term, is left out), as the official analysis' "all" mode.

Shown: mean over channels of |weight|, each panel divided by its own maximum, log colour scale over
four decades (grey: exactly zero, i.e. pixels after the query in that route's order). Second row,
when the map has at most 1024 pixels: the full channel-mean |W| matrices (routes in route order, the
merge in pixel order). The run checks W against the scan kernel's own output at the query
(printed and on the figure). Images are normalised with ImageNet mean/std (the official attention
script used mean 0.5 / std 0.25). The defaults are the official script's: stage 3 (layers.2), block 1,
a 512 x 512 input, so a 32 x 32 map.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch

from bench import _images

MATRIX_MAX_L = 1024  # full L x L panels up to a 32 x 32 map
ROUTE_NAMES = ("route 0: rows, left to right", "route 1: columns, top to bottom",
               "route 2: rows, right to left", "route 3: columns, bottom to top")
FLOOR = 1e-4  # lowest value on the log colour scale, relative to each panel's max


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m bench.attnmap",
        description="Attention of a query pixel in one VMamba block's selective scan, per route and merged (PNG).")
    p.add_argument("--model", required=True, help="model name from models.list_models()")
    p.add_argument("--impl", default=None, help="kernel impl the model runs with (cuda, triton, cupy, torch, ...)")
    p.add_argument("--pretrained", default=None, help="checkpoint path (default: seeded random weights)")
    p.add_argument("--image", default=None, help="image file (default: a random input, said on the figure)")
    p.add_argument("--allow-pickle", action="store_true",
                   help="let --pretrained unpickle (the official checkpoints pickle their config; trusted files only)")
    p.add_argument("--img-size", type=int, default=512, help="input side (default 512: stage 3's map is 32 x 32)")
    p.add_argument("--stage", type=int, default=3,
                   help="stage 1-4 as in the paper, i.e. the model's layers.{S-1} (default 3)")
    p.add_argument("--block", type=int, default=1,
                   help="block index within the stage from 0, as in layers.{S-1}.blocks.J (default 1)")
    p.add_argument("--query", default=None,
                   help="Y,X: row, column of the query on the block's map (integers), or fractions of its "
                        "height, width (e.g. 0.3,0.7); default the centre")
    p.add_argument("--out", default="attnmap.png", help="output PNG (default attnmap.png)")
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default cuda when available)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights and input")
    p.add_argument("--model-factory", default=None,
                   help="module:function used instead of models.create_model (e.g. bench._tiny:create_small_vmamba)")
    a = p.parse_args(argv)
    if a.img_size < 8:
        p.error(f"--img-size must be at least 8, got {a.img_size}")
    return a


def parse_query(text: Optional[str], H: int, W: int) -> Tuple[int, int]:
    """'Y,X' (integers on the H x W map, or fractions when both contain a '.') -> (row, col); None = centre."""
    if text is None:
        return H // 2, W // 2
    parts = [s.strip() for s in text.split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        if all("." in s for s in parts):
            fy, fx = float(parts[0]), float(parts[1])
            if not (0 <= fy <= 1 and 0 <= fx <= 1):
                raise ValueError
            y, x = min(H - 1, int(fy * H)), min(W - 1, int(fx * W))
        else:
            y, x = int(parts[0]), int(parts[1])
    except ValueError:
        raise ValueError(f"--query must be 'Y,X' (integers, or fractions in [0, 1]); got {text!r}") from None
    if not (0 <= y < H and 0 <= x < W):
        raise ValueError(f"--query {text!r} is outside the block's {H} x {W} map (rows 0..{H - 1}, cols 0..{W - 1})")
    return y, x


# ---- the maps ------------------------------------------------------------------------------------
def _routes(rec):
    from reference import route_index  # noqa: PLC0415

    idx = route_index(rec.mode, rec.H, rec.W, device=rec.u.device)  # (4, L): pixel read at each position
    inv = torch.empty_like(idx)
    inv.scatter_(1, idx, torch.arange(idx.shape[1], device=idx.device).expand_as(idx))
    return idx, inv


def query_maps(rec, query: Tuple[int, int]) -> dict:
    """Attention of pixel `query` over the map, per route and merged, from one ScanRecord (batch item 0).

    Returns routes (4, H, W) and merged (H, W): mean over channels of |weight|, in pixel order; and
    check: max |W u + D u - y_kernel| / max |y_kernel| over the query's outputs in all routes."""
    from reference import selective_scan_attention  # noqa: PLC0415

    H, W = rec.H, rec.W
    K = 4
    D = rec.u.shape[1] // K
    idx, inv = _routes(rec)
    p = query[0] * W + query[1]
    routes, merged, err = [], None, 0.0
    ref = rec.y[0].double().abs().max().clamp_min(1e-30)
    for k in range(K):
        t = int(inv[k, p])
        w = selective_scan_attention(rec.delta[:1], rec.A, rec.B[:1], rec.C[:1], rec.delta_bias, rec.delta_softplus,
                                     channels=slice(k * D, (k + 1) * D), rows=[t], out_dtype=torch.float64)[0, :, 0]
        u = rec.u[0, k * D:(k + 1) * D].double()  # (D, L) route order
        y = (w * u).sum(-1) + (0 if rec.D is None else rec.D[k * D:(k + 1) * D].double() * u[:, t])
        err = max(err, float((y - rec.y[0, k * D:(k + 1) * D, t].double()).abs().max() / ref))
        pix = torch.zeros_like(w)
        pix[:, idx[k]] = w  # route position s reads pixel idx[k, s]
        routes.append(pix.abs().mean(0).view(H, W))
        merged = pix if merged is None else merged + pix
    return dict(routes=torch.stack(routes).cpu().numpy(), merged=merged.abs().mean(0).view(H, W).cpu().numpy(),
                check=err)


def attention_matrices(rec, block_elems: int = 1 << 22) -> dict:
    """Full channel-mean |W| (batch item 0): routes (4, L, L) in route order, merged (L, L) in pixel order."""
    from reference import selective_scan_attention  # noqa: PLC0415

    L = rec.H * rec.W
    K = 4
    D = rec.u.shape[1] // K
    _, inv = _routes(rec)
    per = max(1, block_elems // (L * L))
    routes = torch.zeros(K, L, L, dtype=torch.float64, device=rec.u.device)
    merged = torch.zeros(L, L, dtype=torch.float64, device=rec.u.device)
    for c0 in range(0, D, per):
        c1 = min(D, c0 + per)
        pix_sum = None
        for k in range(K):
            w = selective_scan_attention(rec.delta[:1], rec.A, rec.B[:1], rec.C[:1], rec.delta_bias,
                                         rec.delta_softplus, channels=slice(k * D + c0, k * D + c1),
                                         out_dtype=torch.float64)[0]  # (c, L, L) route order
            routes[k] += w.abs().sum(0)
            pix = w[:, inv[k]][:, :, inv[k]]  # [p, q] = W[position of p, position of q]
            pix_sum = pix if pix_sum is None else pix_sum + pix
        merged += pix_sum.abs().sum(0)
    return dict(routes=(routes / D).cpu().numpy(), merged=(merged / D).cpu().numpy())


# ---- figure --------------------------------------------------------------------------------------
def _rel(m: np.ndarray) -> np.ndarray:
    top = float(m.max())
    return m / top if top > 0 else m


def plot(out, image: np.ndarray, query, maps: dict, mats: Optional[dict], title: str, footer: str):
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.colors import LogNorm  # noqa: PLC0415
    from matplotlib.patches import Rectangle  # noqa: PLC0415

    rows = 2 if mats is not None else 1
    fig = plt.figure(figsize=(20, 3.4 * rows + 1.5))
    grid = fig.add_gridspec(rows, 7, width_ratios=[1, 1, 1, 1, 1, 1, 0.06], left=0.03, right=0.95,
                            top=0.82 if rows == 1 else 0.88, bottom=0.15 if rows == 1 else 0.09, wspace=0.3,
                            hspace=0.3)
    cmap = plt.get_cmap("magma").with_extremes(bad="#d9d9d9")  # grey: exact zeros (masked for the log scale)
    norm = LogNorm(vmin=FLOOR, vmax=1.0, clip=True)
    H, W = maps["merged"].shape
    qy, qx = query

    ax = fig.add_subplot(grid[0, 0])
    ax.imshow(image)
    sy, sx = image.shape[0] / H, image.shape[1] / W
    ax.add_patch(Rectangle((qx * sx - 0.5, qy * sy - 0.5), sx, sy, fill=False, edgecolor="cyan", linewidth=2))
    ax.set_title(f"input {image.shape[0]} x {image.shape[1]}\nquery (cyan) = map pixel ({qy}, {qx})", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])

    panels = [(maps["routes"][k], ROUTE_NAMES[k]) for k in range(4)] + [(maps["merged"], "merged (sum of routes)")]
    im = None
    for j, (m, name) in enumerate(panels, start=1):
        ax = fig.add_subplot(grid[0, j])
        im = ax.imshow(np.ma.masked_equal(_rel(m), 0.0), cmap=cmap, norm=norm, interpolation="nearest")
        ax.plot([qx], [qy], marker="s", markersize=6, markerfacecolor="none", markeredgecolor="cyan")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(f"map column (0..{W - 1})", fontsize=9)
        if j == 1:
            ax.set_ylabel(f"map row (0..{H - 1})", fontsize=9)
    fig.colorbar(im, cax=fig.add_subplot(grid[0, 6])).set_label("channel-mean |weight| / max", fontsize=9)

    if mats is not None:
        ax = fig.add_subplot(grid[1, 0])
        ax.axis("off")
        ax.text(0.0, 0.5, "full attention matrices,\nchannel-mean |W|:\nrow = output position,\n"
                "column = input position;\nroutes in scan order\n(lower-triangular),\nthe merge in pixel order\n"
                "(row-major pixel numbers)", fontsize=10, va="center")
        mpanels = [(mats["routes"][k], f"route {k}, scan order") for k in range(4)] + \
                  [(mats["merged"], "merged, pixel order")]
        for j, (m, name) in enumerate(mpanels, start=1):
            ax = fig.add_subplot(grid[1, j])
            im = ax.imshow(np.ma.masked_equal(_rel(m), 0.0), cmap=cmap, norm=norm, interpolation="nearest")
            ax.set_title(name, fontsize=10)
            ax.set_xlabel("input position", fontsize=9)
            if j == 1:
                ax.set_ylabel("output position", fontsize=9)
        fig.colorbar(im, cax=fig.add_subplot(grid[1, 6])).set_label("channel-mean |W| / max", fontsize=9)

    fig.suptitle(title, fontsize=12)
    fig.text(0.5, 0.015, footer, ha="center", fontsize=9)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=100)
    plt.close(fig)


def _factory(spec):
    import importlib  # noqa: PLC0415

    if spec:
        mod, _, fn = spec.partition(":")
        return getattr(importlib.import_module(mod), fn or "create_model")
    import models  # noqa: PLC0415

    return models.create_model


def main(argv=None) -> int:
    a = parse_args(argv)
    t0 = time.perf_counter()
    import models  # noqa: PLC0415

    device = torch.device(a.device) if a.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(a.seed)
    try:
        extra = dict(allow_pickle=True) if a.allow_pickle else {}  # asked for only: older registries lack it
        model = _factory(a.model_factory)(a.model, impl=None if a.impl in (None, "auto") else a.impl,
                                          pretrained=a.pretrained or None, **extra)
        depths = [len(s.blocks) for s in model.layers]
        if not 1 <= a.stage <= len(depths):
            raise ValueError(f"--stage must be in 1..{len(depths)} (numbered as in the paper) for {a.model}, "
                             f"got {a.stage}")
        if not 0 <= a.block < depths[a.stage - 1]:
            raise ValueError(f"--block must be in 0..{depths[a.stage - 1] - 1} for stage {a.stage} of {a.model} "
                             f"(indices from 0), got {a.block}")
        x = _images.load_image(a.image, a.img_size) if a.image else \
            _images.random_image(a.img_size, torch.Generator().manual_seed(a.seed))
    except (ValueError, FileNotFoundError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model = model.to(device).eval()
    layer = f"layers.{a.stage - 1}.blocks.{a.block}"
    with models.record_scans(model, [layer]) as recs, torch.no_grad():
        model(x.to(device))
    rec = recs[0]
    try:
        query = parse_query(a.query, rec.H, rec.W)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    maps = query_maps(rec, query)
    L = rec.H * rec.W
    mats = attention_matrices(rec) if L <= MATRIX_MAX_L else None
    source = f"image {Path(a.image).name}" if a.image else "random input (standard normal)"
    impl = a.impl or "auto"
    title = (f"{a.model}  stage {a.stage} block {a.block} ({layer}):  selective-scan attention of one query pixel ({rec.H} x {rec.W} map, "
             f"d_state {rec.A.shape[1]})\n{_images.weights_label(a.pretrained)}, {source}, impl {impl}")
    footer = (f"mean over the {rec.u.shape[1] // 4} channels of |W| (y = W u + D u, D skip not shown); "
              f"log scale, grey = 0 (after the query in scan order); W reproduces the scan kernel's output at the "
              f"query to {maps['check']:.1e} (relative)"
              + ("" if mats is not None else f"; full matrices shown only up to {MATRIX_MAX_L} pixels"))
    plot(a.out, _images.to_display(x), query, maps, mats, title, footer)
    print(f"{layer}: map {rec.H} x {rec.W}, query {query}, {rec.u.shape[1]} scan channels, d_state {rec.A.shape[1]}")
    print(f"W u + D u vs the scan kernel's output at the query: {maps['check']:.2e} (relative)")
    print(f"figure -> {a.out}; {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
