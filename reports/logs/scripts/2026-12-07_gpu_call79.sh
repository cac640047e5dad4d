#!/usr/bin/env bash
# GPU call 79: the cuda entries' allocations (csrc/common/alloc.h: empty_on skips the dispatcher; the scan's last
# and aux, the norm's mean and rstd, the scan backward's scratch from one allocation each) against 2d835b0 (own
# build); GPU tests of the cuda ops, graphs and VMamba-T fp16 on cuda; per-call host cost interleaved, head, old, head.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=$OUT/logs; mkdir -p $LG
trap "cp reports/overhead.csv $LG/ 2>/dev/null" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name --format=csv,noheader; python -c "import torch, triton, cupy; print(torch.__version__, triton.__version__, cupy.__version__)"
python setup.py build_ext --inplace > $LG/build.log 2>&1; rc=$?; el "build rc=$rc"
[ $rc != 0 ] && { grep -B2 -A8 " error" $LG/build.log | head -60; exit 1; }
(cd .gpu/old && MAX_JOBS=6 python setup.py build_ext --inplace > $LG/build_old.log 2>&1; echo "old build rc=$?" > $LG/old_rc) &
t0=$(date +%s)
left() { l=$(( $1 - ($(date +%s) - t0) )); [ $l -lt 5 ] && l=1; echo $l; }
timeout $(left 170) python -m pytest -q -p no:cacheprovider --maxfail=5 -m gpu tests/test_alloc.py tests/test_cuda_native_autograd.py tests/test_cuda_selective_scan.py tests/test_cuda_norm_dwconv.py tests/test_cuda_cross_scan.py -k "not mamba_ssm" > $LG/t_cuda.log 2>&1; el "cuda tests rc=$?"
grep -E "^E  |FAILED|passed|failed|Fatal" $LG/t_cuda.log | head -8 | cut -c1-250; tail -c 3000 $LG/t_cuda.log > $LG/t_cuda_tail.log
timeout $(left 290) python -m pytest -q -p no:cacheprovider --maxfail=3 -m gpu tests/test_graphs_gpu.py tests/test_models_gpu.py -k "test_graphs_gpu or (cuda and vmamba_t and fp16)" > $LG/t_models.log 2>&1; el "graphs + models rc=$?"
grep -E "^E  |FAILED|passed|failed|Fatal" $LG/t_models.log | head -6 | cut -c1-250; tail -c 3000 $LG/t_models.log > $LG/t_models_tail.log
wait; cat $LG/old_rc
AB="--impls cuda,triton,cupy --shapes t_s3,t_s4 --calls 100 --rounds 7 --no-csv --no-breakdown --interleave"
timeout $(left 345) python -m bench.overhead $AB > $LG/ab_new_1.log 2>&1; el "new 1 rc=$?"
(cd .gpu/old && PYTHONPATH=$PWD GIT_SHA=2d835b0 timeout $(left 400) python -m bench.overhead $AB > $LG/ab_old_1.log 2>&1); el "old rc=$?"
timeout $(left 455) python -m bench.overhead ${AB/--no-csv/} > $LG/ab_new_2.log 2>&1; el "new 2 rc=$?"
timeout $(left 475) python .gpu/alloc79.py > $LG/alloc.log 2>&1; el "alloc rc=$?"
(cd .gpu/old && PYTHONPATH=$PWD timeout $(left 490) python ../alloc79.py > $LG/alloc_old.log 2>&1); el "alloc old rc=$?"
python - <<'PY'
import os
LG = os.environ["OUT"] + "/logs/"
def rows(f):
    out = {}
    try:
        for l in open(f):
            p = l.split()
            if len(p) > 9 and p[4] == "public" and p[2] == "fwd":
                out[(p[0], p[1], p[3], p[6])] = (float(p[8]), l.split("rounds ")[1].split(" us")[0] if "rounds " in l else "")
    except OSError:
        pass
    return out
a, o, c = rows(LG + "ab_new_1.log"), rows(LG + "ab_old_1.log"), rows(LG + "ab_new_2.log")
print("op impl grad stage | 2d835b0 | head 1 | head 2   (median of 7 rounds, min-max)")
for k in a:
    f = lambda d: "%s (%s)" % d.get(k, ("nan", ""))
    print(*k, "|", f(o), "|", f(a), "|", f(c))
PY
grep -h "host reference" $LG/ab_*.log
cat $LG/alloc.log $LG/alloc_old.log
