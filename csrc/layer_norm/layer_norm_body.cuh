// Layer norm (+ residual add) kernel bodies, launch planning and typed launchers, shared by the GPU
// translation units (layer_norm_{fwd,bwd}_<dtype>.cu with DeviceExec) and by the CPU emulator of the
// tests (tests/cuda_emu/, EmuExec). Math and contract: layer_norm.h.
//
// Design (memory-bound: every kernel reads and writes each element once from DRAM):
// * channels-last (rows of C contiguous channels): a power-of-two group of `tpr` threads per row
//   (4 for C = 96 in fp16, 32 for C = 768, 128 for C = 3072), each holding its slice of the row in
//   registers as vectors of up to 16 bytes; sums over the row by xor shuffles (and shared memory when
//   tpr > 32). Two-pass statistics from registers. The backward keeps each thread on the same channels
//   for all its rows, so dweight / dbias accumulate in registers; a block adds its row slots in a fixed
//   order and writes one partial row; ColSum adds the partial rows in a fixed order.
// * channels-first (channel planes of HW pixels): a block owns a tile of P consecutive pixels of one
//   image (P a power of two) and stages the tile, all C channels, in shared memory with vector loads
//   along pixels (coalesced). Statistics: thread (channel group, pixel) sums its channels, a fixed-order
//   sum over the groups per pixel. The backward stages s and dy, reduces the two per-pixel sums the same
//   way, writes dx, then accumulates dweight / dbias per channel over the tile's pixels (a few threads
//   per channel reading 16-byte chunks; row strides padded so those reads hit distinct banks) into
//   per-block shared-memory accumulators that become the block's partial row.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <utility>

#include "../common/reduce.cuh"
#include "../common/thread_ctx.cuh"
#include "layer_norm.h"

namespace vmamba {
namespace ln {

constexpr int kThreads = 256;
constexpr int kFwdValues = 32;               // row values per thread in registers (channels-last forward)
constexpr int kBwdValues = 16;               // (channels-last backward: s, dy and two accumulators each)
constexpr size_t kFwdSmemBudget = 48 * 1024;  // channels-first tile budgets (shrink the tile first)
constexpr size_t kBwdSmemBudget = 96 * 1024;
constexpr size_t kSmemMax = 200 * 1024;      // opt-in limit used only when the smallest tile needs it

// ---- sums over the threads of a row group ----------------------------------------------------------
// Sums v[N] over the tpr (power of two, aligned) threads of each row group; every thread of the block
// calls it. tpr > 32 goes through red (nthreads / 32 * N floats of shared memory) and two barriers.
template <int N, class Ctx>
VMAMBA_HD void row_sum(const Ctx& ctx, float (&v)[N], uint32_t tpr, float* red) {
  for (uint32_t m = (tpr < 32 ? tpr : 32) >> 1; m > 0; m >>= 1) {
#pragma unroll
    for (int n = 0; n < N; ++n) v[n] += ctx.shfl_xor(v[n], int(m));
  }
  if (tpr <= 32) return;
  const uint32_t t = ctx.tid(), warp = t >> 5, wpr = tpr >> 5, first = warp - warp % wpr;
  if ((t & 31) == 0) {
#pragma unroll
    for (int n = 0; n < N; ++n) red[warp * N + n] = v[n];
  }
  ctx.sync();
#pragma unroll
  for (int n = 0; n < N; ++n) {
    float s = 0.f;
    for (uint32_t k = 0; k < wpr; ++k) s += red[(first + k) * N + n];
    v[n] = s;
  }
  ctx.sync();
}

// ---- forward, channels-last ----------------------------------------------------------------------
struct FwdClArgs {
  const void* x;
  const void* branch;
  const float* scale;
  const float* w;
  const float* b;
  void* s;
  void* y;
  float* mean;
  float* rstd;
  int64_t rows, HW;
  uint32_t C, nvr, tpr;
  float eps, inv_c;
};

// T: x / s; TB: branch (T, or a 16-bit branch on a float32 stream); TO: y
template <typename T, typename TB, typename TO, int VEC>
struct FwdCl {
  using Args = FwdClArgs;
  static constexpr int kMaxThreads = kThreads, kMinBlocks = 1;
  static constexpr int kMaxV = kFwdValues / VEC;

