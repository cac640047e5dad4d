"""Per-call host overhead of the public ops: wall clock of back-to-back calls against the device time.

    python -m bench.overhead                               # every op, every available impl, VMamba-T s3/s4 batch 1
    python -m bench.overhead --impls cuda,triton --ops selective_scan
    python -m bench.overhead --mock                        # CPU: the Python machinery alone (no-op kernels)

For each (op, impl, shape) and each of
    fwd      inputs without requires_grad (inference)
    fwd      inputs with requires_grad (training forward: autograd records the op)
    fwd+bwd  inputs with requires_grad, then torch.autograd.backward on the outputs
it calls the public function (`vmamba_kernels.<op>`, validation + dispatch + op + autograd) `--calls` times
back to back, no CUDA graph, in `--rounds` rounds, and reports
    host_us    host time per call: perf_counter before the first and after the last call of a round (no sync
               between), i.e. the time the Python thread spends issuing one call; the median over the rounds
    wall_us    the same plus the round's final synchronisation, per call (what a caller waits for)
    device_us  median CUDA-event time of one call with the GPU kept busy ahead of it (the kernels alone);
               empty on the CPU, where the kernels run on the host
The breakdown rows (path "prepare", "validate", "choose", "library_op", "raw") time the pieces alone: a prepared
call's preparation (dispatch.prepare for arguments seen before: the key, its lookup, the check-free normalisation;
the key is the extension's native one once the cuda backend has loaded it), the argument check,
check + backend choice, the backend's torch.library op called directly (what bench.kernels times), and the
backend's raw forward function (output allocation, launch configuration, the launches). For triton, path
"raw_jit_run" is the raw function with direct launches off (every launch through JITFunction.run) and
"raw_python_key" the raw function with direct launches keyed by fast_launch's Python loop instead of the
extension's launch_key (csrc/common/arg_key.h); for cuda,
path "raw_dispatcher" is the raw function calling torch.ops.vmamba_cuda.* instead of the extension's direct
bindings (csrc/ops.h).

`--mock` swaps the impl's raw kernels for stand-ins that only allocate their outputs (torch.empty):
host_us then measures the project's Python machinery around a launch, runnable and meaningful on a
CPU. Without a GPU the default impls are the torch ones (triton under TRITON_INTERPRET is skipped: its
interpreter cost says nothing about a launch). Rows go to REPORTS/overhead.csv (CPU rows only with
--save-cpu or --reports-dir). Before the table it prints a host reference: what one torch.empty and one torch.add
with grad cost on this machine and device (the lower of a measurement before and after the rows), to read the rows
of hosts of different speed against.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
import types
from dataclasses import dataclass
from typing import Callable

import torch

from bench import env as envmod
from bench.results import OverheadRow, append_rows, format_table, reports_dir
from bench.timing import pad_cycles, percentiles, sync

OPS = ("selective_scan", "cross_scan", "cross_merge", "add_layer_norm", "dwconv2d")
# (label, batch, channels of the stage (d_inner = dim for VMamba-T, ssm_ratio 1), H = W, d_state)
SHAPES = {
    "tiny": ("tiny", 1, 8, 4, 1),
    "t_s3": ("vmamba_t s3 b1", 1, 384, 14, 1),
    "t_s4": ("vmamba_t s4 b1", 1, 768, 7, 1),
    "t_s3_b128": ("vmamba_t s3 b128", 128, 384, 14, 1),  # the training batch: where the issue saw the host cost
    "t_s4_b128": ("vmamba_t s4 b128", 128, 768, 7, 1),
}
K = 4


@dataclass
class Case:
    """One op on one shape: `call()` runs the public function, `outputs(r)` the differentiable outputs."""

    op: str
    shape: str
    call: Callable
    leaves: list
    outputs: Callable
    validate: Callable
    library_op: Callable
    raw: Callable  # the backend's raw forward kernel function (contract in vmamba_kernels/dispatch.py)
    prepare: Callable = None  # dispatch.prepare on the public call's arguments (a prepared call: key, lookup, fast)


def _inputs(op: str, shape: str, device, dtype, grad: bool, impl: str) -> Case:
    import vmamba_kernels as vk  # noqa: PLC0415
    from vmamba_kernels import validate  # noqa: PLC0415

    label, b, C, H, N = SHAPES[shape]
    L = H * H
    g = torch.Generator().manual_seed(0)

    def t(*s, dt=dtype, scale=1.0, offset=0.0):
        x = (torch.randn(s, generator=g) * scale + offset).to(device=device, dtype=dt)
        return x.requires_grad_(grad)

    f32 = torch.float32
    prep = vk.dispatch.prepare
    lib = vk.ops(impl)
    raw = vk.dispatch.get_backend(impl).impl()  # the mock module while mocked_kernels is active
    if op == "selective_scan":
        KD = K * C
        u, delta = t(b, KD, L), t(b, KD, L, scale=0.5, offset=-1.0)
        A = (-torch.rand(KD, N, generator=g) - 0.5).to(device).requires_grad_(grad)
        B, Cm = t(b, K, N, L), t(b, K, N, L)
        D, bias = t(KD, dt=f32), t(KD, dt=f32, scale=0.1)
        args = (u, delta, A, B, Cm, D, bias, True)
        return Case(op, label, lambda: vk.selective_scan(*args, impl=impl), [u, delta, A, B, Cm, D, bias],
                    lambda r: [r], lambda: validate.check_selective_scan(*args),
                    lambda: lib["scan_fwd"](*args, u.dtype), lambda: raw.selective_scan_fwd(*args, u.dtype),
                    lambda: prep(op, impl, args + (None,)))
    if op == "cross_scan":
        x = t(b, C, H, H)
        return Case(op, label, lambda: vk.cross_scan(x, impl=impl), [x], lambda r: [r],
                    lambda: validate.check_cross_scan(x), lambda: lib["cross_scan"](x, "cross2d", False),
                    lambda: raw.cross_scan_fwd(x, "cross2d", False), lambda: prep(op, impl, (x, "cross2d", False)))
    if op == "cross_merge":
        y = t(b, K, C, L)
        return Case(op, label, lambda: vk.cross_merge(y, H, H, impl=impl), [y], lambda r: [r],
                    lambda: validate.check_cross_merge(y, H, H), lambda: lib["cross_merge"](y, H, H, "cross2d", False),
                    lambda: raw.cross_merge_fwd(y, H, H, "cross2d", False),
                    lambda: prep(op, impl, (y, H, H, "cross2d", False)))
    if op == "add_layer_norm":
        x, br = t(b, H, H, C), t(b, H, H, C)
        w, bb = t(C, dt=f32, offset=1.0), t(C, dt=f32)
        return Case(op, label, lambda: vk.add_layer_norm(x, br, w, bb, channels_last=True, impl=impl),
                    [x, br, w, bb], lambda r: list(r),
                    lambda: validate.check_add_layer_norm(x, br, w, bb, 1e-5, None, True),
                    lambda: lib["add_layer_norm_fwd"](x, br, w, bb, None, 1e-5, True, x.dtype),
                    lambda: raw.add_layer_norm_fwd(x, br, w, bb, None, 1e-5, True, x.dtype),
                    lambda: prep(op, impl, (x, br, w, bb, 1e-5, None, True, None)))
    if op == "dwconv2d":
        x = t(b, H, H, C)
        w, bb = t(C, 1, 3, 3, dt=f32, scale=0.3), t(C, dt=f32)
        return Case(op, label, lambda: vk.dwconv2d(x, w, bb, "silu", channels_last=True, impl=impl),
                    [x, w, bb], lambda r: [r], lambda: validate.check_dwconv2d(x, w, bb, "silu", True),
                    lambda: lib["dwconv2d_fwd"](x, w, bb, "silu", True),
                    lambda: raw.dwconv2d_fwd(x, w, bb, "silu", True), lambda: prep(op, impl, (x, w, bb, "silu", True)))
    raise ValueError(f"unknown op {op!r}; ops are {', '.join(OPS)}")


# ---- mock kernels --------------------------------------------------------------------------------
def _mock_module(backend) -> types.SimpleNamespace:
    """Raw kernels that only allocate outputs of the contract's shapes and dtypes (dispatch.py)."""
    from vmamba_kernels._library import norm_body_native  # noqa: PLC0415
    from vmamba_kernels.layout import map_dims, map_shape  # noqa: PLC0415

    e = torch.empty

    def scan_fwd(u, delta, A, B, C, D, bias, softplus, out_dtype):
        b, KD, L = u.shape
        shape, dt = backend.scan_aux_shape(b, KD, L, A.shape[1], u.dtype)
        return (e((b, KD, L), dtype=out_dtype, device=u.device), e((b, KD, A.shape[1]), device=u.device),
                e(shape, dtype=dt, device=u.device))

    def scan_bwd(u, delta, A, B, C, D, bias, softplus, dout, aux):
        el = torch.empty_like
        return (el(u), el(delta), el(A), el(B), el(C), None if D is None else el(D),
                None if bias is None else el(bias))

    def cross_scan_fwd(x, mode, cl):
        b, c, h, w = map_dims(x, cl)
        return e((b, 4, c, h * w), dtype=x.dtype, device=x.device)

    def cross_merge_fwd(y, H, W, mode, cl):
        return e(map_shape(y.shape[0], y.shape[2], H, W, cl), dtype=y.dtype, device=y.device)

    def ln_fwd(x, branch, w, bias, scale, eps, cl, out_dtype):
        b, c, h, ww = map_dims(x, cl)
        stat = e((b, h * ww), device=x.device)
        return e(x.shape, dtype=out_dtype, device=x.device), torch.empty_like(x), stat, torch.empty_like(stat)

    def ln_bwd(dy, ds, s, w, bias, mean, rstd, scale, has_branch, cl, x_dtype, from_y=False):
        dx = e(s.shape, dtype=x_dtype, device=s.device)
        return dx, (torch.empty_like(dx) if has_branch else None), torch.empty_like(w), \
            (None if bias is None else torch.empty_like(bias))

    def conv_fwd(x, w, bias, act, cl):
        return torch.empty_like(x)

    def conv_bwd(dy, x, w, bias, act, cl):
        return torch.empty_like(x), torch.empty_like(w), (None if bias is None else torch.empty_like(bias))

    # the real module's raw kernels as bodies (dispatch kind "body_native"): the stand-ins for the same keys, so that
    # a mocked call without grad takes the path the real one takes
    bodies = {"scan_fwd": scan_fwd, "cross_scan": cross_scan_fwd, "cross_merge": cross_merge_fwd,
              "dwconv2d_fwd": conv_fwd, "add_layer_norm_fwd": norm_body_native(ln_fwd, backend.mixed_branch)}
    real = getattr(backend._impl, "body_ops_native", None) or {}
    return types.SimpleNamespace(
        selective_scan_fwd=scan_fwd, selective_scan_bwd=scan_bwd, cross_scan_fwd=cross_scan_fwd,
        cross_merge_fwd=cross_merge_fwd, add_layer_norm_fwd=ln_fwd, add_layer_norm_bwd=ln_bwd,
        dwconv2d_fwd=conv_fwd, dwconv2d_bwd=conv_bwd, body_ops_native={k: bodies[k] for k in real})


