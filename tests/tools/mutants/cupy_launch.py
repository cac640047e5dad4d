"""Mutants of vmamba_kernels/cupy/launch.py, the CuPy backend's host code, run against its CPU tests:
tests/test_cupy_sources.py (launch.py end to end with a stand-in CuPy, fixture fake_launch) and the one CPU test of
tests/test_cupy.py that imports it. The campaign of 2026-12-07 (C01-C35): 27 of 35 survived before
test_cupy_sources.py gained its forward/backward struct-field, device-and-stream and shared-memory tests (and the 4-
and 8-byte alignment cases). Redone when every kernel argument became a CPointer to bytes the module holds
(d6a1556): 13 stale mutants rewritten for the new code (C21, the struct passed as a numpy array, is now on
_struct_arg), 39 new ones (_pad8 and _pointers' offsets, _address_args, _struct_arg, _Fixed's packing and buffer, the
fixed args and the buffers' lifetime around _run, each forward address's alignment in the key, the tensors' own
device). 14 of these 74 survived (C24, C36-C40, C63, C69-C75: no test misaligned one input alone or out, put the
tensors on a device other than the current one, or looked at a buffer after its pointer was made) before the tests
gained u, delta, B or C misaligned alone and out 8 bytes past 16 (an allocator need not align to 16), tensors that
say they are on cuda:1, and a check at every launch that each argument points into a live buffer (weak references
to the module's array.array buffers); none now, about 13 minutes on 2 cores (C27, an empty grid, is killed only by
calling _run directly: no plan makes one).
Equivalent mutants left out: `direct` without float32 (fp32 out is allocated in fp32 either way), the bwd dout
conversion widened to every non-fp32 dout (same values, one more copy), _Fixed's i4 packed "<q" (little-endian in
its own 8-byte slot: the kernel's int reads the low 4 bytes, the same for every i4 a plan makes), the bwd main and
finalize_small launches without their fixed args (bwd_plan gives them none), a `del hold` dropped (the buffer goes
at return, after the launch). The forward key's `& 15` -> `& 7`, equivalent while every out was 16-byte aligned, is
C75 now that a test misaligns out. When the cross plans' key became a plain tuple (CrossProblem made on a miss only),
C08 was rewritten and C76-C80 added (each of the key's fields dropped); C77-C79 (dtype, mode, layout) survived until
test_launch_module_cross_plan_cache_tells_dtype_mode_and_layout_apart: 79 mutants, none surviving.
Run: python -m tests.tools.mutate tests/tools/mutants/cupy_launch.py"""

FILE = "vmamba_kernels/cupy/launch.py"
TESTS = ["tests/test_cupy_sources.py",
         "tests/test_cupy.py::test_import_without_cupy_is_importerror_and_backend_unavailable"]

_FKEY = ('key = ("fwd", batch, KD, L, N, K, t, o, bool(delta_softplus), k, idx, a[0] & 15, a[1] & 15, a[2] & 15, '
         'a[3] & 15,\n           a[4] & 15)')
_BKEY = 'key = ("bwd", batch, KD, L, N, K, t, d, bool(delta_softplus), k, idx)'
_XKEY = "key = (B, C, H, W, mode, bool(channels_last), inp.dtype, a_in % 16, a_out % 16, merge, k)"
_PROB = "_DT[inp.dtype], a_in % 16, a_out % 16)"
_SWITCH = "if cupy.cuda.runtime.getDevice() == idx:"
_FADDR = ("rec.fill_addresses(a[0], a[1], A.data_ptr(), a[2], a[3], _p(D), _p(delta_bias), a[4],\n"
          "                                                last.data_ptr(), aux.data_ptr())")
_BADDR = "_p(dA),\n        _p(dB), _p(dC), _p(dD)"
_FIN = "_address_args(acc_b, acc_c, dB.data_ptr(), dC.data_ptr())"
_IDX = "idx = dev.index if dev.index is not None else torch.cuda.current_device()"
_FN = "fn(launch.grid, launch.block, args, launch.smem, stream)"
_PAD = "return b + bytes(-len(b) % 8)"
_POS = "pos += len(part) + (-len(part) % 8)"
_ADDR = "tuple(_CPointer(base + 8 * i) for i in range(len(addrs)))"
_FIXED = "self.buf, self.args = _pointers(parts) if parts else (None, ())"
_FRUN = "    _run(sources.SCAN_HEADER, name, lp, head + fixed.args, idx)\n    del hold\n"
_BCRUN = "            _run(sources.SCAN_HEADER, name, lp, head + fixed.args, idx)\n            del hold_bc\n"