  template <class Ctx>
  static VMAMBA_HD void run(const Ctx& ctx, const Args& a, unsigned char* smem) {
    float* red = reinterpret_cast<float*>(smem);
    const T* x = static_cast<const T*>(a.x);
    const TB* br = static_cast<const TB*>(a.branch);
    T* s_out = static_cast<T*>(a.s);
    TO* y = static_cast<TO*>(a.y);
    const uint32_t t = ctx.tid(), lane = t & (a.tpr - 1), slot = t / a.tpr, rpb = ctx.nthreads() / a.tpr;
    for (int64_t base = int64_t(ctx.block()) * rpb; base < a.rows; base += int64_t(ctx.nblocks()) * rpb) {
      const int64_t row = base + slot;
      const bool active = row < a.rows;
      const int64_t off = row * a.C;
      const float sc = (br != nullptr && a.scale != nullptr && active) ? a.scale[row / a.HW] : 1.f;
      float v[kMaxV][VEC];
      float sum[1] = {0.f};
#pragma unroll
      for (int i = 0; i < kMaxV; ++i) {
        const uint32_t vi = lane + uint32_t(i) * a.tpr;
        const bool ok = active && vi < a.nvr;
        const int64_t o = off + int64_t(vi) * VEC;
        load_floats<T, VEC>(x + o, ok, v[i]);
        if (br != nullptr) {
          float bv[VEC];
          load_floats<TB, VEC>(br + o, ok, bv);
#pragma unroll
          for (int e = 0; e < VEC; ++e) v[i][e] = round_to<T>(v[i][e] + sc * bv[e]);
          if (ok) store_floats<T, VEC>(s_out + o, v[i]);
        }
#pragma unroll
        for (int e = 0; e < VEC; ++e) sum[0] += v[i][e];
      }
      row_sum(ctx, sum, a.tpr, red);
      const float mean = sum[0] * a.inv_c;
      float sq[1] = {0.f};
#pragma unroll
      for (int i = 0; i < kMaxV; ++i) {
        const bool ok = active && lane + uint32_t(i) * a.tpr < a.nvr;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          const float d = v[i][e] - mean;
          sq[0] += ok ? d * d : 0.f;
        }
      }
      row_sum(ctx, sq, a.tpr, red);
      const float rstd = rsqrt_f(sq[0] * a.inv_c + a.eps);
      if (active && lane == 0 && a.rstd != nullptr) {  // null in inference (add_layer_norm_infer)
        a.mean[row] = mean;
        a.rstd[row] = rstd;
      }
#pragma unroll
      for (int i = 0; i < kMaxV; ++i) {
        const uint32_t vi = lane + uint32_t(i) * a.tpr;
        if (!(active && vi < a.nvr)) continue;
        float wv[VEC], bv[VEC], out[VEC];
        load_floats<float, VEC>(a.w + vi * VEC, true, wv);
        load_floats<float, VEC>(a.b + vi * VEC, a.b != nullptr, bv);
#pragma unroll
        for (int e = 0; e < VEC; ++e) out[e] = (v[i][e] - mean) * rstd * wv[e] + bv[e];
        store_floats<TO, VEC>(y + off + int64_t(vi) * VEC, out);
      }
    }
  }
};

// ---- forward, channels-first ---------------------------------------------------------------------
struct FwdCfArgs {
  const void* x;
  const void* branch;
  const float* scale;
  const float* w;
  const float* b;
  void* s;
  void* y;
  float* mean;
  float* rstd;
  int64_t B;
  uint32_t C, HW, P, log2_npv, tiles;
  float eps, inv_c;
};

// shared memory: tile [C][P] of T, then floats red [G][P], mean [P], rstd [P] (G = nthreads / P)
template <typename T, typename TB, typename TO, int VEC>
struct FwdCf {
  using Args = FwdCfArgs;
  static constexpr int kMaxThreads = kThreads, kMinBlocks = 1;

  template <class Ctx>
  static VMAMBA_HD void run(const Ctx& ctx, const Args& a, unsigned char* smem) {
    const T* x = static_cast<const T*>(a.x);
    const TB* br = static_cast<const TB*>(a.branch);
    T* s_out = static_cast<T*>(a.s);
    TO* y = static_cast<TO*>(a.y);
    const uint32_t t = ctx.tid(), nt = ctx.nthreads(), P = a.P, G = nt / P, px = t % P, cg = t / P;
    const uint32_t npv = P / VEC, nvec = a.C * npv;
    T* tile = reinterpret_cast<T*>(smem);
    float* red = reinterpret_cast<float*>(smem + size_t(a.C) * P * sizeof(T));
    float* st_mean = red + G * P;
    float* st_rstd = st_mean + P;
    const int64_t total = a.B * a.tiles;
    for (int64_t tt = ctx.block(); tt < total; tt += ctx.nblocks()) {
      const int64_t b = tt / a.tiles;
      const uint32_t p0 = uint32_t(tt % a.tiles) * P;
      const int64_t img = b * a.C * a.HW;
      const float sc = (br != nullptr && a.scale != nullptr) ? a.scale[b] : 1.f;
      // 1. stage the tile (and write s)
#pragma unroll 4  // several tile loads in flight per thread
      for (uint32_t f = t; f < nvec; f += nt) {
        const uint32_t c = f >> a.log2_npv, pv = f & (npv - 1), p = p0 + pv * VEC;
        const bool ok = p < a.HW;
        const int64_t o = img + int64_t(c) * a.HW + p;
        float v[VEC];
        load_floats<T, VEC>(x + o, ok, v);
        if (br != nullptr) {
          float bv[VEC];
          load_floats<TB, VEC>(br + o, ok, bv);
#pragma unroll
          for (int e = 0; e < VEC; ++e) v[e] = round_to<T>(v[e] + sc * bv[e]);
          if (ok) store_floats<T, VEC>(s_out + o, v);
        }
        store_floats<T, VEC>(tile + c * P + pv * VEC, v);
      }
      ctx.sync();
      // 2. per-pixel statistics: channel groups, then a fixed-order sum over the groups
      float acc = 0.f;
      for (uint32_t c = cg; c < a.C; c += G) acc += to_float(tile[c * P + px]);
      red[cg * P + px] = acc;
      ctx.sync();
      if (t < P) {
        float s = 0.f;
        for (uint32_t g = 0; g < G; ++g) s += red[g * P + t];
        st_mean[t] = s * a.inv_c;
      }
      ctx.sync();
      const float m = st_mean[px];
      acc = 0.f;
      for (uint32_t c = cg; c < a.C; c += G) {
        const float d = to_float(tile[c * P + px]) - m;
        acc += d * d;
      }
      red[cg * P + px] = acc;
      ctx.sync();
      if (t < P) {
        float s = 0.f;
        for (uint32_t g = 0; g < G; ++g) s += red[g * P + t];
        const float r = rsqrt_f(s * a.inv_c + a.eps);
        st_rstd[t] = r;
        if (p0 + t < a.HW && a.rstd != nullptr) {  // null in inference (add_layer_norm_infer)
          a.mean[b * a.HW + p0 + t] = st_mean[t];
          a.rstd[b * a.HW + p0 + t] = r;
        }
      }
      ctx.sync();
      // 3. normalise from the tile
      for (uint32_t f = t; f < nvec; f += nt) {
        const uint32_t c = f >> a.log2_npv, pv = f & (npv - 1), p = p0 + pv * VEC;
        if (p >= a.HW) continue;
        float v[VEC], out[VEC];
        load_floats<T, VEC>(tile + c * P + pv * VEC, true, v);
        const float w = a.w[c], bb = a.b != nullptr ? a.b[c] : 0.f;
#pragma unroll
        for (int e = 0; e < VEC; ++e) out[e] = (v[e] - st_mean[pv * VEC + e]) * st_rstd[pv * VEC + e] * w + bb;
        store_floats<TO, VEC>(y + img + int64_t(c) * a.HW + p, out);
      }
      ctx.sync();  // the next tile overwrites the shared tile
    }
  }
};

// ---- backward, channels-last ---------------------------------------------------------------------
// 1 / weight for the backward from the output (layer_norm.h: kMinWeight)
VMAMBA_HD float inv_weight(float w) {
  const float m = w < 0.f ? -w : w;
  return m < kMinWeight ? (w < 0.f ? -1.f / kMinWeight : 1.f / kMinWeight) : 1.f / w;
}

// xhat of one element: (s - mean) * rstd, or from the output y (FY): (y - bias) / weight
template <bool FY>
VMAMBA_HD float xhat_of(float sv, float m, float r, float b, float iw) {
  return FY ? (sv - b) * iw : (sv - m) * r;
}

struct BwdClArgs {
  const void* dy;
  const void* ds;
  const void* s;
  const float* w;
  const float* b;  // with FY only (null: no bias)
  const float* mean;
  const float* rstd;
  const float* scale;
  void* dx;
  void* dbranch;
  float* part;  // (nblocks, C, 2): dweight, dbias partials
  int64_t rows, HW;
  uint32_t C, nvr, tpr;
  float inv_c;
};

// shared memory: red [nthreads / 32][2] for row_sum, then acc [rows per block][C]
// FY: `s` is the output y (TY), xhat = (y - bias) / weight
template <typename T, typename TY, int VEC, bool FY>
struct BwdCl {
  using Args = BwdClArgs;
  using TS = std::conditional_t<FY, TY, T>;
  // two blocks per SM for the from-y vector kernels: their bias and 1 / weight cost one block of occupancy and
  // ~1.4x the time otherwise (reports/logs/2026-12-04_training_memory_H200.md); at width 2 ptxas would spill
  static constexpr int kMaxThreads = kThreads, kMinBlocks = (FY && VEC >= 4) ? 2 : 1;
  static constexpr int kMaxV = kBwdValues / VEC;

