// The segmented forward of the fused SS2D core (issue #18): a thread per channel, the routes cut into segments.
//
// A thread owns one channel d of one batch row and walks a route step by step, sequentially: at every step it
// reads its x (consecutive threads = consecutive channels: one coalesced access per warp in channels-last) and
// the step's xdbl row (the same for every channel: staged once per block in shared memory, read as broadcasts),
// forms delta with the R-term dt projection and updates its N states in registers. No warp scans, no shuffles,
// every lane busy at any map size (the whole-map forward of ss2d_core_body.cuh gives lanes steps and leaves
// 25 of 32 idle on a 7x7 map).
//
// The routes fall in two passes: the row routes (row-major order, forward or reversed) and the column routes
// (column-major order). A pass cuts its order into segments of P consecutive positions; a block = (batch b,
// segment j, group of G channels) owns the pixels of one segment, which both routes of the pass cross (the
// reversed one backwards), so its y accumulator is P x G floats in shared memory, independent of the map. A
// segment's effect on a state is affine, h_out[n] = exp(A[n] * S) h_in[n] + b[n] (S: the sum of delta over the
// segment, b: the state it leaves from zero). Kernels:
//   1. transfer (SegBody<NS, false>, both passes in one grid): every segment's (S, b) into T, from zero;
//   2. prefix   (SegPrefixBody<NS, 1>): per (batch, route, channel), the segments in route order; the state entering
//               each overwrites its b in T;
//   3. output   (SegBody<NS, true>, once per pass): every segment again from its entering state, y of the pass's
//               routes summed in the block's accumulator (first route stores, the next adds: a fixed order).
//               The row pass writes its sum to a fp32 scratch (B, L, D), which the column pass's blocks load
//               as their starting accumulator; the last pass writes y in x's layout and out_dtype.
// With one segment (L <= P) the transfer and prefix kernels are skipped (every route enters at zero). y at a
// pixel is ((y_row + y_rowrev) + y_col) + y_colrev in fp32: deterministic. No (B, 4, D, L) tensor is written;
// the scratch is T ((1 + N) floats per segment, route and channel) and the (B, L, D) fp32 sum of the row pass.
//
// Shared memory (floats): acc [P][G + 1] (output kernel; a thread's column is its own), xd [R4 + 2N][PS]
// (the route's xdbl rows of the segment transposed: dts rows [0, R) then zero rows to R4 = round4(R), B rows,
// C rows; PS = round4(P) + 4, so four consecutive steps are one 16-byte broadcast), w [R4][G] (each thread's
// dt_w row for the route; zeros past R), pix [round4(P)] (the pixel of each position).
#pragma once

#include "ss2d_core_body.cuh"

// Resident warps per SM the segmented kernels are compiled for (__launch_bounds__: registers <= 65536 / (32 * this)).
#ifndef VMAMBA_SS2D_SEG_WARPS_PER_SM
#define VMAMBA_SS2D_SEG_WARPS_PER_SM 32
#endif

