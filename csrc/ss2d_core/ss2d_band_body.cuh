// The banded forward of the fused SS2D core (issue #18): the map is cut into bands of whole rows, and a block
// (batch b, channel tile, band j) keeps the band's x, the current route's xdbl rows and the route accumulator
// of y in shared memory, so that every global access is a contiguous, coalesced run and the block's shared
// memory depends on the band, not on the map (the whole-map forward of ss2d_core_body.cuh stages chunks of 256
// scattered steps between barriers and holds the whole map's accumulator: 1.9 ms at VMamba-T stage 1 on the
// H100 where the unfused chain takes 1.3 ms, reports/logs/2026-12-05_gpu_calls_H100.md).
//
// A route crosses the band in segments: the row routes in one (the band's rows are consecutive steps), the
// column routes in one per column (bh steps down, or up, the column). A segment's effect on the state is affine,
// h_out[n] = exp(A[n] * S) * h_in[n] + b[n], with S the sum of delta over the segment and b the state it leaves
// from a zero state. Three kernels:
//   1. transfer (BandBody<.., false>): every segment's (S, b) into T, from a zero state;
//   2. prefix   (BandPrefixBody): per (batch, route, channel), the segments in route order: the state entering
//               each into E (a short sequential walk per thread);
//   3. output   (BandBody<.., true>): every segment again from its entering state; y of the four routes summed
//               in the band's accumulator (route 0 stores, later routes add: a fixed order), written once.
// Inside a band a row route is the chunked warp scan of the selective scan (8 consecutive steps per lane, the
// warp composes the lanes' affine maps); a column route gives each lane a column and walks it sequentially (no
// shuffles). No route tensor (B, 4, D, L) is written; the scratch is T and E: (1 + N) and N floats per segment
// and channel ((2 + 2 W) * nbands segments per batch row for cross2d).
//
// Shared memory (floats): xs [NW][row_len] x of the tile's channels; acc [NW][row_len] (output kernel);
// xd [row_len][cp] the route's xdbl row of each band pixel: dts at [0, R) then zeros to rp = round4(R), B at
// [rp, rp + N), C at [rp + N, rp + 2N); w [NW][rp] dt_w of each warp's channel (zeros past R). A band pixel i
// lives at pb(i) = i + i / 8: a lane's 8 consecutive pixels (row routes) start 9 apart from its neighbour's, so
// the lanes' scalar accesses fall in distinct banks, and cp = 4 * odd puts the 16-byte xd reads of 8 such lanes
// in distinct banks too.
#pragma once

#include "ss2d_core_body.cuh"

// Resident warps per SM the banded kernels are compiled for (__launch_bounds__: registers <= 65536 / (32 * this)).
// Timing knob for the GPU: -DVMAMBA_SS2D_BAND_WARPS_PER_SM=24 (85 registers) or 32 (64).
#ifndef VMAMBA_SS2D_BAND_WARPS_PER_SM
#define VMAMBA_SS2D_BAND_WARPS_PER_SM 16
#endif

