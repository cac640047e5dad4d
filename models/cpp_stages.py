"""VMamba v2 stages' inference forward as C++ host code: one Python call per stage (issue #20, opt-in).

Why: at small batches a VMamba forward waits on the host issuing kernels, not on the GPU: a VMamba-T forward makes
about 500 top-level operator calls from Python (bench.host_step), 13.7 ms at batch 1 on the H100 host and as long at
batch 32, where the GPU needs a third of that (reports/logs/2026-12-07_cpp_stages.md). `vmamba_kernels._C.
vss_stage_infer` (csrc/vss_stage/vss_stage.cpp) runs a stage's blocks in C++: the same kernels the Python fast path
issues (VSSBlock.forward_fused with models/chain.py's unfused chain, the cuda backend's entry points, ATen's GEMMs,
cudnn's convolution), in the same order with the same arguments, so the logits are the Python path's bit for bit
(tests/test_cpp_stages.py). The patch embedding, the downsamplings and the classifier stay in Python (a few calls).

When it runs (VSSM.set_cpp_stages(True); `why_not(model)` says, per stage, why not):
- per call: grad disabled, eval mode, plain eager execution (vmamba_kernels._library.eager_allowed), a non-empty map;
- per stage and input signature (shape, dtype, autocast dtype, device, deterministic flag, default impl, registered
  backends): the first call runs the Python path and reads what ran in it. The C++ path takes over when every block is
  a channels-last v05_noz SS2D (VMamba v2's default) with a depthwise conv + SiLU / GELU, a GELU MLP or none, its norms,
  cross scan, scan and cross merge ran on the cuda backend and its conv on cuda or cudnn, and the fused ss2d_core is
  off. Otherwise the stage keeps the Python path for that signature.
The weights are handed over as the kernels take them (cast to the compute dtype, A = -exp(A_logs)) and kept across
calls while every parameter keeps its version counter and storage: the contract of models/weight_cache.py (a write
through `p.data` is not seen; use it for serving and evaluation). `set_impl` and `set_cpp_stages` forget the plans.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

from vmamba_kernels import dispatch
from vmamba_kernels._library import eager_allowed

from . import fused, weight_cache
from .chain import scan_consts
from .fused import act_name, as_dtype, autocast_dtype, dwconv_supported
from .layers import LayerNorm, Linear
from .policy import OFF

BACKEND = "cuda"  # the backend whose entry points the C++ stage calls (the CPU tests stand in another)
SLOTS = 23  # weight slots per block, csrc/vss_stage/vss_stage.cpp's Slot order
_PLANS, _PACK, _LAST = "_cpp_plans", "_cpp_pack", "_cpp_last"


def runner():
    """vmamba_kernels._C.vss_stage_infer, or None when the extension is not built or built without it."""
    try:
        from vmamba_kernels import _C  # noqa: PLC0415
    except ImportError:
        return None
    return getattr(_C, "vss_stage_infer", None)


class _Plan:
    """What the C++ stage takes besides x and the weights, for one input signature."""

    __slots__ = ("flags", "eps", "act", "approximate", "ct", "params")


def clear(stage) -> None:
    """Forget the stage's plans and packed weights."""
    for slot in (_PLANS, _PACK, _LAST):
        stage.__dict__.pop(slot, None)


def last_path(stage) -> Optional[str]:
    """"cpp" when the stage's last eligible call ran in C++, else why it ran in Python (None before any call)."""
    return stage.__dict__.get(_LAST)


def why_not(model) -> dict:
    """{stage index: "cpp" or why its last call ran in Python (None: not called since the setting changed)}."""
    return {i: last_path(stage) for i, stage in enumerate(model.layers)}


def run(stage, x: torch.Tensor, python):
    """The stage's blocks on x (its forward_blocks without checkpointing): through the C++ runner when the plan for
    x's signature allows, else `python(x)` (the first call of a signature runs python and makes the plan)."""
    if (stage.training or torch.is_grad_enabled() or x.numel() == 0 or not eager_allowed(x)
            or any(b.training for b in stage.blocks)):  # a block put back in training mode: its drop path samples
        return python(x)
    key = (x.shape, x.dtype, x.device, autocast_dtype(x), torch.are_deterministic_algorithms_enabled(),
           dispatch.get_default_impl(), len(dispatch._REGISTRY), fused.lean_norms, fused.SMALL_DWCONV_PIXELS)
    plans = stage.__dict__.setdefault(_PLANS, {})
    plan = plans.get(key)
    if plan is None:
        y = python(x)
        plan = plans[key] = _make_plan(stage, x)
        stage.__dict__[_LAST] = "first call of this input signature (ran in Python, plan made)"
        return y
    if isinstance(plan, str):
        stage.__dict__[_LAST] = plan
        return python(x)
    stage.__dict__[_LAST] = "cpp"
    return runner()(x, _weights(stage, plan), plan.eps, plan.flags, plan.act, plan.approximate, plan.ct)


