#!/usr/bin/env bash
# GPU call 52: the banded forward with batched staging loads (opt-in: knob VMAMBA_SS2D_FWD_BAND_ROWS). Build; GPU
# tests of the cuda ss2d_core; bench.kernels ss2d_core fwd (VMamba-T fp16 channels-last, --no-csv): the default
# whole-map forward and the unfused chain, then bands auto / 4 / 14, then the banded kernels built for 24 warps/SM.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 120 python -m pytest -q -x tests/test_cuda_ss2d_core.py -k "not emulated" > $LG/t_core.log 2>&1; el "core GPU tests rc=$?"; tail -2 $LG/t_core.log | cut -c1-300
K="python -m bench.kernels --ops ss2d_core --models vmamba_t --impls cuda --dtypes fp16 --directions fwd --layouts cl --no-csv"
timeout 60 $K > $LG/k_default.log 2>&1; el "kernels default (whole-map) rc=$?"; grep -E "^ss2d_core" $LG/k_default.log | cut -c1-160
for r in auto 4 14; do
  VMAMBA_SS2D_FWD_BAND_ROWS=$r timeout 60 $K > $LG/k_rows$r.log 2>&1; el "kernels rows=$r rc=$?"
  grep -E "^ss2d_core" $LG/k_rows$r.log | cut -c1-160
done
sed -i 's/#define VMAMBA_SS2D_BAND_WARPS_PER_SM 16/#define VMAMBA_SS2D_BAND_WARPS_PER_SM 24/' csrc/ss2d_core/ss2d_band_body.cuh
python setup.py build_ext --inplace > $LG/build24.log 2>&1; el "build 24 warps rc=$?"
VMAMBA_SS2D_FWD_BAND_ROWS=auto timeout 60 $K > $LG/k_w24.log 2>&1; el "kernels auto, 24 warps/SM rc=$?"
grep -E "^ss2d_core" $LG/k_w24.log | cut -c1-160
