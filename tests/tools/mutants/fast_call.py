"""Mutants of dispatch.py's side of fast_call (what it puts in the extension's table, and when it forgets it), run
against tests/test_fast_call.py. Run: python -m tests.tools.mutate tests/tools/mutants/fast_call.py
The C++ side (csrc/autograd/fast_call.cpp) needs a rebuild per mutant; its mutants were run by hand
(reports/logs/2026-12-08_fast_call.md). Written with the module (2026-12-08): F01-F04 killed at once; F05 survived until
test_only_the_extensions_own_functions_are_put."""

FILE = "vmamba_kernels/dispatch.py"
TESTS = ["tests/test_fast_call.py"]

MUTANTS = [
    ("F01", "if i is None or any(type(args[j]) is not bool for j in _FAST_FLAGS[op]):", "if i is None:",
     "int flags put in the table"),
    ("F02", "if op == \"selective_scan\" and (args[3].dim() != 4 or args[4].dim() != 4):", "if False:",
     "3-D B / C put in the table"),
    ("F03", "    if _FAST_CLEAR[0] is not None:\n        _FAST_CLEAR[0]()", "    pass",
     "the table not forgotten with the prepared calls"),
    ("F04", "    FAST_CALL[0], _FAST_PUT[0] = _no_fast_call, None\n    return False", "    return False",
     "turning it off leaves it on"),
    ("F05", "        return f.args[0] if f.func in _py_node_functions() else None", "        return 0",
     "any partial taken for a node"),
]
