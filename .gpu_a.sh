#!/usr/bin/env bash
# one-off GPU pass (not committed): build, new-kernel correctness, kernel timing, whole-model layouts/paths
set -u; export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
t=$(date +%s); python setup.py build_ext --inplace > $OUT/build.log 2>&1; echo "build rc=$? $(( $(date +%s)-t )) s"; grep -iE "error|warning: " $OUT/build.log | head -5
python -c "import vmamba_kernels as vk; print([(r['name'], r['available'], r['ops']) for r in vk.list_impls()][:3])"
t=$(date +%s)
timeout 170 python -m pytest tests/test_cuda_norm_dwconv.py -q -p no:cacheprovider > $OUT/t_cuda_nd.log 2>&1 &
python -m pytest -q --collect-only -p no:cacheprovider tests/test_norm_kernels.py tests/test_dwconv_kernels.py 2>/dev/null | grep '::' > $OUT/ids.txt
split -n r/6 $OUT/ids.txt $OUT/sh_
for f in $OUT/sh_a?; do timeout 170 python -m pytest -q -p no:cacheprovider $(cat $f) > $f.log 2>&1 & done; wait
echo "tests $(( $(date +%s)-t )) s"; tail -qn1 $OUT/t_cuda_nd.log $OUT/sh_a?.log; grep -h -E "^(FAILED|ERROR)" $OUT/t_cuda_nd.log $OUT/sh_a?.log | head -12
timeout 110 python -m bench.norm_dwconv_timing --batch 128 --impls triton,cuda --reps 20 > $OUT/nd_timing.txt 2>&1; echo "timing rc=$?"; grep -v "^ *$" $OUT/nd_timing.txt | tail -75
timeout 200 python -m bench.tp --model vmamba_t --impl cuda --amp --train --path both --layout both --warmup 8 --iters 10 --no-csv > $OUT/tp.txt 2>&1; echo "tp rc=$?"; tail -12 $OUT/tp.txt
