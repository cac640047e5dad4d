#!/usr/bin/env bash
# GPU call 38 (code of 08c300c09dd0): batch-1 and batch-32 eager AMP inference, VMamba-T new (B/C views + inference
# LayerNorm) / old against Swin-T, 7 interleaved rounds with alternating order (call 36's rounds met a noisy host).
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
BATCHES=1,32 ROUNDS=7 timeout 150 python .gpu/b1ab3.py > $LG/b1ab.log 2>&1; el "b1ab rc=$?"; cut -c1-400 $LG/b1ab.log
