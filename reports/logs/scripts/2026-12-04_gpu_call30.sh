#!/usr/bin/env bash
# GPU call 30: the #19 bar at one commit: VMamba-T/S/B (cuda, channels-last, weight cache; recompute none and
# norms+delta) against Swin-T/S/B and ConvNeXt-T, AMP inference and training, batch 128, three rounds.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout -s INT 470 python -m bench.tp --impl cuda --layout channels_last --amp --train --batch 128 --rounds 3 --warmup 10 --iters 15 --weight-cache on \
  --recompute none,norms+delta --model vmamba_t,vmamba_s,vmamba_b --baselines \
  --baseline-models swin_tiny_patch4_window7_224,swin_small_patch4_window7_224,swin_base_patch4_window7_224,convnext_tiny > $LG/bar.log 2>&1; el "bar rc=$?"
grep -A26 "^model " $LG/bar.log | cut -c1-220
