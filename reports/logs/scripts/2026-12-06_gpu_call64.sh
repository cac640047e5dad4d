#!/usr/bin/env bash
# GPU call 64 (first command): build; the direct bindings' tests; every GPU test of the fused core with the
# segmented backward as the default (the > 2^31-element test included: 8abe171's chunked partial sums); the public
# op's GPU tests; bench.overhead for cuda (paths raw = direct bindings, raw_dispatcher = torch.ops).
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp -r $LG $OUT/logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name --format=csv,noheader
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"; grep -E " error|undefined" $LG/build.log | head -5 | cut -c1-300
timeout 60 python -m pytest -q tests/test_cuda_direct_bindings.py > $LG/t_direct.log 2>&1; el "direct binding tests rc=$?"; grep -E "^E  |FAILED|passed|failed" $LG/t_direct.log | tail -8 | cut -c1-300
timeout 120 python -m bench.overhead --impls cuda --reports-dir $OUT/reports > $LG/overhead.log 2>&1; el "overhead rc=$?"; grep -E "public|raw" $LG/overhead.log | grep -E " fwd " | cut -c1-140
timeout 220 python -m pytest -q tests/test_cuda_ss2d_core.py -k "not emulated" --durations=3 > $LG/t_core.log 2>&1; el "core GPU tests rc=$?"; grep -E "^E  .*Error|FAILED|passed|failed|s call" $LG/t_core.log | tail -10 | cut -c1-300
timeout 120 python -m pytest -q tests/test_ss2d_core.py -m gpu > $LG/t_op.log 2>&1; el "op GPU tests rc=$?"; grep -E "FAILED|passed|failed" $LG/t_op.log | tail -4 | cut -c1-300
