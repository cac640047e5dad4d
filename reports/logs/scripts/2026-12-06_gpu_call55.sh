#!/usr/bin/env bash
# GPU call 55 (short: the session's device time is nearly spent): the forward back to reading x in its walk (call 53's
# kernels) with the new auto rule; the backward as in call 54. Build; GPU core tests; bench.kernels ss2d_core fwd
# auto (VMamba-T fp16 channels-last, --no-csv) with the unfused chain; memcheck + racecheck.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
K="python -m bench.kernels --ops ss2d_core --models vmamba_t --impls cuda --dtypes fp16 --no-csv --layouts cl --directions fwd"
VMAMBA_SS2D_FWD_SEG=auto timeout 40 $K > $LG/k_segauto.log 2>&1; el "kernels fwd seg=auto rc=$?"; grep -E "^ss2d_core" $LG/k_segauto.log | cut -c1-170
timeout 60 python -m pytest -q tests/test_cuda_ss2d_core.py -k "not emulated" > $LG/t_core.log 2>&1; el "core GPU tests rc=$?"; grep -E "FAILED|passed|failed" $LG/t_core.log | tail -6 | cut -c1-300
timeout 60 python -m bench.sanitize --ops ss2d_core --tools memcheck,racecheck > $LG/san.log 2>&1; el "sanitize rc=$?"; tail -4 $LG/san.log | cut -c1-200
