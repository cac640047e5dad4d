#!/usr/bin/env bash
# GPU call 53: the segmented forward and backward (thread per channel; knobs VMAMBA_SS2D_FWD_SEG / _BWD_SEG, opt-in
# at this commit). Build; GPU tests of the cuda ss2d_core; bench.kernels ss2d_core (VMamba-T fp16 channels-last,
# --no-csv): fwd default (whole-map) + unfused chain, fwd seg auto / 32 / 128, cf auto; bwd default + unfused,
# bwd seg auto / 32; VMamba-T AMP inference and training with the core off / on (segmented); sanitizer.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
K="python -m bench.kernels --ops ss2d_core --models vmamba_t --impls cuda --dtypes fp16 --no-csv"
timeout 60 $K --layouts cl --directions fwd > $LG/k_default.log 2>&1; el "kernels fwd default (whole-map) rc=$?"; grep -E "^ss2d_core" $LG/k_default.log | cut -c1-170
for s in auto 32 128; do
  VMAMBA_SS2D_FWD_SEG=$s timeout 60 $K --layouts cl --directions fwd > $LG/k_seg$s.log 2>&1; el "kernels fwd seg=$s rc=$?"
  grep -E "^ss2d_core" $LG/k_seg$s.log | grep -v unfused | cut -c1-170
done
VMAMBA_SS2D_FWD_SEG=auto timeout 60 $K --layouts cf --directions fwd > $LG/k_segcf.log 2>&1; el "kernels fwd seg=auto cf rc=$?"; grep -E "^ss2d_core" $LG/k_segcf.log | cut -c1-170
timeout 90 $K --layouts cl --directions bwd > $LG/kb_default.log 2>&1; el "kernels bwd default (whole-map) rc=$?"; grep -E "^ss2d_core" $LG/kb_default.log | cut -c1-170
for s in auto 32; do
  VMAMBA_SS2D_BWD_SEG=$s timeout 60 $K --layouts cl --directions bwd > $LG/kb_seg$s.log 2>&1; el "kernels bwd seg=$s rc=$?"
  grep -E "^ss2d_core" $LG/kb_seg$s.log | grep -v unfused | cut -c1-170
done
timeout 170 python -m pytest -q tests/test_cuda_ss2d_core.py -k "not emulated" > $LG/t_core.log 2>&1; el "core GPU tests rc=$?"; grep -E "FAILED|passed|failed" $LG/t_core.log | tail -6 | cut -c1-300
TP="python -m bench.tp --model vmamba_t --impl cuda --layout channels_last --amp --batch 128 --weight-cache on --rounds 3 --warmup 10 --iters 20"
VMAMBA_SS2D_FWD_SEG=auto VMAMBA_SS2D_BWD_SEG=auto timeout 200 $TP --train --ss2d-core off,cuda > $LG/tp_seg.log 2>&1; el "tp seg rc=$?"; grep -A6 "^model " $LG/tp_seg.log | cut -c1-190
timeout 150 python -m bench.sanitize --ops ss2d_core --tools memcheck,racecheck > $LG/san.log 2>&1; el "sanitize rc=$?"; tail -6 $LG/san.log | cut -c1-200