namespace vmamba {
namespace ss2d {

namespace {

struct BandSmem {
  float *xs, *acc, *xd, *w;
};

VMAMBA_HD BandSmem band_carve(unsigned char* raw, bool out, const BandParams& p) {
  BandSmem s{};
  float* q = reinterpret_cast<float*>(raw);
  s.xs = q; q += size_t(kBandWarps) * p.row_len;
  if (out) { s.acc = q; q += size_t(kBandWarps) * p.row_len; }
  s.xd = q; q += size_t(p.row_len) * p.cp;
  s.w = q;
  return s;
}

VMAMBA_HD float4 ld4(const float* q) {
#ifndef __CUDA_ARCH__
  if (reinterpret_cast<uintptr_t>(q) & 15) std::abort();
#endif
  return *reinterpret_cast<const float4*>(q);
}

// Where block `blk` works: batch row, tile, band; the band's first pixel and its pixel count
struct BandPos {
  int64_t b, tile, p0;
  int j, hn, np;
};

VMAMBA_HD BandPos band_pos(const BandParams& p, int64_t blk) {
  BandPos q;
  q.tile = blk % p.ntiles;  // tiles of a band are neighbours in the grid: they share its xdbl rows in L2
  const int64_t rest = blk / p.ntiles;
  q.j = int(rest % p.nbands);
  q.b = rest / p.nbands;
  const int h0 = q.j * p.band_rows;
  q.hn = int(p.H) - h0 < p.band_rows ? int(p.H) - h0 : p.band_rows;
  q.np = q.hn * int(p.W);
  q.p0 = int64_t(h0) * p.W;
  return q;
}

// the number of segments of route kind `kind` and the first one of band j / column w
VMAMBA_HD bool is_col(int kind) { return kind == kCol || kind == kColRev; }
VMAMBA_HD int band_nseg(const BandParams& p, int kind) { return is_col(kind) ? int(p.W) * p.nbands : p.nbands; }

// T / E element offsets: segment `seg` of route k of batch row b, component c (T: 0 = S, 1 + n = b[n]; E: n)
VMAMBA_HD int64_t t_off(const BandParams& p, int64_t b, int k, int seg, int c, int64_t d) {
  return ((b * p.nseg_total + p.seg_off[k] + seg) * (1 + p.N) + c) * p.D + d;
}
VMAMBA_HD int64_t e_off(const BandParams& p, int64_t b, int k, int seg, int n, int64_t d) {
  return ((b * p.nseg_total + p.seg_off[k] + seg) * p.N + n) * p.D + d;
}

// Staging: each thread issues a batch of kStageBatch independent loads before it stores any (one dtype switch per
// batch); a loop that stored each element before loading the next waited a full memory latency per element
// (GPU call 51: 4.9 ms at VMamba-T stage 1).
constexpr int kStageBatch = 8;

// the tile's x over the band (fp32, zeros for channels past D). Channels first: warp w loads channel w's
// contiguous band; channels last: consecutive threads take a pixel's consecutive channels.
template <int NW, typename T, class Ctx>
VMAMBA_HD void band_stage_x_t(const Ctx& ctx, const BandParams& p, const BandSmem& s, const BandPos& q, const T* x) {
  const int64_t d0 = q.tile * NW;
  const int tid = int(ctx.tid());
  if (!p.channels_last) {
    const int w = tid >> 5, lane = tid & 31;
    const bool ok = d0 + w < p.D;
    const T* src = x + (q.b * p.D + (ok ? d0 + w : 0)) * p.L + q.p0;
    float* dst = s.xs + w * p.row_len;
    for (int i0 = lane; i0 < q.np; i0 += 32 * kStageBatch) {
      float v[kStageBatch];
#pragma unroll
      for (int u = 0; u < kStageBatch; ++u) {
        const int i = i0 + 32 * u;
        v[u] = (ok && i < q.np) ? to_float(src[i]) : 0.f;
      }
#pragma unroll
      for (int u = 0; u < kStageBatch; ++u) {
        const int i = i0 + 32 * u;
        if (i < q.np) dst[band_pb(i)] = v[u];
      }
    }
  } else {
    const int n = NW * q.np;
    const T* src = x + (q.b * p.L + q.p0) * p.D + d0;
    for (int e0 = tid; e0 < n; e0 += NW * 32 * kStageBatch) {
      float v[kStageBatch];
#pragma unroll
      for (int u = 0; u < kStageBatch; ++u) {
        const int e = e0 + NW * 32 * u, i = e / NW, ch = e % NW;
        v[u] = (e < n && d0 + ch < p.D) ? to_float(src[int64_t(i) * p.D + ch]) : 0.f;
      }
#pragma unroll
      for (int u = 0; u < kStageBatch; ++u) {
        const int e = e0 + NW * 32 * u, i = e / NW, ch = e % NW;
        if (e < n) s.xs[ch * p.row_len + band_pb(i)] = v[u];
      }
    }
  }
}

template <int NW, class Ctx>
VMAMBA_HD void band_stage_x(const Ctx& ctx, const BandParams& p, const BandSmem& s, const BandPos& q) {
  if (p.x_dtype == kF32) band_stage_x_t<NW>(ctx, p, s, q, static_cast<const float*>(p.x));
  else if (p.x_dtype == kF16) band_stage_x_t<NW>(ctx, p, s, q, static_cast<const __half*>(p.x));
  else band_stage_x_t<NW>(ctx, p, s, q, static_cast<const __nv_bfloat16*>(p.x));
}

// route k's xdbl rows of the band's pixels (see the layout above): work item = (pixel, group of 8 consecutive
// components of its C = R + 2N), 8 loads in flight; the item of group 0 also zeroes the row's [R, rp) (dt_w is 0
// there, but 0 * a stale NaN would not be). And the dt_w row of each warp's channel.
template <int NW, class Ctx>
VMAMBA_HD void band_stage_route(const Ctx& ctx, const BandParams& p, const BandSmem& s, const BandPos& q, int k) {
  const int R = p.R, rp = p.rp, C = p.C;
  const int groups = (C + 7) / 8;
  const int n = q.np * groups;
  const int64_t row0 = (q.b * p.L + q.p0) * p.K + k;
  for (int e = int(ctx.tid()); e < n; e += NW * 32) {
    const int i = e / groups, c0 = (e - i * groups) * 8;
    const int m = C - c0 < 8 ? C - c0 : 8;
    float v[8];
    ldf8(p.xdbl, p.xdbl_dtype, (row0 + int64_t(i) * p.K) * C + c0, m, v);
    float* dst = s.xd + band_pb(i) * p.cp;
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      const int c = c0 + j;
      if (j < m) dst[c < R ? c : rp + (c - R)] = v[j];
    }
    if (c0 == 0)
      for (int c = R; c < rp; ++c) dst[c] = 0.f;
  }
  for (int e = int(ctx.tid()); e < NW * rp; e += NW * 32) {
    const int w = e / rp, r = e - w * rp;
    const int64_t d = q.tile * NW + w;
    s.w[e] = (r < R && d < p.D) ? ldf(p.dt_w, p.w_dtype, (int64_t(k) * p.D + d) * R + r) : 0.f;
  }
}

// delta of 8 band pixels (their pb indices in qi; items past nv get 0: the identity map)
VMAMBA_HD void band_delta(const BandParams& p, const BandSmem& s, int warp, const int (&qi)[kItems], int nv,
                          float bias, float (&dt)[kItems]) {
  float v[kItems];
#pragma unroll
  for (int i = 0; i < kItems; ++i) v[i] = bias;
  const float* wrow = s.w + warp * p.rp;
  for (int r = 0; r < p.rp; r += 4) {
    const float4 w4 = ld4(wrow + r);
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const float4 x4 = ld4(s.xd + qi[i] * p.cp + r);
      v[i] = fmaf(w4.x, x4.x, v[i]);
      v[i] = fmaf(w4.y, x4.y, v[i]);
      v[i] = fmaf(w4.z, x4.z, v[i]);
      v[i] = fmaf(w4.w, x4.w, v[i]);
    }
  }
#pragma unroll
  for (int i = 0; i < kItems; ++i) dt[i] = i < nv ? (p.softplus ? softplus20(v[i]) : v[i]) : 0.f;
}

// A (log2-scaled), D and delta_bias of route k for channel d
template <int NS>
struct BandConst {
  float Al[NS];
  float Dv, bias;
};

template <int NS>
VMAMBA_HD BandConst<NS> band_const(const BandParams& p, int k, int64_t d) {
  BandConst<NS> c;
  const int64_t kd = int64_t(k) * p.D + d;
#pragma unroll
  for (int n = 0; n < NS; ++n) c.Al[n] = n < p.N ? p.A[kd * p.N + n] * kLog2e : 0.f;
  c.Dv = p.Dp ? p.Dp[kd] : 0.f;
  c.bias = p.bias ? p.bias[kd] : 0.f;
  return c;
}

// A row route across the band: np consecutive steps (reversed for kRowRev), chunks of 32 lanes x 8 steps.
// carry: the state entering the band (every lane the same); on return the state leaving it.
template <int NS, bool kOut, class Ctx>
VMAMBA_HD void band_row_walk(const Ctx& ctx, const BandParams& p, const BandSmem& s, int warp, int lane, int np,
                             bool rev, bool first_route, const BandConst<NS>& rc, float (&carry)[NS], float& ssum) {
  const float* xrow = s.xs + warp * p.row_len;
  float* arow = kOut ? s.acc + warp * p.row_len : nullptr;
  const int bo = p.rp, co = p.rp + p.N;
  for (int c0 = 0; c0 < np; c0 += kChunk) {
    const int t0 = c0 + lane * kItems;
    const int nv = np - t0 <= 0 ? 0 : (np - t0 >= kItems ? kItems : np - t0);
    int qi[kItems];
    float u[kItems], dt[kItems], y[kItems];
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int st = t0 + i;
      qi[i] = i < nv ? band_pb(rev ? np - 1 - st : st) : 0;
      u[i] = i < nv ? xrow[qi[i]] : 0.f;
    }
    band_delta(p, s, warp, qi, nv, rc.bias, dt);
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      if (!kOut) ssum += dt[i];
      y[i] = rc.Dv * u[i];
    }
#pragma unroll
    for (int n = 0; n < NS; ++n) {
      if (n >= p.N) break;
      float a[kItems], bx[kItems];
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        a[i] = exp2f(dt[i] * rc.Al[n]);
        bx[i] = dt[i] * u[i] * s.xd[qi[i] * p.cp + bo + n];
      }
      float ea, eb, ta, tb;
      chunk_maps(ctx, a, bx, lane, ea, eb, ta, tb);
      if (kOut) {
        float h = fmaf(ea, carry[n], eb);
#pragma unroll
        for (int i = 0; i < kItems; ++i) {
          h = fmaf(a[i], h, bx[i]);
          y[i] = fmaf(s.xd[qi[i] * p.cp + co + n], h, y[i]);
        }
      }
      carry[n] = fmaf(ta, carry[n], tb);
    }
    if (kOut) {
#pragma unroll
      for (int i = 0; i < kItems; ++i)
        if (i < nv) arow[qi[i]] = first_route ? y[i] : arow[qi[i]] + y[i];
    }
  }
}

