"""Result schemas (dataclasses: field order = CSV column order) and crash-safe CSV appends.

Appending rewrites the whole file: under an exclusive lock (fcntl.flock on the CSV's folder), the old rows
plus the new ones are written to a temporary file in the same folder, flushed, fsync'ed, and moved
over the CSV with `os.replace` (atomic on POSIX). A run killed at any point leaves either the old
file or the new one, never a half-written one. Files with an older column set are migrated on the
next append (missing columns empty, unknown columns kept at the end).
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import os
import tempfile
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Iterable, Optional

try:
    import fcntl
except ImportError:  # pragma: no cover (non-POSIX)
    fcntl = None

# the note of a CUDA-graph row whose peak memory counts the capture (the graph's memory pool included); graphed
# rows without it reset the peak counter after the capture, so their peak is only what the replays allocated
GRAPH_PEAK_NOTE = "peak counts the capture and the graph pool"

REPO = Path(__file__).resolve().parent.parent
DEFAULT_REPORTS = REPO / "reports"

# test hook: called with the temp path after it is fully written and before os.replace
_BEFORE_REPLACE = None


@dataclass
class KernelRow:
    """One timed kernel configuration (reports/kernels.csv)."""

    op: str                 # selective_scan | cross_scan | cross_merge | copy
    impl: str               # cuda | triton | cupy | torch | mamba_ssm | ...
    direction: str          # fwd | bwd
    dtype: str              # input dtype: fp32 | fp16 | bf16
    shape: str              # e.g. "B128 KD384 L3136 N1 K4"
    ms_p50: float
    gbps: float             # minimum traffic / ms_p50 (each input read once, each output written once)
    gpu: str
    git_sha: str
    timestamp: str
    ms_p20: float = float("nan")
    ms_p80: float = float("nan")
    copy_gbps: float = float("nan")   # measured device-to-device copy bandwidth (read + write)
    pct_of_copy: float = float("nan")
    model: str = ""
    stage: int = -1
    out_dtype: str = ""
    batch: int = 0
    bytes: int = 0
    reps: int = 0
    method: str = ""
    note: str = ""
    env_json: str = ""
    wall_ms: float = float("nan")      # host-inclusive: back-to-back calls of the same op, wall clock per call
    api_wall_ms: float = float("nan")  # the same through the public function (fwd: no grad; bwd: autograd backward)


@dataclass
class ModelRow:
    """One whole-model throughput measurement (reports/models.csv)."""

    model: str
    impl: str               # kernel impl, or "timm" for the timm baselines
    mode: str               # infer_fp32 | infer_amp | train_amp | train_fp32
    batch: int              # the batch actually run (after OOM halving)
    img_size: int
    img_per_s: float
    peak_mem_mb: float
    gpu: str
    git_sha: str
    timestamp: str
    method: str = ""        # official | robust
    cudnn_benchmark: bool = True
    compile: bool = False
    channels_last: bool = False  # torch memory format of model and input (bench.tp --memory-format channels_last)
    note: str = ""          # e.g. "OOM at batch 128: halved to 64"
    requested_batch: int = 0
    ms_per_iter: float = float("nan")
    ms_p20: float = float("nan")
    ms_p80: float = float("nan")
    params_m: float = float("nan")
    gflops: float = float("nan")
    optimizer_step: bool = False
    warmup: int = 0
    iters: int = 0
    env_json: str = ""
    ms_per_img: float = float("nan")  # ms_per_iter / batch (at batch 1: the latency)
    cuda_graphs: bool = False  # timed as CUDA graph replays (bench.tp --cuda-graphs; impl label ":graphs")
    gpus: int = 1  # data-parallel replicas (bench.tp --ddp under torchrun; impl label ":ddpN"); img_per_s: all of them
    img_per_s_per_gpu: float = float("nan")  # --ddp: img_per_s / gpus
    scaling_efficiency: float = float("nan")  # --ddp: img_per_s_per_gpu over one GPU's img/s measured in the same run


@dataclass
class CheckRow:
    """One correctness comparison (reports/check.csv)."""

    op: str
    impl: str
    dtype: str
    shape: str
    quantity: str           # out, du, ddelta, dA, dB, dC, dD, ddelta_bias, ...
    max_abs_err: float
    worst_ratio: float      # max |err| / (atol + rtol |ref|); <= 1 passes
    rtol: float
    atol: float
    passed: bool
    gpu: str
    git_sha: str
    timestamp: str
    reference: str = ""
    note: str = ""


@dataclass
class OverheadRow:
    """Per-call host overhead of one public op (reports/overhead.csv, bench.overhead)."""

    op: str
    impl: str
    direction: str          # fwd | fwd+bwd
    grad: bool              # inputs require grad
    path: str               # public (vmamba_kernels.<op>) | validate | choose | library_op (pieces alone)
    shape: str
    dtype: str
    host_us: float          # host time per call, back to back (no sync between calls)
    wall_us: float          # host time + the final sync, per call
    device_us: float        # median CUDA-event time of one call (empty on the CPU)
    kernels: str            # real | mock (no-op raw kernels: the Python machinery alone)
    calls: int
    gpu: str
    git_sha: str
    timestamp: str
    torch_version: str = ""
    note: str = ""


SCHEMAS = {"kernels": KernelRow, "models": ModelRow, "check": CheckRow, "overhead": OverheadRow}


def columns(cls) -> list:
    return [f.name for f in fields(cls)]


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if v != v:  # NaN
            return ""
        return repr(round(v, 6)) if abs(v) < 1e15 else repr(v)
    return str(v)


def row_dict(row) -> dict:
    return {k: _fmt(v) for k, v in dataclasses.asdict(row).items()}


@contextlib.contextmanager
def _locked(path: Path):
    """Exclusive lock held on the CSV's folder (flock on a directory fd: no lock file to leave behind)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def read_csv(path) -> tuple:
    """(header, rows as dicts) of a CSV; ([], []) when absent or empty."""
    path = Path(path)
    if not path.is_file():
        return [], []
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
        return list(reader.fieldnames or []), rows


