#!/usr/bin/env bash
# GPU call 45: the triton direct launches (fast_launch.py, CPU-verified only) on the H200: bitwise outputs with and
# without, the triton GPU tests through them, then bench.overhead rows for cuda/triton/cupy at HEAD (public, raw,
# raw_jit_run: the per-launch saving on the real host), and the 1x/8x/32x/128x latency sweep with Swin-T (#20).
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 150 python -m pytest -q -x tests/test_triton_fast_launch.py > $LG/t_fast.log 2>&1; el "fast-launch tests rc=$?"; tail -2 $LG/t_fast.log
timeout 200 python -m pytest -q tests/test_triton.py -m gpu > $LG/t_triton.log 2>&1; el "triton gpu tests rc=$?"; tail -2 $LG/t_triton.log
timeout 150 python -m pytest -q -x tests/test_cupy.py -m gpu > $LG/t_cupy.log 2>&1; el "cupy gpu tests rc=$?"; tail -2 $LG/t_cupy.log
timeout 200 python -m bench.overhead --impls cuda,triton,cupy --calls 200 > $LG/overhead.log 2>&1; el "overhead rc=$?"
grep -E " public | raw" $LG/overhead.log | grep -E " fwd +no " | cut -c1-110
timeout 120 python .gpu/ss2d_bwd_sweep.py > $LG/ss2d_sweep.log 2>&1; el "ss2d bwd sweep rc=$?"; cat $LG/ss2d_sweep.log | tail -16
timeout -s INT 130 python -m bench.tp --model vmamba_t --impl cuda --layout channels_last --amp --train --batch 32 --img-size 1024 \
  --warmup 5 --iters 10 --weight-cache on --baselines --baseline-models swin_tiny_patch4_window7_224,convnext_tiny > $LG/big.log 2>&1; el "1024 rc=$?"
grep -A8 "^model " $LG/big.log | cut -c1-170
L=$(( 560 - ($(date +%s) - t0) )); [ $L -lt 5 ] && L=1
timeout -s INT $L python -m bench.tp --model vmamba_t --impl cuda --layout channels_last --amp --batch 1,8,32,128 \
  --weight-cache on --baselines --baseline-models swin_tiny_patch4_window7_224 > $LG/latency.log 2>&1; el "latency rc=$?"
grep -A12 "^model " $LG/latency.log | cut -c1-170