// A column route across the band: lane = column w (w, w + 32, ...), walking its hn pixels down (up for
// kColRev) from the state entering the segment; the transfer kernel writes each segment's (S, b) to T.
template <int NS, bool kOut>
VMAMBA_HD void band_col_walk(const BandParams& p, const BandSmem& s, const BandPos& q, int warp, int lane, int k,
                             bool rev, bool first_route, const BandConst<NS>& rc, int64_t d) {
  const float* xrow = s.xs + warp * p.row_len;
  float* arow = kOut ? s.acc + warp * p.row_len : nullptr;
  const int bo = p.rp, co = p.rp + p.N;
  const int Wm = int(p.W);
  for (int w = lane; w < Wm; w += 32) {
    const int seg = w * p.nbands + q.j;
    float h[NS];
#pragma unroll
    for (int n = 0; n < NS; ++n) h[n] = (kOut && n < p.N) ? p.E[e_off(p, q.b, k, seg, n, d)] : 0.f;
    float ssum = 0.f;
    for (int r0 = 0; r0 < q.hn; r0 += kItems) {
      const int nv = q.hn - r0 >= kItems ? kItems : q.hn - r0;
      int qi[kItems];
      float u[kItems], dt[kItems];
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        const int row = r0 + i;
        qi[i] = i < nv ? band_pb((rev ? q.hn - 1 - row : row) * Wm + w) : 0;
        u[i] = i < nv ? xrow[qi[i]] : 0.f;
      }
      band_delta(p, s, warp, qi, nv, rc.bias, dt);
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        ssum += dt[i];
        const float du = dt[i] * u[i];
        float y = rc.Dv * u[i];
#pragma unroll
        for (int n = 0; n < NS; ++n) {
          if (n >= p.N) break;
          h[n] = fmaf(exp2f(dt[i] * rc.Al[n]), h[n], du * s.xd[qi[i] * p.cp + bo + n]);
          if (kOut) y = fmaf(s.xd[qi[i] * p.cp + co + n], h[n], y);
        }
        if (kOut && i < nv) arow[qi[i]] = first_route ? y : arow[qi[i]] + y;
      }
    }
    if (!kOut) {
      p.T[t_off(p, q.b, k, seg, 0, d)] = ssum;
#pragma unroll
      for (int n = 0; n < NS; ++n)
        if (n < p.N) p.T[t_off(p, q.b, k, seg, 1 + n, d)] = h[n];
    }
  }
}

