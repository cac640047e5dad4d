#!/usr/bin/env bash
# GPU call 61 (stop 43): the sweep forward's dt projection on tensor cores (tf32 mma). Build; bench.kernels ss2d_core
# fwd cl: default (mma), mma off (FMA projection), forced tiles at stage 1; core + model sweep GPU tests; ncu of the
# sweep at stages 3 and 4; VMamba-T AMP inference core off / on.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name --format=csv,noheader
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
K="python -m bench.kernels --ops ss2d_core --models vmamba_t --impls cuda --dtypes fp16 --no-csv --directions fwd --layouts cl"
timeout 40 $K > $LG/k_default.log 2>&1; el "kernels fwd default (mma) rc=$?"; grep -E "^ss2d_core" $LG/k_default.log | cut -c1-170
VMAMBA_SS2D_SWEEP_MMA=0 timeout 40 $K > $LG/k_fma.log 2>&1; el "kernels fwd mma off rc=$?"; grep -E "^ss2d_core" $LG/k_fma.log | grep -v unfused | cut -c1-170
for tile in 16x4 8x32; do
VMAMBA_SS2D_FWD_SWEEP=$tile timeout 40 $K > $LG/k_$tile.log 2>&1; el "kernels fwd sweep $tile rc=$?"; grep -E "^ss2d_core" $LG/k_$tile.log | grep -v unfused | head -1 | cut -c1-170
done
timeout 100 python -m pytest -q tests/test_cuda_ss2d_core.py -k "not emulated" > $LG/t_core.log 2>&1; el "core GPU tests rc=$?"; grep -E "FAILED|passed|failed|Error" $LG/t_core.log | tail -8 | cut -c1-400
timeout 100 python -m pytest -q tests/test_models_gpu.py -k "sweep or core" > $LG/t_models.log 2>&1; el "model core GPU tests rc=$?"; grep -E "FAILED|passed|failed" $LG/t_models.log | tail -5 | cut -c1-300
TP="python -m bench.tp --model vmamba_t --impl cuda --layout channels_last --amp --batch 128 --weight-cache on --rounds 3 --warmup 10 --iters 20"
timeout 60 $TP --ss2d-core off,cuda --no-csv > $LG/tp.log 2>&1; el "tp infer rc=$?"; grep -A4 "^model " $LG/tp.log | cut -c1-190
for st in 3 4; do
  timeout 60 ncu --kernel-name-base demangled -k regex:Sweep --launch-skip 1 --launch-count 1 --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats --section LaunchStats python .gpu/ncu_sweep.py $st > $LG/ncu$st.log 2>&1; el "ncu stage $st rc=$?"
  grep -E "Duration|Block Size|Achieved Occupancy|Registers Per|Stall|Warp Cycles Per Issued|Issue Slots Busy|Compute \(SM\) Throughput|Memory Throughput|No Eligible" $LG/ncu$st.log | head -16 | cut -c1-150
done
