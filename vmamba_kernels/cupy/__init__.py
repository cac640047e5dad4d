"""The CuPy backend ("cupy"): the cuda extension's own kernels (the torch-free csrc/ headers) compiled at
first use by NVRTC through cupy.RawModule, cached per process (and in CuPy's on-disk kernel cache), and
launched by the extension's rules (plan.py). No build step."""
from ..dispatch import Backend
from .tuning import scan_aux_shape

BACKENDS = [
    Backend(
        name="cupy", priority=30, module="vmamba_kernels.cupy.launch", native_key=True,
        install_hint="install CuPy matching torch's CUDA: `pip install cupy-cuda13x` "
                     "(or cupy-cuda12x when torch.version.cuda is 12.x)",
        max_dstate=64, deterministic=True, scan_aux_shape=scan_aux_shape,
        doc="the cuda backend's kernels (csrc/ headers) compiled at run time by NVRTC through cupy.RawModule "
            "and launched by the same rules; deterministic backwards; no build step",
    ),
]