namespace vmamba {
namespace ss2d {

namespace {

VMAMBA_HD float4 ld4(const float* q) {
#ifndef __CUDA_ARCH__
  if (reinterpret_cast<uintptr_t>(q) & 15) std::abort();
#endif
  return *reinterpret_cast<const float4*>(q);
}

struct SegSmem {
  float *acc, *xs, *xd, *w;
  int* pix;
};

// xs_too: an x staging array [P][G + 1] as well (the backward's transfer; the forward reads x from global memory)
VMAMBA_HD SegSmem seg_carve(unsigned char* raw, bool out, const SegParams& p, bool xs_too = false) {
  SegSmem s{};
  float* q = reinterpret_cast<float*>(raw);
  if (out) { s.acc = q; q += seg_acc_floats(p.P, p.G); }
  if (xs_too) { s.xs = q; q += seg_acc_floats(p.P, p.G); }
  s.xd = q; q += size_t(seg_r4(p.R) + 2 * p.N) * seg_ps(p.P);
  s.w = q; q += size_t(seg_r4(p.R)) * p.G;
  s.pix = reinterpret_cast<int*>(q);
  return s;
}

// A block's place: channel group g, segment j, batch row b, and (transfer kernels, whose grid spans both passes)
// the pass; blocks are numbered ((pass * B + b) * nseg + j) * ngroups + g.
struct SegBlock {
  int g, j, grid_pass;
  int64_t b;
};

VMAMBA_HD SegBlock seg_block(const SegParams& p, int64_t blk) {
  SegBlock q;
  q.g = int(blk % p.ngroups);
  blk /= p.ngroups;
  q.j = int(blk % p.nseg);
  blk /= p.nseg;
  q.b = blk % p.batch;
  q.grid_pass = int(blk / p.batch);
  return q;
}

// the pixel at position q of a pass's order (pass 0: row-major; pass 1: column-major, q = w * H + h)
VMAMBA_HD int seg_pixel(const SegParams& p, int pass, int q) {
  if (pass == 0) return q;
  uint32_t w, h;
  p.h_div.divmod(uint32_t(q), w, h);
  return int(h) * int(p.W) + int(w);
}

VMAMBA_HD bool route_in_pass(int kind, int pass) { return (kind & 1) == pass; }

VMAMBA_HD int64_t t_index(const SegParams& p, int64_t b, int k, int j, int c, int64_t d) {
  return (((b * p.K + k) * int64_t(p.nseg) + j) * p.tc + c) * p.D + d;
}

// x's element (b, d, pixel) in its layout
VMAMBA_HD int64_t x_index(const SegParams& p, int64_t b, int64_t d, int pix) {
  return p.channels_last ? (b * p.L + pix) * p.D + d : (b * p.D + d) * p.L + pix;
}

// Stage route k's xdbl rows of the segment's np positions (transposed, see the header) with G threads: batches of
// 4 independent loads per thread, so that they are in flight together. The loads are unconditional (indices past
// the segment clamped to its last element) and converted at the store: a load converted inside its own branch
// waits there for memory, which serialized the sweep forward's loads (GPU call 56,
// reports/logs/2026-12-06_sweep_forward.md).
template <typename T, class Ctx>
VMAMBA_HD void seg_stage_t(const Ctx& ctx, const SegParams& p, const SegSmem& s, int64_t b, int k, int np,
                           const T* src) {
  const int C = p.C, R = p.R, R4 = seg_r4(p.R), PS = seg_ps(p.P), G = int(ctx.nthreads());
  const int total = np * C;
  for (int e0 = int(ctx.tid()); e0 < total; e0 += 4 * G) {
    T raw[4];
    int row[4], col[4];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      const int e = e0 + q * G < total ? e0 + q * G : total - 1;
      const int i = e / C, c = e - i * C;
      row[q] = e0 + q * G < total ? (c < R ? c : R4 + (c - R)) : -1;
      col[q] = i;
      raw[q] = src[((b * p.L + s.pix[i]) * p.K + k) * C + c];
    }
#pragma unroll
    for (int q = 0; q < 4; ++q)
      if (row[q] >= 0) s.xd[row[q] * PS + col[q]] = to_float(raw[q]);
  }
}

template <class Ctx>
VMAMBA_HD void seg_stage(const Ctx& ctx, const SegParams& p, const SegSmem& s, int64_t b, int k, int np) {
  if (p.xdbl_dtype == kF32) seg_stage_t(ctx, p, s, b, k, np, static_cast<const float*>(p.xdbl));
  else if (p.xdbl_dtype == kF16) seg_stage_t(ctx, p, s, b, k, np, static_cast<const __half*>(p.xdbl));
  else seg_stage_t(ctx, p, s, b, k, np, static_cast<const __nv_bfloat16*>(p.xdbl));
}

// Stage the block's region of a tensor of x's layout (its np positions x G channels, channels past D as 0) into
// dst [P][G + 1] fp32, cooperatively: consecutive threads take consecutive channels (channels-last) or consecutive
// positions (channels-first), 8 independent loads in flight per thread (unconditional, at clamped indices, as in
// seg_stage_t). The backward's walks read shared memory only. The forward reads x in its walk: staging it too
// doubles the block's shared memory, and that measured slower (GPU call 54,
// reports/logs/2026-12-06_segmented_core.md).
template <typename T, class Ctx>
VMAMBA_HD void seg_stage_map_t(const Ctx& ctx, const SegParams& p, const T* src, int64_t b, int g, int np,
                               const int* pix, float* dst) {
  const int G = int(ctx.nthreads()), total = np * G;
  for (int e0 = int(ctx.tid()); e0 < total; e0 += 8 * G) {
    T raw[8];
    int at[8];
    bool on[8];  // a real channel (d < D; else the value stages as 0)
#pragma unroll
    for (int q = 0; q < 8; ++q) {
      const int e = e0 + q * G < total ? e0 + q * G : total - 1;
      int i, tt;
      if (p.channels_last) { i = e / G; tt = e - i * G; } else { tt = e / np; i = e - tt * np; }
      const int64_t d = int64_t(g) * G + tt;
      at[q] = e0 + q * G < total ? i * (G + 1) + tt : -1;
      on[q] = d < p.D;
      raw[q] = src[x_index(p, b, on[q] ? d : p.D - 1, pix[i])];
    }
#pragma unroll
    for (int q = 0; q < 8; ++q)
      if (at[q] >= 0) dst[at[q]] = on[q] ? to_float(raw[q]) : 0.f;
  }
}

template <class Ctx>
VMAMBA_HD void seg_stage_map(const Ctx& ctx, const SegParams& p, const void* src, int dt, int64_t b, int g, int np,
                             const int* pix, float* dst) {
  if (dt == kF32) seg_stage_map_t(ctx, p, static_cast<const float*>(src), b, g, np, pix, dst);
  else if (dt == kF16) seg_stage_map_t(ctx, p, static_cast<const __half*>(src), b, g, np, pix, dst);
  else seg_stage_map_t(ctx, p, static_cast<const __nv_bfloat16*>(src), b, g, np, pix, dst);
}

template <int NS>
struct SegRoute {
  float Al[NS];  // A * log2(e), 0 past N
  float Dv = 0.f, bias = 0.f;
};

// The thread's walk of route k over the segment's np positions, from the state h (updated in place). OUT: y of
// every position into the thread's accumulator column (store when `first`, else add); else S += delta.
template <int NS, bool OUT, bool REV, typename TX>
VMAMBA_HD void seg_walk(const SegParams& p, const SegSmem& s, int t, int G, int64_t b, int64_t dc, int np,
                        const SegRoute<NS>& rc, float (&h)[NS], float& S, bool first, const TX* x) {
  const int ng = (np + 3) >> 2;
  const int R4 = seg_r4(p.R), PS = seg_ps(p.P), N = p.N;
  for (int g0 = 0; g0 < ng; ++g0) {
    const int p0 = (REV ? ng - 1 - g0 : g0) * 4;
    float u[4], v[4], dt[4], y[4];
    TX xr[4];  // loaded unconditionally (positions past the segment clamped to its last), converted after
#pragma unroll
    for (int q = 0; q < 4; ++q) xr[q] = x[x_index(p, b, dc, s.pix[p0 + q < np ? p0 + q : np - 1])];
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      u[q] = p0 + q < np ? to_float(xr[q]) : 0.f;
      v[q] = rc.bias;
    }
    for (int r = 0; r < R4; r += 4) {
#pragma unroll
      for (int j = 0; j < 4; ++j) {
        const float wr = s.w[(r + j) * G + t];
        const float4 xv = ld4(s.xd + (r + j) * PS + p0);
        v[0] = fmaf(wr, xv.x, v[0]);
        v[1] = fmaf(wr, xv.y, v[1]);
        v[2] = fmaf(wr, xv.z, v[2]);
        v[3] = fmaf(wr, xv.w, v[3]);
      }
    }
#pragma unroll
    for (int q = 0; q < 4; ++q) {
      // positions past the segment: delta 0, the identity map
      dt[q] = p0 + q < np ? (p.softplus ? softplus20(v[q]) : v[q]) : 0.f;
      y[q] = rc.Dv * u[q];
    }
    if (!OUT) {
#pragma unroll
      for (int qq = 0; qq < 4; ++qq) S += dt[REV ? 3 - qq : qq];
    }
#pragma unroll
    for (int n = 0; n < NS; ++n) {
      if (n >= N) break;
      const float4 b4 = ld4(s.xd + (R4 + n) * PS + p0);
      const float Bv[4] = {b4.x, b4.y, b4.z, b4.w};
      float Cv[4] = {0.f, 0.f, 0.f, 0.f};
      if (OUT) {
        const float4 c4 = ld4(s.xd + (R4 + N + n) * PS + p0);
        Cv[0] = c4.x; Cv[1] = c4.y; Cv[2] = c4.z; Cv[3] = c4.w;
      }
#pragma unroll
      for (int qq = 0; qq < 4; ++qq) {
        const int q = REV ? 3 - qq : qq;
        h[n] = fmaf(exp2f(dt[q] * rc.Al[n]), h[n], dt[q] * u[q] * Bv[q]);
        if (OUT) y[q] = fmaf(Cv[q], h[n], y[q]);
      }
    }
    if (OUT) {
#pragma unroll
      for (int q = 0; q < 4; ++q) {
        if (p0 + q < np) {
          float& dst = s.acc[(p0 + q) * (G + 1) + t];
          dst = first ? y[q] : dst + y[q];
        }
      }
    }
  }
}

template <int NS, bool OUT, typename TX>
VMAMBA_HD void seg_walk_dir(const SegParams& p, const SegSmem& s, int t, int G, int64_t b, int64_t dc, int np,
                            const SegRoute<NS>& rc, float (&h)[NS], float& S, bool first, bool rev) {
  const TX* x = static_cast<const TX*>(p.x);
  if (rev) seg_walk<NS, OUT, true>(p, s, t, G, b, dc, np, rc, h, S, first, x);
  else seg_walk<NS, OUT, false>(p, s, t, G, b, dc, np, rc, h, S, first, x);
}

}  // namespace

