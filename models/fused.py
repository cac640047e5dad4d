"""The fused ops the fast path calls, with the reference composition each one replaces.

`impl` follows the layer's kernel policy (models/policy.py): a backend name or None (automatic) runs
the vmamba_kernels op; "off" runs the unfused torch modules the reference path uses (exactly the
official computation). Both give the same result within the dtype's rounding.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn as nn

import vmamba_kernels as vk
from vmamba_kernels._library import eager_allowed

from .norm_node import add_norm_node
from .policy import DWCONV_AUTO, OFF  # OFF: run the reference torch modules instead of a fused op
lean_norms = True  # eager add + norm through models.norm_node (False: the public op, for A/B timing)
# dwconv2d left automatic (policy.DWCONV_AUTO) runs the fused op instead of cudnn on a CUDA map of at most this
# many pixels (batch * H * W: a 224x224 image's stage-1 map is 56 x 56 = 3136). There the step waits on the
# host, and cudnn's path (permute, conv, activation, permute) costs more host time than the fused op's one call:
# -5.8% per VMamba-T batch-1 forward (reports/logs/2026-12-03_compile_latency_H200.md); at batch 128 cudnn's
# kernels measured faster. 0 turns it off.
SMALL_DWCONV_PIXELS = 4096
ACT_NAMES = {nn.SiLU: "silu", nn.GELU: "gelu", nn.Identity: "none"}


def autocast_dtype(x: torch.Tensor) -> Optional[torch.dtype]:
    """The autocast dtype in force for x's device type, or None."""
    kind = x.device.type
    if kind in ("cuda", "cpu") and torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return None


def act_name(act: nn.Module) -> Optional[str]:
    """The fused ops' name of an activation module ("silu", "gelu", "none"), None if not fusable."""
    if type(act) is nn.GELU and act.approximate != "none":
        return None
    return ACT_NAMES.get(type(act))


def scaled(branch: torch.Tensor, scale: Optional[torch.Tensor]) -> torch.Tensor:
    if scale is None:
        return branch
    return branch * scale.view((-1,) + (1,) * (branch.dim() - 1)).to(branch.dtype)


def as_dtype(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """t in dtype, without a dispatcher call when it already is (a no-op .to() costs microseconds of host
    time, and a model step makes hundreds of them)."""
    return t if t.dtype == dtype else t.to(dtype)


def direct(fn, impl, *args, **kwargs):
    """Call a vmamba_kernels op with impl= (the layers pass their own `_call`: fallback, what ran)."""
    return fn(*args, impl=impl, **kwargs)


def add_norm(norm: nn.LayerNorm, x: torch.Tensor, branch: Optional[torch.Tensor] = None,
             branch_scale: Optional[torch.Tensor] = None, *, channels_last: bool,
             out_dtype: Optional[torch.dtype] = None, impl: Optional[str] = None, call=None, note=None):
    """s = x + branch_scale[b] * branch (s = x without a branch); y = norm(s) over the channel axis.

    Returns (y, s). y is written in out_dtype (default: what the reference norm gives: float32 under
    autocast, x's dtype otherwise); s keeps the residual stream's dtype. impl "off": the torch modules;
    else vmamba_kernels.add_layer_norm: in plain eager execution as models.norm_node's lean node (then
    `note(backend name)` is told what ran), otherwise, or when `impl` refuses the inputs, through
    `call(fn, impl, *args)` (default: a plain call), which falls back or raises as the layer's policy says.
    A norm with `recompute_from_output` set (VSSM.set_recompute "norms") keeps y instead of s for its backward
    in the lean node (models/norm_node.py)."""
    if impl == OFF:
        s = x if branch is None else x + scaled(branch, branch_scale)
        y = norm._reference(s) if hasattr(norm, "_reference") else norm(s)
        return (y if out_dtype is None else y.to(out_dtype)), s
    if out_dtype is None:
        out_dtype = torch.float32 if autocast_dtype(x) is not None else x.dtype
    wt = torch.float64 if x.dtype == torch.float64 else torch.float32
    w = as_dtype(norm.weight, wt)  # the float32 parameters autocast leaves as they are; a .half() model's cast
    b = None if norm.bias is None else as_dtype(norm.bias, wt)
    if lean_norms and eager_allowed(x):
        try:
            out, ran = add_norm_node(x, branch, w, b, norm.eps, branch_scale, channels_last, out_dtype, impl,
                                     getattr(norm, "recompute_from_output", False))
        except vk.ImplRefused:
            pass  # the layer's call decides: its fallback, or the refusal with the reasons
        else:
            if note is not None:
                note(ran)
            return out
    # `direct if call is None`, not `call or direct`: torch 2.11's dynamo breaks the graph on a bound method's truth
    return (direct if call is None else call)(vk.add_layer_norm, impl, x, branch, w, b, norm.eps,
                                              branch_scale=branch_scale, channels_last=channels_last,
                                              out_dtype=out_dtype)


def dwconv_act(conv: nn.Conv2d, act: nn.Module, x: torch.Tensor, *, channels_last: bool,
               impl: Optional[str] = None, call=None, note=None) -> torch.Tensor:
    """act(conv(x)) on x (B, C, H, W), or (B, H, W, C) when channels_last; one fused op when `conv` is
    the depthwise conv it implements and impl is not "off", else the torch modules (then `note("off")`).
    impl DWCONV_AUTO: the torch modules, or the automatic fused op on a small CUDA map (SMALL_DWCONV_PIXELS)."""
    if impl == DWCONV_AUTO:
        impl = None if small_map(x, channels_last) else OFF
    if impl == OFF or not dwconv_supported(conv, act):
        if note is not None:
            note(OFF)
        if channels_last:  # a permuted view: cudnn runs it in channels_last memory format, no copy
            return act(conv(x.permute(0, 3, 1, 2))).permute(0, 2, 3, 1)
        return act(conv(x))
    if autocast_dtype(x) is not None and x.dtype == torch.float32:
        x = x.to(autocast_dtype(x))  # autocast would have run the conv in its dtype
    wt = torch.float64 if x.dtype == torch.float64 else torch.float32
    w = as_dtype(conv.weight, wt)
    b = None if conv.bias is None else as_dtype(conv.bias, wt)
    return (direct if call is None else call)(vk.dwconv2d, impl, x.contiguous(), w, b, act=act_name(act),
                                              channels_last=channels_last)


def small_map(x: torch.Tensor, channels_last: bool) -> bool:
    """Whether x (a 4-D map) is a CUDA map of at most SMALL_DWCONV_PIXELS pixels (batch * H * W)."""
    if x.device.type != "cuda":
        return False
    Bn, H, W = (x.shape[0], x.shape[1], x.shape[2]) if channels_last else (x.shape[0], x.shape[2], x.shape[3])
    return Bn * H * W <= SMALL_DWCONV_PIXELS


def dwconv_supported(conv: nn.Module, act: nn.Module) -> bool:
    """Whether `conv` + `act` is the depthwise conv + activation the fused op implements."""
    return (isinstance(conv, nn.Conv2d) and conv.groups == conv.in_channels == conv.out_channels
            and conv.kernel_size[0] == conv.kernel_size[1] and conv.kernel_size[0] % 2 == 1
            and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and conv.padding == (conv.kernel_size[0] // 2,) * 2 and conv.padding_mode == "zeros"
            and act_name(act) is not None)