  template <class Ctx>
  static VMAMBA_HD void run(const Ctx& ctx, const Args& a, unsigned char* smem) {
    const TY* dy = static_cast<const TY*>(a.dy);
    const T* ds = static_cast<const T*>(a.ds);
    const TS* s = static_cast<const TS*>(a.s);
    T* dx = static_cast<T*>(a.dx);
    T* dbr = static_cast<T*>(a.dbranch);
    const uint32_t t = ctx.tid(), nt = ctx.nthreads(), lane = t & (a.tpr - 1), slot = t / a.tpr, rpb = nt / a.tpr;
    float* red = reinterpret_cast<float*>(smem);
    float* acc = red + (nt / 32) * 2;
    float aw[kMaxV][VEC], ab[kMaxV][VEC];
#pragma unroll
    for (int i = 0; i < kMaxV; ++i) {
#pragma unroll
      for (int e = 0; e < VEC; ++e) aw[i][e] = ab[i][e] = 0.f;
    }
    for (int64_t base = int64_t(ctx.block()) * rpb; base < a.rows; base += int64_t(ctx.nblocks()) * rpb) {
      const int64_t row = base + slot;
      const bool active = row < a.rows;
      const int64_t off = row * a.C;
      const float m = (active && !FY) ? a.mean[row] : 0.f, r = active ? a.rstd[row] : 0.f;
      // s and dy stay packed as loaded (half the registers in 16-bit types); converted where used
      AlignedVec<TS, VEC> sraw[kMaxV];
      AlignedVec<TY, VEC> draw[kMaxV];
      float sums[2] = {0.f, 0.f};
#pragma unroll
      for (int i = 0; i < kMaxV; ++i) {
        const uint32_t vi = lane + uint32_t(i) * a.tpr;
        const bool ok = active && vi < a.nvr;
        const int64_t o = off + int64_t(vi) * VEC;
        if (ok) {
          sraw[i] = load_vec<TS, VEC>(s + o);
          draw[i] = load_vec<TY, VEC>(dy + o);
        } else {
#pragma unroll
          for (int e = 0; e < VEC; ++e) {
            sraw[i].v[e] = from_float<TS>(0.f);
            draw[i].v[e] = from_float<TY>(0.f);
          }
        }
        float wv[VEC], bv[VEC];
        load_floats<float, VEC>(a.w + vi * VEC, ok, wv);
        load_floats<float, VEC>(a.b + vi * VEC, FY && ok && a.b != nullptr, bv);
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          const float d = to_float(draw[i].v[e]), gw = d * wv[e];
          const float xh = xhat_of<FY>(to_float(sraw[i].v[e]), m, r, bv[e], FY ? inv_weight(wv[e]) : 0.f);
          sums[0] += gw;
          sums[1] += gw * xh;
          aw[i][e] += d * xh;
          ab[i][e] += d;
        }
      }
      row_sum(ctx, sums, a.tpr, red);
      const float ca = sums[0] * a.inv_c, cb = sums[1] * a.inv_c;
      const float sc = (dbr != nullptr && a.scale != nullptr && active) ? a.scale[row / a.HW] : 1.f;
#pragma unroll
      for (int i = 0; i < kMaxV; ++i) {
        const uint32_t vi = lane + uint32_t(i) * a.tpr;
        if (!(active && vi < a.nvr)) continue;
        const int64_t o = off + int64_t(vi) * VEC;
        float wv[VEC], bv[VEC], dsv[VEC], g[VEC];
        load_floats<float, VEC>(a.w + vi * VEC, true, wv);
        load_floats<float, VEC>(a.b + vi * VEC, FY && a.b != nullptr, bv);
        load_floats<T, VEC>(ds + o, ds != nullptr, dsv);
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          const float xh = xhat_of<FY>(to_float(sraw[i].v[e]), m, r, bv[e], FY ? inv_weight(wv[e]) : 0.f);
          g[e] = r * (to_float(draw[i].v[e]) * wv[e] - ca - xh * cb) + dsv[e];
        }
        store_floats<T, VEC>(dx + o, g);
        if (dbr != nullptr) {
#pragma unroll
          for (int e = 0; e < VEC; ++e) g[e] *= sc;
          store_floats<T, VEC>(dbr + o, g);
        }
      }
    }
    // the block's partial row: the rpb row slots (same channels per lane) added in slot order
    for (int pass = 0; pass < 2; ++pass) {
#pragma unroll
      for (int i = 0; i < kMaxV; ++i) {
        const uint32_t vi = lane + uint32_t(i) * a.tpr;
        if (vi >= a.nvr) continue;
#pragma unroll
        for (int e = 0; e < VEC; ++e) acc[slot * a.C + vi * VEC + e] = pass == 0 ? aw[i][e] : ab[i][e];
      }
      ctx.sync();
      for (uint32_t c = t; c < a.C; c += nt) {
        float total = 0.f;
        for (uint32_t k = 0; k < rpb; ++k) total += acc[k * a.C + c];
        a.part[(int64_t(ctx.block()) * a.C + c) * 2 + pass] = total;
      }
      ctx.sync();
    }
  }
};

