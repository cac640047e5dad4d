// Kernels of the selective scan (see selective_scan.h for the work split) and their launchers, as
// templates. Only CUDA headers here. Each selective_scan_<direction>_<dtype>.cu instantiates one input
// dtype and direction, so the build compiles them in parallel (about 3x faster than one file:
// reports/tuning.md), and selective_scan_launch.cu dispatches on the dtypes.
//
// The cupy backend compiles this header with NVRTC (vmamba_kernels/cupy/sources.py names the kernel
// instances): everything host-only (launchers, the occupancy query) sits behind __CUDACC_RTC__.
#pragma once
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#ifndef __CUDACC_RTC__
#include <algorithm>
#include <atomic>
#endif

#include "../common/rtc_compat.h"
#include "selective_scan.h"

namespace vmamba {
namespace scan {
VMAMBA_KERNELS_NAMESPACE {

constexpr unsigned kFull = 0xffffffffu;

// VMAMBA_SCAN_PREFETCH=1 (default, the configuration measured and tested; reports/tuning.md): the forward
// loads the next chunk's u/delta and the next (chunk, n)'s B/C while it computes the current one, the
// backward the next n's B/C; registers are capped at 128 (4 forward / 2 backward blocks per SM).
// VMAMBA_SCAN_PREFETCH=0: every operand is loaded where it is used (fewer registers, more resident
// warps; the first, unpacked version of these kernels ran that way: faster on L >= 196 in our one
// measurement, see the report). Same arithmetic, same results either way.
#ifndef VMAMBA_SCAN_PREFETCH
#define VMAMBA_SCAN_PREFETCH 1
#endif
constexpr bool kPrefetch = VMAMBA_SCAN_PREFETCH != 0;
constexpr int kFwdMinBlocks = kPrefetch ? 4 : 1;
constexpr int kBwdMinBlocks = kPrefetch ? 2 : 1;
constexpr float kLog2e = 1.4426950408889634f;

// blocks per SM the d_state = 1 kernels are compiled for (caps their registers; the fastest variants,
// reports/tuning.md)
#ifndef VMAMBA_SCAN_FWD1_MIN_BLOCKS
#define VMAMBA_SCAN_FWD1_MIN_BLOCKS 8
#endif
#ifndef VMAMBA_SCAN_FWD1_MIN_BLOCKS_F32
#define VMAMBA_SCAN_FWD1_MIN_BLOCKS_F32 6
#endif
// fwd_n1_packed_kernel (16-bit inputs): blocks per SM it is compiled for. 7 (72 registers): 8 spills,
// 6 is slower (reports/tuning.md)
#ifndef VMAMBA_SCAN_FWD1P_MIN_BLOCKS
#define VMAMBA_SCAN_FWD1P_MIN_BLOCKS 7
#endif
#ifndef VMAMBA_SCAN_BWD1_MIN_BLOCKS
#define VMAMBA_SCAN_BWD1_MIN_BLOCKS 3
#endif
// bwd_n1_kernel's one-chunk instance (kOne)
#ifndef VMAMBA_SCAN_BWD1ONE_MIN_BLOCKS
#define VMAMBA_SCAN_BWD1ONE_MIN_BLOCKS 3
#endif

template <typename T> struct Cvt;
template <> struct Cvt<float> {
  static __device__ __forceinline__ float to(float x) { return x; }
  static __device__ __forceinline__ float from(float x) { return x; }
};
template <> struct Cvt<__half> {
  static __device__ __forceinline__ float to(__half x) { return __half2float(x); }
  static __device__ __forceinline__ __half from(float x) { return __float2half_rn(x); }
};
template <> struct Cvt<__nv_bfloat16> {
  static __device__ __forceinline__ float to(__nv_bfloat16 x) { return __bfloat162float(x); }
  static __device__ __forceinline__ __nv_bfloat16 from(float x) { return __float2bfloat16_rn(x); }
};

// kItems consecutive elements starting at q, n of them valid (others read as 0).
template <typename T>
__device__ __forceinline__ void load_run(const T* __restrict__ q, int n, float (&v)[kItems]) {
  constexpr int kVec = 16 / sizeof(T);
  if (n == kItems && (reinterpret_cast<uintptr_t>(q) & 15) == 0) {
#pragma unroll
    for (int i = 0; i < kItems; i += kVec) {
      const uint4 raw = __ldg(reinterpret_cast<const uint4*>(q + i));
      const T* e = reinterpret_cast<const T*>(&raw);
#pragma unroll
      for (int j = 0; j < kVec; ++j) v[i + j] = Cvt<T>::to(e[j]);
    }
  } else {
#pragma unroll
    for (int i = 0; i < kItems; ++i) v[i] = i < n ? Cvt<T>::to(q[i]) : 0.f;
  }
}

template <typename T>
__device__ __forceinline__ void store_run(T* __restrict__ q, int n, const float (&v)[kItems]) {
  constexpr int kVec = 16 / sizeof(T);
  if (n == kItems && (reinterpret_cast<uintptr_t>(q) & 15) == 0) {
#pragma unroll
    for (int i = 0; i < kItems; i += kVec) {
      uint4 raw;
      T* e = reinterpret_cast<T*>(&raw);
#pragma unroll
      for (int j = 0; j < kVec; ++j) e[j] = Cvt<T>::from(v[i + j]);
      *reinterpret_cast<uint4*>(q + i) = raw;
    }
  } else {
#pragma unroll
    for (int i = 0; i < kItems; ++i)
      if (i < n) q[i] = Cvt<T>::from(v[i]);
  }
}

// valid steps of the run starting at t0 (0..kItems)
__device__ __forceinline__ int run_len(int64_t L, int64_t t0) {
  const int64_t r = L - t0;
  return r <= 0 ? 0 : (r >= kItems ? kItems : int(r));
}

// softplus with torch's threshold 20: v above it passes through. Below, softplus(v) = max(v, 0) +
// log1p(z), z = exp(-|v|) in (0, 1], and log1p(z) = z * P(z) with P a degree-8 fit of log1p(z) / z
// on [0, 1] (max relative error 2e-7 in fp32). Branch-free and ~14 instructions: libdevice's
// log1pf(expf(v)) takes a slower path for small arguments, which VMamba's dt (softplus^-1 of
// 0.001..0.1) hits (a much slower forward on such inputs: reports/tuning.md).
// d softplus(v) / dv = sigmoid(v) from dt = softplus(v) alone: sigmoid(v) = 1 - exp(-dt) =
// -expm1(-dt), with a degree-7 Taylor polynomial below dt = 0.5 where 1 - exp(-dt) would cancel
// (max relative error 3e-7), and 1 - exp(-dt) rounds to 1 above the threshold (dt = v > 20). Lets
// the d_state = 1 backward drop delta's raw values after its first pass (registers are its limit).
__device__ __forceinline__ float softplus_grad(float dt) {
  const float x = -dt;
  float q = 1.f / 5040.f;
  q = fmaf(q, x, 1.f / 720.f);
  q = fmaf(q, x, 1.f / 120.f);
  q = fmaf(q, x, 1.f / 24.f);
  q = fmaf(q, x, 1.f / 6.f);
  q = fmaf(q, x, 0.5f);
  q = fmaf(q, x, 1.f);
  return dt < 0.5f ? -x * q : 1.f - __expf(x);
}

__device__ __forceinline__ float softplus20(float v) {
  const float z = __expf(-fabsf(v));
  float q = 0.005253457929939032f;
  q = fmaf(q, z, -0.02958850748836994f);
  q = fmaf(q, z, 0.07836166769266129f);
  q = fmaf(q, z, -0.13674770295619965f);
  q = fmaf(q, z, 0.19111430644989014f);
  q = fmaf(q, z, -0.24844369292259216f);
  q = fmaf(q, z, 0.33319270610809326f);
  q = fmaf(q, z, -0.49999502301216125f);
  q = fmaf(q, z, 1.0f);
  return v > 20.f ? v : fmaf(z, q, fmaxf(v, 0.f));
}

// Segmented warp scans: a warp holds 32 / lpr segments of lpr lanes (one row each); sl = lane's
// index inside its segment. With lpr = 32 these are plain warp scans.
// inclusive scan of affine maps (a, b): lane ends with the composition of its segment's lanes 0..sl
__device__ __forceinline__ void warp_scan_up(float& a, float& b, int sl) {
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const float pa = __shfl_up_sync(kFull, a, off);
    const float pb = __shfl_up_sync(kFull, b, off);
    if (sl >= off) {
      b = fmaf(a, pb, b);
      a *= pa;
    }
  }
}

// inclusive reverse scan: lane ends with the composition of its segment's lanes lpr-1..sl
__device__ __forceinline__ void warp_scan_down(float& a, float& b, int sl, int lpr) {
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const float pa = __shfl_down_sync(kFull, a, off);
    const float pb = __shfl_down_sync(kFull, b, off);
    if (sl + off < lpr) {
      b = fmaf(a, pb, b);
      a *= pa;
    }
  }
}

// sum over the segment, valid in its first lane (sl == 0); fixed order
__device__ __forceinline__ float seg_sum_first(float v, int sl, int lpr) {
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const float o = __shfl_down_sync(kFull, v, off);
    if (sl + off < lpr) v += o;
  }
  return v;
}

// warp-uniform value number n of a per-warp array distributed as lane n%32 -> r[n/32]
__device__ __forceinline__ float get_dist(float r0, float r1, int n) {
  return __shfl_sync(kFull, n < 32 ? r0 : r1, n & 31);
}

