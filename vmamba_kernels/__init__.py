"""vmamba_kernels: VMamba's two GPU operations behind one dispatch interface.

    import vmamba_kernels as vk
    y = vk.selective_scan(u, delta, A, B, C, D, delta_bias, delta_softplus=True, impl="cuda")
    xs = vk.cross_scan(x)                  # (B, C, H, W) -> (B, 4, C, H*W)
    x2 = vk.cross_merge(ys, H, W)          # (B, 4, C, H*W) -> (B, C, H, W)
    y, s = vk.add_layer_norm(x, branch, w, b, channels_last=True)   # s = x + branch; y = LayerNorm(s)
    y = vk.dwconv2d(x, conv_w, conv_b, act="silu")                   # depthwise conv + bias + act
    y = vk.ss2d_core(x, x_proj_w, dt_projs_w, A, D, dt_bias)          # cross scan..cross merge in one op
    vk.list_impls("selective_scan")        # what exists, what is available here and why not
    print(vk.explain("selective_scan", u, delta, A, B, C))
    with vk.use_impl("triton"): ...        # default impl for calls with impl=None
    vk.ops("cuda")["scan_fwd"]             # a backend's torch.library ops, no validation or dispatch
    try: ... except vk.ImplRefused as e:   # e.impl, e.op, e.reasons, e.can
    with vk.tuning("triton", fwd_tile=256): ...   # a backend's tuned constants / test knobs, for a while
"""
from .api import (add_layer_norm, cross_merge, cross_scan, dwconv2d, explain, list_impls, ops, selective_scan,
                  ss2d_core)
from .dispatch import Backend, ImplRefused, get_default_impl, set_default_impl, use_impl
from .tunables import get_tuning, tuning

__all__ = [
    "selective_scan", "cross_scan", "cross_merge", "add_layer_norm", "dwconv2d", "ss2d_core", "list_impls", "explain", "ops",
    "set_default_impl", "get_default_impl", "use_impl", "Backend", "ImplRefused", "tuning", "get_tuning",
]

from . import dispatch as _dispatch  # noqa: E402

# the backends are registered (their torch.library ops defined; no backend module probed or imported) here,
# not at the first op call: that call may be inside torch.compile's trace, which cannot enter the registry's lock
_dispatch._load_registry()
