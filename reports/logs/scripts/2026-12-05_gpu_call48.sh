#!/usr/bin/env bash
# GPU call 48 (H100, code of 1f60820 = 76fc476 + reports): #19 item 5's eager rows at one commit on this card:
# VMamba-T/S/B on cuda (no recompute and norms+delta) with Swin-T/S/B and ConvNeXt-T, 3 rounds; the same models
# on triton in the next process; then the fast-launch GPU test, and #20's latency sweep with Swin-T, eager and
# with CUDA graphs.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
left() { l=$(( $1 - ($(date +%s) - t0) )); [ $l -lt 5 ] && l=1; echo $l; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
B="--layout channels_last --amp --train --batch 128 --rounds 3 --warmup 10 --iters 15 --weight-cache on --model vmamba_t,vmamba_s,vmamba_b"
timeout -s INT $(left 330) python -m bench.tp $B --impl cuda --recompute none,norms+delta --baselines \
  --baseline-models swin_tiny_patch4_window7_224,swin_small_patch4_window7_224,swin_base_patch4_window7_224,convnext_tiny > $LG/bar_cuda.log 2>&1
el "bar cuda rc=$?"; grep -A16 "^model " $LG/bar_cuda.log | cut -c1-180
timeout -s INT $(left 430) python -m bench.tp $B --impl triton --recompute none > $LG/bar_triton.log 2>&1
el "bar triton rc=$?"; grep -A5 "^model " $LG/bar_triton.log | cut -c1-180
timeout 70 python -m pytest -q tests/test_triton_fast_launch.py > $LG/t_fast.log 2>&1; el "fast-launch tests rc=$?"; tail -1 $LG/t_fast.log
E="--model vmamba_t --impl cuda --layout channels_last --amp --batch 1,8,32,128 --weight-cache on"
timeout -s INT $(left 530) python -m bench.tp $E --baselines --baseline-models swin_tiny_patch4_window7_224 > $LG/latency.log 2>&1; el "latency rc=$?"
grep -A12 "^model " $LG/latency.log | cut -c1-140
timeout -s INT $(left 585) python -m bench.tp $E --cuda-graphs --baselines --baseline-models swin_tiny_patch4_window7_224 > $LG/graphs.log 2>&1; el "graphs rc=$?"
grep -A12 "^model " $LG/graphs.log | cut -c1-140
