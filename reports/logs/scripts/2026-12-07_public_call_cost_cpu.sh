#!/usr/bin/env bash
# Public-call host cost on a CPU (issue #20, item 1): bench.overhead with mock kernels (the raw kernels only allocate
# their outputs), impl torch, at the session's start (9aa1f99, a clone in $OLD) and at this tree with the Python key
# and with the compiled extension's native argument key (loaded first; the extension must be built here),
# alternating three times.
#   OLD=/tmp/oldrepo bash reports/logs/scripts/2026-12-07_public_call_cost_cpu.sh
set -e
PY=${PY:-python}
ARGS="'--impls', 'torch', '--mock', '--no-csv', '--calls', '2000'"
run() {  # tree, label, preload
  echo "== $(git -C "$1" rev-parse --short HEAD) $2 round $i"
  (cd "$1" && PYTHONPATH="$1" $PY -c "import sys, runpy; $3
sys.argv = ['bench.overhead', $ARGS]; runpy.run_module('bench.overhead', run_name='__main__')" 2>/dev/null \
    | grep -E " (public|prepare|raw) ")
}
for i in 1 2 3; do
  run "$OLD" python-key ""
  run "$PWD" python-key ""
  run "$PWD" native-key "import vmamba_kernels.cuda.extension"
done
