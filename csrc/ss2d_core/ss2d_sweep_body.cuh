// The sweep forward of the fused SS2D core (issue #18), for d_state 1 (every VMamba v2 model): one walk per route
// step, the routes' sum kept on chip.
//
// A block = (batch b, group of G channels) owns the whole map and sweeps the K routes one after the other. Its
// S x G threads are S slots of G lanes: lane c is channel g * G + c (consecutive lanes read consecutive channels of
// a pixel: coalesced in channels-last), slot s takes kSweepItems consecutive steps of the route per iteration, so
// an iteration covers S * kSweepItems steps. Per iteration:
//   1. local: each thread forms delta (the R-term dt projection + softplus), a = exp(delta A), bu = delta B u for
//      its steps, in registers, and their composition from zero (prod a, h) -> agg[s][c];
//   2. barrier; the state entering slot s = the block's carry folded through agg[0..s-1] (s fused multiply-adds);
//      the thread replays its steps from it (h = a h + bu, y = C h + D u: a few FMAs, the heavy part is not
//      recomputed) and adds y into acc[pixel][c] (the first route stores, later ones add: a fixed order);
//      slot S - 1 leaves the carry of the next iteration;
//   3. barrier.
// The xdbl rows of the next iteration's steps (the same for every channel) and the thread's next x values are
// loaded into registers at the start of an iteration and stored to shared memory after its local phase, so their
// latency hides behind one iteration's work. After the last route acc (L x G fp32, the only map-sized buffer) is
// written once in x's layout and out_dtype. Nothing is written to global memory but y: no (B, 4, D, L) tensor, no
// scratch, no atomics (deterministic). The segmented forward (ss2d_seg_body.cuh) walks every step twice (transfer
// and output) and round-trips the row routes' sum through global memory; this one walks once, at the cost of a
// map-sized accumulator per block, which bounds the map size it serves (the host plan checks it).
//
// The dt projection (step 1's heaviest part: R FMAs per step and channel): each thread forms its deltas with FMAs,
// or, with SweepParams.mma (knob ss2d_sweep_mma; sweep_mma_applies, ss2d_core.h), on tensor cores: each warp
// multiplies two 16-channel x 8-step tiles of the next iteration's delta (warp_mma_tf32) during step 2 of the
// current one, into a delta buffer the next step 1 reads; no barrier is added. The mma measured slower at every
// VMamba-T stage (GPU call 61), so the plan leaves it off.
//
// Shared memory (floats): acc [L][G + 1]; xd [2][Rp + 2][row] (double-buffered iteration rows, transposed: dts rows
// [0, R) then zero rows to Rp = sweep_rpad(R), the B row, the C row; row = S * kSweepItems + 4, so a thread's
// kSweepItems steps are two aligned float4); dl [G][row] (mma only: the next iteration's delta before bias); w
// [K][Rp][wld] (dt_w of every route for the block's channels, wld = sweep_wld(G)); rc [K][3][G] (A log2(e), D,
// delta_bias); agg [S][G] float2; carry [2][G].
#pragma once

#include <cstring>

#include "../common/warp_mma.cuh"
#include "ss2d_seg_body.cuh"  // ld4

// __launch_bounds__' blocks of kSweepMaxThreads per SM: 3 caps registers at 80 (ptxas spills ~30 bytes), which
// measured faster than 2 (128 registers) and 4 (64, more spills): GPU call 58, reports/logs/2026-12-06_sweep_forward.md.
#ifndef VMAMBA_SS2D_SWEEP_MIN_BLOCKS
#define VMAMBA_SS2D_SWEEP_MIN_BLOCKS 3
#endif

