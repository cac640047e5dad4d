// Kernel bodies of the fused SS2D core (see ss2d_core.h for the work split) and their launch sequence,
// written once for two executors (../common/thread_ctx.cuh): the GPU (DeviceExec, ss2d_core_kernels.cu)
// and the CPU emulator of tests/cuda_emu (EmuExec), which runs these very bodies one fiber per CUDA
// thread so that the tests check them on a machine without a GPU. Only CUDA headers. The scan math
// (softplus with threshold 20, warp scans of affine maps): ss2d_math.cuh.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

#include "../common/thread_ctx.cuh"
#include "ss2d_math.cuh"
#include "ss2d_core.h"

// Resident warps per SM the bodies are compiled for (__launch_bounds__' second argument = this / warps per
// block, which caps registers at 65536 / (32 * this)). Forward: 16 (~110 registers, no cap in effect: two
// 8-warp blocks fit). Backward: 16 caps it at 128 registers where it would take ~180 (8 warps per SM): ptxas
// spills ~100 bytes for that, and two 8-warp blocks fit where shared memory allows (stages 2-3 of VMamba-T).
// Timing knobs for the GPU (e.g. -DVMAMBA_SS2D_BWD_WARPS_PER_SM=8: no cap).
#ifndef VMAMBA_SS2D_FWD_WARPS_PER_SM
#define VMAMBA_SS2D_FWD_WARPS_PER_SM 16
#endif
#ifndef VMAMBA_SS2D_BWD_WARPS_PER_SM
#define VMAMBA_SS2D_BWD_WARPS_PER_SM 16
#endif