@contextlib.contextmanager
def mocked_kernels(impl: str):
    """While active, backend `impl` runs no-op raw kernels (outputs allocated, never written)."""
    from vmamba_kernels import dispatch  # noqa: PLC0415

    b = dispatch.get_backend(impl)
    reason = b.unavailable_reason()
    if reason is not None:
        raise RuntimeError(f"impl {impl!r} is not available: {reason}")
    real = b._impl
    b._impl = _mock_module(b)
    try:
        yield
    finally:
        b._impl = real


# ---- timing --------------------------------------------------------------------------------------
def _step(case: Case, backward: bool) -> Callable:
    if not backward:
        return case.call

    def step():
        outs = case.outputs(case.call())
        outs = [o for o in outs if o.requires_grad]
        torch.autograd.backward(outs, [torch.ones_like(o) for o in outs])
    return step


def _one_round(fn: Callable, device, calls: int) -> tuple:
    """(host_us, wall_us) per call of `calls` back-to-back calls: host time until the last call returns, wall time
    until the device has finished them."""
    t0 = time.perf_counter_ns()
    for _ in range(calls):
        fn()
    t1 = time.perf_counter_ns()
    sync(device)
    t2 = time.perf_counter_ns()
    return (t1 - t0) / calls / 1e3, (t2 - t0) / calls / 1e3


