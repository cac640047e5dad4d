#!/usr/bin/env bash
# GPU call 66: #20's C++ inference stages (csrc/vss_stage, models/cpp_stages.py). Build; the C++ stage against the
# Python path bit for bit (tests/test_cpp_stages.py -m gpu); #20's latency sweep, VMamba-T eager with the C++ stages
# off and on, with Swin-T, 3 rounds; then the GPU tests stop 45 left unrun (core + direct bindings at this head, the
# models' tests with the fused core).
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; cp -r $LG $OUT/logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
left() { l=$(( $1 - ($(date +%s) - t0) )); [ $l -lt 5 ] && l=1; echo $l; }
nvidia-smi --query-gpu=name --format=csv,noheader
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"; grep -m3 " error" $LG/build.log | cut -c1-300
timeout 150 python -m pytest -q -m gpu tests/test_cpp_stages.py > $LG/t_cpp.log 2>&1; el "cpp stage GPU tests rc=$?"
grep -E "^E  |FAILED|passed|failed" $LG/t_cpp.log | head -12 | cut -c1-250
E="--model vmamba_t --impl cuda --layout channels_last --amp --batch 1,8,32,128 --weight-cache on"
timeout -s INT $(left 430) python -m bench.tp $E --cpp-stages both --rounds 3 --baselines --baseline-models swin_tiny_patch4_window7_224 > $LG/latency.log 2>&1; el "latency rc=$?"
grep -A14 "^model " $LG/latency.log | cut -c1-150
timeout $(left 520) python -m pytest -q tests/test_cuda_ss2d_core.py tests/test_cuda_direct_bindings.py -k "not emulated" > $LG/t_core.log 2>&1; el "core + direct GPU tests rc=$?"; grep -E "^E  .*Error|FAILED|passed|failed" $LG/t_core.log | tail -6 | cut -c1-250
timeout $(left 590) python -m pytest -q tests/test_models_gpu.py -k "cuda and core" > $LG/t_models.log 2>&1; el "model GPU tests (cuda core) rc=$?"; grep -E "FAILED|passed|failed" $LG/t_models.log | tail -6 | cut -c1-250