namespace vmamba {
namespace ss2d {
namespace {

// the accumulator rows: one float of padding after every 32 (lanes update scattered pixels one at a time)
VMAMBA_HD int pad32(int i) { return i + (i >> 5); }
// row length of the per-channel route accumulator in shared memory (pad32 of every pixel fits)
VMAMBA_HD int64_t acc_stride(int64_t L) { return L + (L >> 5) + 1; }
// the staging rows: 4 floats of padding after every 32 steps, so that a lane's kItems = 8 steps (t0 = 8 * lane)
// are contiguous and 16-byte aligned (two 16-byte accesses) and the quarter-warps of such an access hit
// distinct banks, while one thread per step still writes consecutive words
VMAMBA_HD int padv(int i) { return i + ((i >> 5) << 2); }

// the lane's 8 staged values at q = row + padv(t0), t0 % 8 == 0 (checked on the CPU emulator)
VMAMBA_HD void ld8(const float* q, float (&v)[kItems]) {
#ifndef __CUDA_ARCH__
  if (reinterpret_cast<uintptr_t>(q) & 15) std::abort();
#endif
  const float4 a = reinterpret_cast<const float4*>(q)[0], b = reinterpret_cast<const float4*>(q)[1];
  v[0] = a.x; v[1] = a.y; v[2] = a.z; v[3] = a.w;
  v[4] = b.x; v[5] = b.y; v[6] = b.z; v[7] = b.w;
}

VMAMBA_HD void st8(float* q, const float (&v)[kItems]) {
#ifndef __CUDA_ARCH__
  if (reinterpret_cast<uintptr_t>(q) & 15) std::abort();
#endif
  reinterpret_cast<float4*>(q)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(q)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

// element i of a tensor of runtime dtype `dt`, as float (the dtype is block-uniform: no divergence)
VMAMBA_HD float ldf(const void* p, int dt, int64_t i) {
  if (dt == kF32) return static_cast<const float*>(p)[i];
  if (dt == kF16) return to_float(static_cast<const __half*>(p)[i]);
  return to_float(static_cast<const __nv_bfloat16*>(p)[i]);
}

// n <= 8 consecutive elements from element i, as floats (the rest 0): one dtype switch for the batch, so
// the loads are independent and in flight together (a loop of ldf would wait on each)
template <typename T>
VMAMBA_HD void ld_run8(const T* q, int n, float (&v)[8]) {
#pragma unroll
  for (int j = 0; j < 8; ++j) v[j] = j < n ? to_float(q[j]) : 0.f;
}

VMAMBA_HD void ldf8(const void* p, int dt, int64_t i, int n, float (&v)[8]) {
  if (dt == kF32) ld_run8(static_cast<const float*>(p) + i, n, v);
  else if (dt == kF16) ld_run8(static_cast<const __half*>(p) + i, n, v);
  else ld_run8(static_cast<const __nv_bfloat16*>(p) + i, n, v);
}

VMAMBA_HD void stf(void* p, int dt, int64_t i, float v) {
  if (dt == kF32) static_cast<float*>(p)[i] = v;
  else if (dt == kF16) static_cast<__half*>(p)[i] = from_float<__half>(v);
  else static_cast<__nv_bfloat16*>(p)[i] = from_float<__nv_bfloat16>(v);
}

// the pixel (row-major number h * W + w) that a route of this kind visits at step l
// (reference/cross_scan.py route_index: column-major position q = w * H + h)
// (32-bit: L < 2^31, checked by the host; the division by H is a multiply-high)
VMAMBA_HD int route_pixel(int kind, int l, const FastDivmod& h_div, int W, int L) {
  if (kind >= kRowRev) l = L - 1 - l;
  if (kind & 1) {
    uint32_t w, h;
    h_div.divmod(uint32_t(l), w, h);
    return int(h) * W + int(w);
  }
  return l;
}

}  // namespace

// Shared memory of a block, in floats, each region a multiple of 4 floats (16-byte aligned starts):
//   acc  [W][acc_stride(L)]   route accumulator of y (forward) / du (backward), when smem_acc
//   x    [C][kPad]            the chunk's xdbl values (dts, B, C) per step
//   g    [C][kPad]            backward: the tile's gradient of the chunk's xdbl values
//   dd, rB, rC [W][kPad]      backward: ddelta; per-warp dB / dC terms
//   pix  [kPad] (int)         each step's pixel, -1 past the map
//   w    [W][R]               dt_w of each warp's channel for the current route
//   dtw  [W][R]               backward: the route's ddt_w of each warp's channel
// (x and dy are read by each lane at its own steps' pixels, straight into registers: a channel's values are
// no warp's but its own)
inline VMAMBA_HOST_DEVICE size_t round4(size_t n) { return (n + 3) & ~size_t(3); }

inline VMAMBA_HOST_DEVICE size_t smem_floats(bool bwd, int W, int64_t L, int C, int R, bool smem_acc) {
  size_t n = size_t(C) * kPad + kPad + round4(size_t(W) * R);
  if (bwd) n += size_t(C) * kPad + 3 * size_t(W) * kPad + round4(size_t(W) * R);
  if (smem_acc) n += round4(size_t(W) * size_t(acc_stride(L)));
  return n;
}

namespace {

struct Smem {
  float *acc, *x, *w, *g, *dd, *rB, *rC, *dtw;
  int* pix;
};

VMAMBA_HD Smem carve(unsigned char* raw, bool bwd, int W, int64_t L, int C, int R, bool smem_acc) {
  Smem s{};
  float* q = reinterpret_cast<float*>(raw);
  if (smem_acc) { s.acc = q; q += round4(size_t(W) * size_t(acc_stride(L))); }
  s.x = q; q += size_t(C) * kPad;
  if (bwd) {
    s.g = q; q += size_t(C) * kPad;
    s.dd = q; q += size_t(W) * kPad;
    s.rB = q; q += size_t(W) * kPad;
    s.rC = q; q += size_t(W) * kPad;
  }
  s.pix = reinterpret_cast<int*>(q); q += kPad;
  s.w = q; q += round4(size_t(W) * R);
  if (bwd) { s.dtw = q; q += round4(size_t(W) * R); }
  return s;
}

// Stage chunk c of route k for the tile: the pixel of every step and its xdbl row (dt terms, B, C: shared by
// the tile's channels) as fp32; zeros past the map.
template <int W, class Ctx>
VMAMBA_HD void stage(const Ctx& ctx, const Common& p, const Smem& s, int64_t b, int k, int64_t c) {
  for (int t = int(ctx.tid()); t < kChunk; t += W * 32) {
    const int pt = padv(t);
    const int64_t l = c * kChunk + t;
    if (l < p.L) {
      const int64_t pix = route_pixel(p.kinds[k], int(l), p.h_div, int(p.W), int(p.L));
      s.pix[pt] = int(pix);
      const int64_t xb = ((b * p.L + pix) * p.K + k) * p.C;
      for (int c0 = 0; c0 < p.C; c0 += 8) {
        float v[8];
        const int n = p.C - c0 < 8 ? p.C - c0 : 8;
        ldf8(p.xdbl, p.xdbl_dtype, xb + c0, n, v);
#pragma unroll
        for (int j = 0; j < 8; ++j)
          if (j < n) s.x[(c0 + j) * kPad + pt] = v[j];
      }
    } else {
      s.pix[pt] = -1;
      for (int cc = 0; cc < p.C; ++cc) s.x[cc * kPad + pt] = 0.f;
    }
  }
}

// the pixels of the lane's steps of chunk c on route k (-1 past the map): one division for the lane, then
// its consecutive steps walk the route (a column-major position q = w * H + h moves by +-1 per step)
VMAMBA_HD void lane_pixels(const Common& p, int k, int64_t c, int t0, int (&pix)[kItems]) {
  const int kind = p.kinds[k];
  const int64_t l0 = c * kChunk + t0;
  const int L = int(p.L), W = int(p.W), H = int(p.H);
  const bool rev = kind >= kRowRev;
  if (l0 >= p.L) {
#pragma unroll
    for (int i = 0; i < kItems; ++i) pix[i] = -1;
  } else if (!(kind & 1)) {
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int l = int(l0) + i;
      pix[i] = l < L ? (rev ? L - 1 - l : l) : -1;
    }
  } else {
    uint32_t w, h;
    p.h_div.divmod(uint32_t(rev ? L - 1 - int(l0) : int(l0)), w, h);
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      pix[i] = int(l0) + i < L ? int(h) * W + int(w) : -1;
      // the next step (values past the map are never used)
      if (!rev) {
        if (++h == uint32_t(H)) { h = 0; ++w; }
      } else {
        if (h == 0) { h = uint32_t(H) - 1; --w; } else { --h; }
      }
    }
  }
}

template <typename T>
VMAMBA_HD void lane_load_t(const Common& p, const T* src, int64_t b, int64_t d, bool active, const int (&pix)[kItems],
                           float (&v)[kItems]) {
  // x's layout: element (b, d, pix) = base + pix * stride
  const int64_t base = p.channels_last ? b * p.L * p.D + d : (b * p.D + d) * p.L;
  const int64_t stride = p.channels_last ? p.D : 1;
#pragma unroll
  for (int i = 0; i < kItems; ++i) v[i] = (active && pix[i] >= 0) ? to_float(src[base + pix[i] * stride]) : 0.f;
}

VMAMBA_HD void lane_load(const Common& p, const void* src, int dt, int64_t b, int64_t d, bool active,
                         const int (&pix)[kItems], float (&v)[kItems]) {
  if (dt == kF32) lane_load_t(p, static_cast<const float*>(src), b, d, active, pix, v);
  else if (dt == kF16) lane_load_t(p, static_cast<const __half*>(src), b, d, active, pix, v);
  else lane_load_t(p, static_cast<const __nv_bfloat16*>(src), b, d, active, pix, v);
}

// Per-route constants of a warp's channel: its dt_w row into shared memory, A of state n in lane n
// (natural and log2-scaled), D and delta_bias. Inactive warps (channel past D) get zeros.
struct RouteConst {
  float Al = 0.f, An = 0.f, Dv = 0.f, bias = 0.f;
};

VMAMBA_HD RouteConst route_const(const Common& p, const Smem& s, int warp, int lane, int64_t d, bool active, int k) {
  RouteConst rc;
  const int64_t kd = int64_t(k) * p.D + d;
  for (int r = lane; r < p.R; r += 32) s.w[warp * p.R + r] = active ? ldf(p.dt_w, p.w_dtype, kd * p.R + r) : 0.f;
  if (active) {
    if (lane < p.N) {
      rc.An = p.A[kd * p.N + lane];
      rc.Al = rc.An * kLog2e;
    }
    rc.Dv = p.Dp ? p.Dp[kd] : 0.f;
    rc.bias = p.bias ? p.bias[kd] : 0.f;
  }
  return rc;
}

// delta (after bias and softplus; 0 on padding steps) and the raw softplus input of the lane's steps
VMAMBA_HD void lane_delta(const Common& p, const Smem& s, int warp, int t0, int nv, const RouteConst& rc,
                          float (&dt)[kItems], float (&vv)[kItems]) {
#pragma unroll
  for (int i = 0; i < kItems; ++i) vv[i] = rc.bias;
  for (int r = 0; r < p.R; ++r) {
    const float wr = s.w[warp * p.R + r];
    float xr[kItems];
    ld8(s.x + r * kPad + padv(t0), xr);
#pragma unroll
    for (int i = 0; i < kItems; ++i) vv[i] = fmaf(wr, xr[i], vv[i]);
  }
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    // padding steps get dt = 0: the identity map, so they never touch the state
    dt[i] = i < nv ? (p.softplus ? softplus20(vv[i]) : vv[i]) : 0.f;
  }
}

// the lane's valid steps of chunk c (0..kItems)
VMAMBA_HD int lane_steps(int64_t L, int64_t c, int t0) {
  const int64_t r = L - (c * kChunk + t0);
  return r <= 0 ? 0 : (r >= kItems ? kItems : int(r));
}

// one state's affine maps of the lane's steps composed over the warp: the map entering the lane
// (ea, eb) and the chunk's whole map (ta, tb)
template <class Ctx>
VMAMBA_HD void chunk_maps(const Ctx& ctx, const float (&a)[kItems], const float (&bx)[kItems], int lane, float& ea,
                          float& eb, float& ta, float& tb) {
  float ra = 1.f, rb = 0.f;
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    ra *= a[i];
    rb = fmaf(a[i], rb, bx[i]);
  }
  ctx_scan_up(ctx, ra, rb, lane);
  ea = ctx.shfl_up(ra, 1);
  eb = ctx.shfl_up(rb, 1);
  if (lane == 0) { ea = 1.f; eb = 0.f; }
  ta = ctx.shfl_idx(ra, 31);
  tb = ctx.shfl_idx(rb, 31);
}

