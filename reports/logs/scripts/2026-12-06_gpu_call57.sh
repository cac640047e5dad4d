#!/usr/bin/env bash
# GPU call 57: the sweep forward with its loads in flight together (d_state 1; default where it applies). Build; sweep GPU tests then the core GPU
# suite; bench.kernels ss2d_core fwd (VMamba-T fp16 channels-last, --no-csv): default (sweep auto) + unfused chain,
# forced tiles, segmented auto; cf default; VMamba-T AMP inference with the core off / on.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=/tmp/logs; mkdir -p $LG
trap "tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$? $(grep -c ' error' $LG/build.log) error lines"
timeout 90 python -m pytest -q tests/test_cuda_ss2d_core.py -k "sweep and not emulated" > $LG/t_sweep.log 2>&1; el "sweep GPU tests rc=$?"; grep -E "FAILED|passed|failed|Error" $LG/t_sweep.log | tail -8 | cut -c1-300
K="python -m bench.kernels --ops ss2d_core --models vmamba_t --impls cuda --dtypes fp16 --no-csv --directions fwd"
timeout 60 $K --layouts cl > $LG/k_default.log 2>&1; el "kernels fwd default (sweep auto) rc=$?"; grep -E "^ss2d_core" $LG/k_default.log | cut -c1-170
for s in 8x32 16x16 32x8 32x4 32x2; do
  VMAMBA_SS2D_FWD_SWEEP=$s timeout 40 $K --layouts cl > $LG/k_sw$s.log 2>&1; el "kernels fwd sweep=$s rc=$?"
  grep -E "^ss2d_core" $LG/k_sw$s.log | grep -v unfused | cut -c1-170
done
VMAMBA_SS2D_FWD_SEG=auto timeout 40 $K --layouts cl > $LG/k_seg.log 2>&1; el "kernels fwd seg=auto rc=$?"; grep -E "^ss2d_core" $LG/k_seg.log | grep -v unfused | cut -c1-170
timeout 40 $K --layouts cf > $LG/k_cf.log 2>&1; el "kernels fwd default cf rc=$?"; grep -E "^ss2d_core" $LG/k_cf.log | cut -c1-170
TP="python -m bench.tp --model vmamba_t --impl cuda --layout channels_last --amp --batch 128 --weight-cache on --rounds 3 --warmup 10 --iters 20"
timeout 120 $TP --ss2d-core off,cuda --no-csv > $LG/tp.log 2>&1; el "tp infer rc=$?"; grep -A4 "^model " $LG/tp.log | cut -c1-190
timeout 150 python -m pytest -q tests/test_cuda_ss2d_core.py -k "not emulated" > $LG/t_core.log 2>&1; el "core GPU tests rc=$?"; grep -E "FAILED|passed|failed" $LG/t_core.log | tail -6 | cut -c1-300
for st in 1 3; do
  timeout 90 ncu --section SpeedOfLight --section Occupancy --section WarpStateStats --section LaunchStats -k regex:Sweep --launch-skip 1 --launch-count 1 python reports/logs/scripts/2026-12-06_ncu_sweep.py $st > $LG/ncu$st.log 2>&1; el "ncu stage $st rc=$?"
  grep -E "Duration|Achieved Occupancy|Theoretical Occupancy|Registers Per|Stall|Warp Cycles Per Issued|Issue Slots Busy|Compute \(SM\) Throughput|Memory Throughput|Block Limit" $LG/ncu$st.log | head -24 | cut -c1-150
done
