#!/usr/bin/env bash
# GPU call 72: the cuda backend's C++ autograd nodes now on by default: their GPU tests (the no-branch add + LayerNorm
# cases fixed), CUDA-graph capture and models with them; the public calls' cost with the default; training throughput
# with and without them; where triton's grad calls and cupy's raw calls spend host time (cProfile).
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=$OUT/logs; mkdir -p $LG
trap "cp reports/overhead.csv reports/models.csv $LG/ 2>/dev/null" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name --format=csv,noheader
python setup.py build_ext --inplace > $LG/build.log 2>&1; rc=$?; el "build rc=$rc"
[ $rc != 0 ] && { grep -B2 -A8 " error" $LG/build.log | head -60; exit 1; }
t0=$(date +%s)
left() { l=$(( $1 - ($(date +%s) - t0) )); [ $l -lt 5 ] && l=1; echo $l; }
timeout $(left 60) python -m pytest -q -m gpu tests/test_cuda_native_autograd.py tests/test_norm_node.py > $LG/t_native.log 2>&1; el "native autograd tests rc=$?"
grep -E "^E  |FAILED|passed|failed|Fatal" $LG/t_native.log | head -8 | cut -c1-250
timeout $(left 100) python -m pytest -q -m gpu tests/test_graphs_gpu.py tests/test_models_gpu.py -k "test_graphs_gpu or (cuda and vmamba_t and fp16)" > $LG/t_models.log 2>&1; el "graphs + models (cuda, training) rc=$?"
grep -E "^E  |FAILED|passed|failed|Fatal" $LG/t_models.log | head -8 | cut -c1-250
timeout $(left 130) python -m bench.overhead --impls cuda --shapes t_s3,t_s4 --calls 100 --rounds 3 --no-breakdown > $LG/overhead_cuda.log 2>&1; el "overhead cuda (default) rc=$?"
grep -E " fwd  .* public " $LG/overhead_cuda.log | cut -c1-110
timeout $(left 150) python reports/logs/scripts/2026-12-07_gpu_call72_prof_triton.py > $LG/prof_triton.log 2>&1; el "prof triton rc=$?"
grep -E "^====" -A12 $LG/prof_triton.log | cut -c1-150
timeout $(left 170) python reports/logs/scripts/2026-12-07_gpu_call72_prof_raw.py cupy > $LG/prof_cupy.log 2>&1; el "prof cupy rc=$?"
grep -E "^====|^piece|equals" $LG/prof_cupy.log
