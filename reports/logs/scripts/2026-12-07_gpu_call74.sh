#!/usr/bin/env bash
# GPU call 74: this session's host-cost changes (C Function.apply entry for the twins; cupy arguments as CPointers;
# C++ autograd nodes around triton's and cupy's raw kernels) checked on the GPU and timed against the session's start
# f7e0829 (.gpu/old) and the nodes turned off, on one host, alternating.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=$OUT/logs; mkdir -p $LG
trap "cp reports/overhead.csv $LG/ 2>/dev/null" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name --format=csv,noheader; python -c "import torch, triton, cupy; print(torch.__version__, triton.__version__, cupy.__version__)"
python setup.py build_ext --inplace > $LG/build.log 2>&1; rc=$?; el "build rc=$rc"
[ $rc != 0 ] && { grep -B2 -A8 " error" $LG/build.log | head -60; exit 1; }
cp vmamba_kernels/_C*.so .gpu/old/vmamba_kernels/
t0=$(date +%s)
left() { l=$(( $1 - ($(date +%s) - t0) )); [ $l -lt 5 ] && l=1; echo $l; }
timeout $(left 100) python -m pytest -q -x -m gpu tests/test_cupy.py -k "scan_flags or cross_scan_merge or side_stream or current_stream" > $LG/t_cupy.log 2>&1; el "cupy tests rc=$?"
grep -E "^E  |FAILED|passed|failed|Fatal" $LG/t_cupy.log | head -6 | cut -c1-250
timeout $(left 190) python -m pytest -q -x -m gpu tests/test_graphs_gpu.py tests/test_models_gpu.py -k "test_graphs_gpu or ((triton or cupy) and vmamba_t and fp16)" > $LG/t_models.log 2>&1; el "graphs + model tests (triton, cupy nodes) rc=$?"
grep -E "^E  |FAILED|passed|failed|Fatal" $LG/t_models.log | head -6 | cut -c1-250
AB="--impls cuda,triton,cupy --shapes t_s3 --calls 100 --rounds 3 --no-csv --no-breakdown"
(cd .gpu/old && PYTHONPATH=$PWD GIT_SHA=f7e0829 timeout $(left 240) python -m bench.overhead $AB > $LG/ab_old.log 2>&1); el "old rc=$?"
VMAMBA_NATIVE_AUTOGRAD=0 timeout $(left 290) python -m bench.overhead $AB > $LG/ab_nodes_off.log 2>&1; el "new, nodes off rc=$?"
timeout $(left 340) python -m bench.overhead $AB > $LG/ab_new.log 2>&1; el "new rc=$?"
for f in ab_old ab_nodes_off ab_new; do echo "== $f"; grep -E " public " $LG/$f.log | awk '{print $1, $2, $3, $4, $9}'; done
timeout $(left 440) python -m bench.overhead --impls cuda,triton,cupy --shapes t_s3 --calls 100 --rounds 3 > $LG/new_full.log 2>&1; el "new full rc=$?"
echo "== raw"; grep -E " raw " $LG/new_full.log | awk '{print $1, $2, $3, $4, $9}'
timeout $(left 480) python reports/logs/scripts/2026-12-07_gpu_call74_fn_cost.py > $LG/fn_cost.log 2>&1; el "fn_cost rc=$?"; cat $LG/fn_cost.log
