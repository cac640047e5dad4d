"""Mutants of vmamba_kernels/native_nodes.py (the C++ autograd nodes around a Python backend's raw kernels), run against
tests/test_native_autograd_py.py (the torch backend's raw kernels standing in for triton's) and the dispatch tests
that take the nodes. Written with the module (2026-12-07): 9 of 10 killed at once; N09 (nodes for ops whose raw
kernels the module lacks) survived until test_nodes_only_for_ops_whose_raw_kernels_the_module_exports. Run:
python -m tests.tools.mutate tests/tools/mutants/native_nodes.py"""

FILE = "vmamba_kernels/native_nodes.py"
TESTS = ["tests/test_native_autograd_py.py", "tests/test_cuda_native_autograd.py", "tests/test_dispatch_edges.py"]

_REG = 'bool(getattr(backend, "mixed_branch", False)))'
MUTANTS = [
    ("N01", 'if not force and getenv("VMAMBA_NATIVE_AUTOGRAD") == "0":', 'if False:', "off switch ignored"),
    ("N02", "if C is None:\n        return {}", "if C is None:\n        pass", "missing extension not handled"),
    ("N03", _REG, 'True)', "mixed_branch always on"),
    ("N04", _REG, 'False)', "mixed_branch always off"),
    ("N05", '"cross_scan": ("cross_scan_pyautograd", ("cross_scan_fwd", "cross_merge_fwd")),',
     '"cross_scan": ("cross_merge_pyautograd", ("cross_scan_fwd", "cross_merge_fwd")),', "cross scan bound to the merge node"),
    ("N06", '_KERNELS = ("selective_scan_fwd", "selective_scan_bwd", "cross_scan_fwd", "cross_merge_fwd",',
     '_KERNELS = ("selective_scan_fwd", "selective_scan_bwd", "cross_merge_fwd", "cross_scan_fwd",',
     "cross kernels registered swapped"),
    ("N07", '"add_layer_norm_bwd", "dwconv2d_fwd", "dwconv2d_bwd")', '"add_layer_norm_bwd", "dwconv2d_bwd", "dwconv2d_fwd")',
     "dwconv kernels registered swapped"),
    ("N08", "return getattr(backend._impl or backend.impl(), name)(*args)",
     "return getattr(backend.impl(), name)(*args[:-1])", "the kernel's last argument dropped"),
    ("N09", "and all(hasattr(mod, n) for n in _NODES[k][1])]", "]", "nodes for ops whose kernels the module lacks"),
    ("N10", 'return {k: functools.partial(getattr(C, _NODES[k][0]), ks) for k in keys}',
     'return {k: functools.partial(getattr(C, _NODES[k][0]), 0) for k in keys}', "every backend's nodes call set 0"),
]
