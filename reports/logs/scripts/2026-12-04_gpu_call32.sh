#!/usr/bin/env bash
# GPU call 32: the layout A/B at the current commit (issue #19 item 3: one layout, chosen by measurement):
# VMamba-T/S channels-first (the released default) against channels-last, inference and training, two rounds.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout -s INT 200 python -m bench.tp --impl cuda --layout both --amp --train --batch 128 --rounds 2 --warmup 10 --iters 15 \
  --model vmamba_t,vmamba_s > $LG/layout.log 2>&1; el "layout rc=$?"
grep -A12 "^model " $LG/layout.log | cut -c1-200