// ------------------------------------------------------------------------------------------------
template <typename T, typename OutT>
__global__ void __launch_bounds__(kFwdWarps * 32, kFwdMinBlocks) fwd_kernel(const FwdParams p) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  // rows of L <= 128 are packed several per warp (lpr lanes each); longer rows take a whole warp
  const int lpr = p.lpr, R = 32 / lpr;
  const int seg = lane / lpr, sl = lane - seg * lpr;
  const int64_t rows = p.batch * p.KD;
  const int64_t row_raw = (int64_t(blockIdx.x) * kFwdWarps + warp) * R + seg;
  const bool valid = seg < R && row_raw < rows;
  const int64_t row = valid ? row_raw : 0;  // idle lanes still join the shuffles
  const int64_t b = row / p.KD, d = row - b * p.KD, g = d / p.G;
  const int64_t L = p.L;
  const int N = p.N;
  const T* __restrict__ u = static_cast<const T*>(p.u) + row * L;
  const T* __restrict__ dl = static_cast<const T*>(p.delta) + row * L;
  const int64_t bco = b * p.bc_bstride + g * p.bc_gstride;
  const T* __restrict__ Bp = static_cast<const T*>(p.B) + bco;
  const T* __restrict__ Cp = static_cast<const T*>(p.C) + bco;
  OutT* __restrict__ out = static_cast<OutT*>(p.out) + row * L;
  const float* __restrict__ A = p.A + d * N;
  const float Dv = p.D ? p.D[d] : 0.f;
  const float bias = p.delta_bias ? p.delta_bias[d] : 0.f;
  const int64_t nchunks = num_chunks(L);  // > 1 only when lpr == 32
  float* __restrict__ aux = p.aux + row * nchunks * N;
  float carry0 = 0.f, carry1 = 0.f;  // lpr == 32: state n lives in lane n%32, register n/32

  // prefetched operands of the next step (u, delta of the next chunk; B, C of the next (chunk, n))
  float pu[kItems], pd[kItems], pB[kItems], pC[kItems];
  if (kPrefetch) {
    const int64_t t0 = int64_t(sl) * kItems;
    const int nv = valid ? run_len(L, t0) : 0;
    load_run(u + t0, nv, pu);
    load_run(dl + t0, nv, pd);
    load_run(Bp + t0, nv, pB);
    load_run(Cp + t0, nv, pC);
  }
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t t0 = c * kChunk + int64_t(sl) * kItems;
    const int nv = valid ? run_len(L, t0) : 0;
    const bool has_next = c + 1 < nchunks;
    const int64_t t0n = t0 + kChunk;
    const int nvn = (valid && has_next) ? run_len(L, t0n) : 0;
    float uv[kItems], dt[kItems], y[kItems];
    if (!kPrefetch) {
      load_run(u + t0, nv, pu);
      load_run(dl + t0, nv, pd);
    }
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      uv[i] = pu[i];
      const float v = pd[i] + bias;
      // padding steps get dt = 0: the identity map, so they never touch the state
      dt[i] = i < nv ? (p.softplus ? softplus20(v) : v) : 0.f;
      y[i] = Dv * uv[i];
    }
    if (kPrefetch && has_next) {
      load_run(u + t0n, nvn, pu);
      load_run(dl + t0n, nvn, pd);
    }
#pragma unroll 1
    for (int n = 0; n < N; ++n) {
      float Bv[kItems], Cv[kItems], a[kItems];
      if (!kPrefetch) {
        load_run(Bp + n * L + t0, nv, pB);
        load_run(Cp + n * L + t0, nv, pC);
      }
#pragma unroll
      for (int i = 0; i < kItems; ++i) { Bv[i] = pB[i]; Cv[i] = pC[i]; }
      if (!kPrefetch) {
      } else if (n + 1 < N) {
        load_run(Bp + (n + 1) * L + t0, nv, pB);
        load_run(Cp + (n + 1) * L + t0, nv, pC);
      } else if (has_next) {
        load_run(Bp + t0n, nvn, pB);
        load_run(Cp + t0n, nvn, pC);
      }
      const float An = __ldg(A + n) * kLog2e;
      float ra = 1.f, rb = 0.f;
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        a[i] = exp2f(dt[i] * An);
        Bv[i] = dt[i] * uv[i] * Bv[i];
        ra *= a[i];
        rb = fmaf(a[i], rb, Bv[i]);
      }
      warp_scan_up(ra, rb, sl);
      float ea = __shfl_up_sync(kFull, ra, 1), eb = __shfl_up_sync(kFull, rb, 1);
      if (sl == 0) { ea = 1.f; eb = 0.f; }
      const float carry = lpr == 32 ? get_dist(carry0, carry1, n) : 0.f;
      const int last_lane = seg * lpr + lpr - 1;  // <= 31 for every lane of a real segment
      const float ta = __shfl_sync(kFull, ra, min(last_lane, 31)), tb = __shfl_sync(kFull, rb, min(last_lane, 31));
      float x = fmaf(ea, carry, eb);
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        x = fmaf(a[i], x, Bv[i]);
        y[i] = fmaf(Cv[i], x, y[i]);
      }
      const float nc = fmaf(ta, carry, tb);
      if (valid && sl == 0) {
        aux[c * N + n] = carry;
        if (!has_next) p.last_state[row * N + n] = nc;
      }
      if (lane == (n & 31)) {
        if (n < 32) carry0 = nc; else carry1 = nc;
      }
    }
    store_run(out + t0, nv, y);
  }
}