// the route accumulator of a warp's channel: shared memory (padded pixel index) or the global scratch
struct Acc {
  float* base;
  bool smem;
  VMAMBA_HD float& at(int64_t pix) const { return smem ? base[pad32(int(pix))] : base[pix]; }
};

VMAMBA_HD Acc warp_acc(const Common& p, const Smem& s, int warp, int64_t b, int64_t d) {
  if (p.smem_acc) return Acc{s.acc + size_t(warp) * size_t(acc_stride(p.L)), true};
  return Acc{p.acc_global + (b * p.D + d) * p.L, false};
}

// write the tile's accumulated map into `out` (x's layout, dtype out_dtype)
template <int W, class Ctx>
VMAMBA_HD void write_tile(const Ctx& ctx, const Common& p, const Smem& s, int64_t b, int64_t tile, void* out,
                          int out_dtype) {
  const int64_t L = p.L;
  if (!p.channels_last) {
    for (int w = 0; w < W; ++w) {
      const int64_t d = tile * W + w;
      if (d >= p.D) break;
      const Acc acc = warp_acc(p, s, w, b, d);
      for (int64_t pix = ctx.tid(); pix < L; pix += W * 32) stf(out, out_dtype, (b * p.D + d) * L + pix, acc.at(pix));
    }
  } else {
    // consecutive threads: consecutive channels of a pixel, then the next pixel
    for (int64_t e = ctx.tid(); e < L * W; e += W * 32) {
      const int64_t pix = e / W;
      const int w = int(e - pix * W);
      const int64_t d = tile * W + w;
      if (d < p.D) stf(out, out_dtype, (b * L + pix) * p.D + d, warp_acc(p, s, w, b, d).at(pix));
    }
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Forward: block = (batch b, tile); grid = batch * ntiles.
template <int W>
struct FwdBody {
  using Args = FwdParams;
  static constexpr int kMaxThreads = W * 32, kMinBlocks = VMAMBA_SS2D_FWD_WARPS_PER_SM / W;

  template <class Ctx>
  static VMAMBA_HD void run(const Ctx& ctx, const Args& p, unsigned char* smem) {
    const Smem s = carve(smem, false, W, p.L, p.C, p.R, p.smem_acc);
    const int warp = int(ctx.tid()) >> 5, lane = int(ctx.tid()) & 31;
    const int64_t b = int64_t(ctx.block()) / p.ntiles, tile = int64_t(ctx.block()) % p.ntiles;
    const int64_t d = tile * W + warp;
    const bool active = d < p.D;
    const int64_t dc = active ? d : 0;
    const int64_t nchunks = (p.L + kChunk - 1) / kChunk;
    const int t0 = lane * kItems;
    const int R = p.R, N = p.N;
    const Acc acc = warp_acc(p, s, warp, b, dc);

    for (int k = 0; k < p.K; ++k) {
      const RouteConst rc = route_const(p, s, warp, lane, dc, active, k);
      float carry = 0.f;  // lane n: state n entering the chunk
      for (int64_t c = 0; c < nchunks; ++c) {
        int pix[kItems];
        float dt[kItems], vv[kItems], uv[kItems], y[kItems];
        lane_pixels(p, k, c, t0, pix);
        lane_load(p, p.x, p.x_dtype, b, dc, active, pix, uv);
        stage<W>(ctx, p, s, b, k, c);
        ctx.sync();
        const int nv = active ? lane_steps(p.L, c, t0) : 0;
        lane_delta(p, s, warp, t0, nv, rc, dt, vv);
#pragma unroll
        for (int i = 0; i < kItems; ++i) y[i] = rc.Dv * uv[i];
#pragma unroll 1
        for (int n = 0; n < N; ++n) {
          const float Al = ctx.shfl_idx(rc.Al, n);
          float a[kItems], bx[kItems], Bv[kItems], Cv[kItems];
          ld8(s.x + (R + n) * kPad + padv(t0), Bv);
          ld8(s.x + (R + N + n) * kPad + padv(t0), Cv);
#pragma unroll
          for (int i = 0; i < kItems; ++i) {
            a[i] = exp2f(dt[i] * Al);
            bx[i] = dt[i] * uv[i] * Bv[i];
          }
          float ea, eb, ta, tb;
          chunk_maps(ctx, a, bx, lane, ea, eb, ta, tb);
          const float cin = ctx.shfl_idx(carry, n);
          float xs = fmaf(ea, cin, eb);
#pragma unroll
          for (int i = 0; i < kItems; ++i) {
            xs = fmaf(a[i], xs, bx[i]);
            y[i] = fmaf(Cv[i], xs, y[i]);
          }
          if (lane == n) carry = fmaf(ta, cin, tb);
        }
        // route 0 stores, later routes add (every route visits every pixel once): a fixed order
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          if (i < nv) {
            float& dst = acc.at(pix[i]);
            dst = k == 0 ? y[i] : dst + y[i];
          }
        }
        ctx.sync();  // the staging buffers are refilled next; acc complete for the final write
      }
    }
    write_tile<W>(ctx, p, s, b, tile, p.out, p.out_dtype);
  }
};

// ------------------------------------------------------------------------------------------------
// Backward: block = (batch b, split s); it walks tiles s, s + S, ... (rounds).
template <int W>
struct BwdBody {
  using Args = BwdParams;
  static constexpr int kMaxThreads = W * 32, kMinBlocks = VMAMBA_SS2D_BWD_WARPS_PER_SM / W;

  template <class Ctx>
  static VMAMBA_HD void run(const Ctx& ctx, const Args& p, unsigned char* smem) {
    const Smem s = carve(smem, true, W, p.L, p.C, p.R, p.smem_acc);
    const int warp = int(ctx.tid()) >> 5, lane = int(ctx.tid()) & 31;
    const int64_t b = int64_t(ctx.block()) / p.S;
    const int split = int(int64_t(ctx.block()) % p.S);
    const int64_t L = p.L, nchunks = (L + kChunk - 1) / kChunk;
    const int t0 = lane * kItems;
    const int R = p.R, N = p.N, C = p.C, K = p.K;
    const int64_t KD = int64_t(K) * p.D;
    float* part_x = p.part_xdbl + int64_t(split) * p.batch * L * K * C;

    int round = 0;
    for (int64_t tile = split; tile < p.ntiles; tile += p.S, ++round) {
      const int64_t d = tile * W + warp;
      const bool active = d < p.D;
      const int64_t dc = active ? d : 0;
      const Acc acc = warp_acc(p, s, warp, b, dc);
      float* aux = p.aux + (b * p.D + dc) * nchunks * N;

      for (int k = 0; k < K; ++k) {
        const RouteConst rc = route_const(p, s, warp, lane, dc, active, k);
        for (int r = lane; r < R; r += 32) s.dtw[warp * R + r] = 0.f;

        // pass 1: the state entering every chunk (lane 0 writes it and later reads it back)
        {
          float carry = 0.f;
          for (int64_t c = 0; c < nchunks; ++c) {
            int pix[kItems];
            float dt[kItems], vv[kItems], uv[kItems];
            lane_pixels(p, k, c, t0, pix);
            lane_load(p, p.x, p.x_dtype, b, dc, active, pix, uv);
            stage<W>(ctx, p, s, b, k, c);
            ctx.sync();
            const int nv = active ? lane_steps(L, c, t0) : 0;
            lane_delta(p, s, warp, t0, nv, rc, dt, vv);
#pragma unroll 1
            for (int n = 0; n < N; ++n) {
              const float Al = ctx.shfl_idx(rc.Al, n);
              float a[kItems], bx[kItems], Bv[kItems];
              ld8(s.x + (R + n) * kPad + padv(t0), Bv);
#pragma unroll
              for (int i = 0; i < kItems; ++i) {
                a[i] = exp2f(dt[i] * Al);
                bx[i] = dt[i] * uv[i] * Bv[i];
              }
              float ea, eb, ta, tb;
              chunk_maps(ctx, a, bx, lane, ea, eb, ta, tb);
              const float cin = ctx.shfl_idx(carry, n);
              if (lane == 0 && active) aux[c * N + n] = cin;
              if (lane == n) carry = fmaf(ta, cin, tb);
            }
            ctx.sync();
          }
        }

        // pass 2: chunks in reverse, adjoint scan
        float gcarry = 0.f;  // lane n: a_t g_t of state n at the first step after the chunk
        float dA_acc = 0.f;  // lane n: dA of state n
        float dD_acc = 0.f, dbias_acc = 0.f;
        for (int64_t c = nchunks - 1; c >= 0; --c) {
          int pix[kItems];
          float dt[kItems], vv[kItems], uv[kItems], dyv[kItems], gu[kItems], gdt[kItems];
          lane_pixels(p, k, c, t0, pix);
          lane_load(p, p.x, p.x_dtype, b, dc, active, pix, uv);
          lane_load(p, p.dy, p.dy_dtype, b, dc, active, pix, dyv);
          stage<W>(ctx, p, s, b, k, c);
          ctx.sync();
          const int nv = active ? lane_steps(L, c, t0) : 0;
          lane_delta(p, s, warp, t0, nv, rc, dt, vv);
#pragma unroll
          for (int i = 0; i < kItems; ++i) {
            gu[i] = rc.Dv * dyv[i];
            gdt[i] = 0.f;
          }
#pragma unroll 1
          for (int n = 0; n < N; ++n) {
            const float Al = ctx.shfl_idx(rc.Al, n);
            const float An = ctx.shfl_idx(rc.An, n);
            float a[kItems], bx[kItems], h[kItems], Bv[kItems], Cv[kItems];
            ld8(s.x + (R + n) * kPad + padv(t0), Bv);
            ld8(s.x + (R + N + n) * kPad + padv(t0), Cv);
#pragma unroll
            for (int i = 0; i < kItems; ++i) {
              a[i] = exp2f(dt[i] * Al);
              bx[i] = dt[i] * uv[i] * Bv[i];
            }
            // forward states of this chunk from the saved carry: h[i] = state before step i
            {
              float ea, eb, ta, tb;
              chunk_maps(ctx, a, bx, lane, ea, eb, ta, tb);
              const float h0 = ctx.shfl_idx((lane == 0 && active) ? aux[c * N + n] : 0.f, 0);
              float xs = fmaf(ea, h0, eb);
#pragma unroll
              for (int i = 0; i < kItems; ++i) {
                h[i] = xs;
                xs = fmaf(a[i], xs, bx[i]);
              }
            }
            // adjoint: g_t = C_t dy_t + w_{t+1}, w_t = a_t g_t  =>  w_t = a_t w_{t+1} + a_t C_t dy_t
            float qa = 1.f, qb = 0.f;
#pragma unroll
            for (int i = kItems - 1; i >= 0; --i) {
              qb = a[i] * fmaf(Cv[i], dyv[i], qb);
              qa *= a[i];
            }
            ctx_scan_down(ctx, qa, qb, lane);
            float na = ctx.shfl_down(qa, 1), nb = ctx.shfl_down(qb, 1);
            if (lane == 31) { na = 1.f; nb = 0.f; }
            const float ta = ctx.shfl_idx(qa, 0), tb = ctx.shfl_idx(qb, 0);
            const float gin = ctx.shfl_idx(gcarry, n);
            if (lane == n) gcarry = fmaf(ta, gin, tb);
            float wv = fmaf(na, gin, nb);
            float dAn = 0.f;
#pragma unroll
            for (int i = kItems - 1; i >= 0; --i) {
              const float gi = fmaf(Cv[i], dyv[i], wv);
              wv = a[i] * gi;
              const float dtu = dt[i] * uv[i];
              const float hcur = fmaf(a[i], h[i], dtu * Bv[i]);
              Cv[i] = dyv[i] * hcur;  // Cv[i] and bx[i] are dead from here: they hold dC and dB
              bx[i] = gi * dtu;
              gu[i] = fmaf(gi * dt[i], Bv[i], gu[i]);
              const float gah = gi * a[i] * h[i];
              gdt[i] = fmaf(gi * Bv[i], uv[i], fmaf(An, gah, gdt[i]));
              dAn = fmaf(dt[i], gah, dAn);
            }
            st8(s.rB + warp * kPad + padv(t0), bx);
            st8(s.rC + warp * kPad + padv(t0), Cv);
            dAn = ctx.shfl_idx(ctx_sum_first(ctx, dAn, lane), 0);
            if (lane == n) dA_acc += dAn;
            ctx.sync();
            // dB, dC of the chunk: the tile's warps summed in order
            for (int t = int(ctx.tid()); t < kChunk; t += W * 32) {
              const int pt = padv(t);
              float sb = 0.f, sc = 0.f;
#pragma unroll
              for (int w = 0; w < W; ++w) {
                sb += s.rB[w * kPad + pt];
                sc += s.rC[w * kPad + pt];
              }
              s.g[(R + n) * kPad + pt] = sb;
              s.g[(R + N + n) * kPad + pt] = sc;
            }
            ctx.sync();
          }
          float dd[kItems];
#pragma unroll
          for (int i = 0; i < kItems; ++i) {
            float g = gdt[i];
            if (p.softplus && vv[i] <= 20.f) g *= 1.f / (1.f + exp_f(-vv[i]));
            dd[i] = i < nv ? g : 0.f;
            if (i < nv) {
              dD_acc = fmaf(dyv[i], uv[i], dD_acc);
              dbias_acc += dd[i];
              float& dst = acc.at(pix[i]);
              dst = k == 0 ? gu[i] : dst + gu[i];
            }
          }
          st8(s.dd + warp * kPad + padv(t0), dd);
          // ddt_w of this channel: sum over the chunk's steps of ddelta * dts (a fixed order)
          for (int r = 0; r < R; ++r) {
            float part = 0.f, xr[kItems];
            ld8(s.x + r * kPad + padv(t0), xr);
#pragma unroll
            for (int i = 0; i < kItems; ++i) part = fmaf(dd[i], xr[i], part);
            part = ctx_sum_first(ctx, part, lane);
            if (lane == 0) s.dtw[warp * R + r] += part;
          }
          ctx.sync();
          // d(dts) of the chunk = sum over the tile's channels of dt_w * ddelta; then the chunk's gradient
          // rows go to this split's slice at their pixel (round 0 stores, later rounds add)
          for (int t = int(ctx.tid()); t < kChunk; t += W * 32) {
            const int pt = padv(t);
            const int pix = s.pix[pt];
            if (pix < 0) continue;
            for (int r = 0; r < R; ++r) {
              float g = 0.f;
#pragma unroll
              for (int w = 0; w < W; ++w) g = fmaf(s.w[w * R + r], s.dd[w * kPad + pt], g);
              s.g[r * kPad + pt] = g;
            }
            float* dst = part_x + ((b * L + pix) * K + k) * C;
            for (int c0 = 0; c0 < C; c0 += 8) {  // batches of 8: the read-modify-writes overlap
              const int n = C - c0 < 8 ? C - c0 : 8;
              float v[8];
              if (round == 0) {
#pragma unroll
                for (int j = 0; j < 8; ++j) v[j] = 0.f;
              } else {
                ld_run8(dst + c0, n, v);
              }
#pragma unroll
              for (int j = 0; j < 8; ++j)
                if (j < n) dst[c0 + j] = v[j] + s.g[(c0 + j) * kPad + pt];
            }
          }
          ctx.sync();
        }
        dD_acc = ctx_sum_first(ctx, dD_acc, lane);
        dbias_acc = ctx_sum_first(ctx, dbias_acc, lane);
        if (active) {
          const int64_t row = b * KD + int64_t(k) * p.D + d;
          if (lane == 0) {
            p.part_D[row] = dD_acc;
            p.part_bias[row] = dbias_acc;
          }
          if (lane < N) p.part_A[row * N + lane] = dA_acc;
          for (int r = lane; r < R; r += 32) p.part_w[row * R + r] = s.dtw[warp * R + r];
        }
      }
      write_tile<W>(ctx, p, s, b, tile, p.dx, kF32);
      ctx.sync();  // the next round's routes overwrite the accumulator
    }
  }
};

// out[e] = sum over r < nb of part[r * n + e], in order of r
struct SumRowsArgs {
  const float* part = nullptr;
  int64_t nb = 0, n = 0;
  float* out = nullptr;
};

struct SumRowsBody {
  using Args = SumRowsArgs;
  static constexpr int kMaxThreads = 256, kMinBlocks = 1;

  template <class Ctx>
  static VMAMBA_HD void run(const Ctx& ctx, const Args& a, unsigned char*) {
    const int64_t step = int64_t(ctx.nblocks()) * ctx.nthreads();
    for (int64_t e = int64_t(ctx.block()) * ctx.nthreads() + ctx.tid(); e < a.n; e += step) {
      float acc = 0.f;
      for (int64_t r = 0; r < a.nb; ++r) acc += a.part[r * a.n + e];
      a.out[e] = acc;
    }
  }
};

template <class Exec>
cudaError_t sum_rows(const Exec& ex, const float* part, int64_t nb, int64_t n, float* out) {
  if (n <= 0 || out == nullptr) return cudaSuccess;
  const int64_t blocks = std::min<int64_t>((n + 255) / 256, 65535LL * 16);
  return ex.template launch<SumRowsBody>(dim3(unsigned(blocks)), 256, 0, SumRowsArgs{part, nb, n, out});
}

// The launch sequences (the same for the GPU and the emulator). p: planned by the caller (warps,
// ntiles, smem_acc, S and every buffer).
template <class Exec>
cudaError_t run_fwd(const Exec& ex, const FwdParams& p) {
  const int64_t blocks = p.batch * p.ntiles;
  if (blocks == 0 || p.L == 0) return cudaSuccess;
  const size_t smem = smem_floats(false, p.warps, p.L, p.C, p.R, p.smem_acc) * sizeof(float);
  if (p.warps == 4) return ex.template launch<FwdBody<4>>(dim3(unsigned(blocks)), 128, smem, p);
  return ex.template launch<FwdBody<8>>(dim3(unsigned(blocks)), 256, smem, p);
}

template <class Exec>
cudaError_t run_bwd(const Exec& ex, const BwdParams& p, float* dxdbl, float* dA, float* dD, float* dbias, float* dw) {
  const int64_t blocks = p.batch * p.S;
  if (blocks == 0 || p.L == 0) return cudaSuccess;
  const size_t smem = smem_floats(true, p.warps, p.L, p.C, p.R, p.smem_acc) * sizeof(float);
  cudaError_t e = p.warps == 4 ? ex.template launch<BwdBody<4>>(dim3(unsigned(blocks)), 128, smem, p)
                               : ex.template launch<BwdBody<8>>(dim3(unsigned(blocks)), 256, smem, p);
  // fixed-order sums: the S slices of dxdbl (S == 1 wrote dxdbl itself), the batch partials
  const int64_t KD = int64_t(p.K) * p.D;
  if (e == cudaSuccess && p.S > 1) e = sum_rows(ex, p.part_xdbl, p.S, p.batch * p.L * p.K * p.C, dxdbl);
  if (e == cudaSuccess) e = sum_rows(ex, p.part_A, p.batch, KD * p.N, dA);
  if (e == cudaSuccess) e = sum_rows(ex, p.part_D, p.batch, KD, dD);
  if (e == cudaSuccess) e = sum_rows(ex, p.part_bias, p.batch, KD, dbias);
  if (e == cudaSuccess) e = sum_rows(ex, p.part_w, p.batch, KD * p.R, dw);
  return e;
}

}  // namespace ss2d
}  // namespace vmamba
