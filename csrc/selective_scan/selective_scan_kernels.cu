// Kernels of the selective scan (see selective_scan.h for the work split). Only CUDA headers here.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "selective_scan.h"

namespace vmamba {
namespace scan {
namespace {

constexpr unsigned kFull = 0xffffffffu;

// VMAMBA_SCAN_PREFETCH=1 (default, the configuration measured and tested on the H100): the forward
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

__device__ __forceinline__ float softplus20(float v) { return v <= 20.f ? log1pf(__expf(v)) : v; }

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
  const T* __restrict__ Bp = static_cast<const T*>(p.B) + (b * p.K + g) * N * L;
  const T* __restrict__ Cp = static_cast<const T*>(p.C) + (b * p.K + g) * N * L;
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
  const int64_t bc_off = (b * p.K + k) * N * L;
  const T* __restrict__ Bp = static_cast<const T*>(p.B) + bc_off;
  const T* __restrict__ Cp = static_cast<const T*>(p.C) + bc_off;
  const int64_t acc_off = int64_t(s) * p.batch * p.K * N * L + bc_off;
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

// dA[d, n] = sum_b partA[b, d, n]; dD, ddelta_bias likewise over (b, d); fixed order
__global__ void finalize_small_kernel(const BwdParams p) {
  const int64_t KDN = p.KD * p.N;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < KDN; i += int64_t(gridDim.x) * blockDim.x) {
    float sa = 0.f;
    for (int64_t b = 0; b < p.batch; ++b) sa += p.partA[b * KDN + i];
    p.dA[i] = sa;
    if (i < p.KD) {
      float sd = 0.f, sbias = 0.f;
      for (int64_t b = 0; b < p.batch; ++b) {
        sd += p.partD[b * p.KD + i];
        sbias += p.partBias[b * p.KD + i];
      }
      if (p.dD) p.dD[i] = sd;
      if (p.ddelta_bias) p.ddelta_bias[i] = sbias;
    }
  }
}

template <typename T, typename OutT>
void fwd_launch(const FwdParams& p, cudaStream_t stream) {
  const int64_t rows = p.batch * p.KD;
  const int64_t per_block = int64_t(kFwdWarps) * (32 / p.lpr);
  const int64_t blocks = (rows + per_block - 1) / per_block;
  fwd_kernel<T, OutT><<<dim3(unsigned(blocks)), kFwdWarps * 32, 0, stream>>>(p);
}

template <typename T, typename DT>
void bwd_launch(const BwdParams& p, cudaStream_t stream) {
  const int64_t blocks = p.batch * p.K * p.S;
  if (blocks > 0) bwd_kernel<T, DT><<<dim3(unsigned(blocks)), kBwdWarps * 32, 0, stream>>>(p);
  const int64_t M = p.batch * p.K * p.N * p.L;
  if (M > 0) {
    const int64_t g = std::min<int64_t>((M + 255) / 256, 65535LL * 8);
    finalize_bc_kernel<T><<<dim3(unsigned(g)), 256, 0, stream>>>(p.accB, p.accC, static_cast<T*>(p.dB),
                                                                static_cast<T*>(p.dC), M, p.S);
  }
  const int64_t KDN = p.KD * p.N;
  const int64_t g2 = std::min<int64_t>((KDN + 255) / 256, 4096);
  finalize_small_kernel<<<dim3(unsigned(g2)), 256, 0, stream>>>(p);
}

}  // namespace

int bwd_splits(int64_t batch, int K, int64_t G, int N, int64_t L, int num_sms) {
  const int64_t base = batch * K;
  const int64_t per_round = int64_t(kBwdWarps) * (32 / lanes_per_row(L));
  const int64_t rounds = (G + per_round - 1) / per_round;
  const int64_t target = int64_t(num_sms) * 8;  // blocks of 256 threads to fill the GPU
  int64_t S = std::max<int64_t>(1, std::min<int64_t>(rounds, (target + base - 1) / base));
  const int64_t per_split = base * N * L * 8;  // bytes of accB + accC per split
  while (S > 1 && S * per_split > (int64_t(512) << 20)) --S;
  return int(S);
}

const char* launch_fwd(const FwdParams& p, cudaStream_t stream) {
  if (p.batch * p.KD == 0) return nullptr;
  switch (p.dtype * 3 + p.out_dtype) {
    case kF32 * 3 + kF32: fwd_launch<float, float>(p, stream); break;
    case kF16 * 3 + kF32: fwd_launch<__half, float>(p, stream); break;
    case kF16 * 3 + kF16: fwd_launch<__half, __half>(p, stream); break;
    case kBF16 * 3 + kF32: fwd_launch<__nv_bfloat16, float>(p, stream); break;
    case kBF16 * 3 + kBF16: fwd_launch<__nv_bfloat16, __nv_bfloat16>(p, stream); break;
    default: return "unsupported (input dtype, out_dtype) combination";
  }
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

const char* launch_bwd(const BwdParams& p, cudaStream_t stream) {
  if (p.KD == 0) return nullptr;
  switch (p.dtype * 3 + p.dout_dtype) {
    case kF32 * 3 + kF32: bwd_launch<float, float>(p, stream); break;
    case kF16 * 3 + kF32: bwd_launch<__half, float>(p, stream); break;
    case kF16 * 3 + kF16: bwd_launch<__half, __half>(p, stream); break;
    case kBF16 * 3 + kF32: bwd_launch<__nv_bfloat16, float>(p, stream); break;
    case kBF16 * 3 + kBF16: bwd_launch<__nv_bfloat16, __nv_bfloat16>(p, stream); break;
    default: return "unsupported (input dtype, dout dtype) combination";
  }
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace scan
}  // namespace vmamba
