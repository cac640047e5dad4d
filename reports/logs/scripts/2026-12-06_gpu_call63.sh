#!/usr/bin/env bash
# GPU call 63: the segmented kernels' loads made unconditional. Build; the core GPU tests of the segmented kernels;
# bench.kernels ss2d_core fwd and bwd cl fp16: default against the segmented kernels (VMAMBA_SS2D_FWD_SEG /
# VMAMBA_SS2D_BWD_SEG=auto), the unfused chain in each run.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name --format=csv,noheader
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 60 python -m pytest -q tests/test_cuda_ss2d_core.py -k "(seg or segment or determin or against) and not emulated" > $LG/t_core.log 2>&1; el "core GPU tests rc=$?"; grep -E "^E  .*Error|FAILED|passed|failed" $LG/t_core.log | tail -6 | cut -c1-300
K="python -m bench.kernels --ops ss2d_core --models vmamba_t --impls cuda --dtypes fp16 --no-csv --layouts cl"
timeout 40 $K --directions fwd > $LG/k_fwd.log 2>&1; el "fwd default rc=$?"; grep -E "^ss2d_core" $LG/k_fwd.log | cut -c1-170
VMAMBA_SS2D_FWD_SEG=auto timeout 40 $K --directions fwd > $LG/k_fwd_seg.log 2>&1; el "fwd seg auto rc=$?"; grep -E "^ss2d_core" $LG/k_fwd_seg.log | cut -c1-170
timeout 60 $K --directions bwd > $LG/k_bwd.log 2>&1; el "bwd default rc=$?"; grep -E "^ss2d_core" $LG/k_bwd.log | cut -c1-170
VMAMBA_SS2D_BWD_SEG=auto timeout 60 $K --directions bwd > $LG/k_bwd_seg.log 2>&1; el "bwd seg auto rc=$?"; grep -E "^ss2d_core" $LG/k_bwd_seg.log | cut -c1-170
# then, on the same warm machine (extension built at commit 2b19cf3), the core GPU tests with the segmented
# backward as the default would make it:
#   VMAMBA_SS2D_BWD_SEG=auto python -m pytest -q tests/test_cuda_ss2d_core.py -k "not emulated" -p no:cacheprovider
