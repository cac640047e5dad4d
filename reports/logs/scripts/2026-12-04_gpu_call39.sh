#!/usr/bin/env bash
# GPU call 39: the chain backward's x gradient in pixel order: chain and model GPU tests, then an interleaved A/B
# against the previous commit's backward (models/chain_old.py, copied in here only) on VMamba-B/S/T training, with Swin.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
cp .gpu/chain_old.py models/chain_old.py
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 60 python -m pytest -q tests/test_ss2d_chain.py -k "gpu" > $LG/t_chain.log 2>&1; el "chain tests rc=$?"; tail -1 $LG/t_chain.log
timeout 70 python -m pytest -q tests/test_models_gpu.py -k "cuda and not core and (vmamba_t or vmamba_b)" > $LG/t_models.log 2>&1; el "models tests rc=$?"; tail -1 $LG/t_models.log; grep -E "^FAILED" $LG/t_models.log | head -3
timeout 150 python .gpu/ab_dx2.py > $LG/ab.log 2>&1; el "ab rc=$?"; cut -c1-300 $LG/ab.log
