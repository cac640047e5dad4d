// Cross scan / cross merge kernel bodies and launch planning, shared by cross_scan_kernels.cu (the
// __global__ wrappers) and by tests/ (which runs the same bodies as host code, one thread per block,
// to check the index maps on a machine without a GPU). Index maps: cross_scan.h.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#ifndef __CUDACC_RTC__  // the planning (host) part; NVRTC (the cupy backend) reads only the bodies
#include <algorithm>
#include <cstdlib>

#include "../common/knobs.h"
#endif

#include "../common/device.cuh"
#include "../common/rtc_compat.h"
#include "cross_scan.h"

namespace vmamba {
namespace cross {
VMAMBA_KERNELS_NAMESPACE {

constexpr int kThreads = 256;
constexpr size_t kSmemBudget = 64 * 1024;  // dynamic shared memory per block (opt-in above 48 KB)
constexpr uint32_t kTargetElems = 4096;    // elements of the map per block (channels-first)

enum RouteType : int { kRow = 0, kCol = 1, kRowRev = 2, kColRev = 3 };

struct PlaneArgs {
  uint32_t C, H, W, L;
  uint32_t P;       // planes (channels) per block
  uint32_t SW, PS;  // shared-memory row stride and plane stride, in elements
  int mode;
  bool channels_last;
  FastDivmod divL, divW, divH, divG;  // divG: blocks per image
};

// Smallest m >= n whose size in 4-byte words is odd (so a walk with stride m hits 32 banks).
__host__ __device__ inline uint32_t odd_words(uint32_t n, uint32_t elem_bytes) {
  if (elem_bytes == 4) return n | 1u;
  // 2-byte elements: m = 2 (mod 4) makes m / 2 words odd
  return n + ((2u + 4u - (n % 4u)) % 4u);
}

// ---- shared-memory cursors: walk a route's pixels in shared-memory index space -----------------
// Shared memory holds a plane as rows [h][w] with row stride SW.
struct Cursor {
  uint32_t h, w, idx;
};

__host__ __device__ __forceinline__ Cursor start_row(const PlaneArgs& a, uint32_t p) {
  uint32_t h, w;
  a.divW.divmod(p, h, w);
  return {h, w, h * a.SW + w};
}
__host__ __device__ __forceinline__ Cursor start_col(const PlaneArgs& a, uint32_t q) {
  uint32_t h, w;
  a.divH.divmod(q, w, h);  // q = w*H + h
  return {h, w, h * a.SW + w};
}
__host__ __device__ __forceinline__ void next_row(const PlaneArgs& a, Cursor& c) {
  ++c.w;
  ++c.idx;
  if (c.w == a.W) { c.w = 0; ++c.h; c.idx += a.SW - a.W; }
}
__host__ __device__ __forceinline__ void prev_row(const PlaneArgs& a, Cursor& c) {
  if (c.w > 0) { --c.w; --c.idx; }
  else { c.w = a.W - 1; --c.h; c.idx = c.h * a.SW + c.w; }
}
__host__ __device__ __forceinline__ void next_col(const PlaneArgs& a, Cursor& c) {
  ++c.h;
  c.idx += a.SW;
  if (c.h == a.H) { c.h = 0; ++c.w; c.idx = c.w; }
}
__host__ __device__ __forceinline__ void prev_col(const PlaneArgs& a, Cursor& c) {
  if (c.h > 0) { --c.h; c.idx -= a.SW; }
  else { c.h = a.H - 1; --c.w; c.idx = c.h * a.SW + c.w; }
}

// V consecutive positions r..r+V-1 of a route of type `t`, read from plane `sp` in shared memory.
template <typename S, typename T, int V>
__host__ __device__ __forceinline__ void gather(const PlaneArgs& a, const S* sp, int t, uint32_t r, T* out) {
  const uint32_t L = a.L;
  if (t == kRow) {
    Cursor c = start_row(a, r);
#pragma unroll
    for (int u = 0; u < V; ++u) { out[u] = T(sp[c.idx]); if (u + 1 < V) next_row(a, c); }
  } else if (t == kRowRev) {
    Cursor c = start_row(a, L - 1 - r);
#pragma unroll
    for (int u = 0; u < V; ++u) { out[u] = T(sp[c.idx]); if (u + 1 < V) prev_row(a, c); }
  } else if (t == kCol) {
    Cursor c = start_col(a, r);
#pragma unroll
    for (int u = 0; u < V; ++u) { out[u] = T(sp[c.idx]); if (u + 1 < V) next_col(a, c); }
  } else {
    Cursor c = start_col(a, L - 1 - r);
#pragma unroll
    for (int u = 0; u < V; ++u) { out[u] = T(sp[c.idx]); if (u + 1 < V) prev_col(a, c); }
  }
}

__host__ __device__ __forceinline__ int route_type(int mode, int k) {
  if (mode == kCross2d) return k;
  if (mode == kUnidi) return kRow;
  return k < 2 ? kRow : kRowRev;  // bidi
}

// ---- scan: plane-group kernel ---------------------------------------------------------------------
// One block's work; `block`, `tid`, `nthreads` are blockIdx.x, threadIdx.x, blockDim.x on the device.
template <typename T, int V>  // T: uint16_t or uint32_t (raw bits)
__host__ __device__ __forceinline__ void cross_scan_plane_body(const T* __restrict__ x, T* __restrict__ y,
                                                                const PlaneArgs& a, uint32_t block, uint32_t tid,
                                                                uint32_t nthreads, unsigned char* smem_raw) {
  T* s = reinterpret_cast<T*>(smem_raw);
  uint32_t b, g;
  a.divG.divmod(block, b, g);
  const uint32_t c0 = g * a.P;
  const uint32_t np = a.P < a.C - c0 ? a.P : a.C - c0;
  const uint32_t n = np * a.L;
  const uint32_t step = nthreads * V;

  // 1. load np planes into shared memory, rows padded. Loads are issued U at a time before any is
  // used, so each thread keeps 16-32 bytes in flight (a plane is then read in about one round trip);
  // at most 8 so the kernel fits 64 registers.
  constexpr int U = 32 / int(V * sizeof(T)) > 8 ? 8 : (32 / int(V * sizeof(T)) > 1 ? 32 / int(V * sizeof(T)) : 1);
  if (!a.channels_last) {
    const T* src = x + (int64_t(b) * a.C + c0) * a.L;  // contiguous np*L elements
    for (uint32_t base = tid * V; base < n; base += step * U) {
      AlignedVec<T, V> v[U];
#pragma unroll
      for (int k = 0; k < U; ++k) {
        const uint32_t i = base + k * step;
        if (i < n) v[k] = load_vec<T, V>(src + i);
      }
#pragma unroll
      for (int k = 0; k < U; ++k) {
        const uint32_t i = base + k * step;
        if (i < n) {
          uint32_t pl, r;
          a.divL.divmod(i, pl, r);
          T* sp = s + pl * a.PS;
          Cursor c = start_row(a, r);
#pragma unroll
          for (int u = 0; u < V; ++u) { sp[c.idx] = v[k].v[u]; if (u + 1 < V) next_row(a, c); }
        }
      }
    }
  } else {
    const T* src = x + int64_t(b) * a.L * a.C + c0;  // pixel p, plane pl at p*C + pl
    const FastDivmod divNP(np);
    for (uint32_t base = tid * V; base < n; base += step * U) {
      AlignedVec<T, V> v[U];
      uint32_t p[U], pl[U];
#pragma unroll
      for (int k = 0; k < U; ++k) {
        const uint32_t j = base + k * step;
        if (j < n) {
          divNP.divmod(j, p[k], pl[k]);  // V divides np: the vector stays in one pixel
          v[k] = load_vec<T, V>(src + int64_t(p[k]) * a.C + pl[k]);
        }
      }
#pragma unroll
      for (int k = 0; k < U; ++k) {
        const uint32_t j = base + k * step;
        if (j < n) {
          uint32_t h, w;
          a.divW.divmod(p[k], h, w);
          T* sp = s + pl[k] * a.PS + h * a.SW + w;
#pragma unroll
          for (int u = 0; u < V; ++u) sp[u * a.PS] = v[k].v[u];
        }
      }
    }
  }
  VMAMBA_SYNC();

  // 2. stream the four output ranges y[b, k, c0:c0+np, :], each contiguous
  const int64_t route_stride = int64_t(a.C) * a.L;
  T* dst = y + (int64_t(b) * 4 * a.C + c0) * a.L;
  for (uint32_t i = tid * V; i < n; i += step) {
    uint32_t pl, r;
    a.divL.divmod(i, pl, r);
    const T* sp = s + pl * a.PS;
    AlignedVec<T, V> v0, v1, v2, v3;
    gather<T, T, V>(a, sp, kRow, r, v0.v);
    if (a.mode == kCross2d) {
      gather<T, T, V>(a, sp, kCol, r, v1.v);
      gather<T, T, V>(a, sp, kRowRev, r, v2.v);
      gather<T, T, V>(a, sp, kColRev, r, v3.v);
    } else if (a.mode == kUnidi) {
      v1 = v0; v2 = v0; v3 = v0;
    } else {
      v1 = v0;
      gather<T, T, V>(a, sp, kRowRev, r, v2.v);
      v3 = v2;
    }
    store_vec<T, V>(dst + i, v0);
    store_vec<T, V>(dst + route_stride + i, v1);
    store_vec<T, V>(dst + 2 * route_stride + i, v2);
    store_vec<T, V>(dst + 3 * route_stride + i, v3);
  }
}

// ---- merge: plane-group kernel ----------------------------------------------------------------------
__host__ __device__ __forceinline__ float to_f(float v) { return v; }
__host__ __device__ __forceinline__ float to_f(__half v) { return __half2float(v); }
__host__ __device__ __forceinline__ float to_f(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> __host__ __device__ __forceinline__ T from_f(float v);
template <> __host__ __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __host__ __device__ __forceinline__ __half from_f<__half>(float v) { return __float2half_rn(v); }
template <> __host__ __device__ __forceinline__ __nv_bfloat16 from_f<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <typename T, int V>
__host__ __device__ __forceinline__ void cross_merge_plane_body(const T* __restrict__ y, T* __restrict__ x,
                                                                 const PlaneArgs& a, uint32_t block, uint32_t tid,
                                                                 uint32_t nthreads, unsigned char* smem_raw) {
  float* s = reinterpret_cast<float*>(smem_raw);
  uint32_t b, g;
  a.divG.divmod(block, b, g);
  const uint32_t c0 = g * a.P;
  const uint32_t np = a.P < a.C - c0 ? a.P : a.C - c0;
  const uint32_t n = np * a.L;
  const uint32_t L = a.L;
  const uint32_t step = nthreads * V;
  const int64_t rs = int64_t(a.C) * L;  // route stride
  const T* src = y + (int64_t(b) * 4 * a.C + c0) * L;

  // Loads are issued U iterations at a time before any is used (up to 16 bytes in flight per load
  // stream, U <= 4 so the kernel fits 64 registers).
  constexpr int U = 16 / int(V * sizeof(T)) > 4 ? 4 : (16 / int(V * sizeof(T)) > 1 ? 16 / int(V * sizeof(T)) : 1);

  // A. column routes (cross2d only): s[pixel(q)] = y1[q] + y3[L-1-q]
  if (a.mode == kCross2d) {
    for (uint32_t base = tid * V; base < n; base += step * U) {
      AlignedVec<T, V> v1[U], v3[U];
      uint32_t pl[U], q[U];
#pragma unroll
      for (int k = 0; k < U; ++k) {
        const uint32_t i = base + k * step;
        if (i < n) {
          a.divL.divmod(i, pl[k], q[k]);
          v1[k] = load_vec<T, V>(src + rs + i);
          v3[k] = load_vec<T, V>(src + 3 * rs + pl[k] * L + (L - q[k] - V));  // reversed chunk
        }
      }
#pragma unroll
      for (int k = 0; k < U; ++k) {
        if (base + k * step < n) {
          float* sp = s + pl[k] * a.PS;
          Cursor c = start_col(a, q[k]);
#pragma unroll
          for (int u = 0; u < V; ++u) {
            sp[c.idx] = to_f(v1[k].v[u]) + to_f(v3[k].v[V - 1 - u]);
            if (u + 1 < V) next_col(a, c);
          }
        }
      }
    }
    VMAMBA_SYNC();
  }

  // B. row routes, in pixel order; the sum's association follows reference/cross_scan.py
  T* dst_cf = x + (int64_t(b) * a.C + c0) * L;
  for (uint32_t base = tid * V; base < n; base += step * U) {
    AlignedVec<T, V> v0[U], v1[U], v2[U], v3[U];
    uint32_t pl[U], p[U];
#pragma unroll
    for (int k = 0; k < U; ++k) {
      const uint32_t i = base + k * step;
      if (i < n) {
        a.divL.divmod(i, pl[k], p[k]);
        const uint32_t rev = pl[k] * L + (L - p[k] - V);
        v0[k] = load_vec<T, V>(src + i);
        if (a.mode == kCross2d) {
          v2[k] = load_vec<T, V>(src + 2 * rs + rev);
        } else if (a.mode == kUnidi) {
          v1[k] = load_vec<T, V>(src + rs + i);
          v2[k] = load_vec<T, V>(src + 2 * rs + i);
          v3[k] = load_vec<T, V>(src + 3 * rs + i);
        } else {
          v1[k] = load_vec<T, V>(src + rs + i);
          v2[k] = load_vec<T, V>(src + 2 * rs + rev);
          v3[k] = load_vec<T, V>(src + 3 * rs + rev);
        }
      }
    }
#pragma unroll
    for (int k = 0; k < U; ++k) {
      const uint32_t i = base + k * step;
      if (i >= n) continue;
      float acc[V];
      if (a.mode == kCross2d) {
        const float* sp = s + pl[k] * a.PS;
        Cursor c = start_row(a, p[k]);
#pragma unroll
        for (int u = 0; u < V; ++u) {
          acc[u] = (to_f(v0[k].v[u]) + to_f(v2[k].v[V - 1 - u])) + sp[c.idx];
          if (u + 1 < V) next_row(a, c);
        }
      } else if (a.mode == kUnidi) {
#pragma unroll
        for (int u = 0; u < V; ++u)
          acc[u] = ((to_f(v0[k].v[u]) + to_f(v1[k].v[u])) + to_f(v2[k].v[u])) + to_f(v3[k].v[u]);
      } else {
#pragma unroll
        for (int u = 0; u < V; ++u)
          acc[u] = (to_f(v0[k].v[u]) + to_f(v1[k].v[u])) + (to_f(v2[k].v[V - 1 - u]) + to_f(v3[k].v[V - 1 - u]));
      }
      if (!a.channels_last) {
        AlignedVec<T, V> o;
#pragma unroll
        for (int u = 0; u < V; ++u) o.v[u] = from_f<T>(acc[u]);
        store_vec<T, V>(dst_cf + i, o);
      } else {
        float* sp = s + pl[k] * a.PS;
        Cursor c = start_row(a, p[k]);
#pragma unroll
        for (int u = 0; u < V; ++u) { sp[c.idx] = acc[u]; if (u + 1 < V) next_row(a, c); }
      }
    }
  }

  // C. channels-last: write x[b, p, c0:c0+np] channel-fastest from shared memory
  if (a.channels_last) {
    VMAMBA_SYNC();
    T* dst = x + int64_t(b) * L * a.C + c0;
    const FastDivmod divNP(np);
    for (uint32_t j = tid * V; j < n; j += step) {
      uint32_t p, pl;
      divNP.divmod(j, p, pl);
      uint32_t h, w;
      a.divW.divmod(p, h, w);
      const float* sp = s + pl * a.PS + h * a.SW + w;
      AlignedVec<T, V> o;
#pragma unroll
      for (int u = 0; u < V; ++u) o.v[u] = from_f<T>(sp[u * a.PS]);
      store_vec<T, V>(dst + int64_t(p) * a.C + pl, o);
    }
  }
}

// ---- channels-last tiled kernels ----------------------------------------------------------------
// A block owns image b, a TH x TW tile of pixels (edge tiles cut) and a group of PC channels. The
// plane kernels move a pixel's channels in P*elem (16-byte) runs at a C*elem stride; here a pixel's
// run is PC*elem (>= 64 bytes where the budget allows; all C when C is small, tile rows are then
// contiguous), and each route is moved in runs of TW (row routes) or TH (column routes) elements.
// Shared memory holds the tile as [c][th][tw] (row stride SW, channel stride PS, in elements).
// Phases: channel phase (x <-> shared memory, vectors along channels) and route phases (shared
// memory <-> y, scalar); the scan's route phases read shared memory only, so they need no barrier
// between them.
struct TileArgs {
  uint32_t C, H, W, L;
  uint32_t TH, TW, PC;  // tile (full size; edge tiles are cut) and channels per block
  uint32_t SW, PS;
  uint32_t lq;          // channel phases: a warp is 2^lq vectors (along channels) x 32 >> lq pixels
  uint32_t routes;      // scan: 0 every route, 1 row routes only, 2 column routes only (bands)
  int mode;
  FastDivmod divTW, divTH, divTilesW, divNT, divG, divNPG;  // NT: tiles per image; NPG: pixel groups per tile
};

struct TileBlock {
  uint32_t b, c0, np, h0, w0, th_n, tw_n;
};

// block = (b * G + g) * NT + tile: neighbouring tiles, which share partly written sectors of every
// route, run together
__host__ __device__ __forceinline__ TileBlock tile_block(const TileArgs& a, uint32_t block) {
  TileBlock t;
  uint32_t bg, tile, ti, tj, g;
  a.divNT.divmod(block, bg, tile);
  a.divG.divmod(bg, t.b, g);
  a.divTilesW.divmod(tile, ti, tj);
  t.h0 = ti * a.TH; t.w0 = tj * a.TW;
  t.th_n = a.TH < a.H - t.h0 ? a.TH : a.H - t.h0;
  t.tw_n = a.TW < a.W - t.w0 ? a.TW : a.W - t.w0;
  t.c0 = g * a.PC;
  t.np = a.PC < a.C - t.c0 ? a.PC : a.C - t.c0;
  return t;
}

// Channel phases (global x <-> shared memory), item j: vector cv (channels cv*V..) of tile pixel
// (th, tw). A warp covers 2^lq vectors (32 bytes where C allows: whole sectors) of 32 >> lq
// consecutive pixels; with PS from tile_plane_stride the warp's scalar shared-memory accesses
// then hit 32 different banks. Pixels run over the full TH x TW tile; false outside the cut tile.
__host__ __device__ __forceinline__ bool tile_chunk(const TileArgs& a, const TileBlock& t, uint32_t j, uint32_t& cv,
                                                    uint32_t& th, uint32_t& tw) {
  const uint32_t cq = j & ((1u << a.lq) - 1u);
  const uint32_t r = (j >> a.lq) & ((32u >> a.lq) - 1u);
  uint32_t cg, pg;
  a.divNPG.divmod(j >> 5, cg, pg);
  cv = (cg << a.lq) + cq;
  a.divTW.divmod((pg << (5 - a.lq)) + r, th, tw);
  return th < t.th_n && tw < t.tw_n;
}

// Route phases, item e: channel c, pixel (th, tw). Row order (tw fastest) for the row routes, column
// order (th fastest) for the column routes, so consecutive threads touch consecutive route elements.
__host__ __device__ __forceinline__ bool tile_row_item(const TileArgs& a, const TileBlock& t, uint32_t e, uint32_t& c,
                                                       uint32_t& th, uint32_t& tw) {
  uint32_t ct;
  a.divTW.divmod(e, ct, tw);
  a.divTH.divmod(ct, c, th);
  return th < t.th_n && tw < t.tw_n;
}
__host__ __device__ __forceinline__ bool tile_col_item(const TileArgs& a, const TileBlock& t, uint32_t e, uint32_t& c,
                                                       uint32_t& th, uint32_t& tw) {
  uint32_t ct;
  a.divTH.divmod(e, ct, th);
  a.divTW.divmod(ct, c, tw);
  return th < t.th_n && tw < t.tw_n;
}

template <typename T, int V>  // T: uint16_t or uint32_t (raw bits)
__host__ __device__ __forceinline__ void cross_scan_tiled_body(const T* __restrict__ x, T* __restrict__ y,
                                                                const TileArgs& a, uint32_t block, uint32_t tid,
                                                                uint32_t nthreads, unsigned char* smem_raw) {
  T* s = reinterpret_cast<T*>(smem_raw);
  const TileBlock t = tile_block(a, block);

  // 1. x[b, tile, c0:c0+np] -> s. Loads issued U at a time (up to 64 bytes in flight per thread).
  constexpr int U = 64 / int(V * sizeof(T)) > 4 ? 4 : (64 / int(V * sizeof(T)) > 1 ? 64 / int(V * sizeof(T)) : 1);
  {
    const T* src = x + int64_t(t.b) * a.L * a.C + t.c0;
    const uint32_t n = ((t.np / V) >> a.lq) * a.divNPG.d * 32u;
    for (uint32_t base = tid; base < n; base += nthreads * U) {
      AlignedVec<T, V> v[U];
      uint32_t si[U];
      bool ok[U];
#pragma unroll
      for (int k = 0; k < U; ++k) {
        const uint32_t j = base + k * nthreads;
        uint32_t cv, th, tw;
        ok[k] = j < n && tile_chunk(a, t, j, cv, th, tw);
        if (ok[k]) {
          v[k] = load_vec<T, V>(src + ((t.h0 + th) * a.W + t.w0 + tw) * a.C + cv * V);
          si[k] = cv * V * a.PS + th * a.SW + tw;
        }
      }
#pragma unroll
      for (int k = 0; k < U; ++k)
        if (ok[k]) {
#pragma unroll
          for (int u = 0; u < V; ++u) s[si[k] + u * a.PS] = v[k].v[u];
        }
    }
  }
  VMAMBA_SYNC();

  // 2. routes y[b, k, c0 + c, :]: row routes (0, 2) in row order, then column routes (1, 3) in column order
  const int64_t rs = int64_t(a.C) * a.L;
  T* y0 = y + (int64_t(t.b) * 4 * a.C + t.c0) * a.L;
  T* y1 = y0 + rs;
  T* y2 = y1 + rs;
  T* y3 = y2 + rs;
  const uint32_t n = t.np * a.TH * a.TW;
  // cross2d vector path: R consecutive route elements per thread (one 8-byte store per route; the
  // scalar version issued an instruction on 82% of scheduler cycles in 16-bit types, ncu on the banded
  // stage-1 scan): runs of a multiple of R elements at offsets that are multiples of R
  constexpr uint32_t R = 8 / sizeof(T);
  const bool y_ok = reinterpret_cast<uintptr_t>(y) % (R * sizeof(T)) == 0 && a.L % R == 0 && a.mode == kCross2d;
  const bool vrow = y_ok && a.TW % R == 0 && t.tw_n % R == 0 && a.W % R == 0;
  const bool vcol = y_ok && a.TH % R == 0 && t.th_n % R == 0 && a.H % R == 0;
  if (vrow && a.routes != 2) {
    for (uint32_t e = tid * R; e < n; e += nthreads * R) {
      uint32_t c, th, tw;
      if (!tile_row_item(a, t, e, c, th, tw)) continue;  // tw % R == 0: the R items share (c, th)
      const T* sp = s + c * a.PS + th * a.SW + tw;
      AlignedVec<T, R> v, vr;
#pragma unroll
      for (uint32_t u = 0; u < R; ++u) { v.v[u] = sp[u]; vr.v[R - 1 - u] = v.v[u]; }
      const uint32_t o = c * a.L + (t.h0 + th) * a.W + t.w0 + tw;  // c*L + p
      store_vec<T, R>(y0 + o, v);
      store_vec<T, R>(y2 + (2u * c * a.L + a.L - R - o), vr);   // c*L + L-1-(p+R-1) ..
    }
  }
  for (uint32_t e = tid; e < n && a.routes != 2 && !vrow; e += nthreads) {
    uint32_t c, th, tw;
    if (!tile_row_item(a, t, e, c, th, tw)) continue;
    const T v = s[c * a.PS + th * a.SW + tw];
    const uint32_t o = c * a.L + (t.h0 + th) * a.W + t.w0 + tw;  // c*L + p
    const uint32_t orev = 2u * c * a.L + a.L - 1u - o;           // c*L + L-1-p
    y0[o] = v;
    if (a.mode == kCross2d) {
      y2[orev] = v;
    } else if (a.mode == kUnidi) {
      y1[o] = v; y2[o] = v; y3[o] = v;
    } else {
      y1[o] = v; y2[orev] = v; y3[orev] = v;
    }
  }
  if (a.mode != kCross2d || a.routes == 1) return;
  if (vcol) {
    for (uint32_t e = tid * R; e < n; e += nthreads * R) {
      uint32_t c, th, tw;
      if (!tile_col_item(a, t, e, c, th, tw)) continue;  // th % R == 0: the R items share (c, tw)
      const T* sp = s + c * a.PS + th * a.SW + tw;
      AlignedVec<T, R> v, vr;
#pragma unroll
      for (uint32_t u = 0; u < R; ++u) { v.v[u] = sp[u * a.SW]; vr.v[R - 1 - u] = v.v[u]; }
      const uint32_t o = c * a.L + (t.w0 + tw) * a.H + t.h0 + th;  // c*L + q
      store_vec<T, R>(y1 + o, v);
      store_vec<T, R>(y3 + (2u * c * a.L + a.L - R - o), vr);
    }
    return;
  }
  for (uint32_t e = tid; e < n; e += nthreads) {
    uint32_t c, th, tw;
    if (!tile_col_item(a, t, e, c, th, tw)) continue;
    const T v = s[c * a.PS + th * a.SW + tw];
    const uint32_t o = c * a.L + (t.w0 + tw) * a.H + t.h0 + th;  // c*L + q
    y1[o] = v;
    y3[2u * c * a.L + a.L - 1u - o] = v;
  }
}

// Banded scan (cross2d, square maps): even blocks own a band of rows (TH x W: its row routes are
// contiguous runs of TH * W), odd blocks the band of columns with the same index (H x TW: its column
// routes are contiguous runs of H * TW), each writing only those two routes. Every pixel is read
// twice, by neighbouring blocks of the same image, so the second read mostly hits L2.
template <typename T, int V>
__host__ __device__ __forceinline__ void cross_scan_band_body(const T* __restrict__ x, T* __restrict__ y,
                                                               const TileArgs& rows, const TileArgs& cols,
                                                               uint32_t block, uint32_t tid, uint32_t nthreads,
                                                               unsigned char* smem_raw) {
  // two calls rather than a selected reference: that would copy both parameter structs to the stack
  if (block & 1u) cross_scan_tiled_body<T, V>(x, y, cols, block >> 1, tid, nthreads, smem_raw);
  else cross_scan_tiled_body<T, V>(x, y, rows, block >> 1, tid, nthreads, smem_raw);
}

template <typename T, int V>
__host__ __device__ __forceinline__ void cross_merge_tiled_body(const T* __restrict__ y, T* __restrict__ x,
                                                                 const TileArgs& a, uint32_t block, uint32_t tid,
                                                                 uint32_t nthreads, unsigned char* smem_raw) {
  float* s = reinterpret_cast<float*>(smem_raw);
  const TileBlock t = tile_block(a, block);
  const int64_t rs = int64_t(a.C) * a.L;
  const T* y0 = y + (int64_t(t.b) * 4 * a.C + t.c0) * a.L;
  const T* y1 = y0 + rs;
  const T* y2 = y1 + rs;
  const T* y3 = y2 + rs;
  const uint32_t n = t.np * a.TH * a.TW;
  constexpr int U = 4;  // route loads issued U items at a time
  // cross2d vector path, as in the scan: R consecutive route elements per thread (8-byte loads) where
  // the tile's runs are multiples of R at offsets that are multiples of R
  constexpr uint32_t R = 8 / sizeof(T);
  constexpr int UR = 2;  // vector loads issued UR items at a time
  const bool y_ok = reinterpret_cast<uintptr_t>(y) % (R * sizeof(T)) == 0 && a.L % R == 0 && a.mode == kCross2d;
  const bool vrow = y_ok && a.TW % R == 0 && t.tw_n % R == 0 && a.W % R == 0;
  const bool vcol = y_ok && a.TH % R == 0 && t.th_n % R == 0 && a.H % R == 0;

  // A. column routes (cross2d): s = y1[q] + y3[L-1-q], read in runs of TH
  if (vcol) {
    for (uint32_t base = tid * R; base < n; base += nthreads * R * UR) {
      AlignedVec<T, R> v1[UR], v3[UR];
      uint32_t si[UR];
      bool ok[UR];
#pragma unroll
      for (int k = 0; k < UR; ++k) {
        const uint32_t e = base + k * nthreads * R;
        uint32_t c, th, tw;
        ok[k] = e < n && tile_col_item(a, t, e, c, th, tw);  // th % R == 0: the R items share (c, tw)
        if (ok[k]) {
          const uint32_t o = c * a.L + (t.w0 + tw) * a.H + t.h0 + th;
          v1[k] = load_vec<T, R>(y1 + o);
          v3[k] = load_vec<T, R>(y3 + (2u * c * a.L + a.L - R - o));  // reversed run
          si[k] = c * a.PS + th * a.SW + tw;
        }
      }
#pragma unroll
      for (int k = 0; k < UR; ++k)
        if (ok[k]) {
#pragma unroll
          for (uint32_t u = 0; u < R; ++u) s[si[k] + u * a.SW] = to_f(v1[k].v[u]) + to_f(v3[k].v[R - 1 - u]);
        }
    }
    VMAMBA_SYNC();
  } else if (a.mode == kCross2d) {
    for (uint32_t base = tid; base < n; base += nthreads * U) {
      T v1[U], v3[U];
      uint32_t si[U];
      bool ok[U];
#pragma unroll
      for (int k = 0; k < U; ++k) {
        const uint32_t e = base + k * nthreads;
        uint32_t c, th, tw;
        ok[k] = e < n && tile_col_item(a, t, e, c, th, tw);
        if (ok[k]) {
          const uint32_t o = c * a.L + (t.w0 + tw) * a.H + t.h0 + th;
          v1[k] = y1[o];
          v3[k] = y3[2u * c * a.L + a.L - 1u - o];
          si[k] = c * a.PS + th * a.SW + tw;
        }
      }
#pragma unroll
      for (int k = 0; k < U; ++k)
        if (ok[k]) s[si[k]] = to_f(v1[k]) + to_f(v3[k]);
    }
    VMAMBA_SYNC();
  }

  // B. row routes, read in runs of TW; the association follows reference/cross_scan.py
  if (vrow) {
    for (uint32_t base = tid * R; base < n; base += nthreads * R * UR) {
      AlignedVec<T, R> v0[UR], v2[UR];
      uint32_t si[UR];
      bool ok[UR];
#pragma unroll
      for (int k = 0; k < UR; ++k) {
        const uint32_t e = base + k * nthreads * R;
        uint32_t c, th, tw;
        ok[k] = e < n && tile_row_item(a, t, e, c, th, tw);  // tw % R == 0: the R items share (c, th)
        if (ok[k]) {
          const uint32_t o = c * a.L + (t.h0 + th) * a.W + t.w0 + tw;
          v0[k] = load_vec<T, R>(y0 + o);
          v2[k] = load_vec<T, R>(y2 + (2u * c * a.L + a.L - R - o));
          si[k] = c * a.PS + th * a.SW + tw;
        }
      }
#pragma unroll
      for (int k = 0; k < UR; ++k)
        if (ok[k]) {
#pragma unroll
          for (uint32_t u = 0; u < R; ++u)
            s[si[k] + u] = (to_f(v0[k].v[u]) + to_f(v2[k].v[R - 1 - u])) + s[si[k] + u];
        }
    }
  }
  for (uint32_t base = tid; base < n && !vrow; base += nthreads * U) {
    T v0[U], v1[U], v2[U], v3[U];
    uint32_t si[U];
    bool ok[U];
#pragma unroll
    for (int k = 0; k < U; ++k) {
      const uint32_t e = base + k * nthreads;
      uint32_t c, th, tw;
      ok[k] = e < n && tile_row_item(a, t, e, c, th, tw);
      if (ok[k]) {
        const uint32_t o = c * a.L + (t.h0 + th) * a.W + t.w0 + tw;
        const uint32_t orev = 2u * c * a.L + a.L - 1u - o;
        si[k] = c * a.PS + th * a.SW + tw;
        v0[k] = y0[o];
        if (a.mode == kCross2d) {
          v2[k] = y2[orev];
        } else if (a.mode == kUnidi) {
          v1[k] = y1[o]; v2[k] = y2[o]; v3[k] = y3[o];
        } else {
          v1[k] = y1[o]; v2[k] = y2[orev]; v3[k] = y3[orev];
        }
      }
    }
#pragma unroll
    for (int k = 0; k < U; ++k) {
      if (!ok[k]) continue;
      if (a.mode == kCross2d) s[si[k]] = (to_f(v0[k]) + to_f(v2[k])) + s[si[k]];
      else if (a.mode == kUnidi) s[si[k]] = ((to_f(v0[k]) + to_f(v1[k])) + to_f(v2[k])) + to_f(v3[k]);
      else s[si[k]] = (to_f(v0[k]) + to_f(v1[k])) + (to_f(v2[k]) + to_f(v3[k]));
    }
  }
  VMAMBA_SYNC();

  // C. s -> x[b, tile, c0:c0+np], V channels per store
  T* dst = x + int64_t(t.b) * a.L * a.C + t.c0;
  const uint32_t nc = ((t.np / V) >> a.lq) * a.divNPG.d * 32u;
  for (uint32_t j = tid; j < nc; j += nthreads) {
    uint32_t cv, th, tw;
    if (!tile_chunk(a, t, j, cv, th, tw)) continue;
    const float* sp = s + cv * V * a.PS + th * a.SW + tw;
    AlignedVec<T, V> o;
#pragma unroll
    for (int u = 0; u < V; ++u) o.v[u] = from_f<T>(sp[u * a.PS]);
    store_vec<T, V>(dst + ((t.h0 + th) * a.W + t.w0 + tw) * a.C + cv * V, o);
  }
}

// ---- direct kernels (any size): one thread per output element, 64-bit indices ----------------------
struct DirectArgs {
  int64_t B, C, H, W, L, total;
  int mode;
  bool channels_last;
};

__host__ __device__ __forceinline__ int64_t route_pixel(const DirectArgs& a, int t, int64_t r) {
  // pixel (row-major number) read by position r of a route of type t
  if (t == kRowRev || t == kColRev) r = a.L - 1 - r;
  if (t == kRow || t == kRowRev) return r;
  const int64_t w = r / a.H, h = r - w * a.H;  // r = q = w*H + h
  return h * a.W + w;
}

// One output element o of y (B, 4, C, L).
template <typename T>
__host__ __device__ __forceinline__ void cross_scan_direct_body(const T* __restrict__ x, T* __restrict__ y,
                                                                 const DirectArgs& a, int64_t o) {
  {
    const int64_t r = o % a.L;
    int64_t t = o / a.L;
    const int64_t c = t % a.C;
    t /= a.C;
    const int k = int(t % 4);
    const int64_t b = t / 4;
    const int64_t pix = route_pixel(a, route_type(a.mode, k), r);
    y[o] = a.channels_last ? x[(b * a.L + pix) * a.C + c] : x[(b * a.C + c) * a.L + pix];
  }
}

// One output element o of x, in its layout.
template <typename T>
__host__ __device__ __forceinline__ void cross_merge_direct_body(const T* __restrict__ y, T* __restrict__ x,
                                                                  const DirectArgs& a, int64_t o) {
  {
    int64_t b, c, p;
    if (a.channels_last) { c = o % a.C; const int64_t t = o / a.C; p = t % a.L; b = t / a.L; }
    else { p = o % a.L; const int64_t t = o / a.L; c = t % a.C; b = t / a.C; }
    const int64_t h = p / a.W, w = p - h * a.W, q = w * a.H + h;
    const T* yb = y + (b * 4 * a.C + c) * a.L;
    const int64_t rs = a.C * a.L;
    float acc;
    if (a.mode == kCross2d) {
      acc = (to_f(yb[p]) + to_f(yb[2 * rs + a.L - 1 - p])) + (to_f(yb[rs + q]) + to_f(yb[3 * rs + a.L - 1 - q]));
    } else if (a.mode == kUnidi) {
      acc = ((to_f(yb[p]) + to_f(yb[rs + p])) + to_f(yb[2 * rs + p])) + to_f(yb[3 * rs + p]);
    } else {
      acc = (to_f(yb[p]) + to_f(yb[rs + p])) + (to_f(yb[2 * rs + a.L - 1 - p]) + to_f(yb[3 * rs + a.L - 1 - p]));
    }
    x[o] = from_f<T>(acc);
  }
}

#ifndef __CUDACC_RTC__
// ---- planning (host) ---------------------------------------------------------------------------
// Tuning/test knobs (../common/knobs.h: from the environment at first use, or set through an op):
// VMAMBA_CROSS_MAX_VEC caps the vector width (elements); VMAMBA_CROSS_PATH=direct forces the direct
// kernels (so tests reach them on small maps).
inline int env_max_vec() {
  const std::string v = knob(Knob::kCrossMaxVec);
  if (v.empty()) return 0;
  return std::atoi(v.c_str());
}

// VMAMBA_CROSS_SMEM_KB: shared memory per block the planner may use (default kSmemBudget / 1024);
// channels-last stage-1 maps need more than the default for 16-byte channel runs (bench/tuning/cross_scan.py)
inline size_t smem_budget() {
  const std::string v = knob(Knob::kCrossSmemKb);
  const long kb = v.empty() ? 0 : std::atol(v.c_str());
  return kb > 0 && kb <= 227 ? size_t(kb) * 1024 : kSmemBudget;
}

inline bool env_force_direct() {
  return knob(Knob::kCrossPath)[0] == 'd';
}

inline int pick_vec(const Problem& p, int elem_bytes, size_t in_addr, size_t out_addr) {
  int cap = p.max_vec > 0 ? p.max_vec : env_max_vec();
  int v = 16 / elem_bytes;
  if (cap > 0) v = std::min(v, cap);
  const int64_t L = p.H * p.W;
  for (; v > 1; v /= 2) {
    const size_t bytes = size_t(v) * elem_bytes;
    if (L % v != 0) continue;
    if (p.channels_last && p.C % v != 0) continue;
    if (in_addr % bytes != 0 || out_addr % bytes != 0) continue;
    break;
  }
  return std::max(v, 1);
}

struct Geometry {
  bool fits = false;
  uint32_t SW = 0, PS = 0, P = 0, G = 0;
  size_t smem = 0;
};

// elem_bytes: bytes per element in global memory; smem_elem_bytes: per shared-memory element;
// need_smem: false when the kernel uses no shared memory (merge, channels-first, unidi/bidi)
inline Geometry plan_planes(const Problem& p, uint32_t elem_bytes, uint32_t smem_elem_bytes, bool need_smem, int vec) {
  Geometry g;
  const int64_t L = p.H * p.W;
  if (L >= (int64_t(1) << 30) || p.C >= (int64_t(1) << 30)) return g;
  g.SW = odd_words(uint32_t(p.W), smem_elem_bytes);
  g.PS = odd_words(uint32_t(p.H) * g.SW, smem_elem_bytes);
  const size_t plane_bytes = need_smem ? size_t(g.PS) * smem_elem_bytes : 0;
  const size_t budget = smem_budget();
  if (plane_bytes > budget) return g;
  const int64_t by_smem = plane_bytes ? int64_t(budget / plane_bytes) : p.C;
  int64_t P;
  if (p.channels_last) {
    // channel runs of >= 16 bytes per pixel (the neighbouring block reads the rest of the sector), and
    // about kTargetElems elements per block on small maps; vectors run along channels: P % vec == 0
    P = std::max<int64_t>(std::max<int64_t>(16 / elem_bytes, int64_t(kTargetElems) / L), int64_t(vec));
    P = std::min<int64_t>(std::min<int64_t>(P, by_smem), p.C);
    P -= P % vec;
  } else {
    P = std::max<int64_t>(1, int64_t(kTargetElems) / L);
    P = std::min<int64_t>(std::min<int64_t>(P, by_smem), p.C);
  }
  if (P < 1) return g;
  if (int64_t(P) * L >= (int64_t(1) << 31)) return g;
  g.P = uint32_t(P);
  g.G = uint32_t((p.C + P - 1) / P);
  if (int64_t(g.G) * p.B >= (int64_t(1) << 31)) return g;
  g.smem = size_t(P) * plane_bytes;
  g.fits = true;
  return g;
}

inline PlaneArgs make_args(const Problem& p, const Geometry& g) {
  PlaneArgs a;
  a.C = uint32_t(p.C); a.H = uint32_t(p.H); a.W = uint32_t(p.W); a.L = uint32_t(p.H * p.W);
  a.P = g.P; a.SW = g.SW; a.PS = g.PS;
  a.mode = p.mode; a.channels_last = p.channels_last;
  a.divL = FastDivmod(a.L); a.divW = FastDivmod(a.W); a.divH = FastDivmod(a.H); a.divG = FastDivmod(g.G);
  return a;
}

inline DirectArgs make_direct(const Problem& p, int64_t total) {
  DirectArgs d;
  d.B = p.B; d.C = p.C; d.H = p.H; d.W = p.W; d.L = p.H * p.W; d.total = total;
  d.mode = p.mode; d.channels_last = p.channels_last;
  return d;
}

inline int64_t direct_blocks(int64_t total) {
  return std::max<int64_t>(1, std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t(1) << 20));
}

// ---- tiled planning (channels-last) ------------------------------------------------------------
// VMAMBA_CROSS_CL_TILED (a knob, see above): "0" never uses the tiled kernels (plane/direct as before),
// "1" uses them whenever they apply (so tests reach them on small maps), "b" the banded scan wherever
// it applies (cross2d, square maps; otherwise, and for the merge, as "1"), unset/other: the rule in
// plan_cross. VMAMBA_CROSS_CL_TILE="THxTW" or "THxTWxPC" fixes the tile (clipped to the map) and
// optionally the channels per block (rounded up to the channel unit) instead of the default rule,
// for tuning and for tests of edge tiles / channel groups; a tile that does not fit the budget
// disables the tiled path.
inline int env_cl_tiled() {
  const std::string v = knob(Knob::kCrossClTiled);
  if (v.empty()) return -1;
  return v[0] == '0' ? 0 : (v[0] == '1' ? 1 : (v[0] == 'b' ? 2 : -1));
}

// VMAMBA_CROSS_CL_BAND: rows (columns) per band of the banded scan (default: plan_cross's choice)
inline uint32_t env_cl_band(uint32_t dflt) {
  const std::string k = knob(Knob::kCrossClBand);
  const long v = k.empty() ? 0 : std::atol(k.c_str());
  return v >= 1 && v <= 4096 ? uint32_t(v) : dflt;
}

inline bool env_cl_tile(uint32_t& th, uint32_t& tw, uint32_t& pc) {
  const std::string k = knob(Knob::kCrossClTile);
  if (k.empty()) return false;
  const char* s = k.c_str();
  char* end = nullptr;
  const long a = std::strtol(s, &end, 10);
  if (*end != 'x') return false;
  const long b = std::strtol(end + 1, &end, 10);
  long c = 0;
  if (*end == 'x') c = std::strtol(end + 1, &end, 10);
  if (a < 1 || b < 1 || c < 0 || a > 4096 || b > 4096) return false;
  th = uint32_t(a); tw = uint32_t(b); pc = uint32_t(c);
  return true;
}

// Channel stride m >= n (elements of smem_elem bytes) for the channel phases, where a warp covers
// 2^lq vectors x (32 >> lq) pixels: vector k's scalar accesses start V*m*k elements in, so V*m elements
// = an odd multiple of 128 >> lq bytes puts the 2^lq vectors in disjoint groups of 32 >> lq banks,
// each wide enough for the warp's pixels: 32 different banks (bar tile-row wraps).
inline uint32_t tile_plane_stride(uint32_t n, uint32_t smem_elem, int vec, uint32_t lq) {
  const uint64_t step = 128u >> lq;
  if (lq > 0)
    for (uint32_t m = n; m < n + 128; ++m)
      if ((uint64_t(vec) * m * smem_elem) % (2 * step) == step) return m;
  return odd_words(n, smem_elem);
}

constexpr uint32_t kTiledTargetElems = 8192;  // elements (pixels x channels) per tiled block, see plan_tiles

// Shared memory per tiled block: VMAMBA_CROSS_SMEM_KB when set, else at most kTiledSmem, so that four
// 256-thread blocks (what 64 registers a thread allow) fit an H100 SM: 4 x (56 + 1 reserved) <= 228 KB.
constexpr size_t kTiledSmem = 56 * 1024;
inline size_t tiled_smem_budget() {
  return knob(Knob::kCrossSmemKb).empty() ? std::min(kTiledSmem, smem_budget()) : smem_budget();
}

struct TileGeometry {
  bool fits = false;
  int vec = 1;
  uint32_t TH = 0, TW = 0, PC = 0, G = 0, SW = 0, PS = 0, lq = 0, tiles_h = 0, tiles_w = 0;
  size_t smem = 0;
};

// Vector width along channels: only C and the channels-last pointer constrain it (routes are scalar).
inline int pick_vec_cl(const Problem& p, int elem_bytes, size_t x_addr) {
  const int cap = p.max_vec > 0 ? p.max_vec : env_max_vec();
  int v = 16 / elem_bytes;
  if (cap > 0) v = std::min(v, cap);
  while (v > 1 && (p.C % v != 0 || x_addr % (size_t(v) * elem_bytes) != 0)) v /= 2;
  return std::max(v, 1);
}

// Tile rule: about 16 x 16 pixels, balanced (n = max(1, H / 16) tiles of ceil(H / n) rows: 19 for
// H = 56, so route runs are >= 32 bytes even in fp16, and no sliver tiles), shrunk (larger side
// first) only until one channel unit fits the budget: the routes are 4/5 of the traffic, so their
// runs come first. The unit is 2^lq vectors, 32 bytes of a pixel where C allows, so a channel-phase
// warp moves whole sectors. Channels per block: max(64 bytes of a pixel, kTiledTargetElems / tile
// pixels) as far as the budget allows (many small blocks at stage-1 sizes: a short tail), in the
// fewest equal groups rounded up to the unit; all C when that covers C.
// th, tw, pc_fix: a fixed tile (and channels per block) instead of the rule / VMAMBA_CROSS_CL_TILE (bands)
inline TileGeometry plan_tiles(const Problem& p, uint32_t elem_bytes, uint32_t smem_elem, size_t x_addr,
                               uint32_t th_fix = 0, uint32_t tw_fix = 0, uint32_t pc_fix = 0) {
  TileGeometry g;
  const int64_t L = p.H * p.W;
  if (L * p.C >= (int64_t(1) << 31)) return g;  // 32-bit offsets inside an image (c*L + p, p*C + c)
  const uint32_t C = uint32_t(p.C), H = uint32_t(p.H), W = uint32_t(p.W);
  g.vec = pick_vec_cl(p, int(elem_bytes), x_addr);
  const uint32_t nvec = C / uint32_t(g.vec);
  uint32_t lq = 0;
  while (lq < 5 && (uint32_t(g.vec) * elem_bytes << (lq + 1)) <= 32 && nvec % (2u << lq) == 0) ++lq;
  g.lq = lq;
  const uint32_t unit = uint32_t(g.vec) << lq;
  const size_t budget = tiled_smem_budget();
  uint32_t th = th_fix, tw = tw_fix, pc = pc_fix;
  const bool fixed = th_fix > 0 ? true : env_cl_tile(th, tw, pc);
  uint32_t nh = 1, nw = 1;
  if (fixed) {
    g.TH = std::min(th, H); g.TW = std::min(tw, W);
  } else {
    nh = std::max(1u, H / 16); nw = std::max(1u, W / 16);
    g.TH = (H + nh - 1) / nh; g.TW = (W + nw - 1) / nw;
  }
  for (;;) {
    g.SW = odd_words(g.TW, smem_elem);
    g.PS = tile_plane_stride(g.TH * g.SW, smem_elem, g.vec, lq);
    if (size_t(g.PS) * smem_elem * unit <= budget) break;
    if (fixed || (g.TH == 1 && g.TW == 1)) return g;
    if (g.TH >= g.TW) { const uint32_t t = g.TH; while ((H + nh - 1) / nh == t) ++nh; g.TH = (H + nh - 1) / nh; }
    else { const uint32_t t = g.TW; while ((W + nw - 1) / nw == t) ++nw; g.TW = (W + nw - 1) / nw; }
  }
  const size_t chan_bytes = size_t(g.PS) * smem_elem;
  const auto round_unit = [unit](uint32_t n) { return (n + unit - 1) / unit * unit; };
  if (pc > 0) {
    g.PC = std::min(C, round_unit(pc));
    if (g.PC * chan_bytes > budget) return g;
  } else {
    const uint32_t px = g.TH * g.TW;
    const uint32_t want = round_unit(std::max(64 / elem_bytes, (kTiledTargetElems + px - 1) / px));
    const uint32_t by_smem = uint32_t(std::min<size_t>(budget / chan_bytes, C)) / unit * unit;
    const uint32_t pmax = std::min(std::min(by_smem, want), C);
    const uint32_t groups = (C + pmax - 1) / pmax;
    g.PC = std::min(C, round_unit((C + groups - 1) / groups));
  }
  g.G = (C + g.PC - 1) / g.PC;
  g.tiles_h = (H + g.TH - 1) / g.TH;
  g.tiles_w = (W + g.TW - 1) / g.TW;
  if (int64_t(g.tiles_h) * g.tiles_w * g.G * p.B >= (int64_t(1) << 31)) return g;
  g.smem = g.PC * chan_bytes;
  g.fits = true;
  return g;
}

inline TileArgs make_tile_args(const Problem& p, const TileGeometry& g) {
  TileArgs a;
  a.C = uint32_t(p.C); a.H = uint32_t(p.H); a.W = uint32_t(p.W); a.L = uint32_t(p.H * p.W);
  a.TH = g.TH; a.TW = g.TW; a.PC = g.PC; a.SW = g.SW; a.PS = g.PS; a.lq = g.lq;
  a.mode = p.mode;
  a.routes = 0;
  a.divTW = FastDivmod(g.TW); a.divTH = FastDivmod(g.TH); a.divTilesW = FastDivmod(g.tiles_w);
  a.divNT = FastDivmod(g.tiles_h * g.tiles_w); a.divG = FastDivmod(g.G);
  a.divNPG = FastDivmod((g.TH * g.TW + (32u >> g.lq) - 1) >> (5 - g.lq));  // pixel groups of 32 >> lq
  return a;
}

inline int64_t tile_blocks(const TileGeometry& g, int64_t B) { return int64_t(g.tiles_h) * g.tiles_w * g.G * B; }

// The whole launch decision for one call: tiled kernel (tiled), plane-group kernel (g.fits) with vector
// width vec, or direct.
struct Launch {
  Geometry g;
  TileGeometry t;
  TileGeometry t_cols;  // band scan: t is the row bands' geometry, t_cols the column bands'
  bool tiled = false;
  bool band = false;
  int vec = 1;
  int elem = 4;
  int64_t total = 0;  // output elements
};

// Channels-last rule: tiled where it applies and the plane kernel would not fit (a plane over the
// budget: it would fall back to the direct kernel); for the merge also where the plane kernel splits
// a pixel's channels (P < C) into runs of less than a 32-byte sector (P ~ kTargetElems / L) and the
// elements are 4 bytes or the map has >= 2048 pixels (the measurements: reports/tuning.md, "cuda: cross
// scan / merge"); 14 x 14 and 7 x 7 keep the plane kernel (whole sectors there). The tiled scan lost
// everywhere: its column routes are written in runs of TH elements at offsets w * H + h0, which split
// 32-byte sectors between neighbouring tiles; the scan takes bands instead (below).
inline Launch plan_cross(const Problem& p, bool merge) {
  Launch l;
  l.elem = p.dtype == kF32 ? 4 : 2;
  l.total = p.B * (merge ? 1 : 4) * p.C * p.H * p.W;
  if (l.total == 0 || env_force_direct()) return l;
  const uint32_t smem_elem = merge ? 4 : l.elem;  // the merge accumulates in fp32 shared memory
  const bool need_smem = !merge || p.mode == kCross2d || p.channels_last;
  l.vec = pick_vec(p, l.elem, reinterpret_cast<size_t>(p.in), reinterpret_cast<size_t>(p.out));
  // narrower vectors allow fewer planes per block (channels-last needs P >= vec): halve until it fits
  for (;; l.vec /= 2) {
    l.g = plan_planes(p, l.elem, smem_elem, need_smem, l.vec);
    if (l.g.fits || l.vec == 1) break;
  }
  if (!l.g.fits) l.vec = 1;
  const int tiled = p.channels_last ? env_cl_tiled() : 0;
  // banded scan: cross2d on a square map; the rule: maps of >= 2048 pixels where the plane kernel would
  // split a pixel's channels into runs under 32 bytes (0.91-0.93 of copy on 56 x 56 against the plane
  // kernel's 0.70-0.72; reports/tuning.md); VMAMBA_CROSS_CL_TILED=b forces it wherever it applies.
  const bool short_runs_scan = l.g.fits && l.g.P < p.C && l.g.P * uint32_t(l.elem) < 32;
  const bool band_rule = short_runs_scan && p.H * p.W >= 2048;
  if (!merge && p.mode == kCross2d && p.H == p.W && (tiled == 2 || (tiled == -1 && band_rule))) {
    const uint32_t band = std::min<uint32_t>(env_cl_band(l.elem == 4 ? 16u : 8u), uint32_t(p.H));
    const size_t xa = reinterpret_cast<size_t>(p.in);
    TileGeometry r = plan_tiles(p, uint32_t(l.elem), smem_elem, xa, band, uint32_t(p.W));
    TileGeometry c = plan_tiles(p, uint32_t(l.elem), smem_elem, xa, uint32_t(p.H), band);
    if (r.fits && c.fits) {  // the same channel groups for both, so block 2i and 2i+1 share (b, g, band i)
      const uint32_t pc = std::min(r.PC, c.PC);
      r = plan_tiles(p, uint32_t(l.elem), smem_elem, xa, band, uint32_t(p.W), pc);
      c = plan_tiles(p, uint32_t(l.elem), smem_elem, xa, uint32_t(p.H), band, pc);
    }
    if (r.fits && c.fits && r.G == c.G && r.tiles_h == c.tiles_w && r.vec == c.vec) {
      l.t = r; l.t_cols = c; l.tiled = true; l.band = true; l.vec = r.vec;
      return l;
    }
  }
  if (tiled != 0) {
    const size_t xa = reinterpret_cast<size_t>(merge ? p.out : p.in);
    l.t = plan_tiles(p, uint32_t(l.elem), smem_elem, xa);
    const bool short_runs = l.g.P < p.C && l.g.P * uint32_t(l.elem) < 32;
    const bool by_rule = !l.g.fits || (merge && short_runs && (l.elem == 4 || p.H * p.W >= 2048));
    if (by_rule && merge && tiled == -1 && p.mode == kCross2d) {
      // the merge's default tile, x 16 channels: fp32 8 rows x up to 64 columns, so both route kinds are
      // read in runs of >= 32 bytes; fp16 16 rows x W split in equal parts of <= 32 columns (the best of
      // bench/tuning/cross_scan.py's tile shapes: reports/tuning.md)
      const uint32_t H = uint32_t(p.H), W = uint32_t(p.W);
      const uint32_t tw16 = (W + (W + 31) / 32 - 1) / ((W + 31) / 32);
      const TileGeometry t8 = l.elem == 4 ? plan_tiles(p, 4u, smem_elem, xa, std::min(8u, H), std::min(64u, W), 16)
                                          : plan_tiles(p, uint32_t(l.elem), smem_elem, xa, std::min(16u, H), tw16, 16);
      if (t8.fits) l.t = t8;
    }
    if (l.t.fits && (tiled >= 1 || by_rule)) {
      l.tiled = true;
      l.vec = l.t.vec;
    }
  }
  return l;
}

inline void fill_plan(const Launch& l, int64_t B, Plan* plan) {
  if (plan == nullptr) return;
  plan->plane = l.g.fits && !l.tiled;
  plan->tiled = l.tiled;
  plan->band = l.band;
  plan->vec = l.vec;
  if (l.tiled) {
    plan->planes_per_block = int(l.t.PC);
    plan->tile_h = int(l.t.TH);
    plan->tile_w = int(l.t.TW);
    plan->blocks = tile_blocks(l.t, B) * (l.band ? 2 : 1);
    plan->smem_bytes = l.band ? std::max(l.t.smem, l.t_cols.smem) : l.t.smem;
    return;
  }
  plan->planes_per_block = int(l.g.P);
  plan->tile_h = plan->tile_w = 0;
  plan->blocks = l.g.fits ? int64_t(l.g.G) * B : direct_blocks(l.total);
  plan->smem_bytes = l.g.smem;
}
#endif  // __CUDACC_RTC__

}  // namespace
}  // namespace cross
}  // namespace vmamba