// ---- backward, channels-first --------------------------------------------------------------------
struct BwdCfArgs {
  const void* dy;
  const void* ds;
  const void* s;
  const float* w;
  const float* b;  // with FY only (null: no bias)
  const float* mean;
  const float* rstd;
  const float* scale;
  void* dx;
  void* dbranch;
  float* part;
  int64_t B;
  uint32_t C, HW, P, log2_npv, tiles, cpt, row_s, row_dy;
  float inv_c;
};

// shared memory: s tile [C][row_s bytes], dy tile [C][row_dy bytes], then floats mean [P], rstd [P],
// red [2][G][P], ca [P], cb [P], accw [C], accb [C]
template <typename T, typename TY, int VEC, bool FY>
struct BwdCf {
  using Args = BwdCfArgs;
  using TS = std::conditional_t<FY, TY, T>;  // FY: the s tile holds the output y
  static constexpr int kMaxThreads = kThreads, kMinBlocks = 1;
  static constexpr int Q = 16 / (sizeof(T) > sizeof(TY) ? sizeof(T) : sizeof(TY));  // pixels per chunk read

  template <class Ctx>
  static VMAMBA_HD void run(const Ctx& ctx, const Args& a, unsigned char* smem) {
    const TY* dy = static_cast<const TY*>(a.dy);
    const T* ds = static_cast<const T*>(a.ds);
    const TS* s = static_cast<const TS*>(a.s);
    T* dx = static_cast<T*>(a.dx);
    T* dbr = static_cast<T*>(a.dbranch);
    const uint32_t t = ctx.tid(), nt = ctx.nthreads(), P = a.P, G = nt / P, px = t % P, cg = t / P;
    const uint32_t npv = P / VEC, nvec = a.C * npv;
    unsigned char* s_tile = smem;
    unsigned char* d_tile = smem + size_t(a.C) * a.row_s;
    float* st_mean = reinterpret_cast<float*>(d_tile + size_t(a.C) * a.row_dy);
    float* st_rstd = st_mean + P;
    float* red = st_rstd + P;
    float* ca = red + 2 * G * P;
    float* cb = ca + P;
    float* accw = cb + P;
    float* accb = accw + a.C;
    for (uint32_t c = t; c < a.C; c += nt) accw[c] = accb[c] = 0.f;
    // weight-gradient pass: cpt threads per channel, rounds of nt / cpt channels
    const uint32_t chan = t / a.cpt, seg = t % a.cpt, cpr = nt / a.cpt, rounds = (a.C + cpr - 1) / cpr;
    const int64_t total = a.B * a.tiles;
    for (int64_t tt = ctx.block(); tt < total; tt += ctx.nblocks()) {
      const int64_t b = tt / a.tiles;
      const uint32_t p0 = uint32_t(tt % a.tiles) * P;
      const int64_t img = b * a.C * a.HW;
      // 1. stage s, dy (zeros past the image's last pixel) and the pixels' statistics
#pragma unroll 4  // several tile loads in flight per thread
      for (uint32_t f = t; f < nvec; f += nt) {
        const uint32_t c = f >> a.log2_npv, pv = f & (npv - 1), p = p0 + pv * VEC;
        const bool ok = p < a.HW;
        const int64_t o = img + int64_t(c) * a.HW + p;
        AlignedVec<TS, VEC> sv;
        AlignedVec<TY, VEC> dv;
        if (ok) {
          sv = load_vec<TS, VEC>(s + o);
          dv = load_vec<TY, VEC>(dy + o);
        } else {
#pragma unroll
          for (int e = 0; e < VEC; ++e) {
            sv.v[e] = from_float<TS>(0.f);
            dv.v[e] = from_float<TY>(0.f);
          }
        }
        store_vec<TS, VEC>(reinterpret_cast<TS*>(s_tile + size_t(c) * a.row_s) + pv * VEC, sv);
        store_vec<TY, VEC>(reinterpret_cast<TY*>(d_tile + size_t(c) * a.row_dy) + pv * VEC, dv);
      }
      for (uint32_t q = t; q < P; q += nt) {
        const bool ok = p0 + q < a.HW;
        st_mean[q] = (ok && !FY) ? a.mean[b * a.HW + p0 + q] : 0.f;
        st_rstd[q] = ok ? a.rstd[b * a.HW + p0 + q] : 0.f;
      }
      ctx.sync();
      // 2. per-pixel sums of gw and gw * xhat over the channels
      {
        const float m = st_mean[px], r = st_rstd[px];
        float s0 = 0.f, s1 = 0.f;
        for (uint32_t c = cg; c < a.C; c += G) {
          const float sv = to_float(reinterpret_cast<const TS*>(s_tile + size_t(c) * a.row_s)[px]);
          const float gw = to_float(reinterpret_cast<const TY*>(d_tile + size_t(c) * a.row_dy)[px]) * a.w[c];
          s0 += gw;
          s1 += gw * (FY ? (sv - (a.b != nullptr ? a.b[c] : 0.f)) * inv_weight(a.w[c]) : (sv - m) * r);
        }
        red[cg * P + px] = s0;
        red[(G + cg) * P + px] = s1;
      }
      ctx.sync();
      if (t < P) {
        float s0 = 0.f, s1 = 0.f;
        for (uint32_t g = 0; g < G; ++g) {
          s0 += red[g * P + t];
          s1 += red[(G + g) * P + t];
        }
        ca[t] = s0 * a.inv_c;
        cb[t] = s1 * a.inv_c;
      }
      ctx.sync();
      // 3. dx (and dbranch)
      const float sc = (dbr != nullptr && a.scale != nullptr) ? a.scale[b] : 1.f;
      for (uint32_t f = t; f < nvec; f += nt) {
        const uint32_t c = f >> a.log2_npv, pv = f & (npv - 1), p = p0 + pv * VEC;
        if (p >= a.HW) continue;
        const int64_t o = img + int64_t(c) * a.HW + p;
        float sv[VEC], dv[VEC], dsv[VEC], g[VEC];
        load_floats<TS, VEC>(reinterpret_cast<const TS*>(s_tile + size_t(c) * a.row_s) + pv * VEC, true, sv);
        load_floats<TY, VEC>(reinterpret_cast<const TY*>(d_tile + size_t(c) * a.row_dy) + pv * VEC, true, dv);
        load_floats<T, VEC>(ds + o, ds != nullptr, dsv);
        const float w = a.w[c], bc = (FY && a.b != nullptr) ? a.b[c] : 0.f, iw = FY ? inv_weight(w) : 0.f;
#pragma unroll
        for (int e = 0; e < VEC; ++e) {
          const uint32_t q = pv * VEC + e;
          const float r = st_rstd[q], xh = xhat_of<FY>(sv[e], st_mean[q], r, bc, iw);
          g[e] = r * (dv[e] * w - ca[q] - xh * cb[q]) + dsv[e];
        }
        store_floats<T, VEC>(dx + o, g);
        if (dbr != nullptr) {
#pragma unroll
          for (int e = 0; e < VEC; ++e) g[e] *= sc;
          store_floats<T, VEC>(dbr + o, g);
        }
      }
      // 4. dweight / dbias over the tile's pixels, per channel (reads only: no barrier after step 3)
      for (uint32_t round = 0; round < rounds; ++round) {
        const uint32_t c = round * cpr + chan;
        float v[2] = {0.f, 0.f};
        if (c < a.C) {
          const TS* srow = reinterpret_cast<const TS*>(s_tile + size_t(c) * a.row_s);
          const TY* drow = reinterpret_cast<const TY*>(d_tile + size_t(c) * a.row_dy);
          const float bc = (FY && a.b != nullptr) ? a.b[c] : 0.f, iw = FY ? inv_weight(a.w[c]) : 0.f;
          for (uint32_t k = seg; k < P / Q; k += a.cpt) {
            float sq[Q], dq[Q];
            load_floats<TS, Q>(srow + k * Q, true, sq);
            load_floats<TY, Q>(drow + k * Q, true, dq);
#pragma unroll
            for (int e = 0; e < Q; ++e) {
              const uint32_t q = k * Q + e;
              v[0] += dq[e] * xhat_of<FY>(sq[e], st_mean[q], st_rstd[q], bc, iw);
              v[1] += dq[e];
            }
          }
        }
        for (uint32_t msk = a.cpt >> 1; msk > 0; msk >>= 1) {
          v[0] += ctx.shfl_xor(v[0], int(msk));
          v[1] += ctx.shfl_xor(v[1], int(msk));
        }
        if (c < a.C && seg == 0) {
          accw[c] += v[0];
          accb[c] += v[1];
        }
      }
      ctx.sync();  // the next tile overwrites the shared tiles
    }
    ctx.sync();
    for (uint32_t c = t; c < a.C; c += nt) {
      a.part[(int64_t(ctx.block()) * a.C + c) * 2] = accw[c];
      a.part[(int64_t(ctx.block()) * a.C + c) * 2 + 1] = accb[c];
    }
  }
};

