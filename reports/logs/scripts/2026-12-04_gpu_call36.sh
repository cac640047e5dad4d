#!/usr/bin/env bash
# GPU call 36: the inference LayerNorm without statistics (GPU test), the model tests on cuda; batch 1/32/128 A/B
# (new: B/C views + add_layer_norm_infer; old: copies + full forward) against Swin-T; then #19 item 5's eager rows at
# this one commit: VMamba-T/S/B on cuda and triton (recompute none and norms+delta) with Swin-T/S/B and ConvNeXt-T.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 60 python -m pytest -q tests/test_cuda_norm_dwconv.py -k "infer_equals" > $LG/t_ln.log 2>&1; el "ln infer tests rc=$?"; tail -1 $LG/t_ln.log
timeout 60 python -m pytest -q tests/test_models_gpu.py -k "cuda and not core and (vmamba_t or cf)" > $LG/t_models.log 2>&1; el "models tests rc=$?"; tail -1 $LG/t_models.log
timeout 80 python .gpu/b1ab2.py > $LG/b1ab.log 2>&1; el "b1ab rc=$?"; cut -c1-250 $LG/b1ab.log
timeout -s INT 400 python -m bench.tp --impl cuda,triton --layout channels_last --amp --train --batch 128 --rounds 2 --warmup 10 --iters 15 \
  --weight-cache on --recompute none,norms+delta --model vmamba_t,vmamba_s,vmamba_b --baselines \
  --baseline-models swin_tiny_patch4_window7_224,swin_small_patch4_window7_224,swin_base_patch4_window7_224,convnext_tiny > $LG/eager.log 2>&1; el "eager rc=$?"
grep -A40 "^model " $LG/eager.log | cut -c1-160
