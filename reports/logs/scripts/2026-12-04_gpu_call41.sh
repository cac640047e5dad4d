#!/usr/bin/env bash
# GPU call 41 (next session, first): the chain GPU test with the scaled loss (never run: call 39 failed on fp16
# subnormals before the fix), the model GPU tests, then the bar rows at this commit with the pixel-order backward.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 60 python -m pytest -q tests/test_ss2d_chain.py -k gpu > $LG/t_chain.log 2>&1; el "chain tests rc=$?"; tail -1 $LG/t_chain.log; grep -E "^E  .*(Error|Greatest)" $LG/t_chain.log | head -6
timeout 120 python -m pytest -q tests/test_models_gpu.py -k "cuda and not core" > $LG/t_models.log 2>&1; el "models tests rc=$?"; tail -1 $LG/t_models.log
timeout -s INT 330 python -m bench.tp --impl cuda --layout channels_last --amp --train --batch 128 --rounds 3 --warmup 10 --iters 15 \
  --weight-cache on --recompute none,norms+delta --model vmamba_t,vmamba_s,vmamba_b --baselines \
  --baseline-models swin_tiny_patch4_window7_224,swin_small_patch4_window7_224,swin_base_patch4_window7_224,convnext_tiny > $LG/bar.log 2>&1; el "bar rc=$?"
grep -A24 "^model " $LG/bar.log | cut -c1-200