// ------------------------------------------------------------------------------------------------
template <typename T, typename DT>
__global__ void __launch_bounds__(kBwdWarps * 32, kBwdMinBlocks) bwd_kernel(const BwdParams p) {
  __shared__ __align__(16) float redB[kBwdWarps][kChunk];
  __shared__ __align__(16) float redC[kBwdWarps][kChunk];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int lpr = p.lpr, R = 32 / lpr;  // R channels per warp when L <= 128 (one chunk)
  const int seg = lane / lpr, sl = lane - seg * lpr;
  int64_t blk = blockIdx.x;
  const int s = int(blk % p.S);
  blk /= p.S;
  const int64_t k = blk % p.K, b = blk / p.K;
  const int64_t L = p.L;
  const int N = p.N;
  const int64_t nchunks = num_chunks(L);
  const int64_t bc_off = b * p.bc_bstride + k * p.bc_gstride;
  const T* __restrict__ Bp = static_cast<const T*>(p.B) + bc_off;
  const T* __restrict__ Cp = static_cast<const T*>(p.C) + bc_off;
  const int64_t acc_off = (int64_t(s) * p.batch * p.K + b * p.K + k) * N * L;  // the scratch is contiguous
  float* __restrict__ accB = p.accB + acc_off;
  float* __restrict__ accC = p.accC + acc_off;
  const int64_t per_round = int64_t(kBwdWarps) * R;

  int round = 0;
  for (int64_t j0 = int64_t(s) * per_round; j0 < p.G; j0 += int64_t(p.S) * per_round, ++round) {
    const int64_t j = j0 + int64_t(warp) * R + seg;
    const bool active = seg < R && j < p.G;  // idle lanes still join every shuffle and __syncthreads
    const int64_t d = k * p.G + (active ? j : 0);
    const int64_t row = b * p.KD + d;
    const T* __restrict__ u = static_cast<const T*>(p.u) + row * L;
    const T* __restrict__ dl = static_cast<const T*>(p.delta) + row * L;
    const DT* __restrict__ dout = static_cast<const DT*>(p.dout) + row * L;
    T* __restrict__ du = static_cast<T*>(p.du) + row * L;
    T* __restrict__ ddelta = static_cast<T*>(p.ddelta) + row * L;
    const float* __restrict__ A = p.A + d * N;
    const float* __restrict__ aux = p.aux + row * nchunks * N;
    const float Dv = p.D ? p.D[d] : 0.f;
    const float bias = p.delta_bias ? p.delta_bias[d] : 0.f;
    float gc0 = 0.f, gc1 = 0.f;  // lpr == 32: adjoint carry a_t g_t at the first step of the next chunk
    float dA0 = 0.f, dA1 = 0.f;  // lpr == 32: dA of this row, lane n%32 holds n
    float dD_acc = 0.f, dbias_acc = 0.f;

    for (int64_t c = nchunks - 1; c >= 0; --c) {
      const int64_t t0 = c * kChunk + int64_t(sl) * kItems;
      const int nv = active ? run_len(L, t0) : 0;
      float uv[kItems], vd[kItems], dt[kItems], dy[kItems], gu[kItems], gdt[kItems];
      float pB[kItems], pC[kItems];
      load_run(u + t0, nv, uv);
      load_run(dl + t0, nv, vd);
      load_run(dout + t0, nv, dy);
      if (kPrefetch) {
        load_run(Bp + t0, nv, pB);
        load_run(Cp + t0, nv, pC);
      }
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        vd[i] += bias;
        dt[i] = i < nv ? (p.softplus ? softplus20(vd[i]) : vd[i]) : 0.f;
        gu[i] = Dv * dy[i];
        gdt[i] = 0.f;
      }
#pragma unroll 1
      for (int n = 0; n < N; ++n) {
        float Bv[kItems], Cv[kItems], a[kItems], h[kItems];
        if (!kPrefetch) {
          load_run(Bp + n * L + t0, nv, pB);
          load_run(Cp + n * L + t0, nv, pC);
        }
#pragma unroll
        for (int i = 0; i < kItems; ++i) { Bv[i] = pB[i]; Cv[i] = pC[i]; }
        if (kPrefetch && n + 1 < N) {
          load_run(Bp + (n + 1) * L + t0, nv, pB);
          load_run(Cp + (n + 1) * L + t0, nv, pC);
        }
        const float An = __ldg(A + n);
        // forward states of this chunk from the saved carry: h[i] = state before step i
        float ra = 1.f, rb = 0.f;
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          a[i] = exp2f(dt[i] * An * kLog2e);
          ra *= a[i];
          rb = fmaf(a[i], rb, dt[i] * uv[i] * Bv[i]);
        }
        warp_scan_up(ra, rb, sl);
        float ea = __shfl_up_sync(kFull, ra, 1), eb = __shfl_up_sync(kFull, rb, 1);
        if (sl == 0) { ea = 1.f; eb = 0.f; }
        float x = fmaf(ea, aux[c * N + n], eb);
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          h[i] = x;
          x = fmaf(a[i], x, dt[i] * uv[i] * Bv[i]);
        }
        // adjoint: g_t = C_t dy_t + w_{t+1}, w_t = a_t g_t  =>  w_t = a_t w_{t+1} + a_t C_t dy_t
        float qa = 1.f, qb = 0.f;
#pragma unroll
        for (int i = kItems - 1; i >= 0; --i) {
          qb = a[i] * fmaf(Cv[i], dy[i], qb);
          qa *= a[i];
        }
        warp_scan_down(qa, qb, sl, lpr);
        float na = __shfl_down_sync(kFull, qa, 1), nb = __shfl_down_sync(kFull, qb, 1);
        if (sl == lpr - 1) { na = 1.f; nb = 0.f; }
        const float gcarry = lpr == 32 ? get_dist(gc0, gc1, n) : 0.f;
        const float ta = __shfl_sync(kFull, qa, 0), tb = __shfl_sync(kFull, qb, 0);
        if (lane == (n & 31)) {
          const float nc = fmaf(ta, gcarry, tb);
          if (n < 32) gc0 = nc; else gc1 = nc;
        }
        float w = fmaf(na, gcarry, nb);
        float dBv[kItems], dCv[kItems];
        float dAn = 0.f;
#pragma unroll
        for (int i = kItems - 1; i >= 0; --i) {
          const float gi = fmaf(Cv[i], dy[i], w);
          w = a[i] * gi;
          const float dtu = dt[i] * uv[i];
          const float hcur = fmaf(a[i], h[i], dtu * Bv[i]);
          dCv[i] = dy[i] * hcur;
          dBv[i] = gi * dtu;
          gu[i] = fmaf(gi * dt[i], Bv[i], gu[i]);
          const float gah = gi * a[i] * h[i];
          gdt[i] = fmaf(gi * Bv[i], uv[i], fmaf(An, gah, gdt[i]));
          dAn = fmaf(dt[i], gah, dAn);
        }
        dAn = seg_sum_first(dAn, sl, lpr);
        if (lpr == 32) {
          dAn = __shfl_sync(kFull, dAn, 0);
          if (lane == (n & 31)) {
            if (n < 32) dA0 += dAn; else dA1 += dAn;
          }
        } else if (active && sl == 0) {
          p.partA[row * N + n] = dAn;  // a single chunk: the row's whole dA
        }
        float4* rb4 = reinterpret_cast<float4*>(&redB[warp][lane * kItems]);
        float4* rc4 = reinterpret_cast<float4*>(&redC[warp][lane * kItems]);
#pragma unroll
        for (int i = 0; i < kItems; i += 4) {
          rb4[i / 4] = make_float4(dBv[i], dBv[i + 1], dBv[i + 2], dBv[i + 3]);
          rc4[i / 4] = make_float4(dCv[i], dCv[i + 1], dCv[i + 2], dCv[i + 3]);
        }
        __syncthreads();
        {
          const int tl = threadIdx.x;  // blockDim == kChunk; with R > 1, L <= 128 so tl < lpr * kItems
          const int64_t t = c * kChunk + tl;
          if (t < L) {
            float sb = 0.f, sc = 0.f;
            for (int w2 = 0; w2 < kBwdWarps; ++w2) {
              for (int r = 0; r < R; ++r) {
                sb += redB[w2][r * lpr * kItems + tl];
                sc += redC[w2][r * lpr * kItems + tl];
              }
            }
            float* pb = accB + int64_t(n) * L + t;
            float* pc = accC + int64_t(n) * L + t;
            if (round == 0) { *pb = sb; *pc = sc; } else { *pb += sb; *pc += sc; }
          }
        }
        __syncthreads();
      }
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        if (p.softplus && vd[i] <= 20.f) gdt[i] *= 1.f / (1.f + __expf(-vd[i]));
        if (i < nv) {
          dD_acc = fmaf(dy[i], uv[i], dD_acc);
          dbias_acc += gdt[i];
        }
      }
      store_run(du + t0, nv, gu);
      store_run(ddelta + t0, nv, gdt);
    }
    dD_acc = seg_sum_first(dD_acc, sl, lpr);
    dbias_acc = seg_sum_first(dbias_acc, sl, lpr);
    if (active) {
      if (sl == 0) {
        p.partD[row] = dD_acc;
        p.partBias[row] = dbias_acc;
      }
      if (lpr == 32) {
        if (lane < N) p.partA[row * N + lane] = dA0;
        if (lane + 32 < N) p.partA[row * N + lane + 32] = dA1;
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// d_state = 1 (VMamba v2, every released v2 variant): one state per row, so no loop over n, the
// carries live in registers, and each operand of a chunk is held as loaded (packed 16-bit values
// in fp16/bf16: half the registers) until it is used. The forward double-buffers: the loads of
// chunk c+1 are issued before chunk c is computed, so a warp keeps its next 1-2 KB in flight.
// u/delta/dout are read once (streaming loads, evict-first) and out/du/ddelta written once
// (streaming stores), which keeps L2 for B/C, read by every channel of a group.

constexpr int kChunkPad = kChunk + kChunk / 32;
__device__ __forceinline__ int pad32(int i) { return i + (i >> 5); }

// kItems consecutive elements of T exactly as loaded. A full run is moved with the widest access
// its address allows (16, 8 or 4 bytes): rows of L = 196 or 49 (VMamba's stages 3 and 4) in 16-bit
// types start only 8- or 2-byte aligned, where element-wise access is needlessly slow.
template <typename V>
__device__ __forceinline__ V ld_words(const V* q, bool stream) { return stream ? __ldcs(q) : __ldg(q); }

template <typename T>
struct Run {
  static constexpr int kBytes = kItems * int(sizeof(T));
  uint4 v[kBytes / 16];
  __device__ __forceinline__ void load(const T* __restrict__ q, int n, bool stream) {
    const uintptr_t adr = reinterpret_cast<uintptr_t>(q);
    if (n == kItems && (adr & 15) == 0) {
#pragma unroll
      for (int i = 0; i < kBytes / 16; ++i) v[i] = ld_words(reinterpret_cast<const uint4*>(q) + i, stream);
    } else if (n == kItems && (adr & 7) == 0) {
      uint2* w = reinterpret_cast<uint2*>(v);
#pragma unroll
      for (int i = 0; i < kBytes / 8; ++i) w[i] = ld_words(reinterpret_cast<const uint2*>(q) + i, stream);
    } else if (n == kItems && (adr & 3) == 0) {
      unsigned* w = reinterpret_cast<unsigned*>(v);
#pragma unroll
      for (int i = 0; i < kBytes / 4; ++i) w[i] = ld_words(reinterpret_cast<const unsigned*>(q) + i, stream);
    } else {
      T* e = reinterpret_cast<T*>(v);
#pragma unroll
      for (int i = 0; i < kItems; ++i) e[i] = i < n ? q[i] : Cvt<T>::from(0.f);
    }
  }
  __device__ __forceinline__ float operator[](int i) const { return Cvt<T>::to(reinterpret_cast<const T*>(v)[i]); }
};

// store a run of kItems values converted to T, write-once (streaming), widest access as in Run::load
template <typename T>
__device__ __forceinline__ void store_run_stream(T* __restrict__ q, int n, const float (&v)[kItems]) {
  constexpr int kBytes = kItems * int(sizeof(T));
  uint4 raw[kBytes / 16];
  T* e = reinterpret_cast<T*>(raw);
#pragma unroll
  for (int i = 0; i < kItems; ++i) e[i] = Cvt<T>::from(v[i]);
  const uintptr_t adr = reinterpret_cast<uintptr_t>(q);
  if (n == kItems && (adr & 15) == 0) {
#pragma unroll
    for (int i = 0; i < kBytes / 16; ++i) __stcs(reinterpret_cast<uint4*>(q) + i, raw[i]);
  } else if (n == kItems && (adr & 7) == 0) {
    const uint2* w = reinterpret_cast<const uint2*>(raw);
#pragma unroll
    for (int i = 0; i < kBytes / 8; ++i) __stcs(reinterpret_cast<uint2*>(q) + i, w[i]);
  } else if (n == kItems && (adr & 3) == 0) {
    const unsigned* w = reinterpret_cast<const unsigned*>(raw);
#pragma unroll
    for (int i = 0; i < kBytes / 4; ++i) __stcs(reinterpret_cast<unsigned*>(q) + i, w[i]);
  } else {
#pragma unroll
    for (int i = 0; i < kItems; ++i)
      if (i < n) q[i] = e[i];
  }
}

// One chunk of the d_state = 1 forward for one lane (kItems steps of a row of kChunk, or of a row
// packed lpr lanes wide): y gets the outputs, carry (the state entering the chunk, the same in every
// lane of the segment) becomes the state leaving it.
template <typename T>
__device__ __forceinline__ void n1_chunk(const Run<T>& cu, const Run<T>& cd, const Run<T>& cB, const Run<T>& cC,
                                         int nv, float Al, float Dv, float bias, bool softplus, int sl,
                                         int last_lane, float& carry, float (&y)[kItems], bool head = false,
                                         float* xend = nullptr) {
  float a[kItems], bx[kItems];
  float ra = 1.f, rb = 0.f;
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const float uv = cu[i];
    const float v = cd[i] + bias;
    // padding steps get dt = 0: the identity map, so they never touch the state
    const float dt = i < nv ? (softplus ? softplus20(v) : v) : 0.f;
    y[i] = Dv * uv;
    bx[i] = dt * uv * cB[i];
    a[i] = exp2f(dt * Al);
    ra *= a[i];
    rb = fmaf(a[i], rb, bx[i]);
  }
  // a row's first lane (head, packed rows) starts from state 0: its map drops whatever comes in
  if (head) ra = 0.f;
  warp_scan_up(ra, rb, sl);
  float ea = __shfl_up_sync(kFull, ra, 1), eb = __shfl_up_sync(kFull, rb, 1);
  if (sl == 0) { ea = 1.f; eb = 0.f; }
  const float ta = __shfl_sync(kFull, ra, last_lane), tb = __shfl_sync(kFull, rb, last_lane);
  float x = head ? 0.f : fmaf(ea, carry, eb);
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    x = fmaf(a[i], x, bx[i]);
    y[i] = fmaf(cC[i], x, y[i]);
  }
  if (xend) *xend = x;
  carry = fmaf(ta, carry, tb);
}

