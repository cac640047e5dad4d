#!/usr/bin/env bash
# The whole test suite on the GPU machine within one device call: the files run in parallel groups
# (16 CPU cores there; triton's JIT compiles and the float64 oracles are CPU-bound), and
# tests/test_backends.py, which alone took longer than one call's limit serially, is split by backend.
# Each group's log goes to $LOGS/<group>.log; the last lines say pass/fail per group; exit status =
# number of failed groups. Needs the extension built first (python setup.py build_ext --inplace).
#
#   bash bench/gpu_tests.sh                 # every group
#   GROUPS_ONLY="backends_cuda cupy" bash bench/gpu_tests.sh
set -uo pipefail
PY=${PY:-python}
LOGS=${LOGS:-/tmp/gpu_test_logs}
TIMEOUT=${TIMEOUT:-400}
mkdir -p "$LOGS"
declare -A G=(
  [cuda_scan]="tests/test_cuda_selective_scan.py"
  [cuda_cross]="tests/test_cuda_cross_scan.py"
  [cuda_norm_dwconv]="tests/test_cuda_norm_dwconv.py tests/test_norm_kernels.py tests/test_dwconv_kernels.py"
  [triton]="tests/test_triton.py"
  [cupy]="tests/test_cupy.py"
  [fast_path]="tests/test_fast_path.py"
  [ss2d_core]="tests/test_ss2d_core.py tests/test_models_ss2d_core.py"
  [cuda_ss2d_core]="tests/test_cuda_ss2d_core.py"
)
# every other test file (CPU tests too: on the GPU machine they run their GPU-only parts)
G[rest]=$(ls tests/test_*.py | grep -v -x -F -e tests/test_backends.py -e tests/test_models_gpu.py \
  $(printf -- '-e %s ' ${G[*]}) | tr '\n' ' ')
# test_backends.py by backend (ids carry the backend's name; 'bfloat16' contains 'float16')
declare -A K=(
  [backends_cuda]="cuda" [backends_cupy]="cupy" [backends_torch]="torch and not sequential"
  [backends_sequential]="sequential" [backends_triton32]="triton and float32"
  [backends_triton16]="triton and float16 and not bfloat16" [backends_tritonbf16]="triton and bfloat16"
  [backends_rest]="not cuda and not cupy and not torch and not sequential and not triton or triton and not float32 and not float16"
)
run() {  # name, pytest args...
  local name=$1; shift
  case " ${GROUPS_ONLY:-$name} " in *" $name "*) ;; *) return 0 ;; esac
  local t0; t0=$(date +%s)
  # shellcheck disable=SC2068
  # SIGINT first: pytest stops as on Ctrl-C and still prints the failures so far (-rf), which a plain
  # timeout's SIGTERM loses (a GPU call of 2026-12-03 learned only the progress characters)
  timeout -s INT -k 20 "$TIMEOUT" "$PY" -m pytest -q -rf --tb=short -p no:cacheprovider $@ > "$LOGS/$name.log" 2>&1
  echo "$name rc=$? $(( $(date +%s) - t0 ))s: $(tail -n 1 "$LOGS/$name.log")"
}
for g in "${!G[@]}"; do run "$g" ${G[$g]} & done
for k in "${!K[@]}"; do run "$k" tests/test_backends.py -k "${K[$k]}" & done
# whole models (float64 references of five models, each impl and its fused core by name): one group per impl
for m in cuda triton cupy; do run "models_$m" tests/test_models_gpu.py -k "$m" & done
wait
failed=0
for f in "$LOGS"/*.log; do
  last=$(tail -n 1 "$f")
  case "$last" in *failed*|*error*|*Error*) failed=$((failed + 1)) ;; *passed*) ;; *) failed=$((failed + 1)) ;; esac
done
grep -h -E "^(FAILED|ERROR)" "$LOGS"/*.log | head -40
echo "failed groups: $failed (logs in $LOGS)"
exit "$failed"
