#!/usr/bin/env bash
# GPU call 49 (same code as call 48): #19 item 5's compiled rows: VMamba-T/S/B on cuda and triton with Swin-T,
# inference and training. The compile caches are warmed first by one process per model in parallel (1 step each,
# nothing written); the Swin-T and triton warm-ups start during the build (they do not need the extension).
# Then the rows are measured one process at a time (Swin-T first), hitting the caches the warm-up filled. Last, the
# A/B of the compiled-inference regression: compiled VMamba-T inference alone (no --train), caches warm.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=12 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
left() { l=$(( $1 - ($(date +%s) - t0) )); [ $l -lt 5 ] && l=1; echo $l; }
C="--compile --layout channels_last --amp --train --batch 128 --weight-cache on"
warm() {  # name, args...
  n=$1; shift; s=$(date +%s)
  timeout 330 python -m bench.tp $C --no-csv --warmup 1 --iters 1 "$@" > $LG/warm_$n.log 2>&1
  echo "warm $n rc=$? $(( $(date +%s) - s ))s" >> $LG/warm.txt
}
pids=""
warm swin_t --model none --baselines --baseline-models swin_tiny_patch4_window7_224 & pids="$pids $!"
for m in vmamba_t vmamba_s vmamba_b; do warm ${m}_triton --impl triton --model $m & pids="$pids $!"; done
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
for m in vmamba_t vmamba_s vmamba_b; do warm ${m}_cuda --impl cuda --model $m & pids="$pids $!"; done
wait $pids; el "warm done"; cat $LG/warm.txt
M="$C --warmup 10 --iters 15"
timeout -s INT $(left 360) python -m bench.tp $M --model none --baselines --baseline-models swin_tiny_patch4_window7_224 > $LG/c_swin.log 2>&1
el "compiled swin-t rc=$?"; grep -A3 "^model " $LG/c_swin.log | cut -c1-200
timeout -s INT $(left 470) python -m bench.tp $M --impl cuda --model vmamba_t,vmamba_s,vmamba_b > $LG/c_cuda.log 2>&1
el "compiled cuda rc=$?"; grep -A5 "^model " $LG/c_cuda.log | cut -c1-200
timeout -s INT $(left 565) python -m bench.tp $M --impl triton --model vmamba_t,vmamba_s,vmamba_b > $LG/c_triton.log 2>&1
el "compiled triton rc=$?"; grep -A5 "^model " $LG/c_triton.log | cut -c1-200
timeout -s INT $(left 595) python -m bench.tp --compile --layout channels_last --amp --batch 128 --weight-cache on --warmup 10 --iters 15 --impl cuda --model vmamba_t --no-csv > $LG/c_t_infer.log 2>&1
el "compiled T infer-only rc=$?"; grep -A3 "^model " $LG/c_t_infer.log | cut -c1-200
