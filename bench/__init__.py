"""Measuring half of vmamba-lab: throughput, FLOPs, kernel sweeps, correctness, reports.

Commands (each has --help and prints a table at the end; results go to reports/*.csv):

    python -m bench.build_mamba_ssm          # compile mamba_ssm's selective_scan_cuda (baseline/oracle)
    python -m bench.check                    # every impl (+ mamba_ssm) vs the float64 reference
    python -m bench.kernels --quick          # kernel sweep over VMamba stage shapes (ms, GB/s vs copy)
    pytest bench --benchmark-only            # the same sweep under pytest-benchmark
    python -m bench.tp --model all --impl cuda,triton,cupy,torch --amp --train --baselines
    python -m bench.flops                    # params and official GFLOPs of the nine released variants
    python -m bench.report                   # plots + README results table from the CSVs
    bash bench/gpu_run.sh                    # all of the above in one device call, logs to $OUT
    python -m bench.erf --model vmamba_t     # effective receptive field figure (RepLKNet / VMamba method)
    python -m bench.attnmap --model vmamba_t # the scan's attention of a query pixel, per route and merged

The harnesses behind the kernels' tuned constants are apart, in bench/tuning/ (python -m bench.tuning.triton, ...).

Modules: env (environment capture), results (CSV schemas, atomic append), timing, shapes, flops,
mamba_ref (mamba_ssm loader and wrapper), _tiny (stand-in models for CPU tests), _images (image
loading for erf / attnmap).
"""
