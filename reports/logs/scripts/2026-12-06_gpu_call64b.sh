#!/usr/bin/env bash
# GPU call 64 (second command, same machine): bench.kernels ss2d_core fp16 in both layouts: forward default
# against the segmented forward (VMAMBA_SS2D_FWD_SEG=auto), backward default (segmented) against whole-map (=0);
# sanitizer on ss2d_core.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp -r $LG $OUT/logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build (quick when warm) rc=$?"
K="python -m bench.kernels --ops ss2d_core --models vmamba_t --impls cuda --dtypes fp16 --no-csv"
for L in cl cf; do
timeout 40 $K --layouts $L --directions fwd > $LG/k_fwd_$L.log 2>&1; el "fwd $L default rc=$?"; grep -E "^ss2d_core" $LG/k_fwd_$L.log | cut -c1-170
VMAMBA_SS2D_FWD_SEG=0 timeout 40 $K --layouts $L --directions fwd > $LG/k_fwdold_$L.log 2>&1; el "fwd $L FWD_SEG=0 (sweep or whole-map: the old default) rc=$?"; grep -E "^ss2d_core" $LG/k_fwdold_$L.log | grep -v unfused | cut -c1-170
VMAMBA_SS2D_FWD_SEG=auto timeout 40 $K --layouts $L --directions fwd > $LG/k_fwdseg_$L.log 2>&1; el "fwd $L seg auto rc=$?"; grep -E "^ss2d_core" $LG/k_fwdseg_$L.log | grep -v unfused | cut -c1-170
timeout 60 $K --layouts $L --directions bwd > $LG/k_bwd_$L.log 2>&1; el "bwd $L default rc=$?"; grep -E "^ss2d_core" $LG/k_bwd_$L.log | cut -c1-170
VMAMBA_SS2D_BWD_SEG=0 timeout 60 $K --layouts $L --directions bwd > $LG/k_bwdwm_$L.log 2>&1; el "bwd $L whole-map rc=$?"; grep -E "^ss2d_core" $LG/k_bwdwm_$L.log | grep -v unfused | cut -c1-170
done
timeout 150 python -m bench.sanitize --ops ss2d_core --tools memcheck,racecheck > $LG/san.log 2>&1; el "sanitize rc=$?"; tail -3 $LG/san.log | cut -c1-200
