// The segmented backward of the fused SS2D core (issue #18): the forward's work split (ss2d_seg_body.cuh: a thread
// per channel, a row pass and a column pass, segments of P positions) run backwards.
//
// Per route and state n, with a_t = exp(delta_t A_n), the adjoint of h_t is g_t = C_t dy_t + a_{t+1} g_{t+1}. A
// segment passes back w = a_first g_first = exp(A S) w_after + c, c = sum_t (a_first ... a_t) C_t dy_t: affine in
// the adjoint entering from after it, like the forward state. Kernels:
//   1. transfer (SegBwdTransferBody, both passes): per segment S, b (forward from zero) and c into T;
//   2. prefix   (SegPrefixBody<NS, 2>): per (batch, route, channel) the forward state entering each segment (route
//               order) replaces b, the adjoint entering from after it (reverse order) replaces c;
//   3. gradient (SegBwdBody, once per pass): block = (b, segment, channel group). Per route: delta, u, dy of the
//               segment into shared memory; per state a forward walk stores h_{t-1}, a backward walk the adjoint
//               terms. Gradients that sum over channels (dB, dC, d dts: xdbl's gradient at the pixel) are summed
//               over the block's channels in a fixed order and written per channel group (a fixed-order sum over
//               groups follows when there are several); per-channel ones (dA, dD, ddelta_bias, ddt_w) go to
//               per-(batch row, segment) partials summed in two fixed-order levels; du sums over the pass's routes
//               in the block (the row pass's dx goes to a (B, L, D) fp32 scratch the column pass starts from).
// No atomics: deterministic.
//
// Shared memory (floats): seven [P][G + 1] arrays (a thread's column is its own until the block sums): hs (h_{t-1},
// then dy h_t), r2 (g delta u), dl (delta), dd (d delta, then d of the softplus input), dxa (dx over the routes),
// uu (u), dyy (dy), both staged once per block; then the forward's xd, w and pix. The transfer kernel uses the
// forward's layout, its acc holding dy.
#pragma once

#include "ss2d_seg_body.cuh"

namespace vmamba {
namespace ss2d {

namespace {

struct SegBwdSmem {
  float *hs, *r2, *dl, *dd, *dxa, *uu, *dyy, *xd, *w;
  int* pix;
};

VMAMBA_HD SegBwdSmem seg_bwd_carve(unsigned char* raw, const SegParams& p) {
  SegBwdSmem s{};
  float* q = reinterpret_cast<float*>(raw);
  const size_t a = seg_acc_floats(p.P, p.G);
  float** arrs[7] = {&s.hs, &s.r2, &s.dl, &s.dd, &s.dxa, &s.uu, &s.dyy};
  for (float** f : arrs) { *f = q; q += a; }
  s.xd = q; q += size_t(seg_r4(p.R) + 2 * p.N) * seg_ps(p.P);
  s.w = q; q += size_t(seg_r4(p.R)) * p.G;
  s.pix = reinterpret_cast<int*>(q);
  return s;
}

// a SegSmem view of the shared xd / w / pix (the forward's staging helpers)
VMAMBA_HD SegSmem seg_view(const SegBwdSmem& s) { return SegSmem{nullptr, s.uu, s.xd, s.w, s.pix}; }

// the block's common start: pixels of the segment, xd's zero padding
template <class Ctx>
VMAMBA_HD void seg_bwd_begin(const Ctx& ctx, const SegParams& p, const SegSmem& s, int pass, int q0, int np) {
  const int G = int(ctx.nthreads()), t = int(ctx.tid());
  for (int i = t; i < np; i += G) s.pix[i] = seg_pixel(p, pass, q0 + i);
  for (int e = t; e < (seg_r4(p.R) + 2 * p.N) * seg_ps(p.P); e += G) s.xd[e] = 0.f;
  ctx.sync();
}

// the thread's dt_w column of route k (zeros past R and for channels past D)
VMAMBA_HD void seg_load_w(const SegParams& p, const SegSmem& s, int t, int G, int64_t kd, bool active) {
  for (int r = 0; r < seg_r4(p.R); ++r) s.w[r * G + t] = (r < p.R && active) ? ldf(p.dt_w, p.w_dtype, kd * p.R + r) : 0.f;
}

// delta of position i for the thread (dt projection from the staged rows, then softplus)
VMAMBA_HD float seg_delta(const SegParams& p, const SegSmem& s, int t, int G, int i, float bias) {
  float v = bias;
  const int PS = seg_ps(p.P);
  for (int r = 0; r < p.R; ++r) v = fmaf(s.w[r * G + t], s.xd[r * PS + i], v);
  return p.softplus ? softplus20(v) : v;
}

}  // namespace

// Transfer: block = (pass, b, segment, group); per route of the pass, from zero: S, b[n] and c[n] into T.
template <int NS>
struct SegBwdTransferBody {
  using Args = SegBwdParams;
  static constexpr int kMaxThreads = kSegMaxThreads, kMinBlocks = 4;

