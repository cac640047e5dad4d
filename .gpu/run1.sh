#!/usr/bin/env bash
# GPU call 1 (issue 16): build, diagnose tolerance failures, planted CUDA bugs, test_backends split.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
LG=/tmp/logs; mkdir -p $LG; trap "tar czf $OUT/logs.tgz -C /tmp logs" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
python setup.py build_ext --inplace > $LG/build.log 2>&1; el "build rc=$?"
K=csrc/selective_scan/selective_scan_kernels.cuh
plant() { # name sed-expr
  local d=/tmp/plant_$1; rm -rf $d; mkdir -p $d
  git ls-files -z | xargs -0 cp --parents -t $d; cp -r tests/data $d/tests/ 2>/dev/null
  sed -i "$2" $d/$K; (cd $d && diff -q $d/$K $OLDPWD/$K >/dev/null && echo "PLANT $1 DID NOT CHANGE THE FILE")
  (cd $d && MAX_JOBS=5 PYTHONPATH=$d python setup.py build_ext --inplace > $LG/plant_$1_build.log 2>&1; echo "plant $1 build rc=$?")
}
plant smalldt 's/return dt < 0.5f ? -x \* q/return dt < 0.05f ? -x * q/' &
plant thresh 's/return v > 20.f ? v : fmaf(z, q, fmaxf(v, 0.f));/return v > 2.f ? v : fmaf(z, q, fmaxf(v, 0.f));/' &
plant maxv 's/return v > 20.f ? v : fmaf(z, q, fmaxf(v, 0.f));/return v > 20.f ? v : fmaf(z, q, v);/' &
python .gpu/diag16.py > $LG/diag16.log 2>&1; el "diag rc=$?"
python -m pytest -q -p no:cacheprovider "tests/test_triton.py::test_gpu_grid[L3136-N64-bfloat16-K4-o0-sp1-Db1-mamba_ssm]" > $LG/diag_triton.log 2>&1; el "triton diag rc=$?"
wait; el "plants built"
for p in smalldt thresh maxv; do
  (cd /tmp/plant_$p && PYTHONPATH=/tmp/plant_$p timeout 200 python -m pytest -x -q -p no:cacheprovider tests/test_cuda_selective_scan.py -k "vmamba or softplus" > $LG/plant_$p.log 2>&1; echo "plant $p cuda-tests rc=$? $(tail -1 $LG/plant_$p.log)") &
  (cd /tmp/plant_$p && PYTHONPATH=/tmp/plant_$p timeout 200 python -m pytest -x -q -p no:cacheprovider tests/test_backends.py tests/test_backends_softplus.py -k "cuda" > $LG/plantb_$p.log 2>&1; echo "plant $p backends rc=$? $(tail -1 $LG/plantb_$p.log)") &
done; wait; el "plants tested"
rm -rf /tmp/plant_*
B=tests/test_backends.py
i=0
for k in "cuda" "cupy" "triton and float32" "triton and float16 and not bfloat16" "triton and bfloat16" "triton and not float32 and not float16" "torch and not sequential" "sequential" "poison"; do
  i=$((i+1)); (timeout 300 python -m pytest -q -p no:cacheprovider $B -k "$k" > $LG/tb_$i.log 2>&1; echo "backends [$k] rc=$? $(tail -1 $LG/tb_$i.log)") &
done
(timeout 300 python -m pytest -q -p no:cacheprovider tests/test_backends_softplus.py > $LG/tb_sp.log 2>&1; echo "backends_softplus rc=$? $(tail -1 $LG/tb_sp.log)") &
wait; el "backends done"
cat $LG/tb_*.log | grep -E "^FAILED|Error" | head -20
tail -25 $LG/diag16.log; grep -E "Error|assert|bad" $LG/diag_triton.log | head -8