namespace vmamba {
namespace ss2d {

namespace {

struct SweepSmem {
  float *acc, *xd, *dl, *w, *rc, *agg, *carry;
};

// the layout sweep_smem_floats counts
VMAMBA_HD SweepSmem sweep_carve(unsigned char* raw, const SweepParams& p, bool mma) {
  SweepSmem s{};
  float* q = reinterpret_cast<float*>(raw);
  const int Rp = sweep_rpad(p.R, mma);
  s.acc = q; q += sweep_acc_floats(p.L, p.G);
  s.xd = q; q += 2 * size_t(Rp + 2) * sweep_row(p.S);
  s.dl = q; q += mma ? size_t(p.G) * sweep_row(p.S) : 0;
  s.w = q; q += size_t(p.K) * Rp * sweep_wld(p.G, mma);
  s.rc = q; q += 3 * size_t(p.K) * p.G;
  s.agg = q; q += 2 * size_t(p.S) * p.G;
  s.carry = q;
  return s;
}

// The staging of one iteration's xdbl rows. Thread t = q * tps + part (tps = ceil(C / kSweepStage) threads per
// step) stages components part, part + tps, ... of step q, so a step's pixel and row address are computed once, not
// per component; steps past nt / tps per pass go in further passes, loaded and stored in place (large R, small
// tiles). The first pass goes through registers: loaded at the start of an iteration, stored after its local phase.
// Those loads are unconditional (clamped indices) and keep the raw bits, converted at the store: a load whose value
// is converted inside its own branch waits there for memory, which serialized the loads (GPU call 56,
// reports/logs/2026-12-06_sweep_forward.md).
constexpr int kSweepStage = 8;

struct StageSlot {
  uint32_t raw[kSweepStage];
  bool real;  // the step is on the map (else its values stage as 0)
};

struct StageMap {
  int q, part, tps, pass_steps;  // the thread's step and part, threads per step, steps per pass
};

VMAMBA_HD StageMap stage_map(const SweepParams& p, int t, int nt) {
  StageMap m;
  m.tps = (p.C + kSweepStage - 1) / kSweepStage;
  m.pass_steps = nt / m.tps;
  m.q = t / m.tps;
  m.part = t - m.q * m.tps;
  if (m.q >= m.pass_steps) m.q = 1 << 30;  // no step: past every iteration
  return m;
}

// the row-major offset of (b, step l0 + q of route k)'s xdbl row, 0 when the step is past the map
VMAMBA_HD int64_t stage_row(const SweepParams& p, int64_t b, int k, int kind, int64_t l, bool real) {
  const int pix = real ? route_pixel(kind, int(l), p.h_div, int(p.W), int(p.L)) : 0;
  return ((b * p.L + pix) * p.K + k) * p.C;
}

VMAMBA_HD float raw_to_float(uint32_t raw, int dt) {
  if (dt == kF32) {
    float f;
    memcpy(&f, &raw, sizeof f);
    return f;
  }
  if (dt == kF16) {
    __half_raw h;
    h.x = static_cast<unsigned short>(raw);
    return __half2float(__half(h));
  }
  const uint32_t bits = raw << 16;  // bfloat16: the high half of a float
  float f;
  memcpy(&f, &bits, sizeof f);
  return f;
}

template <typename Bits>
VMAMBA_HD void stage_load_t(const SweepParams& p, const Bits* src, const StageMap& m, int64_t b, int k, int kind,
                            int64_t l0, int per_it, StageSlot& st) {
  st.real = m.q < per_it && l0 + m.q < p.L;
  const int64_t row = stage_row(p, b, k, kind, l0 + m.q, st.real);
#pragma unroll
  for (int j = 0; j < kSweepStage; ++j) {
    const int cc = m.part + j * m.tps;
    st.raw[j] = src[row + (cc < p.C ? cc : 0)];
  }
}

VMAMBA_HD void stage_load(const SweepParams& p, const StageMap& m, int64_t b, int k, int kind, int64_t l0, int per_it,
                          StageSlot& st) {
  if (p.xdbl_dtype == kF32) stage_load_t(p, static_cast<const uint32_t*>(p.xdbl), m, b, k, kind, l0, per_it, st);
  else stage_load_t(p, static_cast<const uint16_t*>(p.xdbl), m, b, k, kind, l0, per_it, st);
}

// xd row of component cc: dts rows [0, R), then B and C after the zero rows up to Rp (from p.R here, not passed:
// one register fewer across the loop kept the FMA kernel free of spills)
template <bool MMA>
VMAMBA_HD int stage_dst_row(const SweepParams& p, int cc) { return cc < p.R ? cc : sweep_rpad(p.R, MMA) + (cc - p.R); }

// store the registers' values, then the further passes' steps in place
template <bool MMA>
VMAMBA_HD void stage_store(const SweepParams& p, const StageMap& m, int64_t b, int k, int kind, int64_t l0,
                           int per_it, const StageSlot& st, float* dst) {
  const int row_len = sweep_row(p.S);
  if (m.q < per_it) {
#pragma unroll
    for (int j = 0; j < kSweepStage; ++j) {
      const int cc = m.part + j * m.tps;
      if (cc < p.C) dst[stage_dst_row<MMA>(p, cc) * row_len + m.q] = st.real ? raw_to_float(st.raw[j], p.xdbl_dtype) : 0.f;
    }
  }
  for (int q = m.q + m.pass_steps; q < per_it; q += m.pass_steps) {
    const bool real = l0 + q < p.L;
    const int64_t row = stage_row(p, b, k, kind, l0 + q, real);
    for (int cc = m.part; cc < p.C; cc += m.tps)
      dst[stage_dst_row<MMA>(p, cc) * row_len + q] = real ? ldf(p.xdbl, p.xdbl_dtype, row + cc) : 0.f;
  }
}

// the thread's x values at steps l0 .. l0 + kSweepItems - 1 of a route, raw (converted at use); steps past the map
// load pixel 0 (unconditional loads: all in flight together)
template <typename TX>
VMAMBA_HD void load_x(const SweepParams& p, const TX* xp, int64_t xbase, int64_t xstride, int kind, int l0,
                      TX (&xr)[kSweepItems]) {
  int pix[kSweepItems];
#pragma unroll
  for (int i = 0; i < kSweepItems; ++i)
    pix[i] = l0 + i < p.L ? route_pixel(kind, l0 + i, p.h_div, int(p.W), int(p.L)) : 0;
#pragma unroll
  for (int i = 0; i < kSweepItems; ++i) xr[i] = xp[xbase + int64_t(pix[i]) * xstride];
}

// The dt projection of one iteration on tensor cores: dl[c][q] = sum_r w[r][c] xd[r][q] for the G channels and the
// S * kSweepItems steps, as (G / 16) x S tiles of 16 channels x 8 steps (a slot's), two per warp (G * S / 32 warps).
// A = the weights (channel x r, row stride wld), B = the staged dts rows (r x step, row stride row); k-steps of 8 over
// Rp rows (the pad rows are zero in both).
template <class Ctx>
VMAMBA_HD void sweep_project(const Ctx& ctx, const float* w, const float* xd, float* dl, int G, int Rp, int wld,
                             int row, int t) {
  const int warp = t >> 5, lane = t & 31, g = lane >> 2, tq = lane & 3, mtiles = G >> 4;
#pragma unroll 1
  for (int e = 0; e < 2; ++e) {
    const int tile = 2 * warp + e, mt = tile % mtiles, nt = tile / mtiles;
    const float* wa = w + tq * wld + mt * 16 + g;
    const float* xb = xd + tq * row + nt * kSweepItems + g;
    float d[4] = {0.f, 0.f, 0.f, 0.f};
    for (int k0 = 0; k0 < Rp; k0 += 8) {
      const float a[4] = {wa[k0 * wld], wa[k0 * wld + 8], wa[(k0 + 4) * wld], wa[(k0 + 4) * wld + 8]};
      const float bf[2] = {xb[k0 * row], xb[(k0 + 4) * row]};
      warp_mma_tf32(ctx, a, bf, d);
    }
    float* o = dl + (mt * 16 + g) * row + nt * kSweepItems + 2 * tq;
    o[0] = d[0];
    o[1] = d[1];
    o[8 * row] = d[2];
    o[8 * row + 1] = d[3];
  }
}

}  // namespace

template <typename TX, bool MMA>
struct SweepFwdBody {
  using Args = SweepParams;
  static constexpr int kMaxThreads = kSweepMaxThreads, kMinBlocks = VMAMBA_SS2D_SWEEP_MIN_BLOCKS;
  static constexpr int I = kSweepItems;

