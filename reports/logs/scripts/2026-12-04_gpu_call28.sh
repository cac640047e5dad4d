#!/usr/bin/env bash
# GPU call 28: LN backward from y after the launch-bounds change (A/B), from_y GPU tests, VMamba-T training rows of
# the recompute parts against Swin-T, and a profile of the norms+delta step.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 60 python .gpu/ab_ln.py > $LG/ab_ln.log 2>&1; el "ab rc=$?"; cat $LG/ab_ln.log | tail -10
timeout 60 python -m pytest -q -x tests/test_cuda_norm_dwconv.py tests/test_norm_kernels.py -k "from_y" > $LG/tests.log 2>&1; el "tests rc=$?"; grep -E "^FAILED|passed|failed" $LG/tests.log | head -3
timeout -s INT 150 python -m bench.tp --impl cuda --layout channels_last --amp --train-only --batch 128 --rounds 2 --warmup 10 --iters 15 --weight-cache on \
  --recompute none,norms,delta,norms+delta --model vmamba_t --baselines --baseline-models swin_tiny_patch4_window7_224 > $LG/train.log 2>&1; el "train rc=$?"
grep -A8 "^model " $LG/train.log | cut -c1-200
timeout 90 python -m bench.profile --model vmamba_t --impl cuda --amp --train --recompute norms+delta --top 3 > $LG/profile_nd.log 2>&1; el "profile rc=$?"; head -40 $LG/profile_nd.log | cut -c1-160
timeout 80 python -m bench.profile --model vmamba_t --impl cuda --amp --train --recompute none --top 3 > $LG/profile_none.log 2>&1; el "profile none rc=$?"; head -40 $LG/profile_none.log | cut -c1-160