def _device_us(fn: Callable, device, calls: int, host_us: float) -> float:
    """Median device time of one call from CUDA events (nan on a CPU)."""
    if torch.device(device).type != "cuda":
        return float("nan")
    reps = min(calls, 50)
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(reps)]
    # keep the GPU busy while the host queues the timed calls: host time never shows as idle time
    # between a start event and its kernels
    torch.cuda._sleep(pad_cycles(host_us, reps))
    for s, e in ev:
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize(device)
    return percentiles([s.elapsed_time(e) * 1e3 for s, e in ev], (0.5,))[0]


def _summary(host: list, wall: list) -> dict:
    return {"host_us": statistics.median(host), "wall_us": statistics.median(wall), "host_min": min(host),
            "host_max": max(host)}


def time_calls(fn: Callable, device, calls: int, warmup: int = 5, rounds: int = 1) -> dict:
    """host_us / wall_us per call of `calls` back-to-back calls, the median over `rounds` rounds (one
    garbage collection or descheduling doubled a single round's figure on the H100 host of call 45), with the
    rounds' host_min / host_max; device_us from CUDA events (GPU)."""
    for _ in range(warmup):
        fn()
    sync(device)
    host, wall = [], []
    for _ in range(max(1, rounds)):
        h, w = _one_round(fn, device, calls)
        host.append(h)
        wall.append(w)
    out = _summary(host, wall)
    out["device_us"] = _device_us(fn, device, calls, out["host_us"])
    return out