// y of the band (the accumulator) into `out`, x's layout (channels first: warp w writes channel w's band)
template <int NW, class Ctx>
VMAMBA_HD void band_write(const Ctx& ctx, const BandParams& p, const BandSmem& s, const BandPos& q) {
  const int64_t d0 = q.tile * NW;
  const int tid = int(ctx.tid());
  if (!p.channels_last) {
    const int w = tid >> 5, lane = tid & 31;
    if (d0 + w >= p.D) return;
    const int64_t base = (q.b * p.D + d0 + w) * p.L + q.p0;
    const float* src = s.acc + w * p.row_len;
    for (int i = lane; i < q.np; i += 32) stf(p.out, p.out_dtype, base + i, src[band_pb(i)]);
  } else {
    const int n = NW * q.np;
    const int64_t base = (q.b * p.L + q.p0) * p.D + d0;
    for (int e = tid; e < n; e += NW * 32) {
      const int i = e / NW, ch = e % NW;
      if (d0 + ch < p.D) stf(p.out, p.out_dtype, base + int64_t(i) * p.D + ch, s.acc[ch * p.row_len + band_pb(i)]);
    }
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Transfer (kOut = false) and output (kOut = true) kernels: block = (batch, band, tile), tile fastest;
// warp w = channel tile * NW + w; NS >= N states per lane in registers.
template <int NW, int NS, bool kOut>
struct BandBody {
  using Args = BandParams;
  static constexpr int kMaxThreads = NW * 32, kMinBlocks = VMAMBA_SS2D_BAND_WARPS_PER_SM / NW;

  template <class Ctx>
  static VMAMBA_HD void run(const Ctx& ctx, const Args& p, unsigned char* smem) {
    const BandSmem s = band_carve(smem, kOut, p);
    const int warp = int(ctx.tid()) >> 5, lane = int(ctx.tid()) & 31;
    const BandPos q = band_pos(p, ctx.block());
    const int64_t d = q.tile * NW + warp;
    const bool active = d < p.D;
    band_stage_x<NW>(ctx, p, s, q);
    for (int k = 0; k < p.K; ++k) {
      ctx.sync();  // the previous route is done with xd and w
      band_stage_route<NW>(ctx, p, s, q, k);
      ctx.sync();
      if (!active) continue;
      const BandConst<NS> rc = band_const<NS>(p, k, d);
      const int kind = p.kinds[k];
      if (is_col(kind)) {
        band_col_walk<NS, kOut>(p, s, q, warp, lane, k, kind == kColRev, k == 0, rc, d);
      } else {
        float carry[NS], ssum = 0.f;
#pragma unroll
        for (int n = 0; n < NS; ++n) carry[n] = (kOut && n < p.N) ? p.E[e_off(p, q.b, k, q.j, n, d)] : 0.f;
        band_row_walk<NS, kOut>(ctx, p, s, warp, lane, q.np, kind == kRowRev, k == 0, rc, carry, ssum);
        if (!kOut) {
          ssum = ctx_sum_first(ctx, ssum, lane);
          if (lane == 0) {
            p.T[t_off(p, q.b, k, q.j, 0, d)] = ssum;
#pragma unroll
            for (int n = 0; n < NS; ++n)
              if (n < p.N) p.T[t_off(p, q.b, k, q.j, 1 + n, d)] = carry[n];
          }
        }
      }
    }
    if (kOut) {
      ctx.sync();
      band_write<NW>(ctx, p, s, q);
    }
  }
};

// Prefix: thread = (batch, route, channel), channel fastest (T / E rows are read and written coalesced); the
// route's segments in its order (forward kinds ascending, reversed kinds descending).
template <int NS>
struct BandPrefixBody {
  using Args = BandParams;
  static constexpr int kMaxThreads = 256, kMinBlocks = 1;

  template <class Ctx>
  static VMAMBA_HD void run(const Ctx& ctx, const Args& p, unsigned char*) {
    const int64_t idx = int64_t(ctx.block()) * ctx.nthreads() + ctx.tid();
    if (idx >= p.batch * p.K * p.D) return;
    const int64_t d = idx % p.D;
    const int k = int((idx / p.D) % p.K);
    const int64_t b = idx / (p.D * p.K);
    const int kind = p.kinds[k];
    const int nseg = band_nseg(p, kind);
    const bool rev = kind >= kRowRev;
    float Al[NS], h[NS];
#pragma unroll
    for (int n = 0; n < NS; ++n) {
      Al[n] = n < p.N ? p.A[(int64_t(k) * p.D + d) * p.N + n] * kLog2e : 0.f;
      h[n] = 0.f;
    }
    for (int i = 0; i < nseg; ++i) {
      const int seg = rev ? nseg - 1 - i : i;
      const float S = p.T[t_off(p, b, k, seg, 0, d)];
#pragma unroll
      for (int n = 0; n < NS; ++n) {
        if (n >= p.N) break;
        p.E[e_off(p, b, k, seg, n, d)] = h[n];
        h[n] = fmaf(exp2f(Al[n] * S), h[n], p.T[t_off(p, b, k, seg, 1 + n, d)]);
      }
    }
  }
};

template <class Exec, int NS>
cudaError_t run_band_fwd_ns(const Exec& ex, const BandParams& p) {
  const int64_t blocks = p.batch * p.nbands * p.ntiles;
  const size_t smem_t = band_smem_floats(false, p.band_rows, p.W, p.R, p.N) * sizeof(float);
  const size_t smem_o = band_smem_floats(true, p.band_rows, p.W, p.R, p.N) * sizeof(float);
  cudaError_t e = ex.template launch<BandBody<kBandWarps, NS, false>>(dim3(unsigned(blocks)), kBandWarps * 32, smem_t, p);
  const int64_t threads = p.batch * p.K * p.D;
  if (e == cudaSuccess)
    e = ex.template launch<BandPrefixBody<NS>>(dim3(unsigned((threads + 255) / 256)), 256, 0, p);
  if (e == cudaSuccess)
    e = ex.template launch<BandBody<kBandWarps, NS, true>>(dim3(unsigned(blocks)), kBandWarps * 32, smem_o, p);
  return e;
}

// The launch sequence (GPU and emulator); p planned by the caller (band_rows, nbands, segments, T, E).
template <class Exec>
cudaError_t run_band_fwd(const Exec& ex, const BandParams& p) {
  if (p.batch * p.L == 0 || p.D == 0) return cudaSuccess;
  if (p.N == 1) return run_band_fwd_ns<Exec, 1>(ex, p);
  if (p.N <= 4) return run_band_fwd_ns<Exec, 4>(ex, p);
  return run_band_fwd_ns<Exec, kMaxDState>(ex, p);
}

}  // namespace ss2d
}  // namespace vmamba
