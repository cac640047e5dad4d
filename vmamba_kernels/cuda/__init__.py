"""The handwritten CUDA backend ("cuda"): kernels in csrc/, compiled into vmamba_kernels._C.

Selective scan (csrc/selective_scan/): forward = one warp per (batch, channel) row, 256-step chunks
(8 consecutive steps per lane, 16-byte loads), warp-shuffle scan of the affine maps, carry between
chunks. `aux` is the fp32 state entering every chunk, (batch, KD, ceil(L / 256), N), which the
backward uses to recompute the states of one chunk at a time. The backward is always deterministic:
dB/dC are summed over a group's channels in shared memory and in per-block private fp32 slices that
a second kernel adds in a fixed order; dA/dD/ddelta_bias are per-(batch, channel) partials summed
over the batch by a third kernel (no float atomics anywhere). d_state = 1 (every VMamba v2 variant) runs
dedicated kernels with the same layout: 2.67 TB/s forward on VMamba-T's stage 1 on an H100 (reports/).
"""
from ..dispatch import Backend

SCAN_CHUNK = 256  # must match kChunk in csrc/selective_scan/selective_scan.h


def _aux_shape(batch, KD, L, N, dtype):
    import torch
    return (batch, KD, (L + SCAN_CHUNK - 1) // SCAN_CHUNK, N), torch.float32


BACKENDS = [
    Backend(
        name="cuda", priority=10, module="vmamba_kernels.cuda.kernels",
        install_hint="build the extension: `pip install --no-build-isolation -e .` on a machine with nvcc, "
                     "a CUDA build of torch and a visible GPU (or with TORCH_CUDA_ARCH_LIST set, which builds "
                     "for those GPU architectures without one)",
        scan_aux_shape=_aux_shape, max_dstate=64, deterministic=True,
        doc="handwritten CUDA C++ (csrc/); deterministic selective-scan backward",
    ),
]