// Work: one warp per row (or per 32 / lpr rows of L <= 128, packed), chunks in order. A persistent
// variant (grid = resident warps, prefetch across rows) was no faster, slower on long rows (register
// spills; reports/tuning.md).
template <typename T, typename OutT>
__global__ void __launch_bounds__(kFwdWarps * 32, sizeof(T) == 4 ? VMAMBA_SCAN_FWD1_MIN_BLOCKS_F32 : VMAMBA_SCAN_FWD1_MIN_BLOCKS)
    fwd_n1_kernel(const FwdParams p) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int lpr = p.lpr, R = 32 / lpr;
  const int seg = lane / lpr, sl = lane - seg * lpr;
  // rows = batch * KD < 2^31 (host check): 32-bit row arithmetic, 64-bit element offsets
  const int rows = int(p.batch * p.KD), KD = int(p.KD);
  const int row_raw = (int(blockIdx.x) * kFwdWarps + warp) * R + seg;
  const bool valid = seg < R && row_raw < rows;
  const int row = valid ? row_raw : 0;  // idle lanes still join the shuffles
  const int b = int(p.kd_div.div(uint32_t(row))), d = row - b * KD, g = int(p.g_div.div(uint32_t(d)));
  const int64_t L = p.L;
  const int64_t off = int64_t(row) * L, bco = int64_t(b) * p.bc_bstride + int64_t(g) * p.bc_gstride;
  const T* __restrict__ u = static_cast<const T*>(p.u) + off;
  const T* __restrict__ dl = static_cast<const T*>(p.delta) + off;
  const T* __restrict__ Bp = static_cast<const T*>(p.B) + bco;
  const T* __restrict__ Cp = static_cast<const T*>(p.C) + bco;
  OutT* __restrict__ out = static_cast<OutT*>(p.out) + off;
  const float Al = p.A[d] * kLog2e;
  const float Dv = p.D ? p.D[d] : 0.f;
  const float bias = p.delta_bias ? p.delta_bias[d] : 0.f;
  const int64_t nchunks = num_chunks(L);
  float* __restrict__ aux = p.aux + int64_t(row) * nchunks;
  const int last_lane = min(seg * lpr + lpr - 1, 31);
  float carry = 0.f;

  Run<T> nu, nd, nB, nC;  // the next chunk's operands, in flight while the current one is computed
  {
    const int64_t t0 = int64_t(sl) * kItems;
    const int nv = valid ? run_len(L, t0) : 0;
    nu.load(u + t0, nv, true);
    nd.load(dl + t0, nv, true);
    nB.load(Bp + t0, nv, false);
    nC.load(Cp + t0, nv, false);
  }
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t t0 = c * kChunk + int64_t(sl) * kItems;
    const int nv = valid ? run_len(L, t0) : 0;
    const Run<T> cu = nu, cd = nd, cB = nB, cC = nC;
    if (c + 1 < nchunks) {
      const int nvn = valid ? run_len(L, t0 + kChunk) : 0;
      nu.load(u + t0 + kChunk, nvn, true);
      nd.load(dl + t0 + kChunk, nvn, true);
      nB.load(Bp + t0 + kChunk, nvn, false);
      nC.load(Cp + t0 + kChunk, nvn, false);
    }
    if (valid && sl == 0) aux[c] = carry;
    float y[kItems];
    n1_chunk(cu, cd, cB, cC, nv, Al, Dv, bias, p.softplus, sl, last_lane, carry, y);
    store_run_stream(out + t0, nv, y);
  }
  if (valid && sl == 0) p.last_state[row] = carry;
}

// d_state = 1 forward with rows packed at lane granularity: a row of L steps takes ell = ceil(L / kItems)
// consecutive lanes of one sequence of virtual lanes (rows end to end), and a warp walks its share of
// that sequence one chunk (32 lanes) at a time, carrying the state from chunk to chunk. A chunk may hold
// the end of one row and the start of the next: a row's first lane (its head) drops the state coming
// in, so one warp scan serves every row of the chunk. The only idle slots are the tail of a row's last
// lane (4 of 200 at L = 196; a warp per row leaves 7 of 32 lanes idle there). A warp owns a contiguous
// range of whole rows, sized so that the grid is one wave of resident warps, and loads the next
// chunk's operands while it computes the current one. Lanes of a chunk differ in alignment and run
// length, so operands move as predicated aligned pieces (one instruction stream for the warp) wherever
// the row length allows. Faster than two row slots per warp (the kernel this replaced: a third fewer
// executed instructions) and than fwd_n1_kernel on VMamba-T's one-chunk stages (reports/tuning.md).
// Stage 4 (L = 49 in fp16: 98-byte rows) takes the per-lane access widths.
template <typename T>
struct PackedRuns {
  Run<T> u, d, B, C;
  int nv;
};

// The first `pieces` P-byte pieces of a lane's run, the rest 0: one predicated access per piece, the
// same instructions in every lane (Run::load picks an access width per lane, and lanes of a packed
// chunk differ in alignment and length, so a warp would run several of its paths).
template <int P> struct PieceWord;
template <> struct PieceWord<8> { using type = uint2; };
template <> struct PieceWord<16> { using type = uint4; };

template <int P, typename T>
__device__ __forceinline__ void load_pieces(Run<T>& r, const T* __restrict__ q, int pieces, bool stream) {
  using W = typename PieceWord<P>::type;
  W* w = reinterpret_cast<W*>(r.v);
#pragma unroll
  for (int i = 0; i < Run<T>::kBytes / P; ++i) {
    W x{};
    if (i < pieces) x = ld_words(reinterpret_cast<const W*>(q) + i, stream);
    w[i] = x;
  }
}

template <int P, typename T>
__device__ __forceinline__ void store_pieces(T* __restrict__ q, int pieces, const float (&v)[kItems]) {
  using W = typename PieceWord<P>::type;
  constexpr int kBytes = kItems * int(sizeof(T));
  uint4 raw[kBytes / 16];
  T* e = reinterpret_cast<T*>(raw);
#pragma unroll
  for (int i = 0; i < kItems; ++i) e[i] = Cvt<T>::from(v[i]);
  const W* w = reinterpret_cast<const W*>(raw);
#pragma unroll
  for (int i = 0; i < kBytes / P; ++i)
    if (i < pieces) __stcs(reinterpret_cast<W*>(q) + i, w[i]);
}

// the operands of the lane at (row, j); ok = false: an idle lane (nothing loaded, nv = 0). piece8:
// every lane's run starts 8-byte aligned and its valid part is whole 8-byte pieces (set by the
// launcher when L * sizeof(T) % 8 == 0 and the operands are 8-byte aligned: L = 196 in 16-bit types)
template <typename T>
__device__ __forceinline__ void packed_load(const FwdParams& p, int row, int j, bool ok, int L, bool piece8,
                                            PackedRuns<T>& q) {
  const int KD = int(p.KD);
  const int t0 = j * kItems;
  q.nv = ok ? run_len(L, t0) : 0;
  const int b = int(p.kd_div.div(uint32_t(row))), d = row - b * KD, g = int(p.g_div.div(uint32_t(d)));
  const int64_t off = int64_t(row) * L + t0, bco = int64_t(b) * p.bc_bstride + int64_t(g) * p.bc_gstride + t0;
  const T* u = static_cast<const T*>(p.u) + off;
  const T* dl = static_cast<const T*>(p.delta) + off;
  const T* B = static_cast<const T*>(p.B) + bco;
  const T* C = static_cast<const T*>(p.C) + bco;
  if (piece8) {
    const int pieces = (q.nv * int(sizeof(T))) >> 3;
    load_pieces<8>(q.u, u, pieces, true);
    load_pieces<8>(q.d, dl, pieces, true);
    load_pieces<8>(q.B, B, pieces, false);
    load_pieces<8>(q.C, C, pieces, false);
  } else {
    q.u.load(u, q.nv, true);
    q.d.load(dl, q.nv, true);
    q.B.load(B, q.nv, false);
    q.C.load(C, q.nv, false);
  }
}

// rows of 1 <= L <= kChunk (one chunk per row, so aux is 0 and ell <= 32). out_piece: 16 or 8 when
// every lane's output run starts that aligned and its valid part is whole pieces, else 0.
template <typename T, typename OutT>
__global__ void __launch_bounds__(kFwdWarps * 32, sizeof(T) == 4 ? VMAMBA_SCAN_FWD1_MIN_BLOCKS_F32 : VMAMBA_SCAN_FWD1P_MIN_BLOCKS)
    fwd_n1_packed_kernel(const FwdParams p, int rows_per_warp, bool piece8, int out_piece) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int rows = int(p.batch * p.KD), KD = int(p.KD), L = int(p.L);
  const int ell = (L + kItems - 1) / kItems;
  const int64_t r_first = (int64_t(blockIdx.x) * kFwdWarps + warp) * rows_per_warp;
  if (r_first >= rows) return;  // whole warps only: the shuffles below see every lane
  const int r_begin = int(r_first), r_end = int(r_first + rows_per_warp < rows ? r_first + rows_per_warp : rows);
  // virtual lanes of the warp (< 2^31: rows_per_warp * 32) and the lane's place (row, j = lane
  // within the row), which advances by 32 virtual lanes per step
  const int V = (r_end - r_begin) * ell, steps = (V + 31) / 32;
  const int q32 = 32 / ell, r32 = 32 - q32 * ell;
  int row = r_begin + lane / ell, j = lane - (lane / ell) * ell, v = lane;
  PackedRuns<T> nx;
  packed_load(p, v < V ? row : r_begin, j, v < V, L, piece8, nx);
  float carry = 0.f;
  for (int s = 0; s < steps; ++s) {
    const PackedRuns<T> cu = nx;
    const int crow = v < V ? row : r_begin, cj = j;
    const bool cok = v < V;
    v += 32;
    row += q32;
    j += r32;
    if (j >= ell) { j -= ell; ++row; }
    if (s + 1 < steps) packed_load(p, v < V ? row : r_begin, j, v < V, L, piece8, nx);
    const int d = crow - int(p.kd_div.div(uint32_t(crow))) * KD;
    const float Al = __ldg(p.A + d) * kLog2e;
    const float Dv = p.D ? __ldg(p.D + d) : 0.f;
    const float bias = p.delta_bias ? __ldg(p.delta_bias + d) : 0.f;
    float y[kItems], xend;
    n1_chunk(cu.u, cu.d, cu.B, cu.C, cu.nv, Al, Dv, bias, p.softplus, lane, 31, carry, y, cj == 0, &xend);
    OutT* o = static_cast<OutT*>(p.out) + int64_t(crow) * L + cj * kItems;
    const int ob = cok ? cu.nv * int(sizeof(OutT)) : 0;
    if (out_piece == 16)
      store_pieces<16>(o, ob >> 4, y);
    else if (out_piece == 8)
      store_pieces<8>(o, ob >> 3, y);
    else if (cok)
      store_run_stream(o, cu.nv, y);
    if (cok) {
      if (cj == 0) p.aux[crow] = 0.f;  // one chunk per row: the state entering it is 0
      if (cj == ell - 1) p.last_state[crow] = xend;
    }
  }
}

