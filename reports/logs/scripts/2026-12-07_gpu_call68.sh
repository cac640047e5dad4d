#!/usr/bin/env bash
# GPU call 68: vss_stage's checks through vmamba::detail::message (the bad-pack segfault of calls 66-67): the C++ stage
# GPU tests (equality, peak memory, every bad pack) and the direct-binding tests (errors of every entry point).
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp -r $LG $OUT/logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name --format=csv,noheader
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 120 python -m pytest -q -m gpu tests/test_cpp_stages.py tests/test_cuda_direct_bindings.py > $LG/t_cpp.log 2>&1; el "cpp stage + direct binding GPU tests rc=$?"
grep -E "^E  |FAILED|passed|failed|Fatal|line [0-9]+ in test" $LG/t_cpp.log | head -10 | cut -c1-250
timeout 60 python .gpu/dbg67.py 2>&1 | cut -c1-200; el "dbg"
