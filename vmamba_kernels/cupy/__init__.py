"""The CuPy RawKernel backend ("cupy"): .cu sources compiled at first use by NVRTC."""
from ..dispatch import Backend

BACKENDS = [
    Backend(
        name="cupy", priority=30, module="vmamba_kernels.cupy.kernels",
        install_hint="install CuPy matching torch's CUDA: `pip install cupy-cuda13x` "
                     "(or cupy-cuda12x when torch.version.cuda is 12.x)",
        doc="CUDA C++ compiled at run time by NVRTC through cupy.RawModule; no build step",
    ),
]
