#!/usr/bin/env bash
# The prepared calls' contiguous run (7b856de) on a CPU: bench.overhead --impls torch --mock (public rows) at 3a2d202 (a
# copy in /tmp/pre_dense with this tree's extension) against the head, alternating three times.
ARGS="'--impls', 'torch', '--mock', '--no-csv', '--calls', '3000', '--no-breakdown', '--rounds', '3'"
run() { (cd "$1" && PYTHONPATH="$1" /work/main/.venv/bin/python -c "import sys, runpy; import vmamba_kernels.cuda.extension
sys.argv = ['bench.overhead', $ARGS]; runpy.run_module('bench.overhead', run_name='__main__')" 2>/dev/null | grep -E " public " | awk -v t="$2" '{print t, $1, $3, $4, $7}'); }
for i in 1 2 3; do run /tmp/pre_dense pre; run /work/main head; done
