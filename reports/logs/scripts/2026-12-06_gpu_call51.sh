#!/usr/bin/env bash
# GPU call 51: #18's banded forward (csrc/ss2d_core/ss2d_band_body.cuh). Build; GPU tests of the cuda ss2d_core
# (the banded forward is the plan's default now); bench.kernels ss2d_core fwd, fused vs unfused, VMamba-T fp16
# both layouts (rows to reports/kernels.csv); the band-rows sweep (knob VMAMBA_SS2D_FWD_BAND_ROWS, 0 = the
# whole-map forward); VMamba-T AMP inference with the fused core off / on (bench.tp); sanitizer on ss2d_core.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 150 python -m pytest -q -x tests/test_cuda_ss2d_core.py -k "not emulated" > $LG/t_core.log 2>&1; el "core GPU tests rc=$?"; tail -3 $LG/t_core.log | cut -c1-300
K="python -m bench.kernels --ops ss2d_core --models vmamba_t --impls cuda --dtypes fp16 --directions fwd"
timeout 90 $K --layouts cl,cf > $LG/k_auto.log 2>&1; el "kernels auto rc=$?"
grep -E "ss2d_core|stage|GB/s" $LG/k_auto.log | cut -c1-160 | head -24
for r in 0 4 14 28; do
  VMAMBA_SS2D_FWD_BAND_ROWS=$r timeout 60 $K --layouts cl --no-csv > $LG/k_rows$r.log 2>&1; el "kernels rows=$r rc=$?"
  grep -E "ss2d_core" $LG/k_rows$r.log | grep -v unfused | cut -c1-160 | head -6
done
timeout 150 python -m bench.tp --model vmamba_t --impl cuda --layout channels_last --amp --batch 128 --weight-cache on --ss2d-core off,cuda --rounds 3 --warmup 10 --iters 20 > $LG/tp.log 2>&1; el "tp rc=$?"
grep -A6 "^model " $LG/tp.log | cut -c1-170
L=$(( 570 - ($(date +%s) - t0) )); [ $L -lt 5 ] && L=1
timeout $L python -m bench.sanitize --ops ss2d_core --tools memcheck,racecheck > $LG/san.log 2>&1; el "sanitize rc=$?"; tail -8 $LG/san.log | cut -c1-200
