#!/usr/bin/env bash
# One device call for the measuring half: rebuild the extension from clean, build mamba_ssm's scan,
# check correctness, sweep the kernels, measure whole-model throughput, redraw the report. Each step's full log goes to $OUT/<step>.log and its
# last lines are printed; the updated reports/*.csv and plots are copied to $OUT (bring them back into
# reports/). A failing step does not stop the next one; the exit status is the number of failed steps.
#
#   bash bench/gpu_run.sh                        # all steps
#   STEPS="check kernels" bash bench/gpu_run.sh  # some steps (build is needed once per fresh machine)
#   IMPLS=cuda,torch TP_ARGS="--iters 20" bash bench/gpu_run.sh
#   GIT_SHA=$(git rev-parse --short=12 HEAD) ...   # the commit the copied tree was made from (rows' git_sha)
#
# The mamba_ssm sdist must be carried in .sdist/ (carry: [".sdist"]), unless a module built on an
# earlier machine of the same kind is carried and named by VMAMBA_MAMBA_SSM_DIR (step build then
# skips the ~170 s compile). The module (~41 MB) exceeds one file from $OUT: bring it back with
# `split -b 15000000 build/mamba_ssm/build/selective_scan_cuda.so $OUT/mamba_so.part` and join the
# parts here with cat into an ignored folder. Step "ext" deletes old object
# files first: a warm machine keeps them, and ninja may then skip sources that changed.
set -uo pipefail
OUT=${OUT:-/tmp/bench_out}
PY=${PY:-python}
STEPS=${STEPS:-"ext build check kernels tp report"}
IMPLS=${IMPLS:-cuda,triton,cupy,torch}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
mkdir -p "$OUT"
failed=0
step() {
  local name=$1; shift
  case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
  echo "== $name: $*"
  local start; start=$(date +%s)
  "$@" > "$OUT/$name.log" 2>&1
  local rc=$?
  echo "   $name: rc=$rc, $(( $(date +%s) - start )) s"
  tail -n "${TAIL:-30}" "$OUT/$name.log" | grep -v '^\[' 
  [ "$rc" -eq 0 ] || failed=$((failed + 1))
}
clean_ext() { rm -rf build/temp* vmamba_kernels/_C*.so && "$PY" setup.py build_ext --inplace; }
step ext     clean_ext
build_mamba() {
  if "$PY" -c "import sys; from bench.mamba_ref import load_selective_scan_cuda as f; sys.exit(f() is None)" 2>/dev/null; then
    echo "mamba_ssm's selective_scan_cuda already loads (\$VMAMBA_MAMBA_SSM_DIR or build/mamba_ssm): not rebuilt"
  else
    "$PY" -m bench.build_mamba_ssm
  fi
}
step build   build_mamba
step check   "$PY" -m bench.check --quick
step kernels "$PY" -m bench.kernels --quick
# shellcheck disable=SC2086
step tp      "$PY" -m bench.tp --model all --impl "$IMPLS" --amp --train --baselines ${TP_ARGS:-}
step report  "$PY" -m bench.report
cp reports/*.csv reports/*.png "$OUT"/ 2>/dev/null || true
cp README.md "$OUT"/README.generated.md 2>/dev/null || true
echo "failed steps: $failed; logs and results in $OUT"
exit "$failed"
