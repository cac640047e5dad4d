"""The pure-torch backends, wrapping `reference/`: "torch" (parallel scan, fast enough for CPU tests
and a GPU fallback) and "torch_sequential" (the step-by-step definition; float64 capable)."""
import torch

from ..dispatch import Backend
from ..op_table import BASE_OPS, FUSED_OPS, SS2D_OPS

_ALL = (torch.float32, torch.float16, torch.bfloat16, torch.float64)

BACKENDS = [
    Backend(
        name="torch", priority=50, module="vmamba_kernels.pytorch.parallel",
        install_hint="it needs only torch", dtypes=_ALL, devices=("cpu", "cuda"), max_dstate=256,
        ops=BASE_OPS + FUSED_OPS + SS2D_OPS, mixed_branch=True, strided_bc=True,
        doc="pure torch, log-depth parallel scan over L; float64 capable",
    ),
    Backend(
        name="torch_sequential", priority=90, module="vmamba_kernels.pytorch.sequential",
        install_hint="it needs only torch", dtypes=_ALL, devices=("cpu", "cuda"), max_dstate=256,
        ops=BASE_OPS + FUSED_OPS + SS2D_OPS, mixed_branch=True, strided_bc=True,
        doc="pure torch, one step per time index: the readable definition; slow",
    ),
]