def time_interleaved(entries: list, device, calls: int, warmup: int = 5, rounds: int = 1) -> list:
    """time_calls for several (fn, context factory) entries with their rounds taken in turn (round 1 of every
    entry, then round 2, ...): a slow stretch of a noisy host (reports/logs/2026-12-07_gpu_call74.md) then lands in
    one round of every row, and the median drops it, instead of in every round of a few rows."""
    for fn, ctx in entries:
        with ctx():
            for _ in range(warmup):
                fn()
    sync(device)
    host = [[] for _ in entries]
    wall = [[] for _ in entries]
    for _ in range(max(1, rounds)):
        for i, (fn, ctx) in enumerate(entries):
            with ctx():
                h, w = _one_round(fn, device, calls)
            host[i].append(h)
            wall[i].append(w)
    out = []
    for i, (fn, ctx) in enumerate(entries):
        r = _summary(host[i], wall[i])
        with ctx():
            r["device_us"] = _device_us(fn, device, calls, r["host_us"])
        out.append(r)
    return out


def _launch_mode(path: str):
    """raw_jit_run: the triton backend with direct launches off (vmamba_kernels/triton/fast_launch.py);
    raw_dispatcher: the cuda backend's raw functions through torch.ops.vmamba_cuda instead of the extension's direct
    bindings (vmamba_kernels/cuda/extension.py)."""
    if path == "raw_jit_run":
        import vmamba_kernels as vk  # noqa: PLC0415

        return vk.tuning("triton", fast_launch=False)
    if path == "raw_dispatcher":
        from vmamba_kernels.cuda import extension  # noqa: PLC0415

        return extension.dispatcher_calls()
    if path == "raw_python_key":
        return _python_launch_key()
    return contextlib.nullcontext()


@contextlib.contextmanager
def _python_launch_key():
    from vmamba_kernels.triton import fast_launch  # noqa: PLC0415

    fast_launch.use_native_launch_key(False)
    try:
        yield
    finally:
        fast_launch.use_native_launch_key(True)


