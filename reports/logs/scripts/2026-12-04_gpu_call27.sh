#!/usr/bin/env bash
# GPU call 27: from_y GPU tests (fixed C=1 tolerance, float32 y); A/B of the LN backward from s vs from y.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 60 python .gpu/ab_ln.py > $LG/ab_ln.log 2>&1; el "ab rc=$?"; cat $LG/ab_ln.log | tail -10
timeout 120 python -m pytest -q tests/test_cuda_norm_dwconv.py tests/test_norm_kernels.py tests/test_ss2d_chain.py -k "from_y or gpu_chain" > $LG/tests.log 2>&1; el "tests rc=$?"; grep -E "^FAILED|passed|failed" $LG/tests.log | head
