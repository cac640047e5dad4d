#!/usr/bin/env bash
# GPU call 58: the sweep forward's auto rule (16 resident warps) and register caps. Build (min blocks 2, the default);
# bench.kernels ss2d_core fwd cl: default, whole-map (sweep 0), seg auto, unfused, in one run; ncu of the sweep at
# stages 1 and 3; rebuild with __launch_bounds__ min blocks 3 and 4 (register caps 80 / 64), sweep rows again.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
K="python -m bench.kernels --ops ss2d_core --models vmamba_t --impls cuda --dtypes fp16 --no-csv --directions fwd --layouts cl"
timeout 40 $K > $LG/k_default.log 2>&1; el "kernels fwd default rc=$?"; grep -E "^ss2d_core" $LG/k_default.log | cut -c1-170
VMAMBA_SS2D_FWD_SWEEP=0 timeout 40 $K > $LG/k_wm.log 2>&1; el "kernels fwd whole-map rc=$?"; grep -E "^ss2d_core" $LG/k_wm.log | grep -v unfused | cut -c1-170
VMAMBA_SS2D_FWD_SWEEP=32x4 timeout 40 $K > $LG/k_32x4.log 2>&1; el "kernels fwd sweep 32x4 rc=$?"; grep -E "^ss2d_core" $LG/k_32x4.log | grep -v unfused | cut -c1-170
for st in 1 3; do
  tile=$([ $st = 1 ] && echo 16x16 || echo 32x4)
  VMAMBA_SS2D_FWD_SWEEP=$tile timeout 90 ncu --kernel-name-base demangled -k regex:Sweep --launch-skip 1 --launch-count 1 --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats python reports/logs/scripts/2026-12-06_ncu_sweep.py $st > $LG/ncu$st.log 2>&1; el "ncu stage $st ($tile) rc=$?"
  grep -E "Duration|Achieved Occupancy|Theoretical Occupancy|Registers|Stall|Warp Cycles Per Issued|Issue Slots Busy|Compute \(SM\) Throughput|Memory Throughput|Block Limit|No Eligible|Active Warps" $LG/ncu$st.log | head -30 | cut -c1-150
done
for mb in 3 4; do
  sed -i "s/^#define VMAMBA_SS2D_SWEEP_MIN_BLOCKS .*/#define VMAMBA_SS2D_SWEEP_MIN_BLOCKS $mb/" csrc/ss2d_core/ss2d_sweep_body.cuh
  python setup.py build_ext --inplace > $LG/build$mb.log 2>&1; el "build min blocks $mb rc=$?"
  for tile in auto 32x8; do
    VMAMBA_SS2D_FWD_SWEEP=$tile timeout 40 $K > $LG/k_mb${mb}_$tile.log 2>&1; el "kernels fwd sweep=$tile min blocks $mb rc=$?"; grep -E "^ss2d_core" $LG/k_mb${mb}_$tile.log | grep -v unfused | cut -c1-170
  done
done
