"""The cuda extension's launch rules, for the cupy backend, which launches the same kernels (csrc/, through
NVRTC) and must choose among them exactly as the extension does. Importable without CuPy or torch.

Why a mirror: the rules are host C++ (selective_scan_kernels.cuh fwd_launch / bwd_launch,
selective_scan_launch.cu, cross_scan_body.cuh plan_cross) and CuPy has no host compiler at run time. So:
- the constants are not repeated: they are read from the csrc headers at import (`HEADER_CONSTANTS`);
- the rules are transcribed function by function (same names, same order of tests), and
  tests/test_cupy_sources.py compiles the C++ rules on the CPU (nvcc, host code) and checks this module
  against them on a grid of shapes, pointer alignments and knob settings, including the bytes of every
  kernel argument struct built here (`FWD_PARAMS`, `PLANE_ARGS`, ...: numpy structured dtypes with the
  C++ layout), so any drift fails CI.

Knobs: `Knobs` holds the extension's tuning/test knobs as strings ("" = unset), with the same meaning as
csrc/common/knobs.h (vmamba_kernels/cupy/tuning.py fills it from `vk.tuning("cupy", ...)` or the
environment).
"""
from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

import numpy as np

from .sources import CSRC

# ---- constants, read from the headers -----------------------------------------------------------------
HEADER_CONSTANTS = {
    "selective_scan/selective_scan.h": ("kItems", "kChunk", "kFwdWarps", "kBwdWarps", "kMaxDState", "kSeqMinRows",
                                        "kSeqRows", "kSeqBwdThreads", "kFinRows", "kFinBcThreads"),
    "cross_scan/cross_scan_body.cuh": ("kThreads", "kSmemBudget", "kTargetElems", "kTiledTargetElems", "kTiledSmem"),
}
_CONSTEXPR = re.compile(r"constexpr\s+[\w:]+\s+(k\w+)\s*=\s*([^;]+);")


@lru_cache(maxsize=None)
def constants() -> dict:
    """{name: int} of HEADER_CONSTANTS, evaluated from their `constexpr` definitions (integer arithmetic
    over earlier constants of the same header)."""
    out = {}
    for header, names in HEADER_CONSTANTS.items():
        text = (CSRC / header).read_text()
        defs = dict(_CONSTEXPR.findall(text))
        for n in names:
            if n not in defs:
                raise RuntimeError(f"{header} defines no constexpr {n} (vmamba_kernels/cupy/plan.py reads it)")
            expr = re.sub(r"(?<=\d)[uUlL]+\b", "", defs[n])
            if not re.fullmatch(r"[\w\s*+\-/()]+", expr):
                raise RuntimeError(f"{header}: {n} = {defs[n]} is not plain integer arithmetic")
            out[n] = int(eval(expr.replace("/", "//"), {"__builtins__": {}}, dict(out)))  # noqa: S307
    return out


def _c(name: str) -> int:
    return constants()[name]


# ---- knobs ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Knobs:
    """The extension's knobs (csrc/common/knobs.h) as strings; "" = unset (the built-in rule)."""

    scan_seq_min_rows: str = ""
    scan_bwd_splits: str = ""
    scan_packed_rows: str = ""
    cross_max_vec: str = ""
    cross_smem_kb: str = ""
    cross_path: str = ""
    cross_cl_tiled: str = ""
    cross_cl_band: str = ""
    cross_cl_tile: str = ""


def _strtol(s: str, pos: int = 0) -> tuple:
    """C strtol(s + pos, &end, 10): (value, end position); end = pos when no digits."""
    m = re.compile(r"\s*([+-]?\d+)").match(s, pos)
    return (int(m.group(1)), m.end()) if m else (0, pos)


def _atoi(s: str) -> int:
    return _strtol(s)[0]


U32 = 0xFFFFFFFF


