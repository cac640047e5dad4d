"""The handwritten CUDA backend ("cuda"): kernels in csrc/, compiled into vmamba_kernels._C."""
from ..dispatch import Backend


def _aux_shape(batch, KD, L, N, dtype):
    # placeholder until the kernels land: the CUDA backward's saved chunk states
    import torch
    return (0,), torch.float32


BACKENDS = [
    Backend(
        name="cuda", priority=10, module="vmamba_kernels.cuda.kernels",
        install_hint="build the extension: `pip install -e . --no-build-isolation` on a machine with nvcc "
                     "and a CUDA build of torch (TORCH_CUDA_ARCH_LIST selects the GPU architectures)",
        scan_aux_shape=_aux_shape, doc="handwritten CUDA C++ (csrc/)",
    ),
]
