"""The CUDA cross scan / cross merge (csrc/cross_scan/) against the pixel-loop definition of
tests/scan_cases.py (independent of reference/cross_scan.py, which the torch backends are built from).

Two layers:
* host emulation (CPU, needs nvcc): the very kernel bodies of csrc/cross_scan/cross_scan_body.cuh,
  compiled as host code and run one thread per block, on every mode x layout x dtype x awkward map x
  vector width, with poisoned output and shared memory. This checks every index map without a GPU.
  The channels-last tiled kernels are reached with VMAMBA_CROSS_CL_TILED=1 (fixed tiles and channel
  groups with VMAMBA_CROSS_CL_TILE), the banded scan with VMAMBA_CROSS_CL_TILED=b (band height
  VMAMBA_CROSS_CL_BAND); the older tests pin VMAMBA_CROSS_CL_TILED=0 so they keep covering the
  plane kernels (each harness run is its own process, which reads these knobs from its environment).
* GPU (marker `gpu`): the compiled ops torch.ops.vmamba_cuda.cross_scan / cross_merge and the public
  API with impl="cuda": exact equality for the scan (a permutation), float64-referenced tolerances of
  one rounding for the merge, gradients, every launch path (vector widths, direct kernel, planes too
  big for shared memory, tiled channels-last; the knobs set through vmamba_kernels.tuning("cuda", ...)),
  non-contiguous input, poisoned outputs (scan_cases.poisoned: every at::empty inside the ops reads NaN
  until written).

Timing lives in bench/: `python -m bench.kernels --ops cross_scan,cross_merge --layouts cf,cl` and the
vector-width / plane-vs-tiled sweep `python -m bench.tuning.cross_scan`.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import subprocess
import tempfile

import pytest
import torch

from reference.cross_scan import cross_merge_ref as reference_merge
from tests.scan_cases import independent_cross_merge, independent_cross_scan, poisoned


def cross_scan_ref(x, mode="cross2d", channels_last=False):
    """The pixel-loop definition in x's dtype and device (a permutation: exact)."""
    return independent_cross_scan(x, mode, channels_last).to(device=x.device, dtype=x.dtype)


def cross_merge_ref(y, H, W, mode="cross2d", channels_last=False):
    """The pixel-loop adjoint, summed in float64, in y's dtype and device."""
    return independent_cross_merge(y, H, W, mode, channels_last).to(device=y.device, dtype=y.dtype)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODES = ("cross2d", "unidi", "bidi")
MODE_CODE = {"cross2d": 0, "unidi": 1, "bidi": 2}
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
DTYPE_CODE = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
DNAME = {torch.float32: "f32", torch.float16: "f16", torch.bfloat16: "bf16"}
# (B, C, H, W): 1x1, odd squares, 14x14, odd non-square, stage-1 56x56, batch 1, channel counts
# that allow channels-last vectors (8, 16) and ones that do not (3, 5)
MAPS = [(1, 1, 1, 1), (2, 3, 7, 7), (1, 5, 13, 13), (2, 8, 14, 14), (1, 3, 7, 13), (2, 16, 4, 6),
        (1, 2, 56, 56), (3, 8, 13, 7), (1, 100, 7, 7), (2, 12, 5, 5), (1, 16, 56, 56)]
BIG_MAP = (1, 2, 130, 131)  # one fp32 plane > 64 KB of shared memory: the direct kernel


def _ids(m):
    return "B{}-C{}-{}x{}".format(*m)