  template <class Ctx>
  static VMAMBA_HD void run(const Ctx& ctx, const Args& p, unsigned char* smem) {
    const SegSmem s = seg_carve(smem, true, p, true);  // acc holds dy here, xs x
    const int G = int(ctx.nthreads()), t = int(ctx.tid()), G1 = G + 1;
    const SegBlock sb = seg_block(p, ctx.block());
    const int g = sb.g, j = sb.j, pass = sb.grid_pass;
    const int64_t b = sb.b;
    const int64_t d = int64_t(g) * G + t;
    const bool active = d < p.D;
    const int64_t dc = active ? d : 0;
    const int q0 = j * p.P;
    const int np = int(p.L - q0 < p.P ? p.L - q0 : p.P);
    const int N = p.N, R4 = seg_r4(p.R), PS = seg_ps(p.P);
    seg_bwd_begin(ctx, p, s, pass, q0, np);
    seg_stage_map(ctx, p, p.x, p.x_dtype, b, g, np, s.pix, s.xs);  // complete at the route's barrier
    seg_stage_map(ctx, p, p.dy, p.dy_dtype, b, g, np, s.pix, s.acc);
    for (int k = 0; k < p.K; ++k) {
      const int kind = p.kinds[k];
      if (!route_in_pass(kind, pass)) continue;
      const int64_t kd = int64_t(k) * p.D + dc;
      float Al[NS], h[NS], P[NS], c[NS];
#pragma unroll
      for (int n = 0; n < NS; ++n) {
        Al[n] = n < N ? p.A[kd * N + n] * kLog2e : 0.f;
        h[n] = 0.f; P[n] = 1.f; c[n] = 0.f;
      }
      const float bias = p.bias ? p.bias[kd] : 0.f;
      seg_load_w(p, s, t, G, kd, active);
      seg_stage(ctx, p, s, b, k, np);
      ctx.sync();
      const bool rev = kind >= kRowRev;
      float S = 0.f;
      for (int st = 0; st < np; ++st) {
        const int i = rev ? np - 1 - st : st;
        const float u = s.xs[i * G1 + t], dy = s.acc[i * G1 + t];  // 0 past D
        const float dt = seg_delta(p, s, t, G, i, bias);
        S += dt;
#pragma unroll
        for (int n = 0; n < NS; ++n) {
          if (n >= N) break;
          const float a = exp2f(dt * Al[n]);
          h[n] = fmaf(a, h[n], dt * u * s.xd[(R4 + n) * PS + i]);
          P[n] *= a;
          c[n] = fmaf(P[n], s.xd[(R4 + N + n) * PS + i] * dy, c[n]);
        }
      }
      if (active) {
        p.T[t_index(p, b, k, j, 0, d)] = S;
#pragma unroll
        for (int n = 0; n < NS; ++n) {
          if (n >= N) break;
          p.T[t_index(p, b, k, j, 1 + n, d)] = h[n];
          p.T[t_index(p, b, k, j, 1 + N + n, d)] = c[n];
        }
      }
      ctx.sync();
    }
  }
};

// Gradient: block = (b, segment, group) of pass p.pass.
template <int NS>
struct SegBwdBody {
  using Args = SegBwdParams;
  static constexpr int kMaxThreads = kSegMaxThreads, kMinBlocks = 2;