#ifndef __CUDACC_RTC__
// resident warps of fwd_n1_packed_kernel on the current device (plan_fwd spreads the packed rows over one
// wave of them); cached per device: the occupancy query costs microseconds per launch
template <typename T, typename OutT>
int packed_resident_warps() {
  static std::atomic<int> cache[64];
  int dev = 0;
  cudaGetDevice(&dev);
  int warps = dev < 64 ? cache[dev].load(std::memory_order_relaxed) : 0;
  if (warps == 0) {
    int sms = 1, nb = 1;
    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev);
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, fwd_n1_packed_kernel<T, OutT>, kFwdWarps * 32, 0);
    warps = std::max(1, sms * std::max(nb, 1) * kFwdWarps);
    if (dev < 64) cache[dev].store(warps, std::memory_order_relaxed);
  }
  return warps;
}
#endif  // __CUDACC_RTC__

// bwd_n1_kernel's dB/dC reduction over the block: thread tl sums step t0 + tl of the per-warp terms in
// red (warps in order, then the R row segments of a warp) and writes it to the block's split of accB /
// accC, or adds it there (accumulate: a later channel round of a multi-chunk row).
__device__ __forceinline__ void bwd_n1_block_sum(const BwdParams& p, const float (&redB)[kBwdWarps][kChunkPad],
                                                 const float (&redC)[kBwdWarps][kChunkPad], int R, int lpr,
                                                 int64_t acc_off, int64_t t0, bool accumulate) {
  const int tl = threadIdx.x;  // blockDim == kChunk; with R > 1, L <= 128 so tl < lpr * kItems
  const int64_t t = t0 + tl;
  if (t >= p.L) return;
  float sb = 0.f, sc = 0.f;
  if (R == 1) {
#pragma unroll
    for (int w2 = 0; w2 < kBwdWarps; ++w2) {
      sb += redB[w2][pad32(tl)];
      sc += redC[w2][pad32(tl)];
    }
  } else {
    for (int w2 = 0; w2 < kBwdWarps; ++w2) {
      for (int r = 0; r < R; ++r) {
        sb += redB[w2][pad32(r * lpr * kItems + tl)];
        sc += redC[w2][pad32(r * lpr * kItems + tl)];
      }
    }
  }
  float* ab = p.accB + acc_off + t;
  float* ac = p.accC + acc_off + t;
  if (accumulate) { *ab += sb; *ac += sc; } else { *ab = sb; *ac = sc; }
}

// Backward for d_state = 1: the block layout, reductions and scratch of bwd_kernel (N = 1 of it),
// with every per-step operand kept as loaded and the adjoint/dA carries in registers.
// kOne (rows of one chunk, L <= kChunk: VMamba's stages 3 and 4): a lane's steps are the same in every
// channel round, so it sums its dB/dC terms over the rounds in its own shared-memory slots (in registers
// they spilled) and the block reduces them once at the end: the rounds run without barriers or global
// read-modify-writes (faster on VMamba-T's and -B's stages 3-4: reports/tuning.md). The dB/dC sums run
// in another fixed order than kOne = false's (rounds first, then warps).
template <typename T, typename DT, bool kOne = false>
__global__ void __launch_bounds__(kBwdWarps * 32, kOne ? VMAMBA_SCAN_BWD1ONE_MIN_BLOCKS : VMAMBA_SCAN_BWD1_MIN_BLOCKS)
    bwd_n1_kernel(const BwdParams p) {
  // per-warp dB/dC terms of the chunk, written step by step; padded (one word per 32) so that
  // lane-strided writes (lane * kItems + i) and the block's row-wise reads are conflict-free
  __shared__ float redB[kBwdWarps][kChunkPad];
  __shared__ float redC[kBwdWarps][kChunkPad];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int lpr = p.lpr, R = 32 / lpr;
  const int seg = lane / lpr, sl = lane - seg * lpr;
  int64_t blk = blockIdx.x;
  const int s = int(blk % p.S);
  blk /= p.S;
  const int64_t k = blk % p.K, b = blk / p.K;
  const int64_t L = p.L;
  const int64_t nchunks = num_chunks(L);
  const int64_t bc_off = b * p.bc_bstride + k * p.bc_gstride;
  // operands are addressed as kernel-parameter base + one 64-bit offset per row (not a pointer per
  // operand): saves registers in this register-bound kernel
  const int64_t acc_off = (int64_t(s) * p.batch * p.K + b * p.K + k) * L;  // the scratch is contiguous
  const int64_t per_round = int64_t(kBwdWarps) * R;
  const int first_lane = seg * lpr;

  if constexpr (kOne) {  // the lane's own slots of red accumulate its terms over the rounds
#pragma unroll
    for (int i = 0; i < kItems; ++i)
      redB[warp][pad32(lane * kItems + i)] = redC[warp][pad32(lane * kItems + i)] = 0.f;
  }

  int round = 0;
  for (int64_t j0 = int64_t(s) * per_round; j0 < p.G; j0 += int64_t(p.S) * per_round, ++round) {
    const int64_t j = j0 + int64_t(warp) * R + seg;
    const bool active = seg < R && j < p.G;  // idle lanes still join every shuffle and __syncthreads
    const int64_t d = k * p.G + (active ? j : 0);
    const int64_t row = b * p.KD + d;
    const int64_t off = row * L;
    const float An = p.A[d];
    const float Al = An * kLog2e;
    const float Dv = p.D ? p.D[d] : 0.f;
    const float bias = p.delta_bias ? p.delta_bias[d] : 0.f;
    float gcarry = 0.f;  // a_t g_t at the first step of the chunk after the current one
    float dA_acc = 0.f, dD_acc = 0.f, dbias_acc = 0.f;

    for (int64_t c = nchunks - 1; c >= 0; --c) {
      const int64_t t0 = c * kChunk + int64_t(sl) * kItems;
      const int nv = active ? run_len(L, t0) : 0;
      Run<T> ru, rd, rB, rC;
      Run<DT> ry;
      ru.load(static_cast<const T*>(p.u) + off + t0, nv, true);
      rd.load(static_cast<const T*>(p.delta) + off + t0, nv, true);
      ry.load(static_cast<const DT*>(p.dout) + off + t0, nv, true);
      rB.load(static_cast<const T*>(p.B) + bc_off + t0, nv, false);
      rC.load(static_cast<const T*>(p.C) + bc_off + t0, nv, false);
      const float h0 = (active && sl == 0) ? p.aux[row * nchunks + c] : 0.f;
      float a[kItems], h[kItems], dt[kItems];
      // forward states of this chunk from the saved carry: h[i] = state before step i
      float ra = 1.f, rb = 0.f;
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const float v = rd[i] + bias;
        dt[i] = i < nv ? (p.softplus ? softplus20(v) : v) : 0.f;
        a[i] = exp2f(dt[i] * Al);
        ra *= a[i];
        rb = fmaf(a[i], rb, dt[i] * ru[i] * rB[i]);
      }
      warp_scan_up(ra, rb, sl);
      {
        float ea = __shfl_up_sync(kFull, ra, 1), eb = __shfl_up_sync(kFull, rb, 1);
        if (sl == 0) { ea = 1.f; eb = 0.f; }
        float x = fmaf(ea, __shfl_sync(kFull, h0, first_lane), eb);
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          h[i] = x;
          x = fmaf(a[i], x, dt[i] * ru[i] * rB[i]);
        }
      }
      // adjoint: g_t = C_t dy_t + w_{t+1}, w_t = a_t g_t  =>  w_t = a_t w_{t+1} + a_t C_t dy_t
      float qa = 1.f, qb = 0.f;
#pragma unroll
      for (int i = kItems - 1; i >= 0; --i) {
        qb = a[i] * fmaf(rC[i], ry[i], qb);
        qa *= a[i];
      }
      warp_scan_down(qa, qb, sl, lpr);
      float na = __shfl_down_sync(kFull, qa, 1), nb = __shfl_down_sync(kFull, qb, 1);
      if (sl == lpr - 1) { na = 1.f; nb = 0.f; }
      const float ta = __shfl_sync(kFull, qa, first_lane), tb = __shfl_sync(kFull, qb, first_lane);
      float w = fmaf(na, gcarry, nb);
      gcarry = fmaf(ta, gcarry, tb);
#pragma unroll
      for (int i = kItems - 1; i >= 0; --i) {
        const float dy = ry[i], uv = ru[i], Bv = rB[i];
        const float gi = fmaf(rC[i], dy, w);
        w = a[i] * gi;
        const float dtu = dt[i] * uv;
        if constexpr (kOne) {
          redC[warp][pad32(lane * kItems + i)] += dy * fmaf(a[i], h[i], dtu * Bv);
          redB[warp][pad32(lane * kItems + i)] += gi * dtu;
        } else {
          redC[warp][pad32(lane * kItems + i)] = dy * fmaf(a[i], h[i], dtu * Bv);
          redB[warp][pad32(lane * kItems + i)] = gi * dtu;
        }
        const float gah = gi * a[i] * h[i];
        dA_acc = fmaf(dt[i], gah, dA_acc);
        float gdt = fmaf(gi * Bv, uv, An * gah);
        if (p.softplus) gdt *= softplus_grad(dt[i]);
        h[i] = fmaf(gi * dt[i], Bv, Dv * dy);  // h[i] is dead: it now holds du
        a[i] = gdt;                             // a[i] is dead: it now holds ddelta
        if (i < nv) {
          dD_acc = fmaf(dy, uv, dD_acc);
          dbias_acc += gdt;
        }
      }
      store_run_stream(static_cast<T*>(p.du) + off + t0, nv, h);
      store_run_stream(static_cast<T*>(p.ddelta) + off + t0, nv, a);
      if constexpr (!kOne) {
        __syncthreads();
        bwd_n1_block_sum(p, redB, redC, R, lpr, acc_off, c * kChunk, round > 0);
        __syncthreads();
      }
    }
    dA_acc = seg_sum_first(dA_acc, sl, lpr);
    dD_acc = seg_sum_first(dD_acc, sl, lpr);
    dbias_acc = seg_sum_first(dbias_acc, sl, lpr);
    if (active && sl == 0) {
      p.partA[row] = dA_acc;
      p.partD[row] = dD_acc;
      p.partBias[row] = dbias_acc;
    }
  }
  if constexpr (kOne) {  // the whole slice of the scratch is written (zeros for a split without rounds)
    __syncthreads();
    bwd_n1_block_sum(p, redB, redC, R, lpr, acc_off, 0, false);
  }
}