  template <class Ctx>
  static VMAMBA_HD void run(const Ctx& ctx, const Args& p, unsigned char* raw) {
    const SweepSmem sm = sweep_carve(raw, p, MMA);
    const int G = p.G, S = p.S, nt = int(ctx.nthreads()), t = int(ctx.tid());
    const int s = t / G, c = t - s * G;
    const int g = int(ctx.block() % uint32_t(p.ngroups));
    const int64_t b = int64_t(ctx.block() / uint32_t(p.ngroups));
    const int64_t d = int64_t(g) * G + c;
    const bool active = d < p.D;
    const int64_t dc = active ? d : 0;
    const int L = int(p.L), R = p.R, Rp = sweep_rpad(p.R, MMA), wld = sweep_wld(G, MMA), row = sweep_row(S), K = p.K;
    const int per_it = S * I, nit = (L + per_it - 1) / per_it, total_it = nit * K;
    const StageMap smap = stage_map(p, t, nt);
    const TX* xp = static_cast<const TX*>(p.x);
    // x's element (b, d, pixel) = xbase + pixel * xstride
    const int64_t xbase = p.channels_last ? b * p.L * p.D + dc : (b * p.D + dc) * p.L;
    const int64_t xstride = p.channels_last ? p.D : 1;

    // dt_w of every route for the block's channels (zeros past R and D; rounded to tf32 for the mma); both xd
    // buffers zeroed: staging writes only real entries, so the pad rows R..Rp stay zero
    // (8 loads in flight per thread: one at a time, R = 48 is ~50 loads per thread, each waited for)
    for (int e0 = t; e0 < K * Rp * G; e0 += 8 * nt) {
      float v[8];
#pragma unroll
      for (int q = 0; q < 8; ++q) {
        const int e = e0 + q * nt;
        const int cc = e % G, r = (e / G) % Rp, k = e / (G * Rp);
        const int64_t dd = int64_t(g) * G + cc;
        const bool ok = e < K * Rp * G && r < R && dd < p.D;
        v[q] = ldf(p.dt_w, p.w_dtype, ok ? (int64_t(k) * p.D + dd) * R + r : 0);
        if (!ok) v[q] = 0.f;
      }
#pragma unroll
      for (int q = 0; q < 8; ++q) {
        const int e = e0 + q * nt;
        if (e < K * Rp * G) sm.w[(e / G) * wld + e % G] = MMA ? tf32_round(v[q]) : v[q];
      }
    }
    // per route and channel: A log2(e), D, delta_bias
    for (int e = t; e < K * G; e += nt) {
      const int k = e / G, cc = e - k * G;
      const int64_t dd = int64_t(g) * G + cc, kd = int64_t(k) * p.D + (dd < p.D ? dd : 0);
      const float al = p.A[kd] * kLog2e, dv = p.Dp ? p.Dp[kd] : 0.f, bi = p.bias ? p.bias[kd] : 0.f;
      sm.rc[(k * 3 + 0) * G + cc] = al;
      sm.rc[(k * 3 + 1) * G + cc] = dv;
      sm.rc[(k * 3 + 2) * G + cc] = bi;
    }
    for (int e = t; e < 2 * (Rp + 2) * row; e += nt) sm.xd[e] = 0.f;
    ctx.sync();

    // prologue: iteration 0's rows and x values (and its projection)
    StageSlot st;
    TX xn[I];
    stage_load(p, smap, b, 0, p.kinds[0], 0, per_it, st);
    stage_store<MMA>(p, smap, b, 0, p.kinds[0], 0, per_it, st, sm.xd);
    load_x(p, xp, xbase, xstride, p.kinds[0], s * I, xn);
    ctx.sync();
    if (MMA) {
      sweep_project(ctx, sm.w, sm.xd, sm.dl, G, Rp, wld, row, t);
      ctx.sync();
    }

    for (int gi = 0; gi < total_it; ++gi) {
      const int k = gi / nit, j = gi - k * nit, kind = p.kinds[k];
      const float Al = sm.rc[(k * 3 + 0) * G + c], Dv = sm.rc[(k * 3 + 1) * G + c], bias = sm.rc[(k * 3 + 2) * G + c];
      const float* xd = sm.xd + (gi & 1) * (Rp + 2) * row;
      float u[I];
#pragma unroll
      for (int i = 0; i < I; ++i) u[i] = j * per_it + s * I + i < L ? to_float(xn[i]) : 0.f;
      // the next iteration's rows and x values, in flight during this one
      const bool more = gi + 1 < total_it;
      const int kn = (gi + 1) / nit, jn = gi + 1 - kn * nit;
      const int kind_n = more ? p.kinds[kn] : kind;
      if (more) {
        stage_load(p, smap, b, kn, kind_n, int64_t(jn) * per_it, per_it, st);
        load_x(p, xp, xbase, xstride, kind_n, jn * per_it + s * I, xn);
      }

      // 1. local: delta, a, bu of the thread's steps; their composition from zero
      const int l0 = j * per_it + s * I, q0 = s * I;
      float v[I];
      if (MMA) {  // the projection step 2 of the previous iteration (or the prologue) left in dl
        const float4 d0 = ld4(sm.dl + c * row + q0), d1 = ld4(sm.dl + c * row + q0 + 4);
        v[0] = d0.x + bias; v[1] = d0.y + bias; v[2] = d0.z + bias; v[3] = d0.w + bias;
        v[4] = d1.x + bias; v[5] = d1.y + bias; v[6] = d1.z + bias; v[7] = d1.w + bias;
      } else {
#pragma unroll
        for (int i = 0; i < I; ++i) v[i] = bias;
        const float* wk = sm.w + k * Rp * wld + c;
        for (int r0 = 0; r0 < Rp; r0 += 4) {  // Rp is a multiple of 4: the reads of 4 terms in flight together
#pragma unroll
          for (int r = r0; r < r0 + 4; ++r) {
            const float wr = wk[r * wld];
            const float4 x0 = ld4(xd + r * row + q0), x1 = ld4(xd + r * row + q0 + 4);
            v[0] = fmaf(wr, x0.x, v[0]); v[1] = fmaf(wr, x0.y, v[1]);
            v[2] = fmaf(wr, x0.z, v[2]); v[3] = fmaf(wr, x0.w, v[3]);
            v[4] = fmaf(wr, x1.x, v[4]); v[5] = fmaf(wr, x1.y, v[5]);
            v[6] = fmaf(wr, x1.z, v[6]); v[7] = fmaf(wr, x1.w, v[7]);
          }
        }
      }
      float a[I], bu[I];
      {
        const float4 b0 = ld4(xd + Rp * row + q0), b1 = ld4(xd + Rp * row + q0 + 4);
        const float Bv[I] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
        float P = 1.f, h = 0.f;
#pragma unroll
        for (int i = 0; i < I; ++i) {
          // steps past the map: delta 0, the identity
          const float dt = l0 + i < L ? (p.softplus ? softplus20(v[i]) : v[i]) : 0.f;
          a[i] = exp2f(dt * Al);
          bu[i] = dt * Bv[i] * u[i];
          h = fmaf(a[i], h, bu[i]);
          P *= a[i];
        }
        sm.agg[2 * (s * G + c)] = P;
        sm.agg[2 * (s * G + c) + 1] = h;
      }
      if (more) stage_store<MMA>(p, smap, b, kn, kind_n, int64_t(jn) * per_it, per_it, st,
                            sm.xd + ((gi + 1) & 1) * (Rp + 2) * row);
      ctx.sync();

      // 2. the entering state, the replay, y into the accumulator
      float h = j == 0 ? 0.f : sm.carry[(gi & 1) * G + c];
      for (int q = 0; q < s; ++q) h = fmaf(sm.agg[2 * (q * G + c)], h, sm.agg[2 * (q * G + c) + 1]);
      const float4 c0 = ld4(xd + (Rp + 1) * row + q0), c1 = ld4(xd + (Rp + 1) * row + q0 + 4);
      const float Cv[I] = {c0.x, c0.y, c0.z, c0.w, c1.x, c1.y, c1.z, c1.w};
      const bool first = k == 0;
#pragma unroll
      for (int i = 0; i < I; ++i) {
        h = fmaf(a[i], h, bu[i]);
        if (l0 + i < L) {
          const float y = fmaf(Cv[i], h, Dv * u[i]);
          float& dst = sm.acc[route_pixel(kind, l0 + i, p.h_div, int(p.W), L) * (G + 1) + c];
          dst = first ? y : dst + y;
        }
      }
      if (s == S - 1) sm.carry[((gi + 1) & 1) * G + c] = h;
      // the next iteration's projection (mma: its rows were staged before the barrier, dl read before it), last:
      // the replay's registers are free by now
      if (MMA && more)
        sweep_project(ctx, sm.w + kn * Rp * wld, sm.xd + ((gi + 1) & 1) * (Rp + 2) * row, sm.dl, G, Rp, wld, row, t);
      ctx.sync();
    }

    // y in x's layout: consecutive threads take consecutive channels of a pixel (channels-last) or consecutive
    // pixels of a channel (channels-first)
    for (int e = t; e < L * G; e += nt) {
      int pix, cc;
      if (p.channels_last) {
        pix = e / G;
        cc = e - pix * G;
      } else {
        cc = int(p.l_div.div(uint32_t(e)));
        pix = e - cc * L;
      }
      const int64_t dd = int64_t(g) * G + cc;
      if (dd >= p.D) continue;
      const int64_t o = p.channels_last ? (b * p.L + pix) * p.D + dd : (b * p.D + dd) * p.L + pix;
      stf(p.out, p.out_dtype, o, sm.acc[pix * (G + 1) + cc]);
    }
  }
};

namespace {

// The launch (GPU and emulator); p planned by the caller (sweep_plan fields G, S, ngroups, c_div, l_div).
template <class Exec>
cudaError_t run_sweep_fwd(const Exec& ex, const SweepParams& p) {
  if (p.batch * p.L == 0 || p.D == 0) return cudaSuccess;
  const dim3 grid(unsigned(p.batch * p.ngroups));
  const size_t smem = sweep_smem_floats(p.L, p.G, p.S, p.R, p.K, p.mma) * sizeof(float);
  const unsigned threads = unsigned(p.G * p.S);
  if (p.mma) {
    if (p.x_dtype == kF32) return ex.template launch<SweepFwdBody<float, true>>(grid, threads, smem, p);
    if (p.x_dtype == kF16) return ex.template launch<SweepFwdBody<__half, true>>(grid, threads, smem, p);
    return ex.template launch<SweepFwdBody<__nv_bfloat16, true>>(grid, threads, smem, p);
  }
  if (p.x_dtype == kF32) return ex.template launch<SweepFwdBody<float, false>>(grid, threads, smem, p);
  if (p.x_dtype == kF16) return ex.template launch<SweepFwdBody<__half, false>>(grid, threads, smem, p);
  return ex.template launch<SweepFwdBody<__nv_bfloat16, false>>(grid, threads, smem, p);
}

}  // namespace

}  // namespace ss2d
}  // namespace vmamba