  template <class Ctx>
  static VMAMBA_HD void run(const Ctx& ctx, const Args& p, unsigned char* smem) {
    const SegBwdSmem s = seg_bwd_carve(smem, p);
    const SegSmem sv = seg_view(s);
    const int G = int(ctx.nthreads()), t = int(ctx.tid()), G1 = G + 1;
    const SegBlock sb = seg_block(p, ctx.block());
    const int g = sb.g, j = sb.j, pass = p.pass;
    const int64_t b = sb.b;
    const int64_t d = int64_t(g) * G + t;
    const bool active = d < p.D;
    const int64_t dc = active ? d : 0;
    const int q0 = j * p.P;
    const int np = int(p.L - q0 < p.P ? p.L - q0 : p.P);
    const int R = p.R, R4 = seg_r4(p.R), N = p.N, PS = seg_ps(p.P), C = p.C, K = p.K;
    const int64_t KD = int64_t(K) * p.D, prow = b * p.nseg + j;
    float* gx = p.part_xdbl + int64_t(g) * p.batch * p.L * K * C;  // this group's slice of dxdbl

    seg_bwd_begin(ctx, p, sv, pass, q0, np);
    seg_stage_map(ctx, p, p.x, p.x_dtype, b, g, np, s.pix, s.uu);  // complete at the route's barrier
    seg_stage_map(ctx, p, p.dy, p.dy_dtype, b, g, np, s.pix, s.dyy);
    for (int i = 0; i < np; ++i)
      s.dxa[i * G1 + t] = (pass > 0 && active) ? p.partial_dx[(b * p.L + s.pix[i]) * p.D + d] : 0.f;

    for (int k = 0; k < K; ++k) {
      const int kind = p.kinds[k];
      if (!route_in_pass(kind, pass)) continue;
      const bool rev = kind >= kRowRev;
      const int64_t kd = int64_t(k) * p.D + dc;
      const float Dv = p.Dp ? p.Dp[kd] : 0.f, bias = p.bias ? p.bias[kd] : 0.f;
      seg_load_w(p, sv, t, G, kd, active);
      seg_stage(ctx, p, sv, b, k, np);
      ctx.sync();
      // delta, u, dy of the segment; dD; dx's D dy term
      float dD = 0.f;
      for (int i = 0; i < np; ++i) {
        const float u = s.uu[i * G1 + t], dy = s.dyy[i * G1 + t];  // 0 past D
        s.dl[i * G1 + t] = seg_delta(p, sv, t, G, i, bias);
        s.dd[i * G1 + t] = 0.f;
        s.dxa[i * G1 + t] += Dv * dy;
        dD = fmaf(dy, u, dD);
      }
      for (int n = 0; n < N; ++n) {
        const float An = p.A[kd * N + n], Al = An * kLog2e;
        const float* Bn = s.xd + (R4 + n) * PS;
        const float* Cn = s.xd + (R4 + N + n) * PS;
        // forward walk: h_{t-1} of every position
        float h = p.nseg > 1 ? p.T[t_index(p, b, k, j, 1 + n, dc)] : 0.f;
        for (int st = 0; st < np; ++st) {
          const int i = rev ? np - 1 - st : st;
          const float dt = s.dl[i * G1 + t];
          s.hs[i * G1 + t] = h;
          h = fmaf(exp2f(dt * Al), h, dt * s.uu[i * G1 + t] * Bn[i]);
        }
        // backward walk: the adjoint, from the one entering after the segment
        float wv = (p.nseg > 1 && active) ? p.T[t_index(p, b, k, j, 1 + N + n, dc)] : 0.f;
        float dA = 0.f;
        for (int st = np - 1; st >= 0; --st) {
          const int i = rev ? np - 1 - st : st;
          const float dt = s.dl[i * G1 + t], u = s.uu[i * G1 + t], dy = s.dyy[i * G1 + t];
          const float hp = s.hs[i * G1 + t], a = exp2f(dt * Al);
          const float gg = fmaf(Cn[i], dy, wv);
          const float ht = fmaf(a, hp, dt * u * Bn[i]);
          s.hs[i * G1 + t] = active ? dy * ht : 0.f;      // dC term
          s.r2[i * G1 + t] = active ? gg * dt * u : 0.f;  // dB term
          s.dxa[i * G1 + t] = fmaf(gg * dt, Bn[i], s.dxa[i * G1 + t]);
          s.dd[i * G1 + t] = fmaf(gg, fmaf(An * a, hp, u * Bn[i]), s.dd[i * G1 + t]);
          dA = fmaf(gg * a * hp, dt, dA);
          wv = a * gg;
        }
        if (active) p.part_A[prow * KD * N + kd * N + n] = dA;
        ctx.sync();
        // dB_n, dC_n of each position: the block's channels summed in order (warp w takes rows w, w + G/32, ..)
        for (int e = t >> 5; e < 2 * np; e += G >> 5) {
          const int i = e >> 1;
          const float* row = ((e & 1) ? s.hs : s.r2) + i * G1;
          float acc = 0.f;
          for (int tt = t & 31; tt < G; tt += 32) acc += row[tt];
          acc = ctx_sum_first(ctx, acc, t & 31);
          if ((t & 31) == 0) gx[((b * p.L + s.pix[i]) * K + k) * C + ((e & 1) ? R + N + n : R + n)] = acc;
        }
        ctx.sync();
      }
      // d of the softplus input; ddelta_bias; ddt_w of the channel
      float dbias = 0.f;
      for (int i = 0; i < np; ++i) {
        float gv = s.dd[i * G1 + t];
        if (p.softplus) gv *= -expm1f(-s.dl[i * G1 + t]);  // softplus' = sigmoid(v) = 1 - exp(-delta)
        gv = active ? gv : 0.f;
        s.dd[i * G1 + t] = gv;
        dbias += gv;
      }
      if (active) {
        p.part_D[prow * KD + kd] = dD;
        p.part_bias[prow * KD + kd] = dbias;
        for (int r = 0; r < R; ++r) {
          float acc = 0.f;
          for (int i = 0; i < np; ++i) acc = fmaf(s.dd[i * G1 + t], s.xd[r * PS + i], acc);
          p.part_w[prow * KD * R + kd * R + r] = acc;
        }
      }
      ctx.sync();
      // d dts of each position: sum over the block's channels of dt_w * dv (thread = (position, r), in order)
      for (int e = t; e < np * R; e += G) {
        const int r = e / np, i = e - r * np;
        float acc = 0.f;
        for (int tt = 0; tt < G; ++tt) acc = fmaf(s.w[r * G + tt], s.dd[i * G1 + tt], acc);
        gx[((b * p.L + s.pix[i]) * K + k) * C + r] = acc;
      }
      ctx.sync();  // xd and the arrays are rewritten by the next route
    }
    // dx of the pass's routes: to the scratch for the next pass, or dx (fp32, x's layout)
    if (pass + 1 < p.npass) {
      if (active)
        for (int i = 0; i < np; ++i) p.partial_dx[(b * p.L + s.pix[i]) * p.D + d] = s.dxa[i * G1 + t];
    } else if (p.channels_last) {
      if (active)
        for (int i = 0; i < np; ++i) p.dx[(b * p.L + s.pix[i]) * p.D + d] = s.dxa[i * G1 + t];
    } else {
      for (int e = t; e < np * G; e += G) {
        const int tt = e / np, i = e - tt * np;
        const int64_t dd = int64_t(g) * G + tt;
        if (dd < p.D) p.dx[(b * p.D + dd) * p.L + s.pix[i]] = s.dxa[i * G1 + tt];
      }
    }
  }
};

// out2[c, e] = sum of part[r, e] over the rows r of chunk c (`chunk` rows: sum_chunk_rows), in order; grid:
// (e blocks, chunks)
struct SumChunksArgs {
  const float* part = nullptr;
  int64_t rows = 0, n = 0, chunk = kSumChunk;
  float* out = nullptr;
};

struct SumChunksBody {
  using Args = SumChunksArgs;
  static constexpr int kMaxThreads = 256, kMinBlocks = 1;

