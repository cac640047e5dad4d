#!/usr/bin/env bash
# GPU call 35: B and C read in place by the cuda scan (strided_bc): scan/chain/cupy GPU tests, the model GPU tests that
# timed out in call 34 (cuda only), CUDA-graph tests; batch 1/32/128 latency A/B (views, copies, fused core, Swin-T).
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 150 python -m pytest -q -x tests/test_cuda_selective_scan.py -k "strided or packed_rows or one_chunk or stage4 or several_channel or flags or checks or deterministic" > $LG/t_scan.log 2>&1; el "scan tests rc=$?"; tail -1 $LG/t_scan.log
timeout 60 python -m pytest -q tests/test_ss2d_chain.py -k "gpu" > $LG/t_chain.log 2>&1; el "chain tests rc=$?"; tail -1 $LG/t_chain.log
timeout 60 python -m pytest -q tests/test_cupy.py -k "scan_flags or kernel_paths or matches_the_cuda or scan_3d" -x > $LG/t_cupy.log 2>&1; el "cupy tests rc=$?"; tail -1 $LG/t_cupy.log
timeout 100 python .gpu/b1ab.py > $LG/b1ab.log 2>&1; el "b1ab rc=$?"; cat $LG/b1ab.log | cut -c1-250
timeout 150 python -m pytest -q tests/test_models_gpu.py -k "cuda and not core" > $LG/t_models.log 2>&1; el "models tests rc=$?"; tail -1 $LG/t_models.log
timeout 90 python -m pytest -q tests/test_graphs_gpu.py > $LG/t_graphs.log 2>&1; el "graphs tests rc=$?"; tail -1 $LG/t_graphs.log