// ---- planning ------------------------------------------------------------------------------------
inline bool aligned_to(const void* p, size_t bytes) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// widest vector (elements) for accesses whose widest element has `base` bytes (16-bit: 8, 2, 1;
// fp32: 4, 1), at most max_vec (0: no cap), dividing n, with every (pointer, element bytes) aligned
inline int pick_vec(int base, int64_t n, int max_vec, std::initializer_list<std::pair<const void*, int>> ptrs) {
  const int cands16[3] = {8, 2, 1}, cands32[2] = {4, 1};
  const int* c = base == 2 ? cands16 : cands32;
  const int nc = base == 2 ? 3 : 2;
  for (int i = 0; i < nc; ++i) {
    const int v = c[i];
    if (max_vec > 0 && v > max_vec) continue;
    if (n % v != 0) continue;
    bool ok = true;
    for (const auto& pe : ptrs) ok = ok && aligned_to(pe.first, size_t(v) * pe.second);
    if (ok) return v;
  }
  return 1;
}

inline uint32_t log2u(uint32_t v) {
  uint32_t l = 0;
  while ((1u << l) < v) ++l;
  return l;
}

// channels-last: the smallest power-of-two group whose threads hold the row in `values` registers
inline void plan_rows(Plan& pl, int64_t C, int values) {
  pl.nvr = int(C / pl.vec);
  const int maxv = values / pl.vec;
  int tpr = 1;
  while ((pl.nvr + tpr - 1) / tpr > maxv) tpr *= 2;
  pl.tpr = tpr;
  pl.nv = (pl.nvr + tpr - 1) / tpr;
  if (tpr > kThreads) pl.error = "C is too large for the channels-last kernels (at most 8192 forward, 4096 backward)";
}

