#!/usr/bin/env bash
# GPU call 26: build; from_y (norms recompute) GPU tests + chain tests; training memory/speed of the recompute parts
# for T/S/B against Swin-T/S/B (two rounds); compute-sanitizer on the norm cases (from_y included).
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 110 python -m pytest -q -x tests/test_cuda_norm_dwconv.py tests/test_norm_kernels.py tests/test_ss2d_chain.py -k "from_y or gpu_chain" > $LG/tests.log 2>&1; el "tests rc=$?"; tail -3 $LG/tests.log | cut -c1-300
timeout -s INT 230 python -m bench.tp --impl cuda --layout channels_last --amp --train-only --batch 128 --rounds 2 --warmup 10 --iters 15 --weight-cache on \
  --recompute none,norms,norms+delta,all --model vmamba_t,vmamba_s,vmamba_b --baselines \
  --baseline-models swin_tiny_patch4_window7_224,swin_small_patch4_window7_224,swin_base_patch4_window7_224 > $LG/train.log 2>&1; el "train rc=$?"
grep -A24 "^model " $LG/train.log | cut -c1-200
left=$(( 560 - ($(date +%s) - t0) )); [ $left -gt 30 ] && { timeout $left python -m bench.sanitize --tools memcheck,racecheck --ops norm > $LG/sanitize.log 2>&1; el "sanitize rc=$?"; tail -6 $LG/sanitize.log; }
