"""Mutants of vmamba_kernels/cupy/plan.py's Record.fill_addresses and leading_pointers (a scan struct's bytes as one
pack of its leading addresses before the fixed fields' bytes, packed once; d6a1556), run against
tests/test_cupy_sources.py (fill_addresses against a full fill, and every launch.py test through the scan structs).
The campaign of 2026-12-07: 2 of these 13 survived (R08, R10: leading_pointers on dtypes no launch fills) before the
test pinned its contract (uint64 fields at 0, 8, ...) on PLANE_ARGS and TILE_ARGS (a uint32 first) and on a dtype
with a gap after two pointers; none now, about 2 minutes on 2 cores.
Equivalent mutants left out: `if self._tail is None` -> `if True` (the same bytes packed again every call) or ->
`if self._addresses is None` (both are set together), the addresses packed "<{n}q" (every address is below 2^63),
leading_pointers' `break` -> `continue` (no uint64 sits at 8 n after a non-pointer field in a dtype whose fields are
in offset order, as numpy's aligned structs are).
Run: python -m tests.tools.mutate tests/tools/mutants/cupy_plan_record.py"""

FILE = "vmamba_kernels/cupy/plan.py"
TESTS = ["tests/test_cupy_sources.py"]

_TAIL = "self._tail = self.packer.pack(*self.vals)[8 * n:]"
_CHECK = "if sub != np.dtype(_P) or off != 8 * n:"

# (id, old text, new text, what the mutant breaks[, occurrence of old from 0])
MUTANTS = [
    # Record.fill_addresses
    ("R01", _TAIL, _TAIL.replace("[8 * n:]", "[8 * n + 8:]"), "fill_addresses: tail one field short"),
    ("R02", _TAIL, _TAIL.replace("[8 * n:]", "[8 * (n - 1):]"), "fill_addresses: tail starts a pointer early"),
    ("R03", _TAIL, _TAIL.replace("[8 * n:]", "[4 * n:]"), "fill_addresses: tail offset of 4-byte pointers"),
    ("R04", _TAIL, "self._tail = bytes(len(self.packer.pack(*self.vals)[8 * n:]))",
     "fill_addresses: fixed fields zeroed"),
    ("R05", 'struct.Struct(f"<{n}Q")', 'struct.Struct(f"<{n}I")', "fill_addresses: 4-byte addresses"),
    ("R06", 'struct.Struct(f"<{n}Q")', 'struct.Struct(f">{n}Q")', "fill_addresses: big-endian addresses"),
    ("R07", "return self._addresses.pack(*addrs) + self._tail", "return self._tail + self._addresses.pack(*addrs)",
     "fill_addresses: addresses after the fixed fields"),
    # leading_pointers
    ("R08", _CHECK, "if sub != np.dtype(_P):", "leading_pointers: offset check dropped"),
    ("R09", _CHECK, _CHECK.replace("off != 8 * n", "off != 4 * n"), "leading_pointers: 4-byte pointer stride"),
    ("R10", _CHECK, _CHECK.replace("sub != np.dtype(_P)", "sub.kind != \"u\""),
     "leading_pointers: any unsigned field counts as a pointer"),
    ("R11", _CHECK, _CHECK.replace("sub != np.dtype(_P)", "sub.itemsize != 8"),
     "leading_pointers: any 8-byte field counts as a pointer"),
    ("R12", "        n += 1\n    return n", "        n += 1\n    return n - 1", "leading_pointers: one pointer short"),
    ("R13", "        n += 1\n    return n", "        n += 1\n    return max(n, 1)",
     "leading_pointers: a struct without pointers gets one"),
]