def append_rows(path, rows: Iterable, cls=None) -> Path:
    """Append dataclass rows (all of one schema) to CSV `path` atomically; returns the path."""
    rows = list(rows)
    path = Path(path)
    if not rows:
        return path
    cls = cls or type(rows[0])
    cols = columns(cls)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path):
        old_header, old_rows = read_csv(path)
        extra = [c for c in old_header if c not in cols]
        header = cols + extra
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=header, restval="", lineterminator="\n")
        w.writeheader()
        for r in old_rows:
            w.writerow({k: (r.get(k) or "") for k in header})
        for r in rows:
            w.writerow(row_dict(r))
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", newline="") as f:
                f.write(buf.getvalue())
                f.flush()
                os.fsync(f.fileno())
            if _BEFORE_REPLACE is not None:
                _BEFORE_REPLACE(tmp)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        with contextlib.suppress(OSError):  # make the rename durable
            dfd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
    return path


def reports_dir(arg: Optional[str] = None) -> Path:
    """--reports-dir, else $VMAMBA_REPORTS_DIR, else <repo>/reports."""
    if arg:
        return Path(arg)
    env = os.environ.get("VMAMBA_REPORTS_DIR")
    return Path(env) if env else DEFAULT_REPORTS


def to_float(s, default=float("nan")) -> float:
    try:
        return float(s)
    except (TypeError, ValueError):
        return default


def format_table(rows: list, cols: list, headers: Optional[list] = None) -> str:
    """Plain monospace table of dict rows (numbers right-aligned)."""
    headers = headers or cols
    cells = [[_cell(r.get(c, "")) for c in cols] for r in rows]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(headers)]

    def line(vals, is_header=False):
        out = []
        for i, v in enumerate(vals):
            num = not is_header and _is_num(v)
            out.append(v.rjust(widths[i]) if num else v.ljust(widths[i]))
        return "  ".join(out).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers, True), sep] + [line(c) for c in cells])


def _is_num(s: str) -> bool:
    try:
        float(s)
        return True
    except ValueError:
        return False


def _cell(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v != v:
            return "-"
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 1:
            return f"{v:.2f}"
        return f"{v:.4g}"
    return str(v)
