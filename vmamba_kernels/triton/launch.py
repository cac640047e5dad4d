"""Raw kernels of impl "triton" (contract: vmamba_kernels/dispatch.py).

Importing this module imports triton and JIT-decorates the kernels (no compilation happens until a
call); it raises ImportError when triton is missing, which the Backend reports as "unavailable".
On the CPU the kernels run under Triton's interpreter (TRITON_INTERPRET=1, set before triton is
imported); see selective_scan.py / cross_scan.py for the designs.
"""
from __future__ import annotations

import os
from typing import Optional

try:
    import triton  # noqa: F401
    import triton.language  # noqa: F401
except ImportError as e:
    raise ImportError(f"triton is not installed ({e})") from e

import torch

from .cross_scan import cross_merge_fwd, cross_scan_fwd  # noqa: F401
from .dwconv import dwconv2d_bwd, dwconv2d_fwd  # noqa: F401
from .layer_norm import add_layer_norm_bwd, add_layer_norm_fwd  # noqa: F401
from .selective_scan import scan_aux_shape, selective_scan_bwd, selective_scan_fwd  # noqa: F401
from .ss2d_core import ss2d_core_bwd, ss2d_core_fwd  # noqa: F401
from .._library import norm_body_native

# The raw kernels as the ops' bodies for calls without grad (dispatch kind "body_native"): the custom op's Python body
# and backend.impl() skipped, as for the cuda extension's entry points
body_ops_native = {"scan_fwd": selective_scan_fwd, "cross_scan": cross_scan_fwd, "cross_merge": cross_merge_fwd,
                   "dwconv2d_fwd": dwconv2d_fwd, "add_layer_norm_fwd": norm_body_native(add_layer_norm_fwd, mixed=True)}


def unavailable_reason() -> Optional[str]:
    if os.environ.get("TRITON_INTERPRET") == "1":
        return None
    if not torch.cuda.is_available():
        return ("no CUDA device is visible (Triton is installed but compiles for GPUs; to run these kernels on the "
                "CPU, slowly, set TRITON_INTERPRET=1 in the environment before importing vmamba_kernels)")
    return None
