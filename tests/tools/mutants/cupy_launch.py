"""Mutants of vmamba_kernels/cupy/launch.py, the CuPy backend's host code (the campaign of 2026-12-07), run against
its CPU tests: tests/test_cupy_sources.py (launch.py end to end with a stand-in CuPy, fixture fake_launch) and the
one CPU test of tests/test_cupy.py that imports it. 27 of these 35 survived before test_cupy_sources.py gained its
forward/backward struct-field, device-and-stream and shared-memory tests (and the 4- and 8-byte alignment cases); none
now, about 6 minutes on 2 cores (C27, an empty grid, is killed only by calling _run directly: no plan makes one).
Equivalent mutants left out: the forward key's `& 15` -> `& 7`
(the only 16-byte test is on out, which the allocator always aligns), `direct` without float32 (fp32 out is
allocated in fp32 either way), the bwd dout conversion widened to every non-fp32 dout (same values, one more copy).
Run: python -m tests.tools.mutate tests/tools/mutants/cupy_launch.py"""

FILE = "vmamba_kernels/cupy/launch.py"
TESTS = ["tests/test_cupy_sources.py",
         "tests/test_cupy.py::test_import_without_cupy_is_importerror_and_backend_unavailable"]

_FKEY = 'key = ("fwd", batch, KD, L, N, K, t, o, bool(delta_softplus), k, idx, tuple(x & 15 for x in a))'
_BKEY = 'key = ("bwd", batch, KD, L, N, K, t, d, bool(delta_softplus), k, idx)'
_XKEY = "key = (prob, merge, tuning.knobs())"
_PROB = "_DT[inp.dtype], a_in % 16, a_out % 16)"
_SWITCH = "if cupy.cuda.runtime.getDevice() == idx:"

# (id, old text, new text, what the mutant breaks[, occurrence of old from 0])
MUTANTS = [
    # plan cache keys
    ("C01", _FKEY, _FKEY.replace(", tuple(x & 15 for x in a)", ""), "fwd key: address alignment dropped"),
    ("C02", _FKEY, _FKEY.replace("x & 15", "x & 3"), "fwd key: 4-byte instead of 16-byte alignment"),
    ("C03", _FKEY, _FKEY.replace(", k, idx", ", idx"), "fwd key: knobs dropped"),
    ("C04", _FKEY, _FKEY.replace(" bool(delta_softplus),", ""), "fwd key: softplus dropped (struct field cached)"),
    ("C05", _FKEY, _FKEY.replace(", k, idx,", ", k,"), "fwd key: device index dropped (per-device occupancy)"),
    ("C06", _BKEY, _BKEY.replace(" t, d,", " t,"), "bwd key: dout dtype dropped"),
    ("C07", _BKEY, _BKEY.replace(" bool(delta_softplus),", ""), "bwd key: softplus dropped"),
    ("C08", _XKEY, "key = (prob, False, tuning.knobs())", "cross key: merge flag dropped"),
    ("C09", _PROB, "_DT[inp.dtype], a_in % 8, a_out % 8)", "cross problem: addresses mod 8, not 16"),
    # struct fields and addresses
    ("C10", "g_div=plan.fast_divmod(KD // K)", "g_div=plan.fast_divmod(KD)", "fwd struct: g_div of KD, not G"),
    ("C11", "packed_rows=plan.packed_rows_knob(k), bc_bstride=K * N * L", "packed_rows=0, bc_bstride=K * N * L",
     "fwd struct: packed_rows knob not passed"),
    ("C12", "bc_bstride=K * N * L, bc_gstride=N * L)  # B", "bc_bstride=N * L, bc_gstride=N * L)  # B",
     "fwd struct: B/C batch stride without K"),
    ("C13", "B=a[2], C=a[3]", "B=a[3], C=a[2]", "fwd struct: B and C addresses swapped"),
    ("C14", "G=G, N=N, K=K, S=S", "G=KD, N=N, K=K, S=S", "bwd struct: G = KD"),
    ("C15", "dB=_p(dB), dC=_p(dC)", "dB=_p(dC), dC=_p(dB)", "bwd struct: dB and dC swapped"),
    ("C16", "partD=pa + 4 * rows * N,", "partD=pa + 4 * N,", "bwd struct: partD offset without rows"),
    ("C17", "head = (acc_b, acc_c, dB.data_ptr(), dC.data_ptr())",
     "head = (acc_b, acc_c, dC.data_ptr(), dB.data_ptr())",
     "finalize_bc: dB and dC outputs swapped"),
    ("C18", "(np.uint64(a_in), np.uint64(a_out))", "(np.uint64(a_out), np.uint64(a_in))", "cross: in/out swapped"),
    # argument passing
    ("C19", '_SCALAR = {"i4": np.int32,', '_SCALAR = {"i4": np.int64,', "scalar extras: i4 as int64"),
    ("C20", "_CPointer(a.ctypes.data)", "_CPointer(a.copy().ctypes.data)", "_by_value: address of a freed copy"),
    ("C21", "args = [_by_value(h) if type(h) is np.ndarray else h for h in head]", "args = list(head)",
     "_run: head struct passed as an array"),
    # devices and streams
    ("C22", "stream = _cupy_stream(_raw_stream(idx), idx)",
     "stream = _cupy_stream(_raw_stream(torch.cuda.current_device()), idx)",
     "_run: current device's stream, not the tensors' device's"),
    ("C23", _SWITCH, "if cupy.cuda.runtime.getDevice() != idx:", "_run: device switch inverted"),
    ("C24", "    idx = device.index if device.index is not None else torch.cuda.current_device()\n    args",
     "    idx = torch.cuda.current_device()\n    args", "_run: tensors' device ignored"),
    ("C25", "if entry is None or entry[1] < smem:", "if entry is None:", "_function: no opt-in for a larger smem"),
    ("C26", "fn = _function(header, name, idx, launch.smem)[0]", "fn = _function(header, name, idx, 0)[0]",
     "_run: shared memory opt-in skipped"),
    # outputs, early returns, errors
    ("C27", "    if launch.grid[0] == 0:\n        return\n", "", "_run: empty grids launched"),
    ("C28", "return out.to(out_dtype), last, aux", "return out, last, aux", "fwd, no rows: out not converted"),
    ("C29", "return (out if direct else out.to(out_dtype)), last, aux", "return out, last, aux",
     "fwd: fp32 out not converted to out_dtype"),
    ("C30", "direct = out_dtype in (torch.float32, u.dtype)", "direct = True",
     "fwd: every out dtype written directly (no such instance)"),
    ("C31", "if L == 0:\n        last.zero_()", "if L < 0:\n        last.zero_()", "fwd: L = 0 last state not zeroed"),
    ("C32", "if rows >= 1 << 31:", "if rows > 1 << 31:", "fwd: 2^31 rows accepted"),
    ("C33", "if tuple(aux.shape) != (batch, KD, nch, N):", "if tuple(aux.shape)[:3] != (batch, KD, nch):",
     "bwd: aux's d_state not checked"),
    ("C34", "    if dout.dtype not in (torch.float32, u.dtype):\n        dout = dout.float()\n", "",
     "bwd: dout of a third dtype not converted"),
    ("C35", "raise ImportError(f\"CuPy is not installed ({e})\")", "raise ImportError(str(e))",
     "import: the not-installed message lost"),
]
