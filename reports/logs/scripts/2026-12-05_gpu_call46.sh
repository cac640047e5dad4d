#!/usr/bin/env bash
# GPU call 46: the LN-backward fast-launch GPU case fixed (a test bug in call 45), the ss2d backward split rule
# (wave quantisation) at every stage against forced split counts, bench.kernels ss2d_core fused vs unfused at HEAD,
# then #19's compiled regression: the compiled category profile (--explain) and compiled VMamba-T inference alone.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 100 python -m pytest -q tests/test_triton_fast_launch.py > $LG/t_fast.log 2>&1; el "fast-launch tests rc=$?"; tail -1 $LG/t_fast.log
timeout 60 python .gpu/ss2d_splits_sweep.py > $LG/splits.log 2>&1; el "splits rc=$?"; cat $LG/splits.log | cut -c1-200
timeout 90 python -m bench.kernels --ops ss2d_core --models vmamba_t --impls cuda --dtypes fp16 --layouts cl > $LG/k_ss2d.log 2>&1; el "kernels ss2d rc=$?"
grep -E "ss2d_core" $LG/k_ss2d.log | cut -c1-140 | head -20
timeout 150 python -m bench.profile --model vmamba_t --impl cuda --amp --layout channels_last --compile --explain > $LG/explain.log 2>&1; el "profile compiled rc=$?"
grep -v Warn $LG/explain.log | grep -v "^ *$" | head -40 | cut -c1-180
C="--compile --layout channels_last --amp --batch 128 --weight-cache on"
L=$(( 560 - ($(date +%s) - t0) )); [ $L -lt 5 ] && L=1
timeout -s INT $L python -m bench.tp $C --impl cuda --model vmamba_t --warmup 10 --iters 15 --no-csv > $LG/c_t_infer_only.log 2>&1; el "T infer-only rc=$?"
grep -A3 "^model " $LG/c_t_infer_only.log | cut -c1-170; grep "warm-up 1/" $LG/c_t_infer_only.log | cut -c1-120
