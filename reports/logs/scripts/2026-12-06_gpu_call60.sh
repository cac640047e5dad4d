#!/usr/bin/env bash
# GPU call 60 (last of the session, short device budget): the sweep's staging by step and unrolled projection.
# Build; sweep + core GPU tests; bench.kernels ss2d_core fwd cl (default + unfused); VMamba-T AMP inference core
# off / on; sanitizer on ss2d_core.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
K="python -m bench.kernels --ops ss2d_core --models vmamba_t --impls cuda --dtypes fp16 --no-csv --directions fwd --layouts cl"
timeout 40 $K > $LG/k_cl.log 2>&1; el "kernels fwd cl rc=$?"; grep -E "^ss2d_core" $LG/k_cl.log | cut -c1-170
timeout 60 python -m pytest -q tests/test_cuda_ss2d_core.py -k "not emulated" > $LG/t_core.log 2>&1; el "core GPU tests rc=$?"; grep -E "FAILED|passed|failed" $LG/t_core.log | tail -6 | cut -c1-300
timeout 60 python -m pytest -q tests/test_models_gpu.py -k sweep > $LG/t_models.log 2>&1; el "model sweep GPU tests rc=$?"; grep -E "FAILED|passed|failed" $LG/t_models.log | tail -3 | cut -c1-300
TP="python -m bench.tp --model vmamba_t --impl cuda --layout channels_last --amp --batch 128 --weight-cache on --rounds 3 --warmup 10 --iters 20"
timeout 60 $TP --ss2d-core off,cuda --no-csv > $LG/tp.log 2>&1; el "tp infer rc=$?"; grep -A4 "^model " $LG/tp.log | cut -c1-190
timeout 70 python -m bench.sanitize --ops ss2d_core --tools memcheck,racecheck > $LG/san.log 2>&1; el "sanitize rc=$?"; tail -4 $LG/san.log | cut -c1-200
