#!/usr/bin/env bash
# GPU call 71 (30 min of device time this session): the unrun code's GPU tests (native autograd nodes, direct bindings,
# triton C launches + launch key, cupy Function launches, C++ stage bad packs), then #20 item 1 (per-call host cost of
# every impl) and item 4 (latency rows with Swin-T). Timeouts count from the end of the build.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=$OUT/logs; mkdir -p $LG
trap "cp reports/overhead.csv reports/models.csv $LG/ 2>/dev/null" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name --format=csv,noheader
python setup.py build_ext --inplace > $LG/build.log 2>&1; rc=$?; el "build rc=$rc"
[ $rc != 0 ] && { grep -B2 -A8 " error" $LG/build.log | head -60; exit 1; }
t0=$(date +%s)
left() { l=$(( $1 - ($(date +%s) - t0) )); [ $l -lt 5 ] && l=1; echo $l; }
timeout $(left 100) python -m pytest -q -m gpu tests/test_cuda_native_autograd.py tests/test_cuda_direct_bindings.py tests/test_triton_fast_launch.py > $LG/t_native.log 2>&1; el "native autograd + direct binding + triton launch tests rc=$?"
grep -E "^E  |FAILED|passed|failed|Fatal" $LG/t_native.log | head -10 | cut -c1-250
timeout $(left 150) python -m pytest -q -m gpu tests/test_cupy.py -k "current_stream or side_stream or matches_the_cuda" > $LG/t_cupy.log 2>&1; el "cupy tests rc=$?"
grep -E "^E  |FAILED|passed|failed|Fatal" $LG/t_cupy.log | head -6 | cut -c1-250
timeout $(left 200) python -m pytest -q -m gpu tests/test_cpp_stages.py > $LG/t_cpp.log 2>&1; el "cpp stage tests rc=$?"
grep -E "^E  |FAILED|passed|failed|Fatal" $LG/t_cpp.log | head -6 | cut -c1-250
VMAMBA_CUDA_NATIVE_AUTOGRAD=1 timeout $(left 250) python -m bench.overhead --impls cuda --shapes t_s3,t_s4 --calls 100 --rounds 3 > $LG/overhead_cuda_native.log 2>&1; el "overhead cuda native rc=$?"
grep -E " public " $LG/overhead_cuda_native.log | cut -c1-100
timeout $(left 330) python -m bench.overhead --impls triton,cupy,cuda --shapes t_s3 --calls 100 --rounds 3 > $LG/overhead_tc.log 2>&1; el "overhead triton,cupy,cuda rc=$?"
grep -E " public |fwd .* no .*(raw|raw_python_key|raw_jit_run) " $LG/overhead_tc.log | cut -c1-100
E="--model vmamba_t --impl cuda --layout channels_last --amp --batch 1,32,128 --weight-cache on"
timeout -s INT $(left 430) python -m bench.tp $E --cpp-stages both --rounds 3 --baselines --baseline-models swin_tiny_patch4_window7_224 > $LG/latency.log 2>&1; el "latency rc=$?"
grep -A10 "^model " $LG/latency.log | cut -c1-170