  template <class Ctx>
  static VMAMBA_HD void run(const Ctx& ctx, const Args& a, unsigned char*) {
    const int64_t e = int64_t(ctx.block()) * ctx.nthreads() + ctx.tid();
    if (e >= a.n) return;
    const int64_t c = ctx.block_y();
    const int64_t r1 = (c + 1) * a.chunk < a.rows ? (c + 1) * a.chunk : a.rows;
    float acc = 0.f;
    for (int64_t r = c * a.chunk; r < r1; ++r) acc += a.part[r * a.n + e];
    a.out[c * a.n + e] = acc;
  }
};

namespace {

// out = the sum over rows of part (rows, n), in two fixed-order levels (chunks of sum_chunk_rows(rows) rows, then
// the chunks)
template <class Exec>
cudaError_t sum_rows2(const Exec& ex, const float* part, int64_t rows, int64_t n, float* scratch, float* out) {
  if (n <= 0 || out == nullptr) return cudaSuccess;
  const int64_t chunks = sum_chunks(rows);
  if (chunks <= 1) return sum_rows(ex, part, rows, n, out);
  cudaError_t e = ex.template launch<SumChunksBody>(dim3(unsigned((n + 255) / 256), unsigned(chunks)), 256, 0,
                                                    SumChunksArgs{part, rows, n, sum_chunk_rows(rows), scratch});
  if (e == cudaSuccess) e = sum_rows(ex, scratch, chunks, n, out);
  return e;
}

template <class Exec, int NS>
cudaError_t run_seg_bwd_ns(const Exec& ex, const SegBwdParams& p, float* dxdbl, float* dA, float* dD, float* dbias,
                           float* dw) {
  const int64_t blocks = p.batch * p.nseg * p.ngroups;
  cudaError_t e = cudaSuccess;
  if (p.nseg > 1) {
    const size_t smem_t = (seg_smem_floats(true, p.P, p.G, p.R, p.N) + seg_acc_floats(p.P, p.G)) * sizeof(float);
    e = ex.template launch<SegBwdTransferBody<NS>>(dim3(unsigned(blocks * p.npass)), p.G, smem_t, p);
    const int64_t threads = p.batch * p.K * p.D;
    if (e == cudaSuccess) e = ex.template launch<SegPrefixBody<NS, 2>>(dim3(unsigned((threads + 255) / 256)), 256, 0, p);
  }
  const size_t smem_g = seg_bwd_smem_floats(p.P, p.G, p.R, p.N) * sizeof(float);
  for (int pass = 0; pass < p.npass && e == cudaSuccess; ++pass) {
    SegBwdParams q = p;
    q.pass = pass;
    e = ex.template launch<SegBwdBody<NS>>(dim3(unsigned(blocks)), p.G, smem_g, q);
  }
  const int64_t KD = int64_t(p.K) * p.D, rows = p.batch * p.nseg;
  if (e == cudaSuccess && p.ngroups > 1) e = sum_rows(ex, p.part_xdbl, p.ngroups, p.batch * p.L * p.K * p.C, dxdbl);
  if (e == cudaSuccess) e = sum_rows2(ex, p.part_A, rows, KD * p.N, p.sum_scratch, dA);
  if (e == cudaSuccess) e = sum_rows2(ex, p.part_D, rows, KD, p.sum_scratch, dD);
  if (e == cudaSuccess) e = sum_rows2(ex, p.part_bias, rows, KD, p.sum_scratch, dbias);
  if (e == cudaSuccess) e = sum_rows2(ex, p.part_w, rows, KD * p.R, p.sum_scratch, dw);
  return e;
}

// The launch sequence (GPU and emulator); p planned by the caller (seg_bwd_geometry and every buffer).
template <class Exec>
cudaError_t run_seg_bwd(const Exec& ex, const SegBwdParams& p, float* dxdbl, float* dA, float* dD, float* dbias,
                        float* dw) {
  if (p.N == 1) return run_seg_bwd_ns<Exec, 1>(ex, p, dxdbl, dA, dD, dbias, dw);
  if (p.N <= 4) return run_seg_bwd_ns<Exec, 4>(ex, p, dxdbl, dA, dD, dbias, dw);
  return run_seg_bwd_ns<Exec, kMaxDState>(ex, p, dxdbl, dA, dD, dbias, dw);
}

}  // namespace

}  // namespace ss2d
}  // namespace vmamba
