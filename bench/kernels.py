"""Kernel sweep: every available impl (and mamba_ssm when built) over VMamba's stage shapes.

    python -m bench.kernels                      # T/S/B stage shapes, batch 128, fp32/fp16/bf16, fwd+bwd
    python -m bench.kernels --quick              # vmamba_t, fp16, fewer repetitions
    python -m bench.kernels --ops selective_scan --impls cuda,mamba_ssm --models vmamba_b --dtypes fp16
    python -m bench.kernels --ops ss2d_core --models vmamba_t --dtypes fp16 --layouts cf,cl   # fused vs chain

Per (op, direction, dtype, model, stage, impl): median / 20th / 80th percentile milliseconds from
CUDA events around single calls of the raw custom op (no validation, no autograd bookkeeping), inputs
rotated across enough sets to exceed twice the L2 cache, random data. Next to that device time, two
host-inclusive times (wall clock per call of back-to-back calls, no CUDA graph, same rotation): wall_ms
of the same custom op, api_wall_ms of the public function (`vmamba_kernels.<op>`: validation, dispatch,
autograd; fwd rows with inputs that need no grad, bwd rows the autograd backward of the public op). GB/s = minimum traffic (each
input read once, each output written once; scan state/aux buffers not counted) / median time,
compared with the card's measured device-to-device copy bandwidth (read + written bytes).
Rows go to REPORTS/kernels.csv. The pytest-benchmark version is bench/test_kernels_bench.py.

ss2d_core (opt-in: --ops ss2d_core): the fused SS2D core (vmamba_kernels.ss2d_core, its torch.library op:
the pixel-order GEMM + the raw kernel) of every impl implementing it, and in the same run, as impl
"<impl>-unfused", the chain it replaces on every impl with the scan and cross ops (cross scan, the grouped x
and dt projections as SS2Dv05 runs them, the scan writing fp32, cross merge). GB/s counts the op's own
minimum traffic for both: forward x read + projection weights (and A, D, delta_bias) read + y written;
backward x and dy read + weights read + dx and the weight gradients written. Forward rows time the calls
without autograd; backward rows time torch.autograd.grad through the op (fused: its backward custom op and
the two GEMMs; unfused: the chain's autograd graph), from a forward kept for all repetitions.

Scan dtypes: "fp16" means u/delta/B/C (and their gradients) in fp16 with A/D/delta_bias fp32; the
project impls write `--out-dtype` (default fp32, as VMamba's forward_corev2 asks for), mamba_ssm
always writes u's dtype (the out_dtype column says which).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from typing import Callable, Optional

import torch

from bench import env as envmod
from bench.results import KernelRow, append_rows, format_table, reports_dir
from bench.shapes import K, StageShape, stage_shapes
from bench.timing import Progress, copy_bandwidth, sync, time_kernel, time_wall
from vmamba_kernels.layout import map_shape

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
DNAME = {v: k for k, v in DTYPES.items()}
OPS = ("selective_scan", "cross_scan", "cross_merge")  # the default sweep
KNOWN_OPS = OPS + ("ss2d_core",)  # --ops may also name the fused SS2D core (fused and unfused-chain rows)
UNFUSED = "-unfused"  # impl suffix of the rows timing the chain ss2d_core replaces, on that impl's ops
DEFAULT_MODELS = ("vmamba_t", "vmamba_s", "vmamba_b")
MAMBA = "mamba_ssm"
SKIP_BY_DEFAULT = ("torch_sequential",)  # one Python step per time index: minutes per call at these sizes


# --layouts: cross ops on the 2-D map channels first (B, C, H, W) or channels last (B, H, W, C)
LAYOUTS = {"cf": False, "cl": True}  # name -> channels_last


@dataclass(frozen=True)
class Case:
    op: str
    direction: str
    dtype: str
    shape: StageShape
    channels_last: bool = False  # cross ops only

    def label(self) -> str:
        if self.op == "selective_scan":
            return self.shape.scan_label()
        if self.op == "ss2d_core":
            return (f"{self.shape.cross_label()} N{self.shape.N} R{ss2d_rank(self.shape)}"
                    + (" channels_last" if self.channels_last else ""))
        return self.shape.cross_label() + (" channels_last" if self.channels_last else "")


def build_cases(models, ops, dtypes, directions, batch=128, img_size=224, layouts=("cf",)) -> list:
    cases = []
    for m in models:
        for sh in stage_shapes(m, batch, img_size):
            for op in ops:
                for dt in dtypes:
                    for d in directions:
                        if op in ("cross_scan", "cross_merge") and d == "bwd":
                            continue  # the backward of cross_scan is cross_merge and vice versa
                        for lay in (("cf",) if op == "selective_scan" else layouts):
                            cases.append(Case(op, d, dt, sh, LAYOUTS[lay]))
    return cases


# ---- inputs ------------------------------------------------------------------------------------
def scan_inputs(sh: StageShape, dtype, device, seed: int) -> dict:
    """Random inputs with VMamba-like ranges (delta around softplus's active region, A < 0)."""
    g = torch.Generator(device="cpu").manual_seed(seed)

    def rnd(*shape, scale=1.0, offset=0.0, dt=dtype, uniform=False):
        t = torch.rand(shape, generator=g) if uniform else torch.randn(shape, generator=g)
        return (t * scale + offset).to(device=device, dtype=dt)

    b, KD, L, N = sh.batch, sh.KD, sh.L, sh.N
    return {
        "u": rnd(b, KD, L), "delta": rnd(b, KD, L, scale=0.5, offset=-1.0),
        "A": -rnd(KD, N, uniform=True, scale=1.0, offset=0.5, dt=torch.float32),
        "B": rnd(b, K, N, L), "C": rnd(b, K, N, L),
        "D": rnd(KD, dt=torch.float32), "delta_bias": rnd(KD, uniform=True, scale=0.5, dt=torch.float32),
    }


def scan_bytes(sh: StageShape, dtype, out_dtype, direction: str) -> int:
    e_in = torch.tensor([], dtype=dtype).element_size()
    e_out = torch.tensor([], dtype=out_dtype).element_size()
    b, KD, L, N = sh.batch, sh.KD, sh.L, sh.N
    big, bc, params = b * KD * L, b * K * N * L, KD * N * 4 + 2 * KD * 4
    if direction == "fwd":  # read u, delta, B, C, A, D, bias; write out
        return 2 * big * e_in + 2 * bc * e_in + params + big * e_out
    # read u, delta, B, C, A, D, bias, dout; write du, ddelta, dB, dC, dA, dD, dbias
    return 2 * big * e_in + 2 * bc * e_in + params + big * e_out + 2 * big * e_in + 2 * bc * e_in + params


def cross_bytes(sh: StageShape, dtype) -> int:
    e = torch.tensor([], dtype=dtype).element_size()
    n = sh.batch * sh.D * sh.L
    return n * e + 4 * n * e  # scan: read x, write 4 routes; merge: read 4 routes, write x


def l2_bytes(device) -> int:
    try:
        return int(torch.cuda.get_device_properties(device).L2_cache_size)
    except Exception:  # noqa: BLE001
        return 50 * 2**20


def n_sets_for(set_bytes: int, device, cap: int = 8) -> int:
    if torch.device(device).type != "cuda":
        return 1
    return max(1, min(cap, math.ceil(2 * l2_bytes(device) / max(set_bytes, 1))))


# ---- the fused SS2D core and the chain it replaces -----------------------------------------------------
def ss2d_rank(sh: StageShape) -> int:
    """dt_rank of the stage: ceil(d_model / 16), d_model = base width * 2^stage (bench.shapes.VARIANTS), or
    ceil(d_inner / 16) for a model missing from the table."""
    from bench.shapes import VARIANTS  # noqa: PLC0415

    if sh.model in VARIANTS:
        return -(-VARIANTS[sh.model][0] * 2 ** sh.stage // 16)
    return -(-sh.D // 16)


def ss2d_inputs(sh: StageShape, dtype, device, channels_last: bool, seed: int) -> dict:
    """x in the model layout and the layer's parameters (fp32, as autocast leaves them), VMamba-like ranges."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    R, N, D = ss2d_rank(sh), sh.N, sh.D

    def rnd(*shape, scale=1.0, offset=0.0, dt=torch.float32, uniform=False):
        t = torch.rand(shape, generator=g) if uniform else torch.randn(shape, generator=g)
        return (t * scale + offset).to(device=device, dtype=dt)

    return {"x": rnd(*map_shape(sh.batch, D, sh.H, sh.W, channels_last), dt=dtype),
            "x_proj_weight": rnd(K, R + 2 * N, D, scale=D ** -0.5), "dt_projs_weight": rnd(K, D, R, scale=R ** -0.5),
            "A": -rnd(K * D, N, uniform=True, offset=0.5), "D": rnd(K * D),
            "delta_bias": rnd(K * D, uniform=True, scale=3.0, offset=-5.0)}


SS2D_ARGS = ("x", "x_proj_weight", "dt_projs_weight", "A", "D", "delta_bias")


def ss2d_bytes(sh: StageShape, dtype, out_dtype, direction: str) -> int:
    """Forward: x read + weights read + y written; backward: x, dy read + weights read + dx, weight grads written."""
    e_in = torch.tensor([], dtype=dtype).element_size()
    e_out = torch.tensor([], dtype=out_dtype).element_size()
    R, N, D = ss2d_rank(sh), sh.N, sh.D
    n = sh.batch * D * sh.L
    weights = 4 * (K * (R + 2 * N) * D + K * D * R + K * D * N + 2 * K * D)
    if direction == "fwd":
        return n * e_in + weights + n * e_out
    return n * e_in + n * e_out + weights + n * e_in + weights


def unfused_chain(ops, s: dict, channels_last: bool, out_dtype):
    """SS2Dv05.forward_core's chain up to out_norm on one impl's library ops (ops = vk.ops(impl)), with the
    model's per-direction projections (models.ss2d.route_proj)."""
    from models.ss2d import route_proj  # noqa: PLC0415

    x = s["x"]
    Bn = x.shape[0]
    Kk, D, R = s["dt_projs_weight"].shape
    N = s["A"].shape[1]
    H, W = (x.shape[1], x.shape[2]) if channels_last else (x.shape[2], x.shape[3])
    xs = ops["cross_scan"](x.contiguous(), "cross2d", channels_last).view(Bn, Kk * D, H * W)
    x_dbl = route_proj(xs, s["x_proj_weight"].to(x.dtype))
    dts, Bs, Cs = torch.split(x_dbl.view(Bn, Kk, -1, H * W), [R, N, N], dim=2)
    dts = route_proj(dts.reshape(Bn, Kk * R, H * W), s["dt_projs_weight"].to(x.dtype))
    ys = ops["scan_fwd"](xs, dts.contiguous(), s["A"], Bs.contiguous(), Cs.contiguous(), s["D"], s["delta_bias"],
                         True, out_dtype)[0]
    return ops["cross_merge"](ys.view(Bn, Kk, D, H * W), H, W, "cross2d", channels_last)


def ss2d_runner(impl: str, case: Case, device, out_dtype) -> tuple:
    """(fn(i), bytes, n sets, first set) for the fused op of `impl`, or its unfused chain (impl + UNFUSED)."""
    import vmamba_kernels as vk  # noqa: PLC0415

    sh, dtype, cl = case.shape, DTYPES[case.dtype], case.channels_last
    chain = impl.endswith(UNFUSED)
    ops = vk.ops(impl[:-len(UNFUSED)] if chain else impl)
    nbytes = ss2d_bytes(sh, dtype, out_dtype, case.direction)
    n = n_sets_for(nbytes, device)
    sets = [ss2d_inputs(sh, dtype, device, cl, seed=2000 + i) for i in range(n)]

    def forward(s):
        if chain:
            return unfused_chain(ops, s, cl, out_dtype)
        return ops["ss2d_core_fwd"](*(s[k] for k in SS2D_ARGS), "cross2d", cl, True, out_dtype)[0]

    if case.direction == "fwd":
        def fn(i):
            with torch.no_grad():
                return forward(sets[i % n])
        return fn, nbytes, n, sets[0]
    for s in sets:
        for k in SS2D_ARGS:
            s[k].requires_grad_(True)
        s["y"] = forward(s)
        s["dy"] = torch.randn(s["y"].shape, device=device, dtype=s["y"].dtype)

    def fn(i):
        s = sets[i % n]
        return torch.autograd.grad(s["y"], [s[k] for k in SS2D_ARGS], s["dy"], retain_graph=True)
    return fn, nbytes, n, sets[0]


# ---- impls ---------------------------------------------------------------------------------------
def available_impls(op: str, include=None, device="cuda") -> list:
    """Names of impls that can run `op` here: project backends (list_impls) + mamba_ssm for the scan; for
    ss2d_core also "<impl>-unfused", the chain it replaces, for every impl with the scan and cross ops."""
    import vmamba_kernels as vk  # noqa: PLC0415

    if op == "ss2d_core":
        base = None if include is None else [x.removesuffix(UNFUSED) for x in include]
        fused = available_impls("ss2d_core_fused", base, device)
        chain = [n + UNFUSED for n in available_impls("selective_scan", base, device) if n != MAMBA
                 and n in available_impls("cross_scan", base, device)]
        names = [x for f in fused for x in (f, f + UNFUSED) if x == f or x in chain]
        names += [c for c in chain if c not in names]
        if include is not None:
            names = [x for x in names if x in include or x.removesuffix(UNFUSED) in include]
        return names
    names = []
    op = "ss2d_core" if op == "ss2d_core_fused" else op
    dev = torch.device(device).type
    for r in vk.list_impls(op):
        if r["available"] and dev in r["devices"] and (include is not None or r["name"] not in SKIP_BY_DEFAULT):
            names.append(r["name"])
    if op == "selective_scan" and dev == "cuda":
        from bench.mamba_ref import load_selective_scan_cuda  # noqa: PLC0415

        if load_selective_scan_cuda() is not None:
            names.append(MAMBA)
    if include is not None:
        names = [n for n in names if n in include]
    return names


def why_not(impl: str, case: Case, inputs: dict, out_dtype) -> list:
    """Reasons `impl` cannot run this case (empty when it can)."""
    if impl == MAMBA:
        from bench.mamba_ref import unavailable_reason  # noqa: PLC0415

        r = unavailable_reason()
        return [r] if r else []
    from vmamba_kernels import dispatch, validate  # noqa: PLC0415

    if case.op == "ss2d_core":
        s = inputs
        args = validate.check_ss2d_core(*(s[k] for k in SS2D_ARGS), "cross2d", case.channels_last, True, out_dtype)
        if impl.endswith(UNFUSED):  # the chain: the scan and the cross ops of that impl
            b = dispatch.get_backend(impl[:-len(UNFUSED)])
            small = StageShape(case.shape.model, case.shape.stage, 1, 2, case.shape.N, 2, 2)
            i = scan_inputs(small, DTYPES[case.dtype], s["x"].device, 0)
            scan = validate.check_selective_scan(i["u"], i["delta"], i["A"], i["B"], i["C"], i["D"], i["delta_bias"],
                                                 True, out_dtype)
            cross = validate.check_cross_scan(s["x"], "cross2d", case.channels_last)
            return b.why_not("selective_scan", scan) + b.why_not("cross_scan", cross)
        return dispatch.get_backend(impl).why_not("ss2d_core", args)
    b = dispatch.get_backend(impl)
    if case.op == "selective_scan":
        i = inputs
        args = validate.check_selective_scan(i["u"], i["delta"], i["A"], i["B"], i["C"], i["D"], i["delta_bias"],
                                             True, out_dtype)
    elif case.op == "cross_scan":
        args = validate.check_cross_scan(inputs["x"], "cross2d", case.channels_last)
    else:
        args = validate.check_cross_merge(inputs["y"], case.shape.H, case.shape.W, "cross2d", case.channels_last)
    return b.why_not(case.op, args)


def make_runner(impl: str, case: Case, device, out_dtype) -> tuple:
    """(fn(i), bytes, out dtype name, n input sets, first-set inputs) for one case and impl."""
    import vmamba_kernels as vk  # noqa: PLC0415

    sh, dtype = case.shape, DTYPES[case.dtype]
    if case.op == "ss2d_core":
        fn, nbytes, n, first = ss2d_runner(impl, case, device, out_dtype)
        return fn, nbytes, DNAME.get(out_dtype, str(out_dtype)), n, first
    if case.op == "selective_scan":
        odt = dtype if impl == MAMBA else out_dtype
        nbytes = scan_bytes(sh, dtype, odt, case.direction)
        n = n_sets_for(nbytes, device)
        sets = [scan_inputs(sh, dtype, device, seed=1000 + s) for s in range(n)]
        if impl == MAMBA:
            from bench.mamba_ref import mamba_bwd, mamba_fwd  # noqa: PLC0415

            if case.direction == "fwd":
                def fn(i):
                    s = sets[i % n]
                    return mamba_fwd(s["u"], s["delta"], s["A"], s["B"], s["C"], s["D"], s["delta_bias"], True)
            else:
                for s in sets:
                    s["x"] = mamba_fwd(s["u"], s["delta"], s["A"], s["B"], s["C"], s["D"], s["delta_bias"], True)[1]
                    s["dout"] = torch.randn_like(s["u"])

                def fn(i):
                    s = sets[i % n]
                    return mamba_bwd(s["u"], s["delta"], s["A"], s["B"], s["C"], s["D"], s["delta_bias"], True,
                                     s["dout"], s["x"])
        else:
            ops = vk.ops(impl)
            fwd, bwd = ops["scan_fwd"], ops["scan_bwd"]
            if case.direction == "fwd":
                def fn(i):
                    s = sets[i % n]
                    return fwd(s["u"], s["delta"], s["A"], s["B"], s["C"], s["D"], s["delta_bias"], True, out_dtype)
            else:
                for s in sets:
                    s["aux"] = fwd(s["u"], s["delta"], s["A"], s["B"], s["C"], s["D"], s["delta_bias"], True,
                                   out_dtype)[2]
                    s["dout"] = torch.randn(s["u"].shape, device=device, dtype=out_dtype)

                def fn(i):
                    s = sets[i % n]
                    return bwd(s["u"], s["delta"], s["A"], s["B"], s["C"], s["D"], s["delta_bias"], True,
                               s["dout"], s["aux"])
        fn.sets = sets  # the public-function runner (api_runner) rotates the same inputs
        return fn, nbytes, DNAME.get(odt, str(odt)), n, sets[0]
    # cross ops
    nbytes = cross_bytes(sh, dtype)
    n = n_sets_for(nbytes, device)
    g = torch.Generator(device="cpu").manual_seed(7)
    ops = vk.ops(impl)
    cl = case.channels_last
    if case.op == "cross_scan":
        x_shape = map_shape(sh.batch, sh.D, sh.H, sh.W, cl)
        sets = [{"x": torch.randn(*x_shape, generator=g).to(device, dtype)} for _ in range(n)]
        op = ops["cross_scan"]

        def fn(i):
            return op(sets[i % n]["x"], "cross2d", cl)
    else:
        sets = [{"y": torch.randn(sh.batch, K, sh.D, sh.L, generator=g).to(device, dtype)} for _ in range(n)]
        op = ops["cross_merge"]

        def fn(i):
            return op(sets[i % n]["y"], sh.H, sh.W, "cross2d", cl)
    fn.sets = sets
    return fn, nbytes, case.dtype, n, sets[0]


def api_runner(impl: str, case: Case, sets: list, out_dtype) -> Optional[Callable]:
    """fn(i) calling the public function on the runner's input sets (None for mamba_ssm and ops it does not
    know): fwd rows with inputs that need no grad; the scan's bwd rows run the autograd backward of the
    public op (graphs built once per set, kept with retain_graph)."""
    import vmamba_kernels as vk  # noqa: PLC0415

    if impl == MAMBA:
        return None
    n, sh, cl = len(sets), case.shape, case.channels_last
    if case.op == "selective_scan":
        keys = ("u", "delta", "A", "B", "C", "D", "delta_bias")

        def call(s):
            return vk.selective_scan(*(s[k] for k in keys), delta_softplus=True, out_dtype=out_dtype, impl=impl)

        if case.direction == "fwd":
            return lambda i: call(sets[i % n])
        graphs = []
        for s in sets:
            leaves = [s[k].detach().requires_grad_() for k in keys]
            y = vk.selective_scan(*leaves, delta_softplus=True, out_dtype=out_dtype, impl=impl)
            graphs.append((y, leaves, s["dout"]))

        def bwd(i):
            y, leaves, dout = graphs[i % n]
            return torch.autograd.grad(y, leaves, dout, retain_graph=True)
        return bwd
    if case.op == "cross_scan":
        return lambda i: vk.cross_scan(sets[i % n]["x"], "cross2d", channels_last=cl, impl=impl)
    if case.op == "cross_merge":
        return lambda i: vk.cross_merge(sets[i % n]["y"], sh.H, sh.W, "cross2d", channels_last=cl, impl=impl)
    return None  # an op without a public-function runner here: api_wall_ms stays empty


def cheap_inputs(case: Case, device, out_dtype) -> dict:
    """Tiny stand-ins with the case's dtypes/device for support checks (shape-independent limits only
    differ in N, which is kept)."""
    sh = case.shape
    small = StageShape(sh.model, sh.stage, 1, 2, sh.N, 2, 2)
    dtype = DTYPES[case.dtype]
    if case.op == "selective_scan":
        return scan_inputs(small, dtype, device, 0)
    if case.op == "ss2d_core":
        return ss2d_inputs(StageShape(sh.model, sh.stage, 1, 2, sh.N, 2, 2), dtype, device, case.channels_last, 0)
    if case.op == "cross_scan":
        return {"x": torch.randn(*map_shape(1, 2, sh.H, sh.W, case.channels_last)).to(device, dtype)}
    return {"y": torch.randn(1, K, 2, sh.L).to(device, dtype)}


# ---- the sweep -------------------------------------------------------------------------------------
def time_case(impl: str, case: Case, device, out_dtype, warmup: int, reps: int, max_ms: float) -> dict:
    fn, nbytes, odt, n_sets, _ = make_runner(impl, case, device, out_dtype)
    # estimate the cost of one call, then fit the repetitions into max_ms
    fn(0)
    sync(device)
    t0 = time.perf_counter()
    fn(1)
    sync(device)
    est = max((time.perf_counter() - t0) * 1000.0, 1e-3)
    r_eff = int(max(5, min(reps, max_ms / est)))
    w_eff = int(max(2, min(warmup, max_ms / 4 / est)))
    r = time_kernel(fn, device, warmup=w_eff, reps=r_eff)
    r["wall_ms"] = time_wall(fn, device, reps=r_eff)
    api = api_runner(impl, case, fn.sets, out_dtype) if hasattr(fn, "sets") else None
    r["api_wall_ms"] = time_wall(api, device, reps=r_eff) if api is not None else float("nan")
    del fn, api
    if torch.device(device).type == "cuda":
        torch.cuda.empty_cache()
    gbps = nbytes / (r["ms_p50"] * 1e-3) / 1e9
    return {"ms_p50": r["ms_p50"], "ms_p20": r["ms_p20"], "ms_p80": r["ms_p80"], "gbps": gbps, "bytes": nbytes,
            "out_dtype": odt, "reps": r_eff, "n_sets": n_sets, "wall_ms": r["wall_ms"], "api_wall_ms": r["api_wall_ms"]}


def sweep(cases, impls=None, device="cuda", out_dtype=torch.float32, warmup=10, reps=50, max_ms=1000.0,
          reports=None, write=True, on_row: Optional[Callable] = None) -> tuple:
    """Run every (case, impl); returns (KernelRows, skipped [(case, impl, reason)])."""
    device = torch.device(device)
    copy = copy_bandwidth(device)
    env = envmod.capture(device)
    ej = envmod.env_json(env)
    gpu, sha = envmod.gpu_label(device), envmod.git_sha_label()
    rows, skipped = [], []
    per_op = {op: available_impls(op, impls, device) for op in {c.op for c in cases}}
    total = sum(len(per_op[c.op]) for c in cases)
    prog = Progress(total, "kernels")
    out_csv = (reports or reports_dir()) / "kernels.csv"
    for case in cases:
        batch_rows = []
        for impl in per_op[case.op]:
            what = f"{case.op} {case.direction} {case.dtype} {case.shape.model} s{case.shape.stage + 1} {impl}"
            try:
                reasons = why_not(impl, case, cheap_inputs(case, device, out_dtype), out_dtype)
                if reasons:
                    skipped.append((case, impl, "; ".join(reasons)))
                    prog.update(what + " (skipped)")
                    continue
                r = time_case(impl, case, device, out_dtype, warmup, reps, max_ms)
            except Exception as e:  # noqa: BLE001 (one failing impl must not end the sweep)
                if torch.device(device).type == "cuda":
                    torch.cuda.empty_cache()
                skipped.append((case, impl, f"error: {type(e).__name__}: {str(e).splitlines()[0][:200]}"))
                prog.update(what + " (error)")
                continue
            row = KernelRow(
                op=case.op, impl=impl, direction=case.direction, dtype=case.dtype, shape=case.label(),
                ms_p50=r["ms_p50"], gbps=r["gbps"], gpu=gpu, git_sha=sha, timestamp=envmod.utc_now(),
                ms_p20=r["ms_p20"], ms_p80=r["ms_p80"], copy_gbps=copy,
                pct_of_copy=100.0 * r["gbps"] / copy if copy == copy else float("nan"),
                model=case.shape.model, stage=case.shape.stage, out_dtype=r["out_dtype"], batch=case.shape.batch,
                bytes=r["bytes"], reps=r["reps"], method="cuda_events_p50" if device.type == "cuda" else "perf_counter_p50",
                note=f"{r['n_sets']} rotating input sets", env_json=ej, wall_ms=r["wall_ms"],
                api_wall_ms=r["api_wall_ms"])
            batch_rows.append(row)
            if on_row is not None:
                on_row(row)
            prog.update(what + f" {r['ms_p50']:.3f} ms (wall {r['wall_ms']:.3f}, api {r['api_wall_ms']:.3f})")
        if write and batch_rows:
            append_rows(out_csv, batch_rows)
        rows += batch_rows
    prog.close()
    return rows, skipped


def pivot_table(rows) -> str:
    """One line per (op, dir, dtype, model, stage): 'ms (GB/s) api-wall-ms' per impl (device time, then
    the host-inclusive time of the public function)."""
    impls = []
    for r in rows:
        if r.impl not in impls:
            impls.append(r.impl)
    keyed = {}
    for r in rows:
        k = (r.op, r.direction, r.dtype, r.model, r.stage, r.shape)
        api = "" if r.api_wall_ms != r.api_wall_ms else f" {r.api_wall_ms:.3f}"
        keyed.setdefault(k, {})[r.impl] = f"{r.ms_p50:.3f} ({r.gbps:.0f}){api}"
    out = []
    for (op, d, dt, m, st, shape), by in keyed.items():
        row = {"op": op, "dir": d, "dtype": dt, "model": m, "stage": str(st + 1), "shape": shape}  # paper's 1-4
        row.update({i: by.get(i, "-") for i in impls})
        out.append(row)
    return format_table(out, ["op", "dir", "dtype", "model", "stage", "shape"] + impls)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m bench.kernels",
        description="Time every available kernel impl (and mamba_ssm when built) over VMamba's stage shapes; "
                    "append rows to REPORTS/kernels.csv. Cells print as 'device ms (GB/s) public-function wall ms'.")
    p.add_argument("--ops", default=",".join(OPS),
                   help=f"comma list of {', '.join(KNOWN_OPS)} (default %(default)s; ss2d_core: the fused op and, "
                        f"as impl '<impl>{UNFUSED}', the chain it replaces)")
    p.add_argument("--impls", default=None,
                   help="comma list of impls (default: every available one except torch_sequential, + mamba_ssm)")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma list (default %(default)s)")
    p.add_argument("--dtypes", default="fp32,fp16,bf16", help="comma list of fp32,fp16,bf16 (default %(default)s)")
    p.add_argument("--directions", default="fwd,bwd", help="fwd,bwd (bwd applies to the scan and ss2d_core)")
    p.add_argument("--stages", default="1,2,3,4",
                   help="comma list of stages, numbered 1-4 as in the paper (the CSV's stage column holds the "
                        "0-based index, stage - 1) (default %(default)s)")
    p.add_argument("--layouts", default="cf",
                   help="cross ops and ss2d_core: comma list of cf (channels-first map) and cl (channels-last; rows are labelled "
                        "'channels_last') (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--out-dtype", choices=["fp32", "input"], default="fp32",
                   help="scan output dtype of the project impls (default fp32, as VMamba; mamba_ssm: always input)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--reps", type=int, default=50, help="timed calls per case (fewer when a call is slow)")
    p.add_argument("--max-ms", type=float, default=1000.0, help="time budget per case and impl, ms")
    p.add_argument("--quick", action="store_true",
                   help="vmamba_t only, fp16 only, 20 reps: a one-minute overview")
    p.add_argument("--device", default=None)
    p.add_argument("--reports-dir", default=None)
    p.add_argument("--no-csv", action="store_true")
    p.add_argument("--save-cpu", action="store_true",
                   help="append rows timed on the CPU to reports/kernels.csv too (by default they are only printed)")
    a = p.parse_args(argv)
    device = torch.device(a.device) if a.device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if a.quick:
        a.models, a.dtypes, a.reps, a.warmup, a.max_ms = "vmamba_t", "fp16", 20, 5, 300.0
    # CPU rows go to a reports folder only when asked: an explicit --reports-dir, or --save-cpu
    write = not a.no_csv and (device.type == "cuda" or a.save_cpu or a.reports_dir is not None)
    if device.type != "cuda":
        print("note: no CUDA device: timing on the CPU (only meaningful for tiny shapes); "
              + ("rows marked gpu=cpu are written" if write else
                 "rows are printed, not written (--save-cpu or --reports-dir DIR to keep them)"), file=sys.stderr)
    try:
        numbers = {int(s) for s in a.stages.split(",") if s}
    except ValueError:
        p.error(f"--stages: expected a comma list of 1-4, got {a.stages!r}")
    if not numbers or not numbers <= {1, 2, 3, 4}:
        p.error(f"--stages: stages are numbered 1-4 as in the paper, got {a.stages!r}")
    stages = {n - 1 for n in numbers}
    bad_ops = [o for o in a.ops.split(",") if o and o not in KNOWN_OPS]
    if bad_ops:
        p.error(f"--ops: unknown {', '.join(bad_ops)} (choose from {', '.join(KNOWN_OPS)})")
    layouts = [x for x in a.layouts.split(",") if x]
    bad = [x for x in layouts if x not in LAYOUTS]
    if bad:
        p.error(f"--layouts: unknown {', '.join(bad)} (choose from {', '.join(LAYOUTS)})")
    cases = [c for c in build_cases(a.models.split(","), a.ops.split(","), a.dtypes.split(","),
                                    a.directions.split(","), a.batch_size, a.img_size, layouts)
             if c.shape.stage in stages]
    out_dtype = torch.float32 if a.out_dtype == "fp32" else None
    impls = a.impls.split(",") if a.impls else None
    t0 = time.perf_counter()
    if out_dtype is None:  # per case: the input dtype
        rows, skipped = [], []
        for dt in sorted({c.dtype for c in cases}):
            r, s = sweep([c for c in cases if c.dtype == dt], impls, device, DTYPES[dt], a.warmup, a.reps,
                         a.max_ms, reports_dir(a.reports_dir), write)
            rows += r
            skipped += s
    else:
        rows, skipped = sweep(cases, impls, device, out_dtype, a.warmup, a.reps, a.max_ms,
                              reports_dir(a.reports_dir), write)
    copy = copy_bandwidth(device)
    print()
    if skipped:
        reasons = {}
        for c, impl, why in skipped:
            reasons.setdefault((impl, why), 0)
            reasons[(impl, why)] += 1
        print("skipped:")
        for (impl, why), n in reasons.items():
            print(f"  {impl} x{n}: {why}")
        print()
    print(pivot_table(rows))
    print(f"\ncopy bandwidth {copy:.0f} GB/s (read + write); {len(rows)} rows"
          f"{' -> ' + str(reports_dir(a.reports_dir) / 'kernels.csv') if write else ' (not written)'}; "
          f"{time.perf_counter() - t0:.0f} s")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
