#!/usr/bin/env bash
# GPU call 67: the bad-pack segfault of call 66 (checks now with the GIL held): the C++ stage GPU tests, each bad call
# in its own process (gdb's backtrace if a test still crashes); #20's latency rows with the C++ stages, eager and with
# CUDA graphs, with Swin-T in the same call.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; cp -r $LG $OUT/logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
left() { l=$(( $1 - ($(date +%s) - t0) )); [ $l -lt 5 ] && l=1; echo $l; }
nvidia-smi --query-gpu=name --format=csv,noheader
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 120 python -m pytest -q -m gpu tests/test_cpp_stages.py > $LG/t_cpp.log 2>&1; rc=$?; el "cpp stage GPU tests rc=$rc"
grep -E "^E  |FAILED|passed|failed|Fatal|line [0-9]+ in test" $LG/t_cpp.log | head -8 | cut -c1-250
timeout 60 python .gpu/dbg67.py 2>&1 | tee $LG/dbg.log | cut -c1-250; el "dbg"
if [ $rc = 139 ] && which gdb >/dev/null; then timeout 60 gdb -batch -ex run -ex bt --args python -m pytest -q -m gpu tests/test_cpp_stages.py -k bad_pack > $LG/gdb.log 2>&1; grep -E "^#[0-9]+ " $LG/gdb.log | head -16 | cut -c1-200; fi
E="--model vmamba_t --impl cuda --layout channels_last --amp --batch 1,32,128 --weight-cache on"
timeout -s INT $(left 270) python -m bench.tp $E --cpp-stages both --rounds 3 --baselines --baseline-models swin_tiny_patch4_window7_224 > $LG/latency.log 2>&1; el "latency rc=$?"
grep -A10 "^model " $LG/latency.log | cut -c1-150
timeout -s INT $(left 360) python -m bench.tp $E --cpp-stages both --cuda-graphs --baselines --baseline-models swin_tiny_patch4_window7_224 > $LG/graphs.log 2>&1; el "graphs rc=$?"
grep -A10 "^model " $LG/graphs.log | cut -c1-150