// ------------------------------------------------------------------------------------------------
// Transfer (OUT = false; block = (pass, b, segment, group), every route of the pass) and output (OUT = true;
// block = (b, segment, group) of pass p.pass).
template <int NS, bool OUT>
struct SegBody {
  using Args = SegParams;
  // d_state 16 keeps 2 x 16 floats of state and A in registers: half the warps
  static constexpr int kMaxThreads = kSegMaxThreads,
                       kMinBlocks = (NS > 4 ? VMAMBA_SS2D_SEG_WARPS_PER_SM / 2 : VMAMBA_SS2D_SEG_WARPS_PER_SM) * 32 /
                                    kSegMaxThreads;

  template <class Ctx>
  static VMAMBA_HD void run(const Ctx& ctx, const Args& p, unsigned char* smem) {
    const SegSmem s = seg_carve(smem, OUT, p);
    const int G = int(ctx.nthreads()), t = int(ctx.tid());
    const SegBlock sb = seg_block(p, ctx.block());
    const int g = sb.g, j = sb.j;
    const int64_t b = sb.b;
    const int pass = OUT ? p.pass : sb.grid_pass;
    const int64_t d = int64_t(g) * G + t;
    const bool active = d < p.D;
    const int64_t dc = active ? d : 0;
    const int q0 = j * p.P;
    const int np = int(p.L - q0 < p.P ? p.L - q0 : p.P);
    const int R = p.R, R4 = seg_r4(p.R), N = p.N, PS = seg_ps(p.P);

    for (int i = t; i < np; i += G) s.pix[i] = seg_pixel(p, pass, q0 + i);
    // the padding of xd (rows R..R4, positions np..PS) stays zero: staging writes only real entries
    for (int e = t; e < (R4 + 2 * N) * PS; e += G) s.xd[e] = 0.f;
    ctx.sync();
    if (OUT && pass > 0) {
#pragma unroll 4
      for (int i = 0; i < np; ++i) {
        const float v = p.partial[(b * p.L + s.pix[i]) * p.D + dc];  // unconditional: the loads go together
        s.acc[i * (G + 1) + t] = active ? v : 0.f;
      }
    }

    int ri = 0;  // the pass's route number
    for (int k = 0; k < p.K; ++k) {
      const int kind = p.kinds[k];
      if (!route_in_pass(kind, pass)) continue;
      const int64_t kd = int64_t(k) * p.D + dc;
      SegRoute<NS> rc;
#pragma unroll
      for (int n = 0; n < NS; ++n) rc.Al[n] = n < N ? p.A[kd * N + n] * kLog2e : 0.f;
      rc.Dv = p.Dp ? p.Dp[kd] : 0.f;
      rc.bias = p.bias ? p.bias[kd] : 0.f;
      // the thread's own column of w: no barrier needed
      for (int r = 0; r < R4; ++r) s.w[r * G + t] = (r < R && active) ? ldf(p.dt_w, p.w_dtype, kd * R + r) : 0.f;
      seg_stage(ctx, p, s, b, k, np);
      ctx.sync();
      float h[NS];
#pragma unroll
      for (int n = 0; n < NS; ++n) h[n] = (OUT && p.nseg > 1 && n < N) ? p.T[t_index(p, b, k, j, 1 + n, dc)] : 0.f;
      float S = 0.f;
      const bool first = OUT && pass == 0 && ri == 0, rev = kind >= kRowRev;
      if (p.x_dtype == kF32) seg_walk_dir<NS, OUT, float>(p, s, t, G, b, dc, np, rc, h, S, first, rev);
      else if (p.x_dtype == kF16) seg_walk_dir<NS, OUT, __half>(p, s, t, G, b, dc, np, rc, h, S, first, rev);
      else seg_walk_dir<NS, OUT, __nv_bfloat16>(p, s, t, G, b, dc, np, rc, h, S, first, rev);
      if (!OUT && active) {
        p.T[t_index(p, b, k, j, 0, d)] = S;
#pragma unroll
        for (int n = 0; n < NS; ++n)
          if (n < N) p.T[t_index(p, b, k, j, 1 + n, d)] = h[n];
      }
      ++ri;
      ctx.sync();  // xd is restaged for the next route
    }
    if (!OUT) return;
    if (pass + 1 < p.npass) {
      // the row pass's sum, (B, L, D) fp32: the column pass starts from it
      if (active)
        for (int i = 0; i < np; ++i) p.partial[(b * p.L + s.pix[i]) * p.D + d] = s.acc[i * (G + 1) + t];
    } else if (p.channels_last) {
      if (active)
        for (int i = 0; i < np; ++i) stf(p.out, p.out_dtype, (b * p.L + s.pix[i]) * p.D + d, s.acc[i * (G + 1) + t]);
    } else {
      // consecutive threads: consecutive positions of one channel (consecutive pixels in the row pass)
      for (int e = t; e < np * G; e += G) {
        const int tt = e / np, i = e - tt * np;
        const int64_t dd = int64_t(g) * G + tt;
        if (dd < p.D) stf(p.out, p.out_dtype, (b * p.D + dd) * p.L + s.pix[i], s.acc[i * (G + 1) + tt]);
      }
    }
  }
};

