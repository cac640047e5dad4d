#!/usr/bin/env bash
# GPU call 31: is VMamba-T's training step host-bound, and does running inference first in the same job (bench.tp
# --train) change it? Profile (wall vs kernel time), then train-only and infer+train runs, Swin-T in each.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
nproc; lscpu | grep -E "Model name|MHz" | head -3
for rc in none norms+delta; do timeout 60 python -m bench.profile --model vmamba_t --impl cuda --amp --train --layout channels_last --recompute $rc > $LG/profile_t_$rc.log 2>&1; el "profile $rc rc=$?"; grep -E "^step|^total" $LG/profile_t_$rc.log; done
timeout -s INT 100 python -m bench.tp --impl cuda --layout channels_last --amp --train-only --batch 128 --rounds 2 --warmup 10 --iters 15 --weight-cache on \
  --recompute none,norms+delta --model vmamba_t --baselines --baseline-models swin_tiny_patch4_window7_224 > $LG/t_trainonly.log 2>&1; el "train-only rc=$?"
grep -A6 "^model " $LG/t_trainonly.log | cut -c1-200
timeout -s INT 100 python -m bench.tp --impl cuda --layout channels_last --amp --train --batch 128 --rounds 2 --warmup 10 --iters 15 --weight-cache on \
  --recompute none,norms+delta --model vmamba_t --baselines --baseline-models swin_tiny_patch4_window7_224 > $LG/t_train.log 2>&1; el "infer+train rc=$?"
grep -A8 "^model " $LG/t_train.log | cut -c1-200