// ------------------------------------------------------------------------------------------------
// Row per thread, for 1 < d_state <= 16 when there are many rows (VMamba v0: d_state 16). The
// warp-per-row fwd_kernel pays, per state and chunk, a local scan, 5 shuffle rounds and a second
// pass: one dependent chain per state, 16 of them in a row. Here a thread owns one (batch, channel)
// row and walks time step by step with all NS states in registers: NS independent chains and no
// shuffles (per state and step one exp2, two multiplies, two FMAs; B/C of the step are shared-memory
// broadcasts). A block of kSeqRows threads holds kSeqRows channels of one (batch, group) and stages
// kSeqTile steps at a time through shared memory (dt, dt*u, D*u per row; B, C as [step][state]) so
// that global accesses stay coalesced; the next tile's loads are in flight while the current tile is
// scanned. The carries at every kChunk-th step go to `aux` exactly as the warp-per-row kernel
// writes them, so the backward is shared. 5x faster than fwd_kernel on VMamba-vanilla-T (64 x 32 was
// the best rows x steps; reports/tuning.md). Needs rows to fill the GPU: launch_fwd uses it from
// FwdParams::seq_min_rows rows up. On d_state 1 it loses to fwd_n1_kernel.
constexpr int kSeqTile = 32;  // kSeqRows: selective_scan.h

template <typename T, typename OutT, int NS>
__global__ void __launch_bounds__(kSeqRows) fwd_seq_kernel(const FwdParams p, int blocks_per_group) {
  static_assert(kSeqTile % kItems == 0 && kChunk % kSeqTile == 0, "a tile is whole runs and divides a chunk");
  constexpr int kParts = kSeqTile / kItems;                        // runs per row and tile
  constexpr int kBCRuns = (NS * kParts + kSeqRows - 1) / kSeqRows;  // B (and C) runs per thread
  __shared__ float s_dt[kSeqRows][kSeqTile + 1], s_dtu[kSeqRows][kSeqTile + 1], s_y[kSeqRows][kSeqTile + 1];
  __shared__ __align__(16) float s_B[kSeqTile][NS], s_C[kSeqTile][NS];
  const int tid = threadIdx.x;
  const int rc = int(blockIdx.x) % blocks_per_group, bg = int(blockIdx.x) / blocks_per_group;
  const int b = bg / p.K, g = bg - b * p.K;
  const int G = int(p.G), N = p.N;
  const int64_t L = p.L;
  const int j0 = rc * kSeqRows;  // first channel (within the group) of this block
  const int64_t row0 = int64_t(b) * p.KD + int64_t(g) * G + j0;
  const int64_t bco = int64_t(b) * p.bc_bstride + int64_t(g) * p.bc_gstride;
  const T* __restrict__ Bp = static_cast<const T*>(p.B) + bco;
  const T* __restrict__ Cp = static_cast<const T*>(p.C) + bco;
  const int64_t nchunks = num_chunks(L);
  const bool mine = j0 + tid < G;  // this thread's row exists (the scan phase)
  const int dme = g * G + min(j0 + tid, G - 1);
  float Al[NS], x[NS];
#pragma unroll
  for (int n = 0; n < NS; ++n) {
    Al[n] = n < N ? p.A[dme * N + n] * kLog2e : 0.f;  // padding states: a = 1, b = 0, C = 0
    x[n] = 0.f;
  }
  // fill/store phase: run q = tid + kSeqRows * i covers row q / kParts, steps (q % kParts) * kItems..
  float Dr[kParts], br[kParts];
#pragma unroll
  for (int i = 0; i < kParts; ++i) {
    const int r = (tid + kSeqRows * i) / kParts;
    const int d = g * G + min(j0 + r, G - 1);
    Dr[i] = p.D ? p.D[d] : 0.f;
    br[i] = p.delta_bias ? p.delta_bias[d] : 0.f;
  }
  Run<T> pu[kParts], pd[kParts], pB[kBCRuns], pC[kBCRuns];
  auto issue = [&](int64_t t0) {
#pragma unroll
    for (int i = 0; i < kParts; ++i) {
      const int q = tid + kSeqRows * i, r = q / kParts, part = q - r * kParts;
      const int nv = j0 + r < G ? run_len(L, t0 + part * kItems) : 0;
      const int64_t off = (row0 + r) * L + t0 + part * kItems;
      pu[i].load(static_cast<const T*>(p.u) + off, nv, true);
      pd[i].load(static_cast<const T*>(p.delta) + off, nv, true);
    }
#pragma unroll
    for (int i = 0; i < kBCRuns; ++i) {
      const int q = tid + kSeqRows * i, n = q / kParts, part = q - n * kParts;
      const int nv = n < N ? run_len(L, t0 + part * kItems) : 0;
      const int64_t off = int64_t(min(n, N - 1)) * L + t0 + part * kItems;
      pB[i].load(Bp + off, nv, false);
      pC[i].load(Cp + off, nv, false);
    }
  };
  issue(0);
  for (int64_t t0 = 0; t0 < L; t0 += kSeqTile) {
#pragma unroll
    for (int i = 0; i < kParts; ++i) {
      const int q = tid + kSeqRows * i, r = q / kParts, part = q - r * kParts;
#pragma unroll
      for (int e = 0; e < kItems; ++e) {
        const float uv = pu[i][e];
        const float v = pd[i][e] + br[i];
        const float dt = p.softplus ? softplus20(v) : v;  // steps past L are never scanned
        s_dt[r][part * kItems + e] = dt;
        s_dtu[r][part * kItems + e] = dt * uv;
        s_y[r][part * kItems + e] = Dr[i] * uv;
      }
    }
#pragma unroll
    for (int i = 0; i < kBCRuns; ++i) {
      const int q = tid + kSeqRows * i, n = q / kParts, part = q - n * kParts;
      if (n < NS) {
#pragma unroll
        for (int e = 0; e < kItems; ++e) {
          s_B[part * kItems + e][n] = pB[i][e];  // states n >= N read as 0 (nv = 0)
          s_C[part * kItems + e][n] = pC[i][e];
        }
      }
    }
    __syncthreads();
    if (t0 + kSeqTile < L) issue(t0 + kSeqTile);
    if (t0 % kChunk == 0 && mine) {
      float* aux = p.aux + ((row0 + tid) * nchunks + t0 / kChunk) * N;
#pragma unroll
      for (int n = 0; n < NS; ++n)
        if (n < N) aux[n] = x[n];
    }
    const int steps = int(min(int64_t(kSeqTile), L - t0));
    for (int t = 0; t < steps; ++t) {
      const float dt = s_dt[tid][t], dtu = s_dtu[tid][t];
      float y = s_y[tid][t];
#pragma unroll
      for (int n = 0; n < NS; n += 4) {
        const float4 B4 = *reinterpret_cast<const float4*>(&s_B[t][n]);
        const float4 C4 = *reinterpret_cast<const float4*>(&s_C[t][n]);
        x[n] = fmaf(exp2f(dt * Al[n]), x[n], dtu * B4.x);
        x[n + 1] = fmaf(exp2f(dt * Al[n + 1]), x[n + 1], dtu * B4.y);
        x[n + 2] = fmaf(exp2f(dt * Al[n + 2]), x[n + 2], dtu * B4.z);
        x[n + 3] = fmaf(exp2f(dt * Al[n + 3]), x[n + 3], dtu * B4.w);
        y = fmaf(C4.x, x[n], y);  // states in order, as the warp-per-row kernel sums them
        y = fmaf(C4.y, x[n + 1], y);
        y = fmaf(C4.z, x[n + 2], y);
        y = fmaf(C4.w, x[n + 3], y);
      }
      s_y[tid][t] = y;
    }
    __syncthreads();
    // store the runs this thread filled: no other thread writes them, so the next fill needs no barrier
#pragma unroll
    for (int i = 0; i < kParts; ++i) {
      const int q = tid + kSeqRows * i, r = q / kParts, part = q - r * kParts;
      const int nv = j0 + r < G ? run_len(L, t0 + part * kItems) : 0;
      float yv[kItems];
#pragma unroll
      for (int e = 0; e < kItems; ++e) yv[e] = s_y[r][part * kItems + e];
      store_run_stream(static_cast<OutT*>(p.out) + (row0 + r) * L + t0 + part * kItems, nv, yv);
    }
  }
  if (mine) {
#pragma unroll
    for (int n = 0; n < NS; ++n)
      if (n < N) p.last_state[(row0 + tid) * N + n] = x[n];
  }
}

