#!/usr/bin/env bash
# GPU call 59 (final of the session): the sweep forward at min blocks 3 as committed. Build; the cuda ss2d_core GPU
# suite and the model GPU tests of the fused core; sanitizer; bench.kernels ss2d_core fwd cl (default + unfused)
# and cf; VMamba-T AMP inference with the core off / on.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 120 python -m pytest -q tests/test_cuda_ss2d_core.py -k "not emulated" > $LG/t_core.log 2>&1; el "core GPU tests rc=$?"; grep -E "FAILED|passed|failed" $LG/t_core.log | tail -6 | cut -c1-300
timeout 200 python -m pytest -q tests/test_models_gpu.py -k "sweep or (cuda and core and vmamba_t)" > $LG/t_models.log 2>&1; el "model GPU tests (core) rc=$?"; grep -E "FAILED|passed|failed" $LG/t_models.log | tail -6 | cut -c1-300
K="python -m bench.kernels --ops ss2d_core --models vmamba_t --impls cuda --dtypes fp16 --no-csv --directions fwd"
timeout 40 $K --layouts cl > $LG/k_cl.log 2>&1; el "kernels fwd cl rc=$?"; grep -E "^ss2d_core" $LG/k_cl.log | cut -c1-170
timeout 40 $K --layouts cf > $LG/k_cf.log 2>&1; el "kernels fwd cf rc=$?"; grep -E "^ss2d_core" $LG/k_cf.log | cut -c1-170
TP="python -m bench.tp --model vmamba_t --impl cuda --layout channels_last --amp --batch 128 --weight-cache on --rounds 3 --warmup 10 --iters 20"
timeout 100 $TP --ss2d-core off,cuda --no-csv > $LG/tp.log 2>&1; el "tp infer rc=$?"; grep -A4 "^model " $LG/tp.log | cut -c1-190
timeout 100 python -m bench.sanitize --ops ss2d_core --tools memcheck,racecheck > $LG/san.log 2>&1; el "sanitize rc=$?"; tail -4 $LG/san.log | cut -c1-200
