"""FLOPs and parameters in VMamba's official convention (fvcore style), plus Gu's selective-scan formula.

Official convention (the official analyze/ flop counting; what VMamba's reported GFLOPs use):
- one multiply-add counts as one FLOP ("GFLOPs" are really GMACs);
- conv = Cout * (Cin/groups) * kh * kw * output pixels (bias free); linear = in * out per token;
  matmul / einsum = product of the index sizes of the two-operand contraction;
- layer_norm = 5 * numel (4 without affine), adaptive_avg_pool = input numel;
- elementwise ops (silu, gelu, add, mul, softplus, ...) and cross_scan / cross_merge count 0;
- the fast path's fused ops count as what they replace: add_layer_norm as its layer_norm, dwconv2d as
  its depthwise conv (the residual add and the activation count 0), ss2d_core as its chain (the x
  projection K*(R+2N)*D and the dt projection K*D*R per pixel, plus the scan's formula below);
- selective scan (Gu's formula, as VMamba registers it for fvcore): 9 * B * L * D * N, plus B * D * L
  when D is given (plus B * D * L with z, which VMamba never uses); head included;
  input 1 x 3 x 224 x 224, model in eval mode.

How: `OfficialFlopCounter` is a `torch.utils.flop_counter.FlopCounterMode` whose formula table is
torch's own (which counts 2 FLOPs per multiply-add) halved, plus the selective-scan formula for the
project's custom ops `torch.ops.vmamba_kernels.selective_scan_fwd_<impl>` (one per registered
backend), plus a TorchFunctionMode that adds layer_norm / group_norm / batch_norm and adaptive
average pooling, which torch's counter ignores. By default the forward runs on fake tensors
(FakeTensorMode): shapes only, no arithmetic, so all nine released variants count in seconds on a CPU.

`register_scan_flop_formulas()` also registers Gu's formula in torch's global flop registry, so a
plain `FlopCounterMode` sees the scan (there it sits next to torch's 2-per-MAC matmul counts).
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from typing import Optional

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils import flop_counter as _fc

NAMESPACE = "vmamba_kernels"

# exact fvcore numbers (params, GFLOPs at 224) of the nine released variants: one table, kept by models/
from models.registry import OFFICIAL_COUNTS as OFFICIAL  # noqa: E402


# ---- Gu's formula -------------------------------------------------------------------------------
def selective_scan_flops(batch: int, dim: int, seqlen: int, d_state: int, with_D: bool = True,
                         with_Z: bool = False) -> int:
    """Gu's count for one selective scan: 9*B*L*D*N (+ B*D*L for D, + B*D*L for z).
    `dim` is the total channel count (K*D in VMamba's notation)."""
    flops = 9 * batch * seqlen * dim * d_state
    if with_D:
        flops += batch * dim * seqlen
    if with_Z:
        flops += batch * dim * seqlen
    return flops


def _scan_formula(u_shape, delta_shape, A_shape, B_shape, C_shape, D_shape=None, *args, out_shape=None,
                  **kwargs) -> int:
    # shapes of the custom op's arguments (u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype)
    batch, dim, seqlen = u_shape
    return selective_scan_flops(batch, dim, seqlen, A_shape[1], with_D=D_shape is not None)


def _zero_formula(*args, out_shape=None, **kwargs) -> int:
    return 0


def _layer_norm_formula(x_shape, *args, out_shape=None, **kwargs) -> int:
    """The fused add_layer_norm: fvcore's layer_norm count (5 per element, affine); the add counts 0."""
    n = 1
    for s in x_shape:
        n *= int(s)
    return 5 * n


def _dwconv_formula(x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """The fused depthwise conv: Cout * (Cin / groups) * k * k * output pixels = C * K * K * B * H * W."""
    n = 1
    for s in x_shape:
        n *= int(s)
    return n * int(w_shape[-1]) * int(w_shape[-2])


def ss2d_core_flops(batch: int, dim: int, pixels: int, d_state: int, dt_rank: int, routes: int = 4,
                    with_D: bool = True) -> int:
    """The chain ss2d_core replaces, as the unfused layer counts it: the grouped x projection
    (K * (R + 2N) * D per pixel), the grouped dt projection (K * D * R per pixel) and the selective scan
    over the K * D route channels (Gu's formula); the cross scan / merge count 0."""
    proj = batch * pixels * routes * dim * ((dt_rank + 2 * d_state) + dt_rank)
    return proj + selective_scan_flops(batch, routes * dim, pixels, d_state, with_D=with_D)


def _ss2d_core_formula(x_shape, xpw_shape, dtw_shape, A_shape, D_shape=None, *args, out_shape=None, **kwargs) -> int:
    # shapes of the custom op's arguments (x, x_proj_weight, dt_projs_weight, A, D, delta_bias, mode, ...)
    K, dim, R = dtw_shape
    n = 1
    for s in x_shape:
        n *= int(s)
    batch = int(x_shape[0])
    pixels = n // max(1, batch * dim)
    return ss2d_core_flops(batch, dim, pixels, A_shape[1], R, K, with_D=D_shape is not None)


def project_ops() -> dict:
    """{'scan' | 'zero' | 'layer_norm' | 'dwconv': [op packets]} for every registered backend (loads the
    registry)."""
    from vmamba_kernels import dispatch  # noqa: PLC0415

    out = {"scan": [], "zero": [], "layer_norm": [], "dwconv": [], "ss2d_core": []}
    ns = getattr(torch.ops, NAMESPACE)
    for b in dispatch.backends():
        if "selective_scan" in b.ops:
            out["scan"].append(getattr(ns, f"selective_scan_fwd_{b.name}"))
        if "cross_scan" in b.ops or "cross_merge" in b.ops:
            out["zero"].append(getattr(ns, f"cross_scan_{b.name}"))
            out["zero"].append(getattr(ns, f"cross_merge_{b.name}"))
        if "add_layer_norm" in b.ops:
            out["layer_norm"].append(getattr(ns, f"add_layer_norm_fwd_{b.name}"))
        if "dwconv2d" in b.ops:
            out["dwconv"].append(getattr(ns, f"dwconv2d_fwd_{b.name}"))
        if "ss2d_core" in b.ops:
            out["ss2d_core"].append(getattr(ns, f"ss2d_core_fwd_{b.name}"))
    return out


FORMULAS = {"scan": lambda: _scan_formula, "zero": lambda: _zero_formula,
            "layer_norm": lambda: _layer_norm_formula, "dwconv": lambda: _dwconv_formula,
            "ss2d_core": lambda: _ss2d_core_formula}


_REGISTERED = set()


def register_scan_flop_formulas() -> list:
    """Register Gu's formula (and 0 for cross_scan/cross_merge) in torch.utils.flop_counter's global
    registry for every registered backend's ops; idempotent. Returns the registered op names."""
    ops = project_ops()
    for kind, formula in (("scan", _scan_formula), ("zero", _zero_formula)):  # the fused ops' formulas are
        for packet in ops[kind]:                                              # the official convention only
            if packet in _fc.flop_registry or packet in _REGISTERED:
                _REGISTERED.add(packet)
                continue
            _fc.register_flop_formula(packet)(formula)
            _REGISTERED.add(packet)
    return sorted(str(p) for p in _REGISTERED)


# ---- the official counter -----------------------------------------------------------------------
def _halved(f):
    def g(*args, **kwargs):
        return f(*args, **kwargs) // 2
    return g


def _numel(t) -> int:
    n = 1
    for s in t.shape:
        n *= int(s)
    return n


class _NormPoolCounter(TorchFunctionMode):
    """Adds what fvcore counts and torch's counter ignores: normalisation and average pooling."""

    def __init__(self, counter):
        super().__init__()
        self.counter = counter

    def _add(self, key, n):
        for par in set(self.counter.mod_tracker.parents):
            self.counter.flop_counts[par][key] += n

    _LN = (F.layer_norm, F.group_norm, torch.layer_norm, torch.group_norm)
    _POOL = (F.adaptive_avg_pool1d, F.adaptive_avg_pool2d, F.adaptive_avg_pool3d, torch.adaptive_avg_pool1d)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        # (the inner calls these functions make run with this mode disabled: nothing is counted twice)
        if func in self._LN:
            # layer_norm(input, normalized_shape, weight, bias, ...), group_norm(input, groups, weight, bias, ...)
            weight = args[2] if len(args) > 2 else kwargs.get("weight")
            self._add("layer_norm" if "layer" in func.__name__ else "group_norm",
                      _numel(args[0]) * (5 if weight is not None else 4))
        elif func is F.batch_norm or func is torch.batch_norm:
            # F.batch_norm(input, running_mean, running_var, weight, bias, training, ...);
            # torch.batch_norm(input, weight, bias, running_mean, running_var, training, ...)
            wi = 3 if func is F.batch_norm else 1
            weight = args[wi] if len(args) > wi else kwargs.get("weight")
            training = args[5] if len(args) > 5 else kwargs.get("training", False)
            # fvcore: 1 (2 with affine) per element in eval, the layer_norm count in training
            per = (5 if weight is not None else 4) if training else (2 if weight is not None else 1)
            self._add("batch_norm", _numel(args[0]) * per)
        elif func in self._POOL:
            self._add("adaptive_avg_pool", _numel(args[0]))
        return func(*args, **kwargs)


class OfficialFlopCounter(_fc.FlopCounterMode):
    """FlopCounterMode counting in the official (fvcore) convention; see the module docstring.

        with OfficialFlopCounter() as c:
            model(x)
        c.get_total_flops(), c.by_op()
    """

    def __init__(self, depth: int = 2, display: bool = False):
        super().__init__(depth=depth, display=display)
        ops = project_ops()
        ours = {p for kind in ops.values() for p in kind}
        table = {k: _halved(v) for k, v in _fc.flop_registry.items() if k not in ours}
        for kind, packets in ops.items():
            for p in packets:
                table[p] = _fc.shape_wrapper(FORMULAS[kind]())
        self.flop_registry = table
        self._fn_mode = _NormPoolCounter(self)

    def __enter__(self):
        r = super().__enter__()
        self._fn_mode.__enter__()
        return r

    def __exit__(self, *args):
        self._fn_mode.__exit__(*args)
        return super().__exit__(*args)

    def by_op(self) -> dict:
        """{op name: count} over the whole model, grouped into readable categories."""
        out = defaultdict(int)
        for k, v in self.flop_counts["Global"].items():
            name = str(k)
            if "selective_scan" in name:
                name = "selective_scan"
            elif "ss2d_core" in name:
                name = "ss2d_core"
            elif "add_layer_norm" in name:
                name = "layer_norm"
            elif "convolution" in name or "dwconv2d" in name:
                name = "conv"
            elif name.startswith("aten."):
                name = name[5:]
            out[name] += v
        return dict(out)


def _first_param(model):
    for p in model.parameters():
        return p
    return None


def model_flops(model: torch.nn.Module, img_size: int = 224, batch: int = 1, in_chans: int = 3,
                fake: bool = True, by_op: bool = False, inputs: Optional[torch.Tensor] = None):
    """Official-convention FLOPs (multiply-adds, head included) of one forward of `model` in eval
    mode on a (batch, in_chans, img_size, img_size) input. Runs on fake tensors unless fake=False
    (or the fake run fails, e.g. on an op without a fake implementation). Returns the int count, or
    (count, {op: count}) when by_op."""
    was_training = model.training
    model.eval()
    p = _first_param(model)
    device = p.device if p is not None else torch.device("cpu")
    dtype = p.dtype if p is not None and p.is_floating_point() else torch.float32
    shape = (batch, in_chans, img_size, img_size) if inputs is None else tuple(inputs.shape)
    try:
        if fake:
            try:
                return _count(model, shape, device, dtype, True, by_op)
            except Exception as e:  # noqa: BLE001 (fall back to a real forward)
                print(f"[flops] fake-tensor count failed ({type(e).__name__}: {e}); counting with a real forward",
                      file=sys.stderr)
        return _count(model, shape, device, dtype, False, by_op, inputs)
    finally:
        model.train(was_training)


def _count(model, shape, device, dtype, fake, by_op, inputs=None):
    from torch._subclasses.fake_tensor import FakeTensorMode  # noqa: PLC0415

    counter = OfficialFlopCounter()
    with torch.no_grad():
        if fake:
            with FakeTensorMode(allow_non_fake_inputs=True):
                x = torch.empty(shape, device=device, dtype=dtype)
                with counter:
                    model(x)
        else:
            x = inputs if inputs is not None else torch.randn(shape, device=device, dtype=dtype)
            with counter:
                model(x)
    total = counter.get_total_flops()
    return (total, counter.by_op()) if by_op else total


def model_params(model: torch.nn.Module) -> int:
    """Parameter count as fvcore's parameter_count reports it (all parameters, head included)."""
    seen, n = set(), 0
    for p in model.parameters():
        if id(p) not in seen:
            seen.add(id(p))
            n += p.numel()
    return n


# ---- fvcore (optional) ---------------------------------------------------------------------------
def fvcore_flops(model: torch.nn.Module, img_size: int = 224):
    """The same count through fvcore's FlopCountAnalysis with a handle for the project's scan ops
    (Gu's formula) and 0 for cross_scan/cross_merge; None when fvcore is not installed."""
    try:
        from fvcore.nn import FlopCountAnalysis  # noqa: PLC0415
        from fvcore.nn.jit_handles import get_shape  # noqa: PLC0415
    except ImportError:
        return None

    def scan_handle(inputs, outputs):
        batch, dim, seqlen = get_shape(inputs[0])
        n = get_shape(inputs[2])[1]
        has_d = inputs[5].type().kind() != "NoneType"
        return selective_scan_flops(batch, dim, seqlen, n, with_D=has_d)

    model.eval()
    p = _first_param(model)
    x = torch.randn(1, 3, img_size, img_size, device=p.device if p is not None else "cpu")
    fca = FlopCountAnalysis(model, (x,))
    ops = project_ops()
    for packet in ops["scan"]:
        fca.set_op_handle(f"{NAMESPACE}::{packet._qualified_op_name.split('::')[-1]}", scan_handle)
    for packet in ops["zero"]:
        fca.set_op_handle(f"{NAMESPACE}::{packet._qualified_op_name.split('::')[-1]}", None)
    fca.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    return fca.total()


# ---- CLI ------------------------------------------------------------------------------------------
def main(argv=None) -> int:
    from bench.results import format_table  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="python -m bench.flops",
                                description="Params and official-convention GFLOPs (multiply-adds, head included) "
                                            "of models from models.create_model, compared with the official numbers.")
    p.add_argument("--model", action="append", default=None,
                   help="model name(s), repeatable or comma list; 'released' = the nine released variants "
                        "(default), 'all' = models.list_models()")
    p.add_argument("--img-size", type=int, default=224)
    p.add_argument("--impl", default="torch", help="kernel impl to build the models with (default torch)")
    p.add_argument("--by-op", action="store_true", help="also print the count per op category")
    a = p.parse_args(argv)
    import models  # noqa: PLC0415

    names = []
    for m in a.model or ["released"]:
        for n in m.split(","):
            if n == "released":
                names += [resolve_model_name(k) for k in OFFICIAL]
            elif n == "all":
                names += list(models.list_models())
            elif n:
                names.append(n)
    rows = []
    for name in names:
        model = models.create_model(name, impl=a.impl)
        total, ops = model_flops(model, img_size=a.img_size, by_op=True)
        params = model_params(model)
        off = official_for(name)
        row = {"model": name, "params": params, "GFLOPs": f"{total / 1e9:.9f}"}
        if off is not None and a.img_size == 224:
            row["official params"] = off[0]
            row["official GFLOPs"] = f"{off[1]:.9f}"
            row["diff %"] = f"{100 * (total / 1e9 - off[1]) / off[1]:+.4f}"
        rows.append(row)
        if a.by_op:
            print(name + ": " + ", ".join(f"{k} {v / 1e9:.4f}G" for k, v in sorted(ops.items())))
        del model
    cols = ["model", "params", "official params", "GFLOPs", "official GFLOPs", "diff %"]
    print(format_table(rows, cols))
    return 0


ALIASES = {
    "vmamba_tiny_s1l8": ("vmamba_t", "vmamba_tiny", "vmamba_tiny_s1l8"),
    "vmamba_small_s2l15": ("vmamba_s", "vmamba_small", "vmamba_small_s2l15"),
    "vmamba_base_s2l15": ("vmamba_b", "vmamba_base", "vmamba_base_s2l15"),
}


def resolve_model_name(official: str) -> str:
    """The name under which models.list_models() offers an official builder's variant."""
    try:
        import models  # noqa: PLC0415

        available = set(models.list_models())
    except Exception:  # noqa: BLE001
        return official
    if official in available:
        return official
    for cand in ALIASES.get(official, ()):  # the headline aliases only: never guess other names
        if cand in available:
            return cand
    return official


def official_for(name: str):
    """(params, GFLOPs) of the official variant `name` (builder name or alias), else None."""
    if name in OFFICIAL:
        return OFFICIAL[name]
    for off, aliases in ALIASES.items():
        if name in aliases:
            return OFFICIAL[off]
    for off in OFFICIAL:
        if resolve_model_name(off) == name:
            return OFFICIAL[off]
    return None


if __name__ == "__main__":
    sys.exit(main())
