"""The Triton backend ("triton"). Declaring it imports nothing from triton: the entry module
(vmamba_kernels.triton.launch) is imported lazily by the Backend, and an ImportError there is
reported as "unavailable"."""
import os

from ..dispatch import Backend
from ..op_table import BASE_OPS, FUSED_OPS, SS2D_OPS
from .tuning import scan_aux_shape


def _devices():
    # TRITON_INTERPRET=1 runs the kernels on CPU tensors (used by CI)
    return ("cpu", "cuda") if os.environ.get("TRITON_INTERPRET") == "1" else ("cuda",)


BACKENDS = [
    Backend(
        name="triton", priority=20, module="vmamba_kernels.triton.launch", native_key=True,
        install_hint="install Triton: `pip install triton` (with no GPU, TRITON_INTERPRET=1 then runs it on the CPU)", devices=_devices(),
        max_dstate=64, deterministic=True, scan_aux_shape=scan_aux_shape,
        ops=BASE_OPS + FUSED_OPS + SS2D_OPS, mixed_branch=True, ss2d_max_dstate=16,
        doc="Triton kernels: chunked tl.associative_scan selective scan (fwd/bwd, deterministic "
            "dB/dC reduction), tiled cross scan/merge, residual add + LayerNorm, depthwise conv + act, "
            "the fused SS2D core (d_state <= 16); "
            "run on the CPU under TRITON_INTERPRET=1",
    ),
]
