#!/usr/bin/env bash
# GPU call 43 (code of ee1764ff531f): the new category profile of VMamba-T (inference and training), then compiled
# rows measured cold, one process at a time (no cache warm-up: call 42's warm-up ran 7 compiling processes at once on
# the GPU and its compiled VMamba-T inference came out 27% under call 37's): Swin-T first, then VMamba-T cuda and
# triton, then VMamba-S / Swin-S while time lasts (timeout -s INT keeps the finished rows).
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "cp reports/*.csv $LG/ 2>/dev/null; tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 60 python -m bench.profile --model vmamba_t --impl cuda --amp --layout channels_last > $LG/profile_infer.log 2>&1; el "profile infer rc=$?"
timeout 60 python -m bench.profile --model vmamba_t --impl cuda --amp --train --layout channels_last --recompute norms+delta > $LG/profile_train.log 2>&1; el "profile train rc=$?"
grep -v Warn $LG/profile_infer.log | head -30 | cut -c1-160; grep -v Warn $LG/profile_train.log | head -30 | cut -c1-160
C="--compile --layout channels_last --amp --train --batch 128 --warmup 10 --iters 15 --weight-cache on"
left() { l=$(( 575 - ($(date +%s) - t0) )); [ $l -lt 5 ] && l=1; echo $l; }
timeout -s INT $(left) python -m bench.tp $C --model none --baselines --baseline-models swin_tiny_patch4_window7_224 > $LG/c_swin_t.log 2>&1; el "swin-t rc=$?"
timeout -s INT $(left) python -m bench.tp $C --impl cuda,triton --model vmamba_t > $LG/c_vmamba_t.log 2>&1; el "vmamba-t rc=$?"
timeout -s INT $(left) python -m bench.tp $C --model none --baselines --baseline-models swin_small_patch4_window7_224 > $LG/c_swin_s.log 2>&1; el "swin-s rc=$?"
timeout -s INT $(left) python -m bench.tp $C --impl cuda --model vmamba_s > $LG/c_vmamba_s.log 2>&1; el "vmamba-s rc=$?"
for f in c_swin_t c_vmamba_t c_swin_s c_vmamba_s; do grep -A6 "^model " $LG/$f.log | grep -v "^---" | cut -c1-170; grep "warm-up 1/" $LG/$f.log | cut -c1-120; done