// Prefix: thread = (b, k, d). The forward state entering each segment (route order) replaces its b in T; with
// DIRS = 2 (the backward) also the adjoint entering it from after (reverse route order) replaces its c. Loads run in
// batches (independent, in flight together) before the dependent chain.
template <int NS, int DIRS>
struct SegPrefixBody {
  using Args = SegParams;
  static constexpr int kMaxThreads = 256, kMinBlocks = 1;
  static constexpr int kBatch = NS == 1 ? 8 : NS <= 4 ? 4 : 1;

  template <class Ctx>
  static VMAMBA_HD void run(const Ctx& ctx, const Args& p, unsigned char*) {
    const int64_t idx = int64_t(ctx.block()) * ctx.nthreads() + ctx.tid();
    if (idx >= p.batch * p.K * p.D) return;
    const int64_t d = idx % p.D;
    const int k = int((idx / p.D) % p.K);
    const int64_t b = idx / (p.D * p.K);
    const bool rev = p.kinds[k] >= kRowRev;
    const int N = p.N;
    float Al[NS];
#pragma unroll
    for (int n = 0; n < NS; ++n) Al[n] = n < N ? p.A[(int64_t(k) * p.D + d) * N + n] * kLog2e : 0.f;
    // dir 0: the forward state (slots 1..N, route order); dir 1: the adjoint (slots 1+N..2N, reverse route order)
    for (int dir = 0; dir < DIRS; ++dir) {
      const int off = dir == 0 ? 1 : 1 + N;
      const bool down = rev != (dir == 1);  // walk segments from the last to the first
      float h[NS];
#pragma unroll
      for (int n = 0; n < NS; ++n) h[n] = 0.f;
      for (int i0 = 0; i0 < p.nseg; i0 += kBatch) {
        float S[kBatch], bb[kBatch][NS];
#pragma unroll
        for (int q = 0; q < kBatch; ++q) {
          const int i = i0 + q;
          const int j = down ? p.nseg - 1 - i : i;
          S[q] = i < p.nseg ? p.T[t_index(p, b, k, j, 0, d)] : 0.f;
#pragma unroll
          for (int n = 0; n < NS; ++n) bb[q][n] = (i < p.nseg && n < N) ? p.T[t_index(p, b, k, j, off + n, d)] : 0.f;
        }
#pragma unroll
        for (int q = 0; q < kBatch; ++q) {
          const int i = i0 + q;
          if (i >= p.nseg) break;
          const int j = down ? p.nseg - 1 - i : i;
#pragma unroll
          for (int n = 0; n < NS; ++n) {
            if (n >= N) break;
            p.T[t_index(p, b, k, j, off + n, d)] = h[n];
            h[n] = fmaf(exp2f(Al[n] * S[q]), h[n], bb[q][n]);
          }
        }
      }
    }
  }
};