# (id, old text, new text, what the mutant breaks[, occurrence of old from 0])
MUTANTS = [
    # plan cache keys
    ("C01", _FKEY, _FKEY.replace(", a[0] & 15, a[1] & 15, a[2] & 15, a[3] & 15,\n           a[4] & 15)", ")"),
     "fwd key: address alignment dropped"),
    ("C02", _FKEY, _FKEY.replace("& 15", "& 3"), "fwd key: 4-byte instead of 16-byte alignment"),
    ("C03", _FKEY, _FKEY.replace(", k, idx", ", idx"), "fwd key: knobs dropped"),
    ("C04", _FKEY, _FKEY.replace(" bool(delta_softplus),", ""), "fwd key: softplus dropped (struct field cached)"),
    ("C05", _FKEY, _FKEY.replace(", k, idx,", ", k,"), "fwd key: device index dropped (per-device occupancy)"),
    ("C36", _FKEY, _FKEY.replace(" a[0] & 15,", ""), "fwd key: u's alignment dropped"),
    ("C37", _FKEY, _FKEY.replace(" a[1] & 15,", ""), "fwd key: delta's alignment dropped"),
    ("C38", _FKEY, _FKEY.replace(" a[2] & 15,", ""), "fwd key: B's alignment dropped"),
    ("C39", _FKEY, _FKEY.replace(" a[3] & 15,", ""), "fwd key: C's alignment dropped"),
    ("C40", _FKEY, _FKEY.replace("a[4] & 15", "a[4] & 0"), "fwd key: out's alignment dropped"),
    ("C75", _FKEY, _FKEY.replace("& 15", "& 7"), "fwd key: 8-byte instead of 16-byte alignment (out's pieces)"),
    ("C06", _BKEY, _BKEY.replace(" t, d,", " t,"), "bwd key: dout dtype dropped"),
    ("C07", _BKEY, _BKEY.replace(" bool(delta_softplus),", ""), "bwd key: softplus dropped"),
    ("C08", _XKEY, _XKEY.replace(", merge, k)", ", False, k)"), "cross key: merge flag dropped"),
    ("C09", _PROB, "_DT[inp.dtype], a_in % 8, a_out % 8)", "cross problem: addresses mod 8, not 16"),
    ("C76", _XKEY, _XKEY.replace("a_in % 16, a_out % 16", "a_in % 8, a_out % 8"), "cross key: addresses mod 8"),
    ("C77", _XKEY, _XKEY.replace(" inp.dtype,", ""), "cross key: dtype dropped"),
    ("C78", _XKEY, _XKEY.replace(" mode,", ""), "cross key: mode dropped"),
    ("C79", _XKEY, _XKEY.replace(" bool(channels_last),", ""), "cross key: layout dropped"),
    ("C80", _XKEY, _XKEY.replace(", k)", ")"), "cross key: knobs dropped"),
    # struct fields and addresses
    ("C10", "g_div=plan.fast_divmod(KD // K)", "g_div=plan.fast_divmod(KD)", "fwd struct: g_div of KD, not G"),
    ("C11", "packed_rows=plan.packed_rows_knob(k), bc_bstride=K * N * L", "packed_rows=0, bc_bstride=K * N * L",
     "fwd struct: packed_rows knob not passed"),
    ("C12", "bc_bstride=K * N * L, bc_gstride=N * L)  # B", "bc_bstride=N * L, bc_gstride=N * L)  # B",
     "fwd struct: B/C batch stride without K"),
    ("C13", _FADDR, _FADDR.replace("a[2], a[3]", "a[3], a[2]"), "fwd struct: B and C addresses swapped"),
    ("C41", _FADDR, _FADDR.replace("_p(D), _p(delta_bias)", "_p(delta_bias), _p(D)"),
     "fwd struct: D and delta_bias swapped"),
    ("C42", _FADDR, _FADDR.replace("last.data_ptr(), aux.data_ptr()", "aux.data_ptr(), last.data_ptr()"),
     "fwd struct: last_state and aux swapped"),
    ("C14", "G=G, N=N, K=K, S=S", "G=KD, N=N, K=K, S=S", "bwd struct: G = KD"),
    ("C15", _BADDR, _BADDR.replace("_p(dB), _p(dC)", "_p(dC), _p(dB)"), "bwd struct: dB and dC swapped"),
    ("C16", "pa, pa + 4 * rows * N, ", "pa, pa + 4 * N, ", "bwd struct: partD offset without rows"),
    ("C43", "pa + 4 * rows * (N + 1))", "pa + 4 * rows * N)", "bwd struct: partBias on partD"),
    ("C44", "acc_c = acc_b + 4 * S * batch * K * N * L", "acc_c = acc_b + 4 * batch * K * N * L",
     "bwd struct: accC without the split count (overlaps accB)"),
    ("C17", _FIN, "_address_args(acc_b, acc_c, dC.data_ptr(), dB.data_ptr())",
     "finalize_bc: dB and dC outputs swapped"),
    ("C18", "_address_args(a_in, a_out)", "_address_args(a_out, a_in)", "cross: in/out swapped"),
    # argument passing: the bytes behind the pointers
    ("C19", '_SCALAR = {"i4": np.int32,', '_SCALAR = {"i4": np.int64,', "scalar extras: i4 as int64 (no CPointer)"),
    ("C45", '"i4": struct.Struct("<i")', '"i4": struct.Struct(">i")', "_Fixed: i4 packed big-endian"),
    ("C47", '"i8": struct.Struct("<q")', '"i8": struct.Struct("<i")', "_Fixed: i8 packed as 4 bytes"),
    ("C48", '"?": struct.Struct("<?")', '"?": struct.Struct(">i")', "_Fixed: bool as a big-endian int (byte 0 zero)"),
    ("C49", "else e.tobytes() for e in extra]", "else bytes(e.nbytes) for e in extra]",
     "_Fixed: struct extras' bytes zeroed"),
    ("C50", "self.args = tuple(_SCALAR[e[0]](e[1]) if isinstance(e, tuple) else e for e in extra)",
     "self.args = tuple(e[1] if isinstance(e, tuple) else e for e in extra)",
     "_Fixed fallback: Python numbers, not the kernel's types"),
    ("C51", _FIXED, "self.buf, self.args = None, (_pointers(parts)[1] if parts else ())",
     "_Fixed: buffer not held (dangling pointers)"),
    ("C52", _PAD, "return b", "_pad8: padding dropped"),
    ("C53", _PAD, "return b + bytes(-len(b) % 4)", "_pad8: 4-byte padding"),
    ("C54", _POS, "pos += len(part)", "_pointers: offsets without the padding"),
    ("C55", _POS, "pos += 8", "_pointers: every part taken as 8 bytes"),
    ("C56", "ptrs.append(_CPointer(base + pos))", "ptrs.append(_CPointer(base))", "_pointers: every pointer at part 0"),
    ("C57", _ADDR, _ADDR.replace("8 * i", "4 * i"), "_address_args: 4-byte stride"),
    ("C58", _ADDR, _ADDR.replace("range(len(addrs))", "reversed(range(len(addrs)))"),
     "_address_args: addresses in reverse order"),
    ("C59", 'buf = array.array("Q", addrs)', 'buf = array.array("I", addrs)', "_address_args: 4-byte addresses"),
    ("C60", "tuple(np.uint64(a) for a in addrs)", "tuple(np.uint32(a) for a in addrs)",
     "_address_args fallback: addresses truncated to 32 bits"),
    ("C20", "return buf, (_CPointer(buf.buffer_info()[0]),)",
     'return buf, (_CPointer(array.array("B", data).buffer_info()[0]),)', "_struct_arg: pointer to a freed copy"),
    ("C21", "    if _CPointer is None:\n        return None, (np.frombuffer",
     "    if True:\n        return None, (np.frombuffer", "_struct_arg: struct as a numpy array despite CPointer"),
    ("C61", "np.frombuffer(data, dtype=dtype).reshape(())", "np.frombuffer(data, dtype=np.uint8)",
     "_struct_arg fallback: raw uint8 bytes, not the struct dtype"),
    # argument passing: which arguments reach the launch, and their buffers' lifetime
    ("C62", _FN, "fn(launch.grid, launch.block, args[:1], launch.smem, stream)", "_run: fixed args dropped", 0),
    ("C63", _FN, "fn(launch.grid, launch.block, args[:1], launch.smem, stream)",
     "_run: fixed args dropped on another device", 1),
    ("C64", _FN, "fn(launch.grid, launch.block, args, 0, stream)", "_run: no dynamic smem on another device", 1),
    ("C65", "_run(sources.SCAN_HEADER, name, lp, head + fixed.args, idx)",
     "_run(sources.SCAN_HEADER, name, lp, head, idx)", "fwd: packed kernel's scalars dropped", 0),
    ("C66", "_run(sources.SCAN_HEADER, name, lp, head + fixed.args, idx)",
     "_run(sources.SCAN_HEADER, name, lp, head, idx)", "finalize_bc: M and S dropped", 1),
    ("C67", "head + got[2].args", "head", "cross: argument structs dropped"),
    ("C68", "head + got[2].args", "got[2].args", "cross: addresses dropped"),
    ("C69", _FRUN, "    del hold\n" + _FRUN.replace("    del hold\n", ""),
     "fwd: struct buffer freed before the launch"),
    ("C70", "    for lp, name, fixed in launches:\n", "    hold = None\n    for lp, name, fixed in launches:\n",
     "bwd: struct buffer freed before the launches"),
    ("C71", _BCRUN, "            del hold_bc\n" + _BCRUN.replace("            del hold_bc\n", ""),
     "finalize_bc: address buffer freed before the launch"),
    ("C72", "        hold, head = _address_args(a_in, a_out)\n",
     "        hold, head = None, _address_args(a_in, a_out)[1]\n", "cross: address buffer freed before the launch"),
    # devices and streams
    ("C22", "stream = _cupy_stream(_raw_stream(idx), idx)",
     "stream = _cupy_stream(_raw_stream(torch.cuda.current_device()), idx)",
     "_run: current device's stream, not the tensors' device's"),
    ("C23", _SWITCH, "if cupy.cuda.runtime.getDevice() != idx:", "_run: device switch inverted"),
    ("C24", _IDX, "idx = torch.cuda.current_device()", "fwd: tensors' device ignored", 0),
    ("C73", _IDX, "idx = torch.cuda.current_device()", "bwd: tensors' device ignored", 1),
    ("C74", "dev.index if dev.index is not None else torch.cuda.current_device())", "torch.cuda.current_device())",
     "cross: tensors' device ignored"),
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
