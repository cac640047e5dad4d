"""The Triton backend ("triton")."""
import os

from ..dispatch import Backend


def _devices():
    # TRITON_INTERPRET=1 runs the kernels on CPU tensors (used by CI)
    return ("cpu", "cuda") if os.environ.get("TRITON_INTERPRET") == "1" else ("cuda",)


BACKENDS = [
    Backend(
        name="triton", priority=20, module="vmamba_kernels.triton.kernels",
        install_hint="install Triton: `pip install triton`", devices=_devices(),
        doc="Triton kernels; run on the CPU under TRITON_INTERPRET=1",
    ),
]