# ---- FastDivmod (common/device.cuh) -----------------------------------------------------------------
@lru_cache(maxsize=4096)
def fast_divmod(d: int) -> tuple:
    """(d, m, s) of FastDivmod(d)."""
    d &= U32
    s = (d - 1).bit_length() if d > 0 else 0  # the smallest s with 2^s >= d
    m = ((((1 << 32) * ((1 << s) - d)) & ((1 << 64) - 1)) // d + 1) & U32
    return d, m, s


# ---- kernel argument structs (numpy layouts of the C++ structs) --------------------------------------
def _struct(fields) -> np.dtype:
    return np.dtype([(n, t) for n, t in fields], align=True)


DIVMOD = _struct([("d", "<u4"), ("m", "<u4"), ("s", "<u4")])
_P = "<u8"  # a pointer
FWD_PARAMS = _struct([
    ("u", _P), ("delta", _P), ("A", _P), ("B", _P), ("C", _P), ("D", _P), ("delta_bias", _P), ("out", _P),
    ("last_state", _P), ("aux", _P),
    ("batch", "<i8"), ("KD", "<i8"), ("L", "<i8"), ("G", "<i8"),
    ("N", "<i4"), ("K", "<i4"), ("lpr", "<i4"), ("softplus", "?"), ("dtype", "<i4"), ("out_dtype", "<i4"),
    ("kd_div", DIVMOD), ("g_div", DIVMOD), ("seq_min_rows", "<i8"), ("packed_rows", "<i4"),
    ("bc_bstride", "<i8"), ("bc_gstride", "<i8"),
])
BWD_PARAMS = _struct([
    ("u", _P), ("delta", _P), ("A", _P), ("B", _P), ("C", _P), ("D", _P), ("delta_bias", _P), ("dout", _P),
    ("aux", _P), ("du", _P), ("ddelta", _P), ("dA", _P), ("dB", _P), ("dC", _P), ("dD", _P), ("ddelta_bias", _P),
    ("accB", _P), ("accC", _P), ("partA", _P), ("partD", _P), ("partBias", _P),
    ("batch", "<i8"), ("KD", "<i8"), ("L", "<i8"), ("G", "<i8"),
    ("N", "<i4"), ("K", "<i4"), ("S", "<i4"), ("lpr", "<i4"), ("softplus", "?"), ("seq", "?"),
    ("dtype", "<i4"), ("dout_dtype", "<i4"), ("bc_bstride", "<i8"), ("bc_gstride", "<i8"),
])
PLANE_ARGS = _struct([
    ("C", "<u4"), ("H", "<u4"), ("W", "<u4"), ("L", "<u4"), ("P", "<u4"), ("SW", "<u4"), ("PS", "<u4"),
    ("mode", "<i4"), ("channels_last", "?"), ("divL", DIVMOD), ("divW", DIVMOD), ("divH", DIVMOD), ("divG", DIVMOD),
])
TILE_ARGS = _struct([
    ("C", "<u4"), ("H", "<u4"), ("W", "<u4"), ("L", "<u4"), ("TH", "<u4"), ("TW", "<u4"), ("PC", "<u4"),
    ("SW", "<u4"), ("PS", "<u4"), ("lq", "<u4"), ("routes", "<u4"), ("mode", "<i4"),
    ("divTW", DIVMOD), ("divTH", DIVMOD), ("divTilesW", DIVMOD), ("divNT", DIVMOD), ("divG", DIVMOD),
    ("divNPG", DIVMOD),
])
DIRECT_ARGS = _struct([("B", "<i8"), ("C", "<i8"), ("H", "<i8"), ("W", "<i8"), ("L", "<i8"), ("total", "<i8"),
                       ("mode", "<i4"), ("channels_last", "?")])


_STRUCT_CODE = {("u", 8): "Q", ("i", 8): "q", ("u", 4): "I", ("i", 4): "i", ("b", 1): "?"}  # struct module codes


def _leaves(dt: np.dtype, base: int = 0, prefix: str = "") -> list:
    """(offset, struct module code, dotted name) of every scalar field of a struct dtype, in memory order."""
    out = []
    for name in dt.names:
        sub, off = dt.fields[name][:2]
        if sub.names:
            out += _leaves(sub, base + off, prefix + name + ".")
        else:
            out.append((base + off, _STRUCT_CODE[(sub.kind, sub.itemsize)], prefix + name))
    return sorted(out)


@lru_cache(maxsize=None)
def _packer(dt: np.dtype) -> tuple:
    """A struct.Struct writing dt's bytes (padding zeroed), the number of scalar fields, and {field: its
    position, or the positions of a nested struct's fields}: building a record is then one pack (a few
    microseconds) instead of a numpy assignment per field."""

    fmt, pos, index = "<", 0, {}
    leaves = _leaves(dt)
    for i, (off, ch, name) in enumerate(leaves):
        fmt += "x" * (off - pos) + ch
        pos = off + struct.calcsize("<" + ch)
        top, _, sub = name.partition(".")
        if sub:
            index.setdefault(top, []).append(i)
        else:
            index[top] = i
    fmt += "x" * (dt.itemsize - pos)
    return struct.Struct(fmt), len(leaves), index


class Record:
    """A struct with some fields fixed once (the shape, flags and knobs of a configuration): `fill(**rest)`
    packs one value with the remaining fields (the addresses of the call), as `record` would."""

    __slots__ = ("dtype", "packer", "index", "vals", "_addresses", "_tail")

    def __init__(self, struct_dtype: np.dtype, /, **fixed):
        self.packer, n, self.index = _packer(struct_dtype)
        self.dtype = struct_dtype
        self.vals = [0] * n
        self._set(self.vals, fixed)
        self._addresses = self._tail = None

    def _set(self, vals: list, values: dict) -> None:
        for k, v in values.items():
            i = self.index[k]  # KeyError: no such field
            if isinstance(i, list):
                for j, x in zip(i, v):
                    vals[j] = x
            else:
                vals[i] = v

    def fill(self, **values) -> np.ndarray:
        vals = self.vals.copy()
        self._set(vals, values)
        return np.frombuffer(self.packer.pack(*vals), dtype=self.dtype).reshape(())

    def fill_addresses(self, *addrs: int) -> bytes:
        """The struct's bytes with its leading pointer fields (all of them, in field order) set to `addrs` and the
        other fields as fixed: one pack of the addresses before the fixed fields' bytes, packed once (a call's
        share of the work is then its addresses)."""
        if self._tail is None:
            n = leading_pointers(self.dtype)
            self._addresses = struct.Struct(f"<{n}Q")
            self._tail = self.packer.pack(*self.vals)[8 * n:]
        return self._addresses.pack(*addrs) + self._tail


def leading_pointers(dt: np.dtype) -> int:
    """How many fields at the start of struct dtype `dt` are pointers (uint64 at offsets 0, 8, ...)."""
    n = 0
    for name in dt.names:
        sub, off = dt.fields[name][:2]
        if sub != np.dtype(_P) or off != 8 * n:
            break
        n += 1
    return n


def record(struct_dtype: np.dtype, /, **values) -> np.ndarray:
    """One struct value (zeros where not given; a nested struct, e.g. FastDivmod, takes a tuple of its
    fields): a 0-d structured array, which CuPy passes to a kernel by value (its bytes; a numpy array of
    size one is CuPy's by-value argument)."""
    return Record(struct_dtype).fill(**values)


# ---- selective scan (selective_scan.h, selective_scan_launch.cu, selective_scan_kernels.cuh) -----------
DTYPE_CODE = {"float32": 0, "float16": 1, "bfloat16": 2}
ELEM_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def num_chunks(L: int) -> int:
    return (L + _c("kChunk") - 1) // _c("kChunk")


def lanes_per_row(L: int) -> int:
    it = _c("kItems")
    return (1 if L < 1 else (L + it - 1) // it) if L <= 4 * it * 4 else 32


def use_seq(N: int, rows: int, seq_min_rows: int) -> bool:
    return 1 < N <= 16 and rows >= seq_min_rows


def seq_bwd_rows(ns: int) -> int:
    return _c("kSeqBwdThreads") // (ns // 4)


def bwd_rows_per_round(L: int, N: int, seq: bool) -> int:
    if seq:
        return seq_bwd_rows(8) if N <= 8 else seq_bwd_rows(16)
    return _c("kBwdWarps") * (32 // lanes_per_row(L))


def bwd_splits(batch: int, K: int, G: int, N: int, L: int, num_sms: int, seq: bool) -> int:
    base = batch * K
    per_round = bwd_rows_per_round(L, N, seq)
    rounds = (G + per_round - 1) // per_round
    target = num_sms * (12 if seq else 8)
    S = max(1, min(rounds, (target + base - 1) // base if base > 0 else 1))
    per_split = base * N * L * 8
    while S > 1 and S * per_split > (512 << 20):
        S -= 1
    return S


def seq_min_rows(k: Knobs) -> int:
    return _c("kSeqMinRows") if k.scan_seq_min_rows == "" else _atoi(k.scan_seq_min_rows)


def packed_rows_knob(k: Knobs) -> int:
    return 0 if k.scan_packed_rows == "" else max(0, _atoi(k.scan_packed_rows))


def splits(batch: int, K: int, G: int, N: int, L: int, num_sms: int, seq: bool, k: Knobs) -> int:
    """selective_scan.cpp: bwd_splits, or the VMAMBA_SCAN_BWD_SPLITS knob capped at the channel rounds."""
    S = bwd_splits(batch, K, G, N, L, num_sms, seq)
    if k.scan_bwd_splits != "":
        forced = _atoi(k.scan_bwd_splits)
        per_round = bwd_rows_per_round(L, N, seq)
        rounds = (G + per_round - 1) // per_round
        if forced >= 1:
            S = min(forced, rounds)
    return S


@dataclass(frozen=True)
class Launch:
    """One kernel launch: the kernel (by its template, arguments in `targs`), grid, block, dynamic shared
    memory and the scalar arguments after the struct (in kernel order)."""

    kernel: str
    targs: tuple
    grid: tuple
    block: tuple
    smem: int = 0
    extra: tuple = ()


def _aligned(addr: int, b: int) -> bool:
    return addr & (b - 1) == 0


def fwd_plan(batch: int, KD: int, L: int, N: int, K: int, t: str, out: str, addrs: dict, resident_warps: int,
             k: Knobs) -> Launch:
    """fwd_launch: addrs holds the data addresses of u, delta, B, C, out (alignment decides the packed
    kernel's access width); resident_warps: SMs x resident fwd_n1_packed_kernel blocks x kFwdWarps (the
    occupancy query of packed_rows_per_warp)."""
    fw = _c("kFwdWarps")
    rows = batch * KD
    G = KD // K
    lpr = lanes_per_row(L)
    per_block = fw * (32 // lpr)
    blocks = (rows + per_block - 1) // per_block
    if N == 1 and 1 <= L <= _c("kChunk"):
        pr = packed_rows_knob(k)
        rpw = min(pr if pr > 0 else (rows + resident_warps - 1) // resident_warps, 1 << 20)
        per = fw * rpw
        piece8 = (L * ELEM_BYTES[t]) % 8 == 0 and all(_aligned(addrs[n], 8) for n in ("u", "delta", "B", "C"))
        out_piece = 0
        for w in (16, 8):
            if (L * ELEM_BYTES[out]) % w == 0 and _aligned(addrs["out"], w):
                out_piece = w
                break
        return Launch("fwd_n1_packed_kernel", (t, out), ((rows + per - 1) // per,), (fw * 32,),
                      extra=(("i4", rpw), ("?", piece8), ("i4", out_piece)))
    if N == 1:
        return Launch("fwd_n1_kernel", (t, out), (blocks,), (fw * 32,))
    if use_seq(N, rows, seq_min_rows(k)):
        bpg = (G + _c("kSeqRows") - 1) // _c("kSeqRows")
        ns = 4 if N <= 4 else (8 if N <= 8 else 16)
        return Launch("fwd_seq_kernel", (t, out, ns), (batch * K * bpg,), (_c("kSeqRows"),), extra=(("i4", bpg),))
    return Launch("fwd_kernel", (t, out), (blocks,), (fw * 32,))


def bwd_plan(batch: int, KD: int, L: int, N: int, K: int, S: int, seq: bool, t: str, dout: str) -> list:
    """bwd_launch: the main kernel, finalize_bc_kernel (dB, dC), finalize_small_kernel (dA, dD, dbias)."""
    out = []
    blocks = batch * K * S
    bw = _c("kBwdWarps")
    if blocks > 0 and N == 1:  # rows of one chunk: the kOne instance (sources.scan_bwd_name)
        out.append(Launch("bwd_n1_one_kernel" if L <= _c("kChunk") else "bwd_n1_kernel", (t, dout), (blocks,),
                          (bw * 32,)))
    elif blocks > 0 and seq and N <= 8:
        out.append(Launch("bwd_seq_kernel", (t, dout, 8), (blocks,), (_c("kSeqBwdThreads"),)))
    elif blocks > 0 and seq:
        out.append(Launch("bwd_seq_kernel", (t, dout, 16), (blocks,), (_c("kSeqBwdThreads"),)))
    elif blocks > 0:
        out.append(Launch("bwd_kernel", (t, dout), (blocks,), (bw * 32,)))
    M = batch * K * N * L
    if M > 0:
        g = min((M + 255) // 256, 65535 * 8)
        out.append(Launch("finalize_bc_kernel", (t,), (g,), (256,), extra=(("i8", M), ("i4", S))))
    KDN = KD * N
    out.append(Launch("finalize_small_kernel", (), ((KDN + 31) // 32,), (32, _c("kFinRows"))))
    return out


# ---- cross scan / merge (cross_scan_body.cuh planning) -----------------------------------------------
CROSS2D, UNIDI, BIDI = 0, 1, 2


@dataclass(frozen=True)
class CrossProblem:
    B: int
    C: int
    H: int
    W: int
    mode: int
    channels_last: bool
    dtype: str          # "float32" / "float16" / "bfloat16"
    in_addr: int        # data addresses (alignment picks the vector width)
    out_addr: int
    max_vec: int = 0


def env_max_vec(k: Knobs) -> int:
    return 0 if k.cross_max_vec == "" else _atoi(k.cross_max_vec)


def smem_budget(k: Knobs) -> int:
    kb = _strtol(k.cross_smem_kb)[0] if k.cross_smem_kb else 0
    return kb * 1024 if 0 < kb <= 227 else _c("kSmemBudget")


def tiled_smem_budget(k: Knobs) -> int:
    return min(_c("kTiledSmem"), smem_budget(k)) if k.cross_smem_kb == "" else smem_budget(k)


def env_force_direct(k: Knobs) -> bool:
    return k.cross_path[:1] == "d"


def env_cl_tiled(k: Knobs) -> int:
    v = k.cross_cl_tiled
    if v == "":
        return -1
    return {"0": 0, "1": 1, "b": 2}.get(v[0], -1)


def env_cl_band(k: Knobs, dflt: int) -> int:
    v = _strtol(k.cross_cl_band)[0] if k.cross_cl_band else 0
    return v if 1 <= v <= 4096 else dflt


def env_cl_tile(k: Knobs) -> Optional[tuple]:
    s = k.cross_cl_tile
    if s == "":
        return None
    a, end = _strtol(s)
    if s[end:end + 1] != "x":
        return None
    b, end = _strtol(s, end + 1)
    c = 0
    if s[end:end + 1] == "x":
        c, end = _strtol(s, end + 1)
    if a < 1 or b < 1 or c < 0 or a > 4096 or b > 4096:
        return None
    return a, b, c


def odd_words(n: int, elem_bytes: int) -> int:
    if elem_bytes == 4:
        return n | 1
    return n + ((2 + 4 - (n % 4)) % 4)


def pick_vec(p: CrossProblem, elem_bytes: int, k: Knobs) -> int:
    cap = p.max_vec if p.max_vec > 0 else env_max_vec(k)
    v = 16 // elem_bytes
    if cap > 0:
        v = min(v, cap)
    L = p.H * p.W
    while v > 1:
        nbytes = v * elem_bytes
        if not (L % v != 0 or (p.channels_last and p.C % v != 0) or p.in_addr % nbytes or p.out_addr % nbytes):
            break
        v //= 2
    return max(v, 1)


@dataclass
class Geometry:
    fits: bool = False
    SW: int = 0
    PS: int = 0
    P: int = 0
    G: int = 0
    smem: int = 0


def plan_planes(p: CrossProblem, elem_bytes: int, smem_elem_bytes: int, need_smem: bool, vec: int,
                k: Knobs) -> Geometry:
    g = Geometry()
    L = p.H * p.W
    if L >= (1 << 30) or p.C >= (1 << 30):
        return g
    g.SW = odd_words(p.W & U32, smem_elem_bytes)
    g.PS = odd_words((p.H * g.SW) & U32, smem_elem_bytes)
    plane_bytes = g.PS * smem_elem_bytes if need_smem else 0
    budget = smem_budget(k)
    if plane_bytes > budget:
        return g
    by_smem = budget // plane_bytes if plane_bytes else p.C
    if p.channels_last:
        P = max(max(16 // elem_bytes, _c("kTargetElems") // L), vec)
        P = min(min(P, by_smem), p.C)
        P -= P % vec
    else:
        P = max(1, _c("kTargetElems") // L)
        P = min(min(P, by_smem), p.C)
    if P < 1 or P * L >= (1 << 31):
        return g
    g.P = P
    g.G = (p.C + P - 1) // P
    if g.G * p.B >= (1 << 31):
        return g
    g.smem = P * plane_bytes
    g.fits = True
    return g


def make_args(p: CrossProblem, g: Geometry) -> np.ndarray:
    L = p.H * p.W
    return record(PLANE_ARGS, C=p.C, H=p.H, W=p.W, L=L, P=g.P, SW=g.SW, PS=g.PS, mode=p.mode,
                  channels_last=p.channels_last, divL=fast_divmod(L), divW=fast_divmod(p.W), divH=fast_divmod(p.H),
                  divG=fast_divmod(g.G))


def make_direct(p: CrossProblem, total: int) -> np.ndarray:
    return record(DIRECT_ARGS, B=p.B, C=p.C, H=p.H, W=p.W, L=p.H * p.W, total=total, mode=p.mode,
                  channels_last=p.channels_last)


def direct_blocks(total: int) -> int:
    return max(1, min((total + _c("kThreads") - 1) // _c("kThreads"), 1 << 20))


def tile_plane_stride(n: int, smem_elem: int, vec: int, lq: int) -> int:
    step = 128 >> lq
    if lq > 0:
        for m in range(n, n + 128):
            if (vec * m * smem_elem) % (2 * step) == step:
                return m
    return odd_words(n, smem_elem)


@dataclass
class TileGeometry:
    fits: bool = False
    vec: int = 1
    TH: int = 0
    TW: int = 0
    PC: int = 0
    G: int = 0
    SW: int = 0
    PS: int = 0
    lq: int = 0
    tiles_h: int = 0
    tiles_w: int = 0
    smem: int = 0


def pick_vec_cl(p: CrossProblem, elem_bytes: int, x_addr: int, k: Knobs) -> int:
    cap = p.max_vec if p.max_vec > 0 else env_max_vec(k)
    v = 16 // elem_bytes
    if cap > 0:
        v = min(v, cap)
    while v > 1 and (p.C % v != 0 or x_addr % (v * elem_bytes) != 0):
        v //= 2
    return max(v, 1)


def plan_tiles(p: CrossProblem, elem_bytes: int, smem_elem: int, x_addr: int, k: Knobs,
               th_fix: int = 0, tw_fix: int = 0, pc_fix: int = 0) -> TileGeometry:
    g = TileGeometry()
    L = p.H * p.W
    if L * p.C >= (1 << 31):
        return g
    C, H, W = p.C, p.H, p.W
    g.vec = pick_vec_cl(p, elem_bytes, x_addr, k)
    nvec = C // g.vec
    lq = 0
    while lq < 5 and ((g.vec * elem_bytes) << (lq + 1)) <= 32 and nvec % (2 << lq) == 0:
        lq += 1
    g.lq = lq
    unit = g.vec << lq
    budget = tiled_smem_budget(k)
    th, tw, pc = th_fix, tw_fix, pc_fix
    if th_fix > 0:
        fixed = True
    else:
        env = env_cl_tile(k)
        fixed = env is not None
        if fixed:
            th, tw, pc = env
    nh = nw = 1
    if fixed:
        g.TH, g.TW = min(th, H), min(tw, W)
    else:
        nh, nw = max(1, H // 16), max(1, W // 16)
        g.TH, g.TW = (H + nh - 1) // nh, (W + nw - 1) // nw
    while True:
        g.SW = odd_words(g.TW, smem_elem)
        g.PS = tile_plane_stride(g.TH * g.SW, smem_elem, g.vec, lq)
        if g.PS * smem_elem * unit <= budget:
            break
        if fixed or (g.TH == 1 and g.TW == 1):
            return g
        if g.TH >= g.TW:
            t = g.TH
            while (H + nh - 1) // nh == t:
                nh += 1
            g.TH = (H + nh - 1) // nh
        else:
            t = g.TW
            while (W + nw - 1) // nw == t:
                nw += 1
            g.TW = (W + nw - 1) // nw
    chan_bytes = g.PS * smem_elem

    def round_unit(n):
        return (n + unit - 1) // unit * unit

    if pc > 0:
        g.PC = min(C, round_unit(pc))
        if g.PC * chan_bytes > budget:
            return g
    else:
        px = g.TH * g.TW
        want = round_unit(max(64 // elem_bytes, (_c("kTiledTargetElems") + px - 1) // px))
        by_smem = min(budget // chan_bytes, C) // unit * unit
        pmax = min(min(by_smem, want), C)
        groups = (C + pmax - 1) // pmax
        g.PC = min(C, round_unit((C + groups - 1) // groups))
    g.G = (C + g.PC - 1) // g.PC
    g.tiles_h = (H + g.TH - 1) // g.TH
    g.tiles_w = (W + g.TW - 1) // g.TW
    if g.tiles_h * g.tiles_w * g.G * p.B >= (1 << 31):
        return g
    g.smem = g.PC * chan_bytes
    g.fits = True
    return g


def make_tile_args(p: CrossProblem, g: TileGeometry, routes: int = 0) -> np.ndarray:
    npg = (g.TH * g.TW + (32 >> g.lq) - 1) >> (5 - g.lq)
    return record(TILE_ARGS, C=p.C, H=p.H, W=p.W, L=p.H * p.W, TH=g.TH, TW=g.TW, PC=g.PC, SW=g.SW, PS=g.PS, lq=g.lq,
                  routes=routes, mode=p.mode, divTW=fast_divmod(g.TW), divTH=fast_divmod(g.TH),
                  divTilesW=fast_divmod(g.tiles_w), divNT=fast_divmod(g.tiles_h * g.tiles_w),
                  divG=fast_divmod(g.G), divNPG=fast_divmod(npg))


def tile_blocks(g: TileGeometry, B: int) -> int:
    return g.tiles_h * g.tiles_w * g.G * B


@dataclass
class CrossDecision:
    """plan_cross's Launch."""

    g: Geometry
    t: TileGeometry
    t_cols: TileGeometry
    tiled: bool = False
    band: bool = False
    vec: int = 1
    elem: int = 4
    total: int = 0


def plan_cross(p: CrossProblem, merge: bool, k: Knobs) -> CrossDecision:
    l = CrossDecision(Geometry(), TileGeometry(), TileGeometry())  # noqa: E741 (the C++ name)
    l.elem = 4 if p.dtype == "float32" else 2
    l.total = p.B * (1 if merge else 4) * p.C * p.H * p.W
    if l.total == 0 or env_force_direct(k):
        return l
    smem_elem = 4 if merge else l.elem
    need_smem = not merge or p.mode == CROSS2D or p.channels_last
    l.vec = pick_vec(p, l.elem, k)
    while True:
        l.g = plan_planes(p, l.elem, smem_elem, need_smem, l.vec, k)
        if l.g.fits or l.vec == 1:
            break
        l.vec //= 2
    if not l.g.fits:
        l.vec = 1
    tiled = env_cl_tiled(k) if p.channels_last else 0
    short_runs_scan = l.g.fits and l.g.P < p.C and l.g.P * l.elem < 32
    band_rule = short_runs_scan and p.H * p.W >= 2048
    if not merge and p.mode == CROSS2D and p.H == p.W and (tiled == 2 or (tiled == -1 and band_rule)):
        band = min(env_cl_band(k, 16 if l.elem == 4 else 8), p.H)
        xa = p.in_addr
        r = plan_tiles(p, l.elem, smem_elem, xa, k, band, p.W)
        c = plan_tiles(p, l.elem, smem_elem, xa, k, p.H, band)
        if r.fits and c.fits:
            pc = min(r.PC, c.PC)
            r = plan_tiles(p, l.elem, smem_elem, xa, k, band, p.W, pc)
            c = plan_tiles(p, l.elem, smem_elem, xa, k, p.H, band, pc)
        if r.fits and c.fits and r.G == c.G and r.tiles_h == c.tiles_w and r.vec == c.vec:
            l.t, l.t_cols, l.tiled, l.band, l.vec = r, c, True, True, r.vec
            return l
    if tiled != 0:
        xa = p.out_addr if merge else p.in_addr
        l.t = plan_tiles(p, l.elem, smem_elem, xa, k)
        short_runs = l.g.P < p.C and l.g.P * l.elem < 32
        by_rule = not l.g.fits or (merge and short_runs and (l.elem == 4 or p.H * p.W >= 2048))
        if by_rule and merge and tiled == -1 and p.mode == CROSS2D:
            H, W = p.H, p.W
            nw32 = (W + 31) // 32
            tw16 = (W + nw32 - 1) // nw32
            t8 = (plan_tiles(p, 4, smem_elem, xa, k, min(8, H), min(64, W), 16) if l.elem == 4
                  else plan_tiles(p, l.elem, smem_elem, xa, k, min(16, H), tw16, 16))
            if t8.fits:
                l.t = t8
        if l.t.fits and (tiled >= 1 or by_rule):
            l.tiled = True
            l.vec = l.t.vec
    return l


def _kernel_vec(vec: int, elem: int) -> int:
    """The *_dispatch_vec switches: 8 only for 2-byte elements, 4 and 2 as they are, else 1."""
    return vec if (vec == 8 and elem == 2) or vec in (4, 2) else 1


def cross_launch(p: CrossProblem, merge: bool, k: Knobs) -> Optional[tuple]:
    """launch_cross_scan / launch_cross_merge: (Launch with `extra` = the argument structs after the two
    data pointers, CrossDecision); None when there is nothing to do."""
    l = plan_cross(p, merge, k)
    if l.total == 0:
        return None
    op = "merge" if merge else "scan"
    T = threads = _c("kThreads")
    if l.band:
        v = _kernel_vec(l.vec, l.elem)
        ar, ac = make_tile_args(p, l.t, routes=1), make_tile_args(p, l.t_cols, routes=2)
        return Launch("cross_scan_band_kernel", (p.dtype, v), (2 * tile_blocks(l.t, p.B),), (T,),
                      max(l.t.smem, l.t_cols.smem), (ar, ac)), l
    if l.tiled:
        v = _kernel_vec(l.t.vec, l.elem)
        return Launch(f"cross_{op}_tiled_kernel", (p.dtype, v), (tile_blocks(l.t, p.B),), (threads,), l.t.smem,
                      (make_tile_args(p, l.t),)), l
    if l.g.fits:
        v = _kernel_vec(l.vec, l.elem)
        return Launch(f"cross_{op}_plane_kernel", (p.dtype, v), (l.g.G * p.B,), (threads,), l.g.smem,
                      (make_args(p, l.g),)), l
    return Launch(f"cross_{op}_direct_kernel", (p.dtype,), (direct_blocks(l.total),), (threads,), 0,
                  (make_direct(p, l.total),)), l
