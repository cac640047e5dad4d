#!/usr/bin/env bash
# GPU call 42 (code of ee1764ff531f): #19 item 5's compiled rows for the cuda impl, inference and training, with the
# four baselines compiled in the same run. Compile caches are warmed first by one process per model in parallel
# (1 warm-up step each, nothing written), then one bench.tp run measures every model in series, hitting the
# inductor / AOTAutograd / triton caches the warm-up filled.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
COMMON="--compile --layout channels_last --amp --train --batch 128 --weight-cache on"
pids=""
for m in vmamba_t vmamba_s vmamba_b; do
  ( s=$(date +%s); timeout 300 python -m bench.tp $COMMON --impl cuda --model $m --no-csv --warmup 1 --iters 1 > $LG/warm_$m.log 2>&1
    echo "warm $m rc=$? $(( $(date +%s) - s ))s" >> $LG/warm.txt ) & pids="$pids $!"
done
for b in swin_tiny_patch4_window7_224 swin_small_patch4_window7_224 swin_base_patch4_window7_224 convnext_tiny; do
  ( s=$(date +%s); timeout 300 python -m bench.tp $COMMON --baselines --baseline-models $b --no-csv --warmup 1 --iters 1 > $LG/warm_$b.log 2>&1
    echo "warm $b rc=$? $(( $(date +%s) - s ))s" >> $LG/warm.txt ) & pids="$pids $!"
done
wait $pids; el "warm done"; cat $LG/warm.txt; nvidia-smi --query-gpu=memory.used --format=csv,noheader
REM=$(( 575 - ($(date +%s) - t0) ))
timeout -s INT $REM python -m bench.tp $COMMON --impl cuda --warmup 10 --iters 15 --model vmamba_t,vmamba_s,vmamba_b \
  --baselines --baseline-models swin_tiny_patch4_window7_224,swin_small_patch4_window7_224,swin_base_patch4_window7_224,convnext_tiny > $LG/compiled.log 2>&1
el "compiled rc=$?"
grep -A17 "^model " $LG/compiled.log | cut -c1-200
grep -iE "building|error|fail" $LG/compiled.log | cut -c1-160 | head -20
