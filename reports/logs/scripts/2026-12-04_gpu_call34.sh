#!/usr/bin/env bash
# GPU call 34: the GPU model tests after the channels-last default (never run on the GPU since), and a batch-1
# host profile (cProfile + torch.profiler) of VMamba-T's eager AMP inference against Swin-T.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 240 python -m pytest -q tests/test_models_gpu.py tests/test_graphs_gpu.py > $LG/tests.log 2>&1; el "tests rc=$?"; grep -E "^FAILED|passed|failed|error" $LG/tests.log | head -8
timeout 120 python .gpu/hostprof2.py > $LG/hostprof.log 2>&1; el "hostprof rc=$?"; grep "^round" $LG/hostprof.log