def measure(ops, impls, shapes, device, dtype, calls: int, mock: bool, breakdown: bool = True, rounds: int = 1,
            interleave: bool = False) -> list:
    """OverheadRows for every (op, impl, shape, direction/grad) and, with `breakdown`, the pieces; with `interleave`
    the rounds of all of them are taken in turn (time_interleaved)."""
    from vmamba_kernels import dispatch  # noqa: PLC0415

    gpu, sha, now = envmod.gpu_label(device), envmod.git_sha_label(), envmod.utc_now()
    dname = str(dtype).replace("torch.", "")
    todo = []  # (impl, op, case, direction, grad, path, fn)
    for impl in impls:
        reason = dispatch.get_backend(impl).unavailable_reason()
        if reason is not None:
            print(f"bench.overhead: impl {impl!r} skipped: {reason}", file=sys.stderr)
            continue
        with mocked_kernels(impl) if mock else contextlib.nullcontext():
            for op in ops:
                if op not in dispatch.get_backend(impl).ops:
                    continue
                for shape in shapes:
                    for direction, grad in (("fwd", False), ("fwd", True), ("fwd+bwd", True)):
                        case = _inputs(op, shape, device, dtype, grad, impl)
                        pieces = [("public", _step(case, direction == "fwd+bwd"))]
                        if breakdown and direction == "fwd":
                            pieces += [("prepare", case.prepare), ("validate", case.validate),
                                       ("choose", lambda c=case, op=op, impl=impl: dispatch.choose(op, c.validate(),
                                                                                                    impl)),
                                       ("library_op", case.library_op), ("raw", case.raw)]
                            if impl == "triton" and not mock:  # the same launches through JITFunction.run,
                                # and direct ones keyed in Python
                                pieces += [("raw_jit_run", case.raw), ("raw_python_key", case.raw)]
                            if impl == "cuda" and not mock:  # the same entry points through the dispatcher
                                pieces.append(("raw_dispatcher", case.raw))
                        todo += [(impl, op, case, direction, grad, path, fn) for path, fn in pieces]

    def context(impl, path):
        @contextlib.contextmanager
        def ctx():
            with mocked_kernels(impl) if mock else contextlib.nullcontext(), _launch_mode(path):
                yield
        return ctx

    if interleave:
        entries = [(fn, context(impl, path)) for impl, _, _, _, _, path, fn in todo]
        try:
            results = time_interleaved(entries, device, calls, rounds=rounds)
        except Exception:  # noqa: BLE001 (an entry that fails: time them one by one, as below)
            interleave = False
    rows = []
    for i, (impl, op, case, direction, grad, path, fn) in enumerate(todo):
        try:
            if interleave:
                r = results[i]
            else:
                with context(impl, path)():
                    r = time_calls(fn, device, calls, rounds=rounds)
            spread = f"rounds {r['host_min']:.3g}-{r['host_max']:.3g} us" if rounds > 1 else ""
            how = f"median of {rounds}{' interleaved' if interleave else ''} rounds" if rounds > 1 else ""
            note = "; ".join(filter(None, (how, spread, _paths_note(impl, path, grad))))
        except Exception as e:  # noqa: BLE001 (an impl refusing a shape must not stop the run)
            r = {"host_us": float("nan"), "wall_us": float("nan"), "device_us": float("nan")}
            note = f"error: {type(e).__name__}: {str(e).splitlines()[0][:160]}"
        rows.append(OverheadRow(
            op=op, impl=impl, direction=direction, grad=grad, path=path, shape=case.shape,
            dtype=dname, host_us=r["host_us"], wall_us=r["wall_us"], device_us=r["device_us"],
            kernels="mock" if mock else "real", calls=calls, gpu=gpu, git_sha=sha, timestamp=now,
            torch_version=torch.__version__, note=note))
    return rows


def _paths_note(impl: str, path: str, grad: bool) -> str:
    """Which of dispatch's optional fast paths a public row ran: the extension's native argument key (else the
    Python one), with grad the backend's native autograd functions (else the Python autograd.Function), and whether
    the extension's fast_call was on (VMAMBA_FAST_CALL=0 turns it off)."""
    if impl == "triton" and path == "raw":
        from vmamba_kernels.triton import fast_launch  # noqa: PLC0415

        return "native launch key" if fast_launch.native_launch_key() else "python launch key"
    if path != "public":
        return ""
    from vmamba_kernels import dispatch  # noqa: PLC0415

    parts = ["native key" if dispatch.native_arg_key() else "python key"]
    if grad:
        b = dispatch.get_backend(impl)
        parts.append("native autograd" if b.native_autograd() else "python autograd")
    parts.append("fast call" if dispatch.fast_call_on() else "no fast call")  # on: a prepared call may take it
    return ", ".join(parts)


def default_impls(device) -> list:
    import vmamba_kernels as vk  # noqa: PLC0415

    dev = torch.device(device).type
    out = []
    for r in vk.list_impls():
        if not r["available"] or dev not in r["devices"] or r["name"] == "torch_sequential":
            continue
        if r["name"] == "triton" and dev == "cpu":
            continue  # the interpreter's cost says nothing about a launch
        out.append(r["name"])
    return out