// bytes of a shared-memory row of P elements of `es` bytes: a multiple of 16 whose 16-byte units are
// cpt times an odd number (cpt < 8), so the weight-gradient pass's 16-byte reads (cpt threads per row,
// 8 / cpt rows per quarter warp) hit distinct banks
inline uint32_t padded_row(uint32_t P, int es, uint32_t cpt) {
  uint32_t units = (P * uint32_t(es) + 15) / 16;
  if (cpt < 8) {
    while (units % (2 * cpt) != cpt) ++units;
  }
  return units * 16;
}

inline size_t fwd_cf_smem(int64_t C, uint32_t P, int es) {
  return size_t(C) * P * es + (size_t(kThreads) + 2 * P) * sizeof(float);
}

struct BwdCfShape {
  uint32_t cpt, row_s, row_dy;
  size_t smem;
};

inline BwdCfShape bwd_cf_shape(int64_t C, uint32_t P, int es, int ed, int Q) {
  BwdCfShape sh;
  uint32_t cpt = 1;
  while (cpt * 2 <= 32 && int64_t(cpt * 2) * C <= kThreads && cpt * 2 <= P / uint32_t(Q)) cpt *= 2;
  sh.cpt = cpt;
  sh.row_s = padded_row(P, es, cpt);
  sh.row_dy = padded_row(P, ed, cpt);
  sh.smem = size_t(C) * (sh.row_s + sh.row_dy) + size_t(4) * P * sizeof(float) +
            size_t(2) * kThreads * sizeof(float) + size_t(2) * C * sizeof(float);
  return sh;
}

inline Plan make_fwd_plan(const FwdParams& p) {
  Plan pl;
  pl.threads = kThreads;
  const int es = dtype_size(p.x_dtype), eo = dtype_size(p.y_dtype), eb = dtype_size(branch_dtype_of(p));
  if (p.C < 1) {
    pl.error = "C must be >= 1";
    return pl;
  }
  const int64_t rows = p.B * p.HW;
  if (p.channels_last) {
    pl.vec = pick_vec(es, p.C, p.max_vec, {{p.x, es}, {p.branch, eb}, {p.s, es}, {p.y, eo}, {p.weight, 4}, {p.bias, 4}});
    plan_rows(pl, p.C, kFwdValues);
    if (pl.error != nullptr) return pl;
    const int64_t rpb = kThreads / pl.tpr;
    pl.blocks = std::min<int64_t>((rows + rpb - 1) / rpb, int64_t(p.num_sms) * 16);
    pl.smem = (kThreads / 32) * sizeof(float);
    return pl;
  }
  pl.vec = pick_vec(es, p.HW, p.max_vec, {{p.x, es}, {p.branch, eb}, {p.s, es}, {p.y, eo}});
  const uint32_t pmin = std::max<uint32_t>(uint32_t(pl.vec), 4);
  uint32_t P;
  if (p.tile > 0) {
    P = std::max<uint32_t>(pow2_ceil(uint32_t(p.tile)), pmin);
  } else {
    P = std::max<uint32_t>(std::min<uint32_t>(pow2_ceil(uint32_t(std::min<int64_t>(p.HW, 1 << 20))), kThreads), pmin);
    while (P > pmin && fwd_cf_smem(p.C, P, es) > kFwdSmemBudget) P >>= 1;
  }
  if (P > uint32_t(kThreads)) P = kThreads;
  pl.tile = int(P);
  pl.smem = fwd_cf_smem(p.C, P, es);
  if (pl.smem > kSmemMax) pl.error = "C is too large for the channels-first forward (its smallest tile exceeds shared memory)";
  pl.tiles = int((p.HW + P - 1) / P);
  pl.blocks = std::min<int64_t>(p.B * pl.tiles, int64_t(p.num_sms) * 32);
  return pl;
}