// Row-per-thread backward for 1 < d_state <= 16 (the same rows threshold as the forward). Each row's
// states are split over NS / 4 adjacent lanes, 4 states per lane; the lane walks time backwards
// with its adjoints w = a g in registers. The reverse walk needs the state before every step, which
// the forward saved only at chunk starts (`aux`, every kChunk steps), so per chunk:
//   1. forward from the chunk's saved state through the chunk, keeping the state at every tile start
//      (kSeqBwdTile steps apart) in shared memory;
//   2. per tile, last first: forward from its checkpoint, keeping the state at every kSeqBwdSub-th
//      step in registers;
//   3. per sub-tile, last first: forward from that state keeping each step's state in registers,
//      then the adjoint steps backwards over them.
// Three forward recomputations for one backward step; no state ever leaves the SM. Per step the
// lanes of a row add their du / ddelta terms with shuffles, and the dB / dC terms of the warp's
// rows are summed by a butterfly (reduce-scatter over the row lanes) into shared memory; a tile's
// sums go to this block's slice of accB / accC (the layout bwd_kernel uses), so the result is
// deterministic and finalize_* kernels are shared. Inputs are staged per tile through shared memory
// as in fwd_seq_kernel.
constexpr int kSeqBwdTile = 32;  // kSeqBwdThreads, seq_bwd_rows: selective_scan.h
constexpr int kSeqBwdSub = 8;

template <typename T, typename DT, int NS>
__global__ void __launch_bounds__(kSeqBwdThreads) bwd_seq_kernel(const BwdParams p) {
  constexpr int QPR = NS / 4;                       // lanes per row
  constexpr int RPW = 32 / QPR;                     // rows per warp
  constexpr int RB = seq_bwd_rows<NS>();            // rows per block
  constexpr int TT = kSeqBwdTile, SUB = kSeqBwdSub, NSUB = TT / SUB;
  constexpr int kTiles = kChunk / TT;
  constexpr int kParts = TT / kItems;               // runs per row and tile
  constexpr int kRowRuns = RB * kParts / kSeqBwdThreads;
  constexpr int kBCRuns = (NS * kParts + kSeqBwdThreads - 1) / kSeqBwdThreads;
  constexpr int kWarps = kSeqBwdThreads / 32;
  static_assert(NS == 8 || NS == 16, "4 states per lane, 2 or 4 lanes per row");
  static_assert(RB * kParts % kSeqBwdThreads == 0 && kChunk % TT == 0 && TT % SUB == 0, "tiling");
  __shared__ float s_dt[RB][TT + 1], s_dtu[RB][TT + 1], s_dy[RB][TT + 1], s_u[RB][TT + 1];
  __shared__ float s_du[RB][TT + 1], s_ddt[RB][TT + 1];
  __shared__ __align__(16) float s_B[TT][NS], s_C[TT][NS];
  __shared__ float4 s_cp[kTiles][kSeqBwdThreads];  // each lane's 4 states at every tile start
  __shared__ float s_red[kWarps][TT][2 * NS];       // per warp: dB (states 0..NS-1), dC (NS..2NS-1)
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
  const int r = warp * RPW + lane / QPR;            // this lane's row within the block
  const int q = lane % QPR;                         // its states: 4q .. 4q + 3
  int64_t blk = blockIdx.x;
  const int s = int(blk % p.S);
  blk /= p.S;
  const int64_t k = blk % p.K, b = blk / p.K;
  const int64_t L = p.L, G = p.G;
  const int N = p.N;
  const int64_t nchunks = num_chunks(L);
  const int64_t bc_off = b * p.bc_bstride + k * p.bc_gstride;
  const T* __restrict__ Bp = static_cast<const T*>(p.B) + bc_off;
  const T* __restrict__ Cp = static_cast<const T*>(p.C) + bc_off;
  const int64_t acc_off = (int64_t(s) * p.batch * p.K + b * p.K + k) * N * L;  // the scratch is contiguous

  int round = 0;
  for (int64_t j0 = int64_t(s) * RB; j0 < G; j0 += int64_t(p.S) * RB, ++round) {
    const bool active = j0 + r < G;
    const int64_t d = k * G + (active ? j0 + r : 0);
    const int64_t row = b * p.KD + d;
    const int64_t rowb = b * p.KD + k * G + j0;  // the block's first row
    float Al[4], An[4], w[4], dA[4];
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      const int n = 4 * q + i;
      An[i] = n < N ? p.A[d * N + n] : 0.f;  // padding states: a = 1, B = C = 0: they stay 0
      Al[i] = An[i] * kLog2e;
      w[i] = 0.f;
      dA[i] = 0.f;
    }
    const float Dv = p.D ? p.D[d] : 0.f;
    float dD_acc = 0.f, dbias_acc = 0.f;

    // stage steps t0 .. t0 + TT - 1 of the block's rows (full: also dout, u, C for the adjoint)
    auto fill = [&](int64_t t0, bool full) {
#pragma unroll
      for (int i = 0; i < kRowRuns; ++i) {
        const int qq = tid + kSeqBwdThreads * i, rr = qq / kParts, part = qq - rr * kParts;
        const bool act = j0 + rr < G;
        const int nv = act ? run_len(L, t0 + part * kItems) : 0;
        const int64_t off = (rowb + (act ? rr : 0)) * L + t0 + part * kItems;
        const float bias = p.delta_bias ? p.delta_bias[k * G + (act ? j0 + rr : 0)] : 0.f;
        Run<T> ru, rd;
        ru.load(static_cast<const T*>(p.u) + off, nv, false);
        rd.load(static_cast<const T*>(p.delta) + off, nv, false);
        Run<DT> ry;
        if (full) ry.load(static_cast<const DT*>(p.dout) + off, nv, true);
#pragma unroll
        for (int e = 0; e < kItems; ++e) {
          const float v = rd[e] + bias;
          const float dt = p.softplus ? softplus20(v) : v;
          const int t = part * kItems + e;
          s_dt[rr][t] = dt;
          s_dtu[rr][t] = dt * ru[e];
          if (full) {
            s_u[rr][t] = ru[e];
            s_dy[rr][t] = ry[e];  // 0 on rows past G and steps past L: their terms vanish
          }
        }
      }
#pragma unroll
      for (int i = 0; i < kBCRuns; ++i) {
        const int qq = tid + kSeqBwdThreads * i, n = qq / kParts, part = qq - n * kParts;
        if (n < NS) {
          const int nv = n < N ? run_len(L, t0 + part * kItems) : 0;
          const int64_t off = int64_t(min(n, N - 1)) * L + t0 + part * kItems;
          Run<T> rB, rC;
          rB.load(Bp + off, nv, false);
          if (full) rC.load(Cp + off, nv, false);
#pragma unroll
          for (int e = 0; e < kItems; ++e) {
            s_B[part * kItems + e][n] = rB[e];
            if (full) s_C[part * kItems + e][n] = rC[e];
          }
        }
      }
    };
    auto advance = [&](float (&x)[4], int t) {
      const float dt = s_dt[r][t], dtu = s_dtu[r][t];
      const float4 B4 = *reinterpret_cast<const float4*>(&s_B[t][4 * q]);
      x[0] = fmaf(exp2f(dt * Al[0]), x[0], dtu * B4.x);
      x[1] = fmaf(exp2f(dt * Al[1]), x[1], dtu * B4.y);
      x[2] = fmaf(exp2f(dt * Al[2]), x[2], dtu * B4.z);
      x[3] = fmaf(exp2f(dt * Al[3]), x[3], dtu * B4.w);
    };

    for (int64_t c = nchunks - 1; c >= 0; --c) {
      const int64_t ct0 = c * kChunk;
      const int ntiles = int(min(int64_t(kTiles), (L - ct0 + TT - 1) / TT));
      // 1. checkpoints at the tile starts of this chunk
      float x[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        const int n = 4 * q + i;
        x[i] = (active && n < N) ? p.aux[(row * nchunks + c) * N + n] : 0.f;
      }
      for (int tt = 0; tt < ntiles; ++tt) {
        const int64_t t0 = ct0 + int64_t(tt) * TT;
        fill(t0, false);
        __syncthreads();
        s_cp[tt][tid] = make_float4(x[0], x[1], x[2], x[3]);
        if (tt + 1 < ntiles) {  // the last tile's end state is not needed
          for (int t = 0; t < TT; ++t) advance(x, t);
        }
        __syncthreads();
      }
      // 2./3. tiles last first
      for (int tt = ntiles - 1; tt >= 0; --tt) {
        const int64_t t0 = ct0 + int64_t(tt) * TT;
        const int steps = int(min(int64_t(TT), L - t0));
        // the row sums (dA, dD, ddelta_bias) are summed per tile first, then over tiles: one fp32
        // sum over thousands of steps lost up to 2e-3 relative on cancelling dA terms (bf16, L = 2049)
        float dA_t[4] = {0.f, 0.f, 0.f, 0.f}, dD_t = 0.f, dbias_t = 0.f;
        fill(t0, true);
        __syncthreads();
        float cp2[NSUB][4];
        {
          const float4 c4 = s_cp[tt][tid];
          float xs[4] = {c4.x, c4.y, c4.z, c4.w};
#pragma unroll
          for (int j = 0; j < NSUB; ++j) {
#pragma unroll
            for (int i = 0; i < 4; ++i) cp2[j][i] = xs[i];
            if (j + 1 < NSUB)
              for (int t = j * SUB; t < (j + 1) * SUB && t < steps; ++t) advance(xs, t);
          }
        }
#pragma unroll
        for (int j = NSUB - 1; j >= 0; --j) {
          if (j * SUB >= steps) continue;
          float xh[SUB][4];  // state before each step of the sub-tile
          float xs[4] = {cp2[j][0], cp2[j][1], cp2[j][2], cp2[j][3]};
#pragma unroll
          for (int e = 0; e < SUB; ++e) {
#pragma unroll
            for (int i = 0; i < 4; ++i) xh[e][i] = xs[i];
            if (e + 1 < SUB && j * SUB + e < steps) advance(xs, j * SUB + e);
          }
#pragma unroll
          for (int e = SUB - 1; e >= 0; --e) {
            const int t = j * SUB + e;
            if (t >= steps) continue;
            const float dt = s_dt[r][t], dtu = s_dtu[r][t], dy = s_dy[r][t];
            const float4 B4 = *reinterpret_cast<const float4*>(&s_B[t][4 * q]);
            const float4 C4 = *reinterpret_cast<const float4*>(&s_C[t][4 * q]);
            const float Bv[4] = {B4.x, B4.y, B4.z, B4.w}, Cv[4] = {C4.x, C4.y, C4.z, C4.w};
            float v[8];  // dB terms of states 4q..4q+3, then dC terms
            float gB = 0.f, gAax = 0.f;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
              const float a = exp2f(dt * Al[i]);
              const float xp = xh[e][i];
              const float g = fmaf(Cv[i], dy, w[i]);  // dL/dx_t
              w[i] = a * g;
              v[i] = g * dtu;
              v[4 + i] = dy * fmaf(a, xp, dtu * Bv[i]);
              gB = fmaf(g, Bv[i], gB);
              const float gax = w[i] * xp;
              gAax = fmaf(An[i], gax, gAax);
              dA_t[i] = fmaf(dt, gax, dA_t[i]);
            }
            // the row's lanes: du / ddelta sums over all states (fixed order: xor 1, then 2)
#pragma unroll
            for (int o = 1; o < QPR; o <<= 1) {
              gB += __shfl_xor_sync(kFull, gB, o);
              gAax += __shfl_xor_sync(kFull, gAax, o);
            }
            // the warp's rows: reduce-scatter the 8 terms over the row bits of the lane index
            int slot = 0;
#pragma unroll
            for (int o = 16, m = 8; o >= QPR; o >>= 1) {
              if (m > 1) {
                const bool upper = (lane & o) != 0;
#pragma unroll
                for (int i = 0; i < m / 2; ++i) {
                  const float send = upper ? v[i] : v[i + m / 2];
                  const float keep = upper ? v[i + m / 2] : v[i];
                  v[i] = keep + __shfl_xor_sync(kFull, send, o);
                }
                slot = 2 * slot + (upper ? 1 : 0);
                m /= 2;
              } else {
                v[0] += __shfl_xor_sync(kFull, v[0], o);
              }
            }
            // slot 0..3: dB of state 4q + slot; 4..7: dC of state 4q + slot - 4. After the three
            // splitting rounds, lanes differing only in the remaining row bits hold equal sums.
            if ((lane & (QPR == 2 ? 2 : 0)) == 0)
              s_red[warp][t][slot < 4 ? 4 * q + slot : NS + 4 * q + slot - 4] = v[0];
            if (q == 0) {
              const float uv = s_u[r][t];
              float gdt = fmaf(uv, gB, gAax);
              if (p.softplus) gdt *= softplus_grad(dt);
              s_du[r][t] = fmaf(dt, gB, Dv * dy);
              s_ddt[r][t] = gdt;
              if (active) {
                dD_t = fmaf(dy, uv, dD_t);
                dbias_t += gdt;
              }
            }
          }
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) dA[i] += dA_t[i];
        dD_acc += dD_t;
        dbias_acc += dbias_t;
        __syncthreads();
        // write du / ddelta runs and add this tile's dB / dC sums to the block's scratch slice
#pragma unroll
        for (int i = 0; i < kRowRuns; ++i) {
          const int qq = tid + kSeqBwdThreads * i, rr = qq / kParts, part = qq - rr * kParts;
          const int nv = j0 + rr < G ? run_len(L, t0 + part * kItems) : 0;
          const int64_t off = (rowb + rr) * L + t0 + part * kItems;
          float vu[kItems], vd[kItems];
#pragma unroll
          for (int e = 0; e < kItems; ++e) {
            vu[e] = s_du[rr][part * kItems + e];
            vd[e] = s_ddt[rr][part * kItems + e];
          }
          store_run_stream(static_cast<T*>(p.du) + off, nv, vu);
          store_run_stream(static_cast<T*>(p.ddelta) + off, nv, vd);
        }
        for (int e = tid; e < 2 * NS * TT; e += kSeqBwdThreads) {
          const int v = e / TT, t = e - v * TT, n = v % NS;
          if (t < steps && n < N) {
            float sum = 0.f;
#pragma unroll
            for (int w2 = 0; w2 < kWarps; ++w2) sum += s_red[w2][t][v];
            float* dst = (v < NS ? p.accB : p.accC) + acc_off + int64_t(n) * L + t0 + t;
            if (round == 0) *dst = sum; else *dst += sum;
          }
        }
        // the next fill writes s_dt.. (read above by the scan only) and the next scan s_du/s_red
        // (read above): one barrier keeps both apart
        __syncthreads();
      }
    }
    if (active) {
#pragma unroll
      for (int i = 0; i < 4; ++i)
        if (4 * q + i < N) p.partA[row * N + 4 * q + i] = dA[i];
      if (q == 0) {
        p.partD[row] = dD_acc;
        p.partBias[row] = dbias_acc;
      }
    }
  }
}

