#!/usr/bin/env bash
# GPU call 37 (code of 08c300c09dd0, reports edited since): VMamba-T training (recompute none, norms+delta) against
# Swin-T in three rounds (call 36's norms+delta row ran on a slow host stretch), then #19 item 5's compiled rows
# (torch.compile, inference): VMamba-T/B on cuda with Swin-T/B compiled in the same run.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout -s INT 120 python -m bench.tp --impl cuda --layout channels_last --amp --train-only --batch 128 --rounds 3 --warmup 10 --iters 15 \
  --weight-cache on --recompute none,norms+delta --model vmamba_t --baselines --baseline-models swin_tiny_patch4_window7_224 > $LG/train_t.log 2>&1; el "train T rc=$?"
grep -A6 "^model " $LG/train_t.log | cut -c1-200
timeout -s INT 320 python -m bench.tp --compile --impl cuda --layout channels_last --amp --batch 128 --warmup 10 --iters 15 \
  --weight-cache on --model vmamba_t,vmamba_b --baselines --baseline-models swin_tiny_patch4_window7_224,swin_base_patch4_window7_224 > $LG/compiled.log 2>&1; el "compiled rc=$?"
grep -A8 "^model " $LG/compiled.log | cut -c1-200
