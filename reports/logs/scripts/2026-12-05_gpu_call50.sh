#!/usr/bin/env bash
# GPU call 50 (H100, same code as calls 48-49, 1f60820): #19's eager profile on this card (VMamba-T cuda inference
# and training, Swin-T inference for the category comparison), then the VMamba-T / Swin-T training bar again with
# 5 rounds (call 48's VMamba-T training rounds spread 58-74 ms/iter; Swin-T's 66.3-66.6).
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
left() { l=$(( $1 - ($(date +%s) - t0) )); [ $l -lt 5 ] && l=1; echo $l; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
P="--model vmamba_t --impl cuda --amp --layout channels_last --top 3"
timeout 70 python -m bench.profile $P > $LG/prof_infer.log 2>&1; el "profile infer rc=$?"
timeout 80 python -m bench.profile $P --train --recompute norms+delta > $LG/prof_train.log 2>&1; el "profile train rc=$?"
timeout 60 python -m bench.profile --model swin_tiny_patch4_window7_224 --amp > $LG/prof_swin.log 2>&1; el "profile swin rc=$?"
timeout -s INT $(left 330) python -m bench.tp --layout channels_last --amp --train-only --batch 128 --rounds 5 --warmup 10 --iters 15 \
  --weight-cache on --model vmamba_t --impl cuda --recompute none,norms+delta --baselines --baseline-models swin_tiny_patch4_window7_224 > $LG/bar_train5.log 2>&1
el "train bar rc=$?"; grep -A6 "^model " $LG/bar_train5.log | cut -c1-200