def _make_plan(stage, x):
    """A _Plan when the stage's blocks, as the Python path just ran them, are what the C++ stage runs; else why not."""
    if runner() is None:
        return ("the extension has no vss_stage_infer (not built, or built before it): rebuild with "
                "`pip install --no-build-isolation -e .`")
    if not fused.lean_norms:
        return "models.fused.lean_norms is off"
    if len(stage.blocks) == 0:
        return "the stage has no blocks"
    acts, approximates, flags, eps, params = set(), set(), [], [], {}
    for j, blk in enumerate(stage.blocks):
        why = _block_refusal(blk)
        if why:
            return f"block {j}: {why}"
        op = blk.op
        acts.add(act_name(op.act))
        if blk.mlp_branch:
            approximates.add(blk.mlp.act.approximate)
        flags.append((1 if op._ran.get("dwconv2d") == BACKEND else 0) | (2 if blk.mlp_branch else 0))
        eps += [float(blk.norm.eps), float(op.out_norm.eps), float(blk.norm2.eps) if blk.mlp_branch else 0.0]
        for t in blk.parameters():
            params.setdefault(id(t), t)
    if len(acts) != 1 or len(approximates) > 1:
        return f"the blocks' activations differ (SS2D {sorted(acts)}, MLP GELU {sorted(approximates)})"
    p = _Plan()
    p.flags, p.eps, p.act, p.approximate = flags, eps, acts.pop(), approximates.pop() if approximates else "none"
    p.ct = autocast_dtype(x) or x.dtype
    p.params = list(params.values())  # the packed weights' key reads these
    return p


def _block_refusal(blk) -> Optional[str]:
    from .ss2d import SS2Dv05  # noqa: PLC0415  (ss2d imports fused, as this module does)

    op = blk.op
    if type(op) is not SS2Dv05 or op.with_z or not op.channels_last:
        return "its SS2D is not a channels-last v05_noz layer (the C++ stage runs VMamba v2's default blocks)"
    if not op.with_dconv or not dwconv_supported(op.conv2d, op.act) or act_name(op.act) not in ("silu", "gelu"):
        return "its SS2D has no depthwise conv + SiLU / GELU"
    if op.impl_ss2d_core != OFF or not op.chain_autograd:
        return "its SS2D does not run the unfused chain (the fused ss2d_core is on, or chain_autograd is off)"
    if not isinstance(op.out_act, nn.Identity) or not isinstance(op.dropout, (nn.Identity, nn.Dropout)):
        return "its SS2D has an output activation"
    norms = (blk.norm, op.out_norm) + ((blk.norm2,) if blk.mlp_branch else ())
    if any(type(n) is not LayerNorm or n.impl == OFF for n in norms):
        return "a norm runs the torch module (policy add_layer_norm 'off')"
    ran = op._ran
    for name in ("add_layer_norm", "cross_scan", "selective_scan", "cross_merge"):
        if ran.get(name) != BACKEND:
            return f"{name} ran on {ran.get(name)!r}, not {BACKEND!r}"
    if ran.get("dwconv2d") not in (BACKEND, OFF):
        return f"dwconv2d ran on {ran.get('dwconv2d')!r}, not {BACKEND!r} or cudnn"
    if blk.mlp_branch:
        m = blk.mlp
        if type(m.fc1) is not Linear or type(m.fc2) is not Linear or type(m.act) is not nn.GELU:
            return "its MLP is not Linear, GELU, Linear"
    if type(op.in_proj) is not Linear or type(op.out_proj) is not Linear:
        return "its projections are not Linear layers"
    return None


def _weights(stage, plan: _Plan) -> list:
    """The plan's weights in vss_stage_infer's slot order, as the kernels take them: made once and kept while every
    parameter keeps its version counter and storage (models/weight_cache.py's contract). The 16-bit casts are the
    weight cache's own (`weight_cache.cached` on the same modules with the same keys as the Python path), so the
    weights are held once whichever path runs."""
    # 36 us for VMamba-T's 180 parameters on a 2-core VM: small against the Python blocks it replaces
    key = tuple((t._version, t.data_ptr()) for t in plan.params)
    hit = stage.__dict__.get(_PACK)
    if hit is not None and hit[0] == key:
        return hit[1]
    ct, f32 = plan.ct, torch.float32

    def cast(m):  # (weight, bias) of a Linear / Conv2d in the compute dtype: the params themselves, or the kept casts
        return (m.weight, m.bias) if m.weight.dtype == ct else weight_cache.cached(m, (m.weight, m.bias), ct)

    def norm(n):  # (weight, bias) of a LayerNorm as models.fused.add_norm passes them
        return as_dtype(n.weight, f32), None if n.bias is None else as_dtype(n.bias, f32)

    out = []
    with torch.no_grad():
        for blk in stage.blocks:
            op = blk.op
            # models.chain's consts, from the same cache entry the chain reads (key: the weights and (gemm, wt) dtypes)
            consts = scan_consts(op.x_proj_weight, op.dt_projs_weight, op.A_logs, op.Ds, op.dt_projs_bias, ct, f32,
                                 cache=op)
            conv32 = (as_dtype(op.conv2d.weight, f32), None if op.conv2d.bias is None else as_dtype(op.conv2d.bias, f32))
            mlp = blk.mlp_branch
            out += [*norm(blk.norm), *cast(op.in_proj), *conv32, *cast(op.conv2d), *consts, *norm(op.out_norm),
                    *cast(op.out_proj), *(norm(blk.norm2) if mlp else (None, None)),
                    *(cast(blk.mlp.fc1) if mlp else (None, None)), *(cast(blk.mlp.fc2) if mlp else (None, None))]
    stage.__dict__[_PACK] = (key, out)
    return out
