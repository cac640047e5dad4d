#!/usr/bin/env bash
# Planted bugs in csrc/autograd/autograd.cpp's hand-written nodes (2026-12-07): each mutant is built into the extension
# and tests/test_native_autograd_py.py run (the CPU tests; the cuda kernel set's are GPU tests). Needs a good copy at
# /tmp/exp/autograd.good (cp csrc/autograd/autograd.cpp /tmp/exp/autograd.good). Results in
# reports/logs/2026-12-07_hand_nodes_cpu.md.
set -u
cd /work/main
run() {  # $1 name, $2 python replace old, $3 new
  python3 - "$2" "$3" <<'PY'
import sys
p = "csrc/autograd/autograd.cpp"; s = open(p).read(); old, new = sys.argv[1], sys.argv[2]
assert s.count(old) == 1, old
open(p, "w").write(s.replace(old, new))
PY
  MAX_JOBS=4 TORCH_CUDA_ARCH_LIST=9.0 VMAMBA_KERNELS_FORCE_BUILD=1 .venv/bin/python setup.py build_ext --inplace > /tmp/exp/mbuild.log 2>&1 || echo "BUILD FAIL $1"
  r=$(timeout 600 .venv/bin/python -m pytest -q tests/test_native_autograd_py.py 2>&1 | tail -1)
  echo "$1: $r"
  cp /tmp/exp/autograd.good csrc/autograd/autograd.cpp
}
run owned 'return is_input || out.is_view() ? out.clone() : out;' 'return out;'
run fwad 'TORCH_CHECK(!dual, ' 'TORCH_CHECK(true || !dual, '
run cycle_y 'node->s_or_y = SavedVariable(y, /*is_output=*/true);' 'node->s_or_y = save(y);'
run lock 'std::lock_guard<std::mutex> lock(mutex_);  // saved tensors: one backward at a time, as torch'"'"'s nodes
    if (!grads[0].defined()) return variable_list(7);' 'if (!grads[0].defined()) return variable_list(7);'
run cycle_s 'node->s_or_y = has_branch ? SavedVariable(s_out, /*is_output=*/true) : save(x);' 'node->s_or_y = has_branch ? save(s_out) : save(x);'
run unpack 'const Tensor s = s_or_y.unpack(getptr());' 'const Tensor s = s_or_y.unpack();'
run edges_ln 'return {dx, dbranch, dw, b.defined() ? db : Tensor(), Tensor()};' 'return {dx, dw, dbranch, b.defined() ? db : Tensor(), Tensor()};'
run nograd_rec 'if (!torch::autograd::compute_requires_grad(inputs...)) return nullptr;' 'if (!torch::autograd::compute_requires_grad(inputs...) && false) return nullptr;'
MAX_JOBS=4 TORCH_CUDA_ARCH_LIST=9.0 VMAMBA_KERNELS_FORCE_BUILD=1 .venv/bin/python setup.py build_ext --inplace > /tmp/exp/mbuild.log 2>&1; echo restored rc=$?
