"""Tuning harnesses behind the kernels' constants (not the commands a user runs: see bench/ and README).

    python -m bench.tuning.triton [--sweep | --stages | --cross-blocks | --cross-bands | --n1-variants]
    python -m bench.tuning.cross_scan          # the cuda cross scan / merge knobs (vector width, paths)
    python -m bench.tuning.ss2d_core_cuda      # the cuda fused SS2D core against the unfused chain (issue #18)
    nvcc ... bench/tuning/scan.cu              # the cuda scan kernels' variants (standalone build; see its header)

They change a backend's constants through `vmamba_kernels.tuning(...)` (never by assigning module
globals); what they found is in reports/tuning.md, their logs in reports/logs/.
"""