namespace {

template <class Exec, int NS>
cudaError_t run_seg_fwd_ns(const Exec& ex, const SegParams& p) {
  const int64_t blocks = p.batch * p.nseg * p.ngroups;
  cudaError_t e = cudaSuccess;
  if (p.nseg > 1) {
    const size_t smem_t = seg_smem_floats(false, p.P, p.G, p.R, p.N) * sizeof(float);
    e = ex.template launch<SegBody<NS, false>>(dim3(unsigned(blocks * p.npass)), p.G, smem_t, p);
    const int64_t threads = p.batch * p.K * p.D;
    if (e == cudaSuccess) e = ex.template launch<SegPrefixBody<NS, 1>>(dim3(unsigned((threads + 255) / 256)), 256, 0, p);
  }
  const size_t smem_o = seg_smem_floats(true, p.P, p.G, p.R, p.N) * sizeof(float);
  for (int pass = 0; pass < p.npass && e == cudaSuccess; ++pass) {
    SegParams q = p;
    q.pass = pass;
    e = ex.template launch<SegBody<NS, true>>(dim3(unsigned(blocks)), p.G, smem_o, q);
  }
  return e;
}

// The launch sequence (GPU and emulator); p planned by the caller (seg_geometry, T, partial).
template <class Exec>
cudaError_t run_seg_fwd(const Exec& ex, const SegParams& p) {
  if (p.batch * p.L == 0 || p.D == 0) return cudaSuccess;
  if (p.N == 1) return run_seg_fwd_ns<Exec, 1>(ex, p);
  if (p.N <= 4) return run_seg_fwd_ns<Exec, 4>(ex, p);
  return run_seg_fwd_ns<Exec, kMaxDState>(ex, p);
}

}  // namespace

}  // namespace ss2d
}  // namespace vmamba
