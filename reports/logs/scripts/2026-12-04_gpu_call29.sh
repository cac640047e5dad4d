#!/usr/bin/env bash
# GPU call 29: training profiles (channels-last, AMP, batch 128): VMamba-B and Swin-B (B's bar cell is at parity),
# VMamba-T with norms+delta (the new memory setting).
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 100 python -m bench.profile --model vmamba_b --impl cuda --amp --train --layout channels_last --top 4 --ops 30 > $LG/profile_b.log 2>&1; el "B rc=$?"
timeout 80 python -m bench.profile --model swin_base_patch4_window7_224 --amp --train --top 4 --ops 20 > $LG/profile_swinb.log 2>&1; el "swin-B rc=$?"
timeout 80 python -m bench.profile --model vmamba_t --impl cuda --amp --train --layout channels_last --recompute norms+delta --top 3 > $LG/profile_t_nd.log 2>&1; el "T rc=$?"
grep -v Warn $LG/profile_b.log | cut -c1-180 | head -120
