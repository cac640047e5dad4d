#!/usr/bin/env bash
# GPU call 65: the forward plan made layout-dependent (segmented channels-last only). Build; core GPU tests;
# bench.kernels ss2d_core fwd in both layouts (default plan); the models' and the public op's GPU tests of the
# core (cuda); bench.tp VMamba-T AMP with the fused core off and on (inference and training).
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp -r $LG $OUT/logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name --format=csv,noheader
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 100 python -m pytest -q tests/test_cuda_ss2d_core.py tests/test_cuda_direct_bindings.py -k "not emulated" > $LG/t_core.log 2>&1; el "core + direct GPU tests rc=$?"; grep -E "^E  .*Error|FAILED|passed|failed" $LG/t_core.log | tail -8 | cut -c1-300
K="python -m bench.kernels --ops ss2d_core --models vmamba_t --impls cuda --dtypes fp16 --no-csv --directions fwd"
timeout 40 $K --layouts cl,cf > $LG/k_fwd.log 2>&1; el "fwd default rc=$?"; grep -E "^ss2d_core" $LG/k_fwd.log | cut -c1-170
timeout 150 python -m pytest -q tests/test_models_gpu.py -k "cuda and core" > $LG/t_models.log 2>&1; el "model GPU tests (cuda core) rc=$?"; grep -E "FAILED|passed|failed" $LG/t_models.log | tail -6 | cut -c1-300
timeout 100 python -m pytest -q tests/test_ss2d_core.py -m gpu -k cuda > $LG/t_op.log 2>&1; el "op GPU tests (cuda) rc=$?"; grep -E "FAILED|passed|failed" $LG/t_op.log | tail -4 | cut -c1-300
timeout 150 python -m bench.tp --model vmamba_t --impl cuda --layout channels_last --amp --batch 128 --weight-cache on --rounds 2 --warmup 5 --iters 15 --ss2d-core off,cuda --train --no-csv > $LG/tp.log 2>&1; el "tp rc=$?"; grep -E "vmamba_t" $LG/tp.log | tail -6 | cut -c1-220