# ---------------------------------------------------------------------------------------------------
# host emulation of the kernel bodies
# ---------------------------------------------------------------------------------------------------
HARNESS = r"""
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include "cross_scan_body.cuh"
using namespace vmamba::cross;

template <typename T, int V>
void plane(bool merge, const void* in, void* out, const Problem& p, const Launch& l) {
  const PlaneArgs a = make_args(p, l.g);
  std::vector<unsigned char> smem(l.g.smem + 16);
  for (uint32_t blk = 0; blk < l.g.G * uint32_t(p.B); ++blk) {
    std::memset(smem.data(), 0xFF, smem.size());  // poison: a read of unwritten shared memory shows
    if (merge) cross_merge_plane_body<T, V>((const T*)in, (T*)out, a, blk, 0, 1, smem.data());
    else {
      using Bits = typename std::conditional<sizeof(T) == 4, uint32_t, uint16_t>::type;
      cross_scan_plane_body<Bits, V>((const Bits*)in, (Bits*)out, a, blk, 0, 1, smem.data());
    }
  }
}

template <typename T, int V>
void tiled(bool merge, const void* in, void* out, const Problem& p, const Launch& l) {
  TileArgs a = make_tile_args(p, l.t), ac = make_tile_args(p, l.band ? l.t_cols : l.t);
  std::vector<unsigned char> smem(std::max(l.t.smem, l.t_cols.smem) + 16);
  if (l.band) { a.routes = 1; ac.routes = 2; }
  for (int64_t blk = 0; blk < tile_blocks(l.t, p.B) * (l.band ? 2 : 1); ++blk) {
    std::memset(smem.data(), 0xFF, smem.size());
    using Bits = typename std::conditional<sizeof(T) == 4, uint32_t, uint16_t>::type;
    if (merge) cross_merge_tiled_body<T, V>((const T*)in, (T*)out, a, uint32_t(blk), 0, 1, smem.data());
    else if (l.band) cross_scan_band_body<Bits, V>((const Bits*)in, (Bits*)out, a, ac, uint32_t(blk), 0, 1, smem.data());
    else cross_scan_tiled_body<Bits, V>((const Bits*)in, (Bits*)out, a, uint32_t(blk), 0, 1, smem.data());
  }
}

template <typename T>
void run(bool merge, const void* in, void* out, const Problem& p, const Launch& l) {
  if (l.tiled) {
    switch (l.vec) {
      case 8: if constexpr (sizeof(T) == 2) { tiled<T, 8>(merge, in, out, p, l); return; } break;
      case 4: tiled<T, 4>(merge, in, out, p, l); return;
      case 2: tiled<T, 2>(merge, in, out, p, l); return;
      default: tiled<T, 1>(merge, in, out, p, l); return;
    }
    std::fprintf(stderr, "bad vec %d\n", l.vec); std::exit(3);
  }
  if (l.g.fits) {
    switch (l.vec) {
      case 8: if constexpr (sizeof(T) == 2) { plane<T, 8>(merge, in, out, p, l); return; } break;
      case 4: plane<T, 4>(merge, in, out, p, l); return;
      case 2: plane<T, 2>(merge, in, out, p, l); return;
      default: plane<T, 1>(merge, in, out, p, l); return;
    }
    std::fprintf(stderr, "bad vec %d\n", l.vec); std::exit(3);
  }
  const DirectArgs d = make_direct(p, l.total);
  using Bits = typename std::conditional<sizeof(T) == 4, uint32_t, uint16_t>::type;
  for (int64_t o = 0; o < l.total; ++o) {
    if (merge) cross_merge_direct_body<T>((const T*)in, (T*)out, d, o);
    else cross_scan_direct_body<Bits>((const Bits*)in, (Bits*)out, d, o);
  }
}

int main(int argc, char** argv) {
  if (argc != 12) { std::fprintf(stderr, "usage: op dtype B C H W mode channels_last max_vec in out\n"); return 2; }
  const bool merge = argv[1][0] == 'm';
  Problem p;
  p.dtype = std::atoi(argv[2]);
  p.B = std::atoll(argv[3]); p.C = std::atoll(argv[4]); p.H = std::atoll(argv[5]); p.W = std::atoll(argv[6]);
  p.mode = std::atoi(argv[7]); p.channels_last = std::atoi(argv[8]) != 0; p.max_vec = std::atoi(argv[9]);
  const size_t elem = p.dtype == kF32 ? 4 : 2, map = size_t(p.B * p.C * p.H * p.W);
  const size_t in_bytes = (merge ? 4 * map : map) * elem, out_bytes = (merge ? map : 4 * map) * elem;
  void* in = std::aligned_alloc(64, (in_bytes / 64 + 1) * 64);
  void* out = std::aligned_alloc(64, (out_bytes / 64 + 1) * 64);
  std::memset(out, 0xFF, out_bytes);  // poison: NaN in every float format
  FILE* f = std::fopen(argv[10], "rb");
  if (!f || std::fread(in, 1, in_bytes, f) != in_bytes) { std::fprintf(stderr, "short input\n"); return 2; }
  std::fclose(f);
  p.in = in; p.out = out;
  const Launch l = plan_cross(p, merge);
  if (l.tiled)
    std::printf("plane=0 tiled=1 band=%d vec=%d P=%u G=%u tile=%ux%u lq=%u smem=%zu\n", int(l.band), l.vec, l.t.PC,
                l.t.G, l.t.TH, l.t.TW, l.t.lq, l.t.smem);
  else
    std::printf("plane=%d tiled=0 vec=%d P=%u G=%u smem=%zu\n", int(l.g.fits), l.vec, l.g.P, l.g.G, l.g.smem);
  if (p.dtype == kF32) run<float>(merge, in, out, p, l);
  else if (p.dtype == kF16) run<__half>(merge, in, out, p, l);
  else run<__nv_bfloat16>(merge, in, out, p, l);
  f = std::fopen(argv[11], "wb");
  std::fwrite(out, 1, out_bytes, f);
  std::fclose(f);
  return 0;
}
"""