def host_reference(device, calls: int = 200, rounds: int = 5) -> dict:
    """What two plain torch calls cost on this host, to read the rows against: hosts differ several-fold in host
    speed and one host drifts between runs (reports/logs/2026-12-07_gpu_call74.md). us per call, median of the
    rounds."""
    a = torch.zeros(8, device=device, requires_grad=True)
    b = torch.zeros(8, device=device, requires_grad=True)
    return {"torch.empty": time_calls(lambda: torch.empty(1, 384, 196, dtype=torch.float16, device=device), device,
                                      calls, rounds=rounds)["host_us"],
            "torch.add with grad": time_calls(lambda: torch.add(a, b), device, calls, rounds=rounds)["host_us"]}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.overhead", description=__doc__.split("\n\n")[0])
    p.add_argument("--ops", default=",".join(OPS))
    p.add_argument("--impls", default=None, help="comma list (default: every available impl on the device, "
                                                 "except torch_sequential, and triton on the CPU)")
    p.add_argument("--shapes", default=None,
                   help=f"comma list of {', '.join(SHAPES)} (default t_s3,t_s4 on a GPU, tiny on the CPU)")
    p.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default=None,
                   help="input dtype (default fp16 on a GPU, fp32 on the CPU)")
    p.add_argument("--calls", type=int, default=200, help="back-to-back calls per round")
    p.add_argument("--rounds", type=int, default=5, help="rounds per measurement; host_us / wall_us are their median")
    p.add_argument("--interleave", action="store_true",
                   help="take the rounds of all rows in turn (a slow stretch of the host hits one round of each row)")
    p.add_argument("--mock", action="store_true", help="no-op raw kernels: the host machinery alone")
    p.add_argument("--no-breakdown", action="store_true", help="only the public-function rows")
    p.add_argument("--device", default=None)
    p.add_argument("--reports-dir", default=None)
    p.add_argument("--no-csv", action="store_true")
    p.add_argument("--save-cpu", action="store_true", help="append CPU rows to reports/overhead.csv too")
    a = p.parse_args(argv)
    device = torch.device(a.device) if a.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cpu = device.type == "cpu"
    shapes = (a.shapes or ("tiny" if cpu else "t_s3,t_s4")).split(",")
    bad = [s for s in shapes if s not in SHAPES]
    if bad:
        p.error(f"--shapes: unknown {', '.join(bad)} (choose from {', '.join(SHAPES)})")
    ops = [o for o in a.ops.split(",") if o]
    bad = [o for o in ops if o not in OPS]
    if bad:
        p.error(f"--ops: unknown {', '.join(bad)} (choose from {', '.join(OPS)})")
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[a.dtype or ("fp32" if cpu else "fp16")]
    impls = a.impls.split(",") if a.impls else default_impls(device)
    write = not a.no_csv and (not cpu or a.save_cpu or a.reports_dir is not None)
    if cpu:
        print("note: no CUDA device: host_us is the CPU-side cost on this machine; device_us stays empty"
              + ("" if write else "; rows are printed, not written (--save-cpu to keep them)"), file=sys.stderr)
    ref = host_reference(device, a.calls, a.rounds)
    rows = measure(ops, impls, shapes, device, dtype, a.calls, a.mock, not a.no_breakdown, a.rounds, a.interleave)
    ref = {k: min(v, host_reference(device, a.calls, a.rounds)[k]) for k, v in ref.items()}  # before and after
    print("host reference on this machine (us per call, the lower of before and after the rows): "
          + ", ".join(f"{k} {v:.2f}" for k, v in ref.items()))
    table = [{"op": r.op, "impl": r.impl, "dir": r.direction, "grad": r.grad, "path": r.path, "shape": r.shape,
              "host_us": r.host_us, "wall_us": r.wall_us, "device_us": r.device_us, "note": r.note} for r in rows]
    print(format_table(table, ["op", "impl", "dir", "grad", "path", "shape", "host_us", "wall_us", "device_us",
                               "note"]))
    if write:
        out = append_rows(reports_dir(a.reports_dir) / "overhead.csv", rows)
        print(f"\n{len(rows)} rows -> {out}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
