#!/usr/bin/env bash
set -u; export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=${SHA}
python setup.py build_ext --inplace > $OUT/build.log 2>&1; echo "build rc=$?"
cp reports/models.csv $OUT/models_before.csv
timeout 330 python -m bench.tp --model vmamba_t,vmamba_s,vmamba_b --impl cuda --layout channels_last --amp --train --baselines --warmup 20 --iters 20 2>&1 | tail -14
timeout 120 python -m bench.tp --model vmamba_t --impl cuda,triton --path both --layout both --amp --train --warmup 15 --iters 20 2>&1 | tail -12
cp reports/models.csv $OUT/models.csv