def _nvcc():
    for cand in (os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if cand and os.path.isfile(os.path.join(cand, "bin", "nvcc")):
            return os.path.join(cand, "bin", "nvcc")
    return shutil.which("nvcc")


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    nvcc = _nvcc()
    if nvcc is None:
        pytest.skip("needs nvcc to compile the kernel bodies as host code (install the CUDA toolkit)")
    d = tmp_path_factory.mktemp("cross_harness")
    src = d / "harness.cu"
    src.write_text(HARNESS)
    exe = d / "harness"
    cmd = [nvcc, "-std=c++17", "-O1", "-x", "cu", str(src), "-I", os.path.join(ROOT, "csrc", "cross_scan"),
           "-o", str(exe)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"harness compile failed:\n{res.stderr[-4000:]}"
    return str(exe)


def _run_harness(exe, op, x, dims, mode, channels_last, max_vec=0, direct=False, tiled="0", tile=None, band=None):
    """tiled: VMAMBA_CROSS_CL_TILED ("0": plane kernels, as the tests before the tiled path; "1": tiled
    wherever it applies; "b": the banded scan; None: unset, the default rule); tile: VMAMBA_CROSS_CL_TILE
    ("THxTW[xPC]"); band: VMAMBA_CROSS_CL_BAND."""
    B, C, H, W = dims
    with tempfile.TemporaryDirectory() as d:
        fin, fout = os.path.join(d, "in"), os.path.join(d, "out")
        x.contiguous().view(torch.uint8).numpy().tofile(fin)
        env = dict(os.environ)
        for k in ("VMAMBA_CROSS_MAX_VEC", "VMAMBA_CROSS_CL_TILED", "VMAMBA_CROSS_CL_TILE", "VMAMBA_CROSS_CL_BAND"):
            env.pop(k, None)
        if band is not None:
            env["VMAMBA_CROSS_CL_BAND"] = str(band)
        env["VMAMBA_CROSS_PATH"] = "direct" if direct else "plane"
        if tiled is not None:
            env["VMAMBA_CROSS_CL_TILED"] = tiled
        if tile is not None:
            env["VMAMBA_CROSS_CL_TILE"] = tile
        res = subprocess.run([exe, op, str(DTYPE_CODE[x.dtype]), str(B), str(C), str(H), str(W),
                              str(MODE_CODE[mode]), str(int(channels_last)), str(max_vec), fin, fout],
                             capture_output=True, text=True, env=env)
        assert res.returncode == 0, res.stderr
        raw = torch.from_numpy(__import__("numpy").fromfile(fout, dtype="uint8"))
    shape = (B, 4, C, H * W) if op == "scan" else ((B, H, W, C) if channels_last else (B, C, H, W))
    return raw.view(x.dtype).view(shape), res.stdout.strip()


def _map(dims, dtype, channels_last, device="cpu"):
    B, C, H, W = dims
    shape = (B, H, W, C) if channels_last else (B, C, H, W)
    return torch.randn(shape, device=device).to(dtype)


def _merge_tol(dtype):
    # the kernel sums in fp32 and rounds once: within one rounding of the float64 sum
    return {torch.float32: (2e-6, 1e-6), torch.float16: (1e-3, 1e-5), torch.bfloat16: (8e-3, 1e-5)}[dtype]


def _check_merge(out, y, H, W, mode, channels_last):
    ref = cross_merge_ref(y.double(), H, W, mode, channels_last)
    rtol, atol = _merge_tol(y.dtype)
    assert not out.isnan().any(), "unwritten (poisoned) elements in the merge output"
    torch.testing.assert_close(out.double(), ref, rtol=rtol, atol=atol)
    if y.dtype == torch.float32:  # same association as reference/cross_scan.py: exact in fp32
        assert torch.equal(out, reference_merge(y, H, W, mode, channels_last))


CASES = [(m, mode, cl, dt) for m in MAPS for mode in MODES for cl in (False, True) for dt in DTYPES]


@pytest.mark.parametrize("dims,mode,channels_last,dtype", CASES,
                         ids=[f"{_ids(m)}-{mode}-{'cl' if cl else 'cf'}-{DNAME[dt]}" for m, mode, cl, dt in CASES])
def test_host_emulation_scan_and_merge(harness, dims, mode, channels_last, dtype):
    B, C, H, W = dims
    x = _map(dims, dtype, channels_last)
    out, plan = _run_harness(harness, "scan", x, dims, mode, channels_last)
    assert "plane=1" in plan, plan
    assert torch.equal(out.view(torch.int16 if dtype != torch.float32 else torch.int32),
                       cross_scan_ref(x, mode, channels_last).contiguous().view(
                           torch.int16 if dtype != torch.float32 else torch.int32)), plan
    y = torch.randn(B, 4, C, H * W).to(dtype)
    out, plan = _run_harness(harness, "merge", y, dims, mode, channels_last)
    _check_merge(out, y, H, W, mode, channels_last)


VEC_CASES = [(m, mode, cl, dt, v) for m in [(2, 16, 4, 6), (1, 8, 14, 14), (2, 8, 7, 8)] for mode in MODES
             for cl in (False, True) for dt in (torch.float32, torch.float16) for v in (1, 2, 4, 8)
             if not (dt == torch.float32 and v == 8)]


@pytest.mark.parametrize("dims,mode,channels_last,dtype,vec", VEC_CASES,
                         ids=[f"{_ids(m)}-{mode}-{'cl' if cl else 'cf'}-{DNAME[dt]}-v{v}" for m, mode, cl, dt, v in VEC_CASES])
def test_host_emulation_vector_widths(harness, dims, mode, channels_last, dtype, vec):
    B, C, H, W = dims
    x = _map(dims, dtype, channels_last)
    out, plan = _run_harness(harness, "scan", x, dims, mode, channels_last, max_vec=vec)
    assert f"vec={vec}" in plan or (H * W) % vec != 0, plan
    assert torch.equal(out, cross_scan_ref(x, mode, channels_last)), plan
    y = torch.randn(B, 4, C, H * W).to(dtype)
    out, plan = _run_harness(harness, "merge", y, dims, mode, channels_last, max_vec=vec)
    _check_merge(out, y, H, W, mode, channels_last)


DIRECT_CASES = [(m, mode, cl, dt) for m in [(2, 3, 7, 13), (1, 2, 1, 5)] for mode in MODES for cl in (False, True)
                for dt in (torch.float32, torch.bfloat16)]


@pytest.mark.parametrize("dims,mode,channels_last,dtype", DIRECT_CASES,
                         ids=[f"{_ids(m)}-{mode}-{'cl' if cl else 'cf'}-{DNAME[dt]}" for m, mode, cl, dt in DIRECT_CASES])
def test_host_emulation_direct_path(harness, dims, mode, channels_last, dtype):
    B, C, H, W = dims
    x = _map(dims, dtype, channels_last)
    out, plan = _run_harness(harness, "scan", x, dims, mode, channels_last, direct=True)
    assert "plane=0" in plan, plan
    assert torch.equal(out, cross_scan_ref(x, mode, channels_last))
    y = torch.randn(B, 4, C, H * W).to(dtype)
    out, plan = _run_harness(harness, "merge", y, dims, mode, channels_last, direct=True)
    _check_merge(out, y, H, W, mode, channels_last)


@pytest.mark.parametrize("channels_last", (False, True))
def test_host_emulation_plane_too_big_for_shared_memory(harness, channels_last):
    B, C, H, W = BIG_MAP
    x = _map(BIG_MAP, torch.float32, channels_last)
    out, plan = _run_harness(harness, "scan", x, BIG_MAP, "cross2d", channels_last)
    assert "plane=0" in plan, plan  # fell back to the direct kernel by itself
    assert torch.equal(out, cross_scan_ref(x, "cross2d", channels_last))
    y = torch.randn(B, 4, C, H * W)
    out, plan = _run_harness(harness, "merge", y, BIG_MAP, "cross2d", channels_last)
    assert "plane=0" in plan, plan
    _check_merge(out, y, H, W, "cross2d", channels_last)


def test_host_emulation_shared_memory_budget(harness, monkeypatch):
    """VMAMBA_CROSS_SMEM_KB lets the planner put more planes per block; results do not change."""
    dims = (1, 16, 56, 56)
    B, C, H, W = dims
    y = torch.randn(B, 4, C, H * W).to(torch.float16)
    planes = {}
    for kb in ("", "200"):
        monkeypatch.setenv("VMAMBA_CROSS_SMEM_KB", kb)
        out, plan = _run_harness(harness, "merge", y, dims, "cross2d", True)
        _check_merge(out, y, H, W, "cross2d", True)
        planes[kb] = int(plan.split("P=")[1].split()[0])
        assert int(plan.split("smem=")[1]) <= (int(kb) if kb else 64) * 1024, plan
    assert planes["200"] > planes[""], planes


# ---------------------------------------------------------------------------------------------------
# host emulation of the channels-last tiled kernels (VMAMBA_CROSS_CL_TILED=1 reaches them on any map)
# ---------------------------------------------------------------------------------------------------
def _plan_field(plan, key):
    return plan.split(key + "=")[1].split()[0]


def _check_tiled(harness, dims, mode, dtype, tiled="1", tile=None, max_vec=0, expect_tiled=True):
    """Scan (bitwise) and merge (_check_merge) through the harness; returns the two plan lines."""
    B, C, H, W = dims
    x = _map(dims, dtype, True)
    out, plan_s = _run_harness(harness, "scan", x, dims, mode, True, max_vec=max_vec, tiled=tiled, tile=tile)
    assert ("tiled=1" in plan_s) == expect_tiled, plan_s
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    assert torch.equal(out.view(bits), cross_scan_ref(x, mode, True).contiguous().view(bits)), plan_s
    y = torch.randn(B, 4, C, H * W).to(dtype)
    out, plan_m = _run_harness(harness, "merge", y, dims, mode, True, max_vec=max_vec, tiled=tiled, tile=tile)
    assert ("tiled=1" in plan_m) == expect_tiled, plan_m
    _check_merge(out, y, H, W, mode, True)
    return plan_s, plan_m


# 1x1, odd squares, 14x14, odd non-square both ways, stage 1 (19 x 19 tiles), 57x55 (a cut edge tile);
# channel counts 1, 3, 5 (no vectors), 8, 16 (one 32-byte unit), 96 (channel groups), 100 (vectors of 4,
# a unit of one vector); batch 1 and 2. Narrow vectors (wider warps along channels): the vec tests.
TILED_MAPS = [(1, 1, 1, 1), (2, 3, 7, 7), (1, 5, 13, 13), (2, 8, 14, 14), (1, 16, 7, 13), (2, 100, 13, 7),
              (1, 96, 56, 56), (2, 5, 57, 55), (2, 1, 56, 56), (1, 100, 57, 55), (2, 96, 14, 14), (1, 8, 56, 56)]
TILED_CASES = [(m, mode, dt) for m in TILED_MAPS for mode in MODES for dt in DTYPES]


@pytest.mark.parametrize("dims,mode,dtype", TILED_CASES,
                         ids=[f"{_ids(m)}-{mode}-{DNAME[dt]}" for m, mode, dt in TILED_CASES])
def test_host_emulation_tiled(harness, dims, mode, dtype):
    _check_tiled(harness, dims, mode, dtype)


# banded scan (VMAMBA_CROSS_CL_TILED=b: row bands write routes 0 / 2, column bands 1 / 3): square maps,
# band heights that divide the map, leave a cut last band, exceed it, or are 1; channel groups (96, 100)
BAND_CASES = [((1, 1, 1, 1), 8), ((2, 3, 7, 7), 8), ((1, 5, 13, 13), 3), ((2, 8, 14, 14), 7),
              ((1, 96, 56, 56), 8), ((2, 100, 9, 9), 4), ((1, 16, 28, 28), 1), ((2, 8, 56, 56), 16)]
BAND_DT_CASES = [(m, b, dt) for m, b in BAND_CASES for dt in DTYPES]


@pytest.mark.parametrize("dims,band,dtype", BAND_DT_CASES,
                         ids=[f"{_ids(m)}-band{b}-{DNAME[dt]}" for m, b, dt in BAND_DT_CASES])
def test_host_emulation_band_scan(harness, dims, band, dtype):
    x = _map(dims, dtype, True)
    out, plan = _run_harness(harness, "scan", x, dims, "cross2d", True, tiled="b", band=band)
    assert "band=1" in plan and _plan_field(plan, "tile") == f"{min(band, dims[2])}x{dims[3]}", plan
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    assert torch.equal(out.view(bits), cross_scan_ref(x, "cross2d", True).contiguous().view(bits)), plan
    # not applicable (non-square map, other modes): the tiled kernel, as "1"
    for d2, mode in (((1, 8, 7, 9), "cross2d"), (dims, "bidi")):
        x2 = _map(d2, dtype, True)
        out, plan = _run_harness(harness, "scan", x2, d2, mode, True, tiled="b", band=band)
        assert "tiled=1 band=0" in plan, plan
        assert torch.equal(out.view(bits), cross_scan_ref(x2, mode, True).contiguous().view(bits)), plan


# fixed tiles (VMAMBA_CROSS_CL_TILE): cut edge tiles on both sides, 1-pixel rows/columns, tiles wider
# than tall and the reverse, forced channel groups (rounded up to the unit, last group shorter), the
# scan's vector route path
TILE_CASES = [((2, 16, 13, 7), "4x3"), ((1, 96, 14, 14), "5x6x32"), ((2, 100, 13, 13), "6x4x12"),
              ((1, 24, 9, 11), "3x5x8"), ((2, 8, 5, 9), "1x1"), ((1, 40, 11, 6), "11x1x16"),
              ((1, 12, 7, 10), "1x7x4"), ((2, 3, 9, 9), "2x8x2"),
              # the scan's vector route path (runs of 8 bytes): full and cut tiles that keep it, and fp16
              # tiles that lose it (10 % 4) while fp32 keeps it (10 % 2)
              ((1, 8, 12, 20), "8x8"), ((2, 16, 10, 10), "4x4x16")]
TILE_MODE_CASES = [(m, t, mode, dt) for m, t in TILE_CASES for mode in MODES for dt in (torch.float32, torch.float16)]


@pytest.mark.parametrize("dims,tile,mode,dtype", TILE_MODE_CASES,
                         ids=[f"{_ids(m)}-{t}-{mode}-{DNAME[dt]}" for m, t, mode, dt in TILE_MODE_CASES])
def test_host_emulation_tiled_fixed_tiles(harness, dims, tile, mode, dtype):
    plan_s, plan_m = _check_tiled(harness, dims, mode, dtype, tile=tile)
    th, tw = (int(v) for v in tile.split("x")[:2])
    want = f"{min(th, dims[2])}x{min(tw, dims[3])}"
    assert _plan_field(plan_s, "tile") == want and _plan_field(plan_m, "tile") == want, (plan_s, plan_m)
    if tile.count("x") == 2:  # a channel group was asked for: several groups unless it covers C
        assert int(_plan_field(plan_s, "G")) > 1 or int(_plan_field(plan_s, "P")) == dims[1], plan_s


TILED_VEC_CASES = [(m, mode, dt, v) for m in [(2, 16, 13, 7), (1, 48, 9, 11)] for mode in MODES
                   for dt in (torch.float32, torch.float16) for v in (1, 2, 4, 8) if not (dt == torch.float32 and v == 8)]


@pytest.mark.parametrize("dims,mode,dtype,vec", TILED_VEC_CASES,
                         ids=[f"{_ids(m)}-{mode}-{DNAME[dt]}-v{v}" for m, mode, dt, v in TILED_VEC_CASES])
def test_host_emulation_tiled_vector_widths(harness, dims, mode, dtype, vec):
    plan_s, plan_m = _check_tiled(harness, dims, mode, dtype, max_vec=vec, tile="4x5x16")
    assert _plan_field(plan_s, "vec") == str(vec) and _plan_field(plan_m, "vec") == str(vec), (plan_s, plan_m)


@pytest.mark.tuning_pin
@pytest.mark.parametrize("dtype", (torch.float32, torch.float16))
def test_host_emulation_default_rule(harness, dtype):
    """Unset VMAMBA_CROSS_CL_TILED: the stage-1 channels-last merge goes tiled (8 x 56 tiles in fp32, 16 x 28
    in fp16, 16 channels per block), the cross2d
    scan in bands (8 rows / columns, 16 in fp32), the bidi scan keeps the plane kernel; the 28 x 28 scan
    keeps the plane kernel, the 28 x 28 merge goes tiled in fp32 only; channels-first and a 7 x 7 map
    with many channels keep the plane kernel, "0" turns the tiled path off."""
    dims = (2, 96, 56, 56)
    B, C, H, W = dims
    x = _map(dims, dtype, True)
    out, plan_s = _run_harness(harness, "scan", x, dims, "cross2d", True, tiled=None)
    assert "band=1" in plan_s and _plan_field(plan_s, "tile") == ("16x56" if dtype == torch.float32 else "8x56"), plan_s
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    assert torch.equal(out.view(bits), cross_scan_ref(x, "cross2d", True).contiguous().view(bits))
    _, plan_s = _run_harness(harness, "scan", x, dims, "bidi", True, tiled=None)
    assert "plane=1 tiled=0" in plan_s, plan_s
    y = torch.randn(B, 4, C, H * W).to(dtype)
    out, plan_m = _run_harness(harness, "merge", y, dims, "cross2d", True, tiled=None)
    _check_merge(out, y, H, W, "cross2d", True)
    assert "tiled=1" in plan_m and _plan_field(plan_m, "tile") == ("8x56" if dtype == torch.float32 else "16x28"), plan_m
    assert int(_plan_field(plan_m, "smem")) <= 56 * 1024, plan_m
    assert int(_plan_field(plan_m, "P")) == 16, plan_m  # >= 32 bytes of a pixel: whole sectors
    d2 = (1, 192, 28, 28)
    y2 = torch.randn(1, 4, 192, 28 * 28).to(dtype)
    _, plan2 = _run_harness(harness, "merge", y2, d2, "cross2d", True, tiled=None)
    assert ("tiled=1" in plan2) == (dtype == torch.float32), plan2
    _, plan2 = _run_harness(harness, "scan", _map(d2, dtype, True), d2, "cross2d", True, tiled=None)
    assert "plane=1 tiled=0" in plan2, plan2  # 28 x 28: the plane kernel beat the bands
    x = _map(dims, dtype, False)
    _, plan = _run_harness(harness, "scan", x, dims, "cross2d", False, tiled=None)
    assert "plane=1 tiled=0" in plan, plan
    y = torch.randn(B, 4, C, H * W).to(dtype)
    _, plan = _run_harness(harness, "merge", y, dims, "cross2d", False, tiled=None)
    assert "plane=1 tiled=0" in plan, plan
    _check_tiled(harness, (1, 768, 7, 7), "bidi", dtype, tiled=None, expect_tiled=False)
    _check_tiled(harness, dims, "unidi", dtype, tiled="0", expect_tiled=False)


def test_host_emulation_tiled_replaces_direct_for_big_planes(harness):
    """A plane over the shared-memory budget sends channels-last to the tiled kernels by default."""
    _check_tiled(harness, BIG_MAP, "cross2d", torch.float32, tiled=None)


def test_host_emulation_tiled_shared_memory_budget(harness, monkeypatch):
    """VMAMBA_CROSS_SMEM_KB bounds the tiled kernels' shared memory (unset: 56 KB, four blocks per H100
    SM): a tile whose channels do not fit leaves the tiled path, a larger budget admits it. fp32,
    19 x 19 tile: 1456 bytes a channel, so 40 channels take 57 KB, 96 take 137 KB."""
    dims = (1, 96, 56, 56)
    for kb, tile, fits in (("", "19x19x40", False), ("64", "19x19x40", True), ("64", "19x19x96", False),
                           ("200", "19x19x96", True)):
        monkeypatch.setenv("VMAMBA_CROSS_SMEM_KB", kb)
        plan_s, plan_m = _check_tiled(harness, dims, "cross2d", torch.float32, tile=tile, expect_tiled=fits)
        if fits:
            assert _plan_field(plan_m, "P") == tile.split("x")[2], plan_m
            assert 56 * 1024 < int(_plan_field(plan_m, "smem")) <= int(kb) * 1024, plan_m


# ---------------------------------------------------------------------------------------------------
# GPU
# ---------------------------------------------------------------------------------------------------
def _ops():
    try:
        importlib.import_module("vmamba_kernels.cuda.extension")  # torch.ops.vmamba_cuda, with the current knobs
    except ImportError as e:
        pytest.skip(f"vmamba_kernels._C is not built ({e}): pip install --no-build-isolation -e .")
    return torch.ops.vmamba_cuda


@pytest.fixture
def knobs():
    """knobs(**changes): the extension's cross knobs (CudaTuning; csrc/common/knobs.h) for the rest of the
    test; the ones a test does not set are unset, as the tests assume."""
    import vmamba_kernels as vk

    with contextlib.ExitStack() as stack:
        unset = dict.fromkeys(("cross_max_vec", "cross_path", "cross_cl_tiled", "cross_cl_tile", "cross_cl_band"))

        def set_knobs(**changes):
            stack.enter_context(vk.tuning("cuda", **{**unset, **changes}))

        yield set_knobs


def _gpu_scan_and_merge(ops, dims, mode, channels_last, dtype):
    """The compiled ops on poisoned outputs: the scan bit-exact, the merge within one rounding."""
    B, C, H, W = dims
    x = _map(dims, dtype, channels_last, device="cuda")
    with poisoned():
        out = ops.cross_scan(x, mode, channels_last)
    torch.cuda.synchronize()
    assert torch.equal(out.cpu(), cross_scan_ref(x.cpu(), mode, channels_last))
    y = torch.randn(B, 4, C, H * W, device="cuda").to(dtype)
    with poisoned():
        out = ops.cross_merge(y, H, W, mode, channels_last)
    _check_merge(out.cpu(), y.cpu(), H, W, mode, channels_last)


GPU_MAPS = MAPS + [(4, 96, 56, 56), (1, 768, 7, 7)]
GPU_CASES = [(m, mode, cl, dt) for m in GPU_MAPS for mode in MODES for cl in (False, True) for dt in DTYPES]


@pytest.mark.gpu
@pytest.mark.parametrize("dims,mode,channels_last,dtype", GPU_CASES,
                         ids=[f"{_ids(m)}-{mode}-{'cl' if cl else 'cf'}-{DNAME[dt]}" for m, mode, cl, dt in GPU_CASES])
@pytest.mark.parametrize("path", ("auto", "v1", "direct"))
def test_gpu_scan_merge(knobs, dims, mode, channels_last, dtype, path):
    ops = _ops()
    knobs(**{"auto": {}, "v1": {"cross_max_vec": 1}, "direct": {"cross_path": "direct"}}[path])
    _gpu_scan_and_merge(ops, dims, mode, channels_last, dtype)


GPU_TILED_CASES = [(m, mode, dt) for m in GPU_MAPS + [(3, 192, 56, 56), (2, 24, 57, 55)] for mode in MODES
                   for dt in DTYPES]


@pytest.mark.gpu
@pytest.mark.parametrize("dims,mode,dtype", GPU_TILED_CASES,
                         ids=[f"{_ids(m)}-{mode}-{DNAME[dt]}" for m, mode, dt in GPU_TILED_CASES])
@pytest.mark.parametrize("path", ("tiled", "tiled_v1", "tiled_tile", "plane", "band", "band3"))
def test_gpu_scan_merge_tiled(knobs, dims, mode, dtype, path):
    """Channels-last through the tiled kernels (knob cross_cl_tiled="1") on every map: default tiles,
    scalar channel accesses, small fixed tiles with cut edges and channel groups; "plane": "0"; "band",
    "band3": the banded scan ("b"; bands of 8 and 3) where it applies."""
    ops = _ops()
    knobs(cross_cl_tiled={"plane": "0", "band": "b", "band3": "b"}.get(path, "1"),
          cross_cl_band=3 if path == "band3" else None, cross_max_vec=1 if path == "tiled_v1" else None,
          cross_cl_tile="5x7x16" if path == "tiled_tile" else None)
    _gpu_scan_and_merge(ops, dims, mode, True, dtype)


@pytest.mark.gpu
@pytest.mark.parametrize("channels_last", (False, True))
@pytest.mark.parametrize("dtype", DTYPES)
def test_gpu_plane_too_big_for_shared_memory(channels_last, dtype):
    ops = _ops()
    B, C, H, W = BIG_MAP
    x = _map(BIG_MAP, dtype, channels_last, device="cuda")
    y = torch.randn(B, 4, C, H * W, device="cuda").to(dtype)
    with poisoned():
        out, merged = ops.cross_scan(x, "cross2d", channels_last), ops.cross_merge(y, H, W, "cross2d", channels_last)
    assert torch.equal(out.cpu(), cross_scan_ref(x.cpu(), "cross2d", channels_last))
    _check_merge(merged.cpu(), y.cpu(), H, W, "cross2d", channels_last)


@pytest.mark.gpu
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("channels_last", (False, True))
def test_gpu_gradients_through_api(mode, channels_last):
    _ops()
    import vmamba_kernels as vk

    B, C, H, W = 2, 6, 7, 13
    x = _map((B, C, H, W), torch.float32, channels_last, device="cuda").requires_grad_()
    with poisoned():
        ys = vk.cross_scan(x, mode=mode, channels_last=channels_last, impl="cuda")
        g = torch.randn_like(ys)
        ys.backward(g)
    torch.testing.assert_close(x.grad, cross_merge_ref(g, H, W, mode, channels_last), rtol=1e-6, atol=1e-6)

    y = torch.randn(B, 4, C, H * W, device="cuda", requires_grad=True)
    with poisoned():
        xm = vk.cross_merge(y, H, W, mode=mode, channels_last=channels_last, impl="cuda")
        gx = torch.randn_like(xm)
        xm.backward(gx)
    assert torch.equal(y.grad, cross_scan_ref(gx, mode, channels_last))


@pytest.mark.gpu
def test_gpu_non_contiguous_input_and_stream():
    ops = _ops()
    x = torch.randn(2, 13, 7, 8, device="cuda").permute(0, 3, 1, 2)  # (2, 8, 13, 7), not contiguous
    assert not x.is_contiguous()
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        out = ops.cross_scan(x, "cross2d", False)
    s.synchronize()
    assert torch.equal(out.cpu(), cross_scan_ref(x.cpu(), "cross2d", False))


@pytest.mark.gpu
def test_gpu_errors_name_the_tensor_and_rule():
    ops = _ops()
    with pytest.raises(RuntimeError, match="mode must be one of"):
        ops.cross_scan(torch.randn(1, 2, 3, 4, device="cuda"), "diagonal", False)
    with pytest.raises(RuntimeError, match="y: last dimension must be H\\*W"):
        ops.cross_merge(torch.randn(1, 4, 2, 12, device="cuda"), 3, 5, "cross2d", False)
    with pytest.raises(RuntimeError, match="x: must have 4 dimensions"):
        ops.cross_scan(torch.randn(2, 3, 4, device="cuda"), "cross2d", False)
    with pytest.raises(RuntimeError, match="x: dtype must be float32, float16 or bfloat16"):
        ops.cross_scan(torch.randn(1, 2, 3, 4, device="cuda", dtype=torch.float64), "cross2d", False)


@pytest.mark.gpu
def test_gpu_empty_batch():
    ops = _ops()
    x = torch.randn(0, 4, 5, 6, device="cuda")
    assert ops.cross_scan(x, "cross2d", False).shape == (0, 4, 4, 30)
    assert ops.cross_merge(torch.randn(0, 4, 4, 30, device="cuda"), 5, 6, "cross2d", False).shape == (0, 4, 5, 6)
