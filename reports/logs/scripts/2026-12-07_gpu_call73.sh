#!/usr/bin/env bash
# GPU call 73 (about 4 minutes of device time left): cupy's struct arguments as CPointers, checked against the
# reference on the GPU, then the raw/public call cost. No extension build (cupy needs none).
export PYTHONPATH=$PWD GIT_SHA=$(cat .gpu/sha)
LG=$OUT/logs; mkdir -p $LG
trap "cp reports/overhead.csv $LG/ 2>/dev/null" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 70 python -m pytest -q -x -m gpu tests/test_cupy.py -k "scan_flags or cross_scan_merge or side_stream or current_stream" > $LG/t_cupy.log 2>&1; el "cupy tests rc=$?"
grep -E "^E  |FAILED|passed|failed|Fatal" $LG/t_cupy.log | head -6 | cut -c1-250
timeout 40 python -m bench.overhead --impls cupy --shapes t_s3 --calls 100 --rounds 3 > $LG/overhead_cupy.log 2>&1; el "overhead cupy rc=$?"
grep -E " fwd .*(public|raw) " $LG/overhead_cupy.log | cut -c1-100
