#!/usr/bin/env bash
# GPU call 33: cuda add_layer_norm channels first at 1536 / 2048 channels (the kernels and the dispatch limit),
# then VMamba-S / -B on their released channels-first layout with --impl cuda (failed before).
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 60 python -m pytest -q tests/test_cuda_norm_dwconv.py -k "(C1536 or C2048 or wide_channels_first) and gpu" > $LG/tests.log 2>&1; el "tests rc=$?"; grep -E "^FAILED|passed|failed" $LG/tests.log | head -5
timeout -s INT 110 python -m bench.tp --impl cuda --amp --train --batch 128 --warmup 5 --iters 10 --model vmamba_s,vmamba_b > $LG/cf.log 2>&1; el "cf rc=$?"
grep -A6 "^model " $LG/cf.log | cut -c1-200
