#!/usr/bin/env bash
# GPU call 62: the tensor-core projection made opt-in. Build; core GPU tests (new mma test against tf32 weights);
# bench.kernels ss2d_core fwd cl default (FMA); sanitizer on ss2d_core (two mma cases); model sweep tests.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name --format=csv,noheader
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 100 python -m pytest -q tests/test_cuda_ss2d_core.py -k "not emulated" > $LG/t_core.log 2>&1; el "core GPU tests rc=$?"; grep -E "^E  .*Error|FAILED|passed|failed" $LG/t_core.log | tail -8 | cut -c1-400
K="python -m bench.kernels --ops ss2d_core --models vmamba_t --impls cuda --dtypes fp16 --no-csv --directions fwd --layouts cl"
timeout 40 $K > $LG/k_default.log 2>&1; el "kernels fwd default (FMA) rc=$?"; grep -E "^ss2d_core" $LG/k_default.log | cut -c1-170
timeout 150 python -m bench.sanitize --ops ss2d_core --tools memcheck,racecheck > $LG/san.log 2>&1; el "sanitize rc=$?"; tail -4 $LG/san.log | cut -c1-200
timeout 150 python -m pytest -q tests/test_models_gpu.py -k sweep --durations=4 > $LG/t_models.log 2>&1; el "model sweep GPU tests rc=$?"; grep -E "FAILED|passed|failed|s call" $LG/t_models.log | tail -8 | cut -c1-300
# then, on the same warm machine (the extension already built), as one command:
#   python -m bench.tp --model vmamba_t --impl cuda --layout channels_last --amp --batch 128 --weight-cache on \
#     --rounds 3 --warmup 10 --iters 20 --ss2d-core off,cuda --no-csv
#   for st in 3 4; do ncu --kernel-name-base demangled -k regex:Sweep --launch-skip 1 --launch-count 1 \
#     --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats \
#     python .gpu/ncu_sweep.py $st; done          # .gpu/ncu_sweep.py = reports/logs/scripts/2026-12-06_ncu_sweep.py