inline Plan make_bwd_plan(const BwdParams& p) {
  Plan pl;
  pl.threads = kThreads;
  // es: x / dx; ed: dy; esv: the saved tensor (s, or y itself with from_y)
  const int es = dtype_size(p.x_dtype), ed = dtype_size(p.dy_dtype), base = std::max(es, ed);
  const int esv = p.from_y ? ed : es;
  if (p.C < 1) {
    pl.error = "C must be >= 1";
    return pl;
  }
  const int64_t rows = p.B * p.HW;
  if (p.channels_last) {
    pl.vec = pick_vec(base, p.C, p.max_vec,
                      {{p.dy, ed}, {p.ds, es}, {p.s, esv}, {p.dx, es}, {p.dbranch, es}, {p.weight, 4},
                       {p.from_y ? p.bias : nullptr, 4}});
    plan_rows(pl, p.C, kBwdValues);
    if (pl.error != nullptr) return pl;
    const int64_t rpb = kThreads / pl.tpr;
    pl.blocks = std::min<int64_t>((rows + rpb - 1) / rpb, int64_t(p.num_sms) * 4);
    if (p.blocks > 0) pl.blocks = std::min<int64_t>(p.blocks, (rows + rpb - 1) / rpb);
    pl.smem = (kThreads / 32) * 2 * sizeof(float) + size_t(rpb) * p.C * sizeof(float);
    pl.part_rows = pl.blocks;
    return pl;
  }
  const int Q = 16 / base;
  pl.vec = pick_vec(base, p.HW, p.max_vec, {{p.dy, ed}, {p.ds, es}, {p.s, esv}, {p.dx, es}, {p.dbranch, es}});
  const uint32_t pmin = std::max<uint32_t>(std::max<uint32_t>(uint32_t(pl.vec), uint32_t(Q)), 8);
  uint32_t P;
  if (p.tile > 0) {
    P = std::max<uint32_t>(pow2_ceil(uint32_t(p.tile)), pmin);
  } else {
    P = std::max<uint32_t>(std::min<uint32_t>(pow2_ceil(uint32_t(std::min<int64_t>(p.HW, 1 << 20))), kThreads), pmin);
    while (P > pmin && bwd_cf_shape(p.C, P, esv, ed, Q).smem > kBwdSmemBudget) P >>= 1;
  }
  if (P > uint32_t(kThreads)) P = kThreads;
  const BwdCfShape sh = bwd_cf_shape(p.C, P, esv, ed, Q);
  pl.tile = int(P);
  pl.cpt = int(sh.cpt);
  pl.row_s = int(sh.row_s);
  pl.row_dy = int(sh.row_dy);
  pl.smem = sh.smem;
  if (pl.smem > kSmemMax) pl.error = "C is too large for the channels-first backward (its smallest tile exceeds shared memory)";
  pl.tiles = int((p.HW + P - 1) / P);
  const int64_t total = p.B * pl.tiles;
  const int64_t per_sm = std::max<int64_t>(1, std::min<int64_t>(8, int64_t(228 * 1024) / int64_t(pl.smem + 1024)));
  pl.blocks = std::min<int64_t>(total, int64_t(p.num_sms) * per_sm);
  if (p.blocks > 0) pl.blocks = std::min<int64_t>(p.blocks, total);
  pl.part_rows = pl.blocks;
  return pl;
}

// ---- typed launchers (Exec: DeviceExec or the tests' EmuExec) ------------------------------------
template <class Exec, typename T, typename TB, typename TO>
cudaError_t run_fwd_to(const Exec& ex, const FwdParams& p, const Plan& pl) {
  const dim3 grid(unsigned(pl.blocks));
  const float inv_c = 1.0f / float(p.C);
  if (p.channels_last) {
    const FwdClArgs a{p.x, p.branch, p.scale, p.weight, p.bias, p.s, p.y, p.mean, p.rstd,
                      p.B * p.HW, p.HW, uint32_t(p.C), uint32_t(pl.nvr), uint32_t(pl.tpr), p.eps, inv_c};
    switch (pl.vec) {
      case 8: if constexpr (sizeof(T) == 2) return ex.template launch<FwdCl<T, TB, TO, 8>>(grid, pl.threads, pl.smem, a); break;
      case 4: if constexpr (sizeof(T) == 4) return ex.template launch<FwdCl<T, TB, TO, 4>>(grid, pl.threads, pl.smem, a); break;
      case 2: if constexpr (sizeof(T) == 2) return ex.template launch<FwdCl<T, TB, TO, 2>>(grid, pl.threads, pl.smem, a); break;
      default: return ex.template launch<FwdCl<T, TB, TO, 1>>(grid, pl.threads, pl.smem, a);
    }
    return cudaErrorInvalidValue;
  }
  const uint32_t P = uint32_t(pl.tile);
  const FwdCfArgs a{p.x, p.branch, p.scale, p.weight, p.bias, p.s, p.y, p.mean, p.rstd, p.B, uint32_t(p.C),
                    uint32_t(p.HW), P, log2u(P / uint32_t(pl.vec)), uint32_t(pl.tiles), p.eps, inv_c};
  switch (pl.vec) {
    case 8: if constexpr (sizeof(T) == 2) return ex.template launch<FwdCf<T, TB, TO, 8>>(grid, pl.threads, pl.smem, a); break;
    case 4: if constexpr (sizeof(T) == 4) return ex.template launch<FwdCf<T, TB, TO, 4>>(grid, pl.threads, pl.smem, a); break;
    case 2: if constexpr (sizeof(T) == 2) return ex.template launch<FwdCf<T, TB, TO, 2>>(grid, pl.threads, pl.smem, a); break;
    default: return ex.template launch<FwdCf<T, TB, TO, 1>>(grid, pl.threads, pl.smem, a);
  }
  return cudaErrorInvalidValue;
}

