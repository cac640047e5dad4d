#!/usr/bin/env bash
# GPU call 78: hand-written C++ nodes (a73dbe7, dd0338a) and _C.empty_many (c561150) against the session's start 88b96f8 (own build); the head checked on the GPU (cupy cross key, contiguous run, graphs + VMamba-T fp16 models), then the
# per-call host cost interleaved over 5 rounds on t_s3 and t_s4, head and f7e0829 alternating, and a profile.
export PYTHONPATH=$PWD TORCH_CUDA_ARCH_LIST=9.0 MAX_JOBS=16 GIT_SHA=$(cat .gpu/sha)
LG=$OUT/logs; mkdir -p $LG
trap "cp reports/overhead.csv $LG/ 2>/dev/null" EXIT
t0=$(date +%s); el() { echo "[$(( $(date +%s) - t0 ))s] $*"; }
nvidia-smi --query-gpu=name --format=csv,noheader; python -c "import torch, triton, cupy; print(torch.__version__, triton.__version__, cupy.__version__)"
python setup.py build_ext --inplace > $LG/build.log 2>&1; rc=$?; el "build rc=$rc"
[ $rc != 0 ] && { grep -B2 -A8 " error" $LG/build.log | head -60; exit 1; }
(cd .gpu/old && MAX_JOBS=8 python setup.py build_ext --inplace > $LG/build_old.log 2>&1; echo "old build rc=$?" > $LG/old_rc) &
t0=$(date +%s)
left() { l=$(( $1 - ($(date +%s) - t0) )); [ $l -lt 5 ] && l=1; echo $l; }
timeout $(left 70) python -m pytest -q -x -m gpu tests/test_cuda_native_autograd.py tests/test_alloc.py tests/test_cupy.py -k "native or node or alloc or empty_many or scan_flags or cross_scan_merge" > $LG/t_cupy.log 2>&1; el "cupy tests rc=$?"
grep -E "^E  |FAILED|passed|failed|Fatal" $LG/t_cupy.log | head -4 | cut -c1-250
timeout $(left 170) python -m pytest -q -x -m gpu tests/test_graphs_gpu.py tests/test_models_gpu.py -k "test_graphs_gpu or (vmamba_t and fp16)" > $LG/t_models.log 2>&1; el "graphs + models rc=$?"
grep -E "^E  |FAILED|passed|failed|Fatal" $LG/t_models.log | head -4 | cut -c1-250
wait; cat $LG/old_rc
AB="--impls cuda,triton,cupy --shapes t_s3,t_s4 --calls 100 --rounds 5 --no-csv --no-breakdown"
timeout $(left 220) python -m bench.overhead $AB --interleave > $LG/ab_new_1.log 2>&1; el "new 1 rc=$?"
(cd .gpu/old && PYTHONPATH=$PWD GIT_SHA=88b96f8 timeout $(left 270) python -m bench.overhead $AB --interleave > $LG/ab_old_1.log 2>&1); el "old rc=$?"
timeout $(left 350) python -m bench.overhead --impls cuda,triton,cupy --shapes t_s3,t_s4 --calls 100 --rounds 5 --interleave > $LG/new_full.log 2>&1; el "new full rc=$?"
timeout $(left 420) python .gpu/prof78.py > $LG/prof.log 2>&1; el "prof rc=$?"
python - <<'PY'
import os
LG = os.environ["OUT"] + "/logs/"
def rows(f):
    out = {}
    try:
        for l in open(f):
            p = l.split()
            if len(p) > 9 and p[4] == "public" and p[2] == "fwd":
                out[(p[0], p[1], p[3], p[6])] = float(p[8])
    except OSError:
        pass
    return out
a, o, c = rows(LG + "ab_new_1.log"), rows(LG + "ab_old_1.log"), rows(LG + "new_full.log")
print("op impl grad stage | 88b96f8 | head | head (full run)")
for k in a:
    print(*k, "|", o.get(k, float("nan")), "|", a[k], "|", c.get(k, float("nan")))
PY
grep -E " raw " $LG/new_full.log | awk '{print $1, $2, $4, $7, $9}'
grep -E "^====" $LG/prof.log