template <typename T>
__global__ void finalize_bc_kernel(const float* __restrict__ accB, const float* __restrict__ accC,
                                   T* __restrict__ dB, T* __restrict__ dC, int64_t M, int S) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < M; i += int64_t(gridDim.x) * blockDim.x) {
    float sb = 0.f, sc = 0.f;
    for (int s = 0; s < S; ++s) {
      sb += accB[int64_t(s) * M + i];
      sc += accC[int64_t(s) * M + i];
    }
    dB[i] = Cvt<T>::from(sb);
    dC[i] = Cvt<T>::from(sc);
  }
}

// dA[d, n] = sum_b partA[b, d, n]; dD, ddelta_bias likewise over (b, d). Block (32, kFinRows = 8,
// selective_scan.h): 32 columns, 8 threads down the batch each summing every 8th row, then the 8 partials
// in order: a fixed order, and 8x the parallelism of a thread per column (a thread per column took
// ~20 us on short stages).
__global__ void finalize_small_kernel(const BwdParams p) {
  __shared__ float red[3][kFinRows][33];
  const int64_t KDN = p.KD * p.N;
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int64_t i = int64_t(blockIdx.x) * 32 + tx;
  float sa = 0.f, sd = 0.f, sbias = 0.f;
  if (i < KDN)
    for (int64_t b = ty; b < p.batch; b += kFinRows) sa += p.partA[b * KDN + i];
  if (i < p.KD)
    for (int64_t b = ty; b < p.batch; b += kFinRows) {
      sd += p.partD[b * p.KD + i];
      sbias += p.partBias[b * p.KD + i];
    }
  red[0][ty][tx] = sa;
  red[1][ty][tx] = sd;
  red[2][ty][tx] = sbias;
  __syncthreads();
  if (ty == 0) {
    for (int r = 1; r < kFinRows; ++r) {
      sa += red[0][r][tx];
      sd += red[1][r][tx];
      sbias += red[2][r][tx];
    }
    if (i < KDN) p.dA[i] = sa;
    if (i < p.KD) {
      if (p.dD) p.dD[i] = sd;
      if (p.ddelta_bias) p.ddelta_bias[i] = sbias;
    }
  }
}

#ifndef __CUDACC_RTC__
// The launchers: the choice of kernel, grid and block is plan_fwd / plan_bwd (selective_scan.h), which
// the cupy backend follows too.
template <typename T, typename OutT>
void fwd_launch(const FwdParams& p_in, cudaStream_t stream) {
  FwdParams p = p_in;
  p.kd_div = FastDivmod(uint32_t(p.KD));
  p.g_div = FastDivmod(uint32_t(p.G));
  const int warps = p.N == 1 && p.packed_rows <= 0 ? packed_resident_warps<T, OutT>() : 1;
  const FwdLaunch l = plan_fwd(p, int(sizeof(T)), int(sizeof(OutT)), warps);
  const dim3 grid(unsigned(l.grid));
  switch (l.kernel) {
    case kFwdPacked:
      fwd_n1_packed_kernel<T, OutT><<<grid, l.block, 0, stream>>>(p, l.rpw, l.piece8, l.out_piece);
      break;
    case kFwdN1: fwd_n1_kernel<T, OutT><<<grid, l.block, 0, stream>>>(p); break;
    case kFwdSeq4: fwd_seq_kernel<T, OutT, 4><<<grid, l.block, 0, stream>>>(p, l.bpg); break;
    case kFwdSeq8: fwd_seq_kernel<T, OutT, 8><<<grid, l.block, 0, stream>>>(p, l.bpg); break;
    case kFwdSeq16: fwd_seq_kernel<T, OutT, 16><<<grid, l.block, 0, stream>>>(p, l.bpg); break;
    default: fwd_kernel<T, OutT><<<grid, l.block, 0, stream>>>(p); break;
  }
}

template <typename T, typename DT>
void bwd_launch(const BwdParams& p, cudaStream_t stream) {
  const BwdLaunch l = plan_bwd(p);
  const dim3 grid(unsigned(l.grid));
  switch (l.kernel) {
    case kBwdN1: bwd_n1_kernel<T, DT><<<grid, l.block, 0, stream>>>(p); break;
    case kBwdN1One: bwd_n1_kernel<T, DT, true><<<grid, l.block, 0, stream>>>(p); break;
    case kBwdSeq8: bwd_seq_kernel<T, DT, 8><<<grid, l.block, 0, stream>>>(p); break;
    case kBwdSeq16: bwd_seq_kernel<T, DT, 16><<<grid, l.block, 0, stream>>>(p); break;
    case kBwdGeneric: bwd_kernel<T, DT><<<grid, l.block, 0, stream>>>(p); break;
    default: break;  // no blocks
  }
  if (l.bc_grid > 0)
    finalize_bc_kernel<T><<<dim3(unsigned(l.bc_grid)), kFinBcThreads, 0, stream>>>(
        p.accB, p.accC, static_cast<T*>(p.dB), static_cast<T*>(p.dC), l.bc_elems, p.S);
  finalize_small_kernel<<<dim3(unsigned(l.small_grid)), dim3(32, kFinRows), 0, stream>>>(p);
}
#endif  // __CUDACC_RTC__

}  // namespace

#ifndef __CUDACC_RTC__
// one per selective_scan_<direction>_<dtype>.cu: out_dtype / dout_dtype picks the second template type
void fwd_f32(const FwdParams& p, cudaStream_t stream);
void fwd_f16(const FwdParams& p, cudaStream_t stream);
void fwd_bf16(const FwdParams& p, cudaStream_t stream);
void bwd_f32(const BwdParams& p, cudaStream_t stream);
void bwd_f16(const BwdParams& p, cudaStream_t stream);
void bwd_bf16(const BwdParams& p, cudaStream_t stream);
#endif  // __CUDACC_RTC__

}  // namespace scan
}  // namespace vmamba