template <class Exec, typename T, typename TB>
cudaError_t run_fwd_branch(const Exec& ex, const FwdParams& p, const Plan& pl) {
  switch (p.y_dtype) {
    case kF32: return run_fwd_to<Exec, T, TB, float>(ex, p, pl);
    case kF16: return run_fwd_to<Exec, T, TB, __half>(ex, p, pl);
    case kBF16: return run_fwd_to<Exec, T, TB, __nv_bfloat16>(ex, p, pl);
    default: return cudaErrorInvalidValue;
  }
}

// a branch of x's dtype, or (float32 x only) a 16-bit branch read as is: the autocast residual stream
// adds the 16-bit block output without a conversion pass
template <class Exec, typename T>
cudaError_t run_fwd(const Exec& ex, const FwdParams& p, const Plan& pl) {
  const int bd = branch_dtype_of(p);
  if (bd == p.x_dtype) return run_fwd_branch<Exec, T, T>(ex, p, pl);
  if constexpr (sizeof(T) == 4) {
    if (bd == kF16) return run_fwd_branch<Exec, T, __half>(ex, p, pl);
    if (bd == kBF16) return run_fwd_branch<Exec, T, __nv_bfloat16>(ex, p, pl);
  }
  return cudaErrorInvalidValue;
}

template <class Exec, typename T, typename TY, bool FY>
cudaError_t run_bwd_from(const Exec& ex, const BwdParams& p, const Plan& pl) {
  constexpr bool wide = sizeof(T) == 4 || sizeof(TY) == 4;  // vectors of 4 (16 bytes of fp32), else 8
  const dim3 grid(unsigned(pl.blocks));
  const float inv_c = 1.0f / float(p.C);
  if (p.channels_last) {
    const BwdClArgs a{p.dy, p.ds, p.s, p.weight, p.from_y ? p.bias : nullptr, p.mean, p.rstd, p.scale, p.dx, p.dbranch, p.part,
                      p.B * p.HW, p.HW, uint32_t(p.C), uint32_t(pl.nvr), uint32_t(pl.tpr), inv_c};
    switch (pl.vec) {
      case 8: if constexpr (!wide) return ex.template launch<BwdCl<T, TY, 8, FY>>(grid, pl.threads, pl.smem, a); break;
      case 4: if constexpr (wide) return ex.template launch<BwdCl<T, TY, 4, FY>>(grid, pl.threads, pl.smem, a); break;
      case 2: if constexpr (!wide) return ex.template launch<BwdCl<T, TY, 2, FY>>(grid, pl.threads, pl.smem, a); break;
      default: return ex.template launch<BwdCl<T, TY, 1, FY>>(grid, pl.threads, pl.smem, a);
    }
    return cudaErrorInvalidValue;
  }
  const uint32_t P = uint32_t(pl.tile);
  const BwdCfArgs a{p.dy, p.ds, p.s, p.weight, p.from_y ? p.bias : nullptr, p.mean, p.rstd, p.scale, p.dx, p.dbranch, p.part, p.B,
                    uint32_t(p.C), uint32_t(p.HW), P, log2u(P / uint32_t(pl.vec)), uint32_t(pl.tiles),
                    uint32_t(pl.cpt), uint32_t(pl.row_s), uint32_t(pl.row_dy), inv_c};
  switch (pl.vec) {
    case 8: if constexpr (!wide) return ex.template launch<BwdCf<T, TY, 8, FY>>(grid, pl.threads, pl.smem, a); break;
    case 4: if constexpr (wide) return ex.template launch<BwdCf<T, TY, 4, FY>>(grid, pl.threads, pl.smem, a); break;
    case 2: if constexpr (!wide) return ex.template launch<BwdCf<T, TY, 2, FY>>(grid, pl.threads, pl.smem, a); break;
    default: return ex.template launch<BwdCf<T, TY, 1, FY>>(grid, pl.threads, pl.smem, a);
  }
  return cudaErrorInvalidValue;
}

template <class Exec, typename T, typename TY>
cudaError_t run_bwd_dy(const Exec& ex, const BwdParams& p, const Plan& pl) {
  return p.from_y ? run_bwd_from<Exec, T, TY, true>(ex, p, pl) : run_bwd_from<Exec, T, TY, false>(ex, p, pl);
}

template <class Exec, typename T>
cudaError_t run_bwd(const Exec& ex, const BwdParams& p, const Plan& pl) {
  switch (p.dy_dtype) {
    case kF32: return run_bwd_dy<Exec, T, float>(ex, p, pl);
    case kF16: return run_bwd_dy<Exec, T, __half>(ex, p, pl);
    case kBF16: return run_bwd_dy<Exec, T, __nv_bfloat16>(ex, p, pl);
    default: return cudaErrorInvalidValue;
  }
}

// dweight (and dbias) from the partial rows, in a fixed order
template <class Exec>
cudaError_t run_finish(const Exec& ex, const BwdParams& p, const Plan& pl) {
  const ColSumArgs a{p.part, pl.part_rows, uint32_t(2 * p.C), 2u, p.dweight, p.dbias};
  return ex.template launch<ColSum>(dim3(unsigned((2 * p.C + ColSum::kCols - 1) / ColSum::kCols)), ColSum::kMaxThreads,
                                    ColSum::kSmem, a);
}

}  // namespace ln
}  // namespace vmamba
