// Depthwise conv kernel bodies, launch planning and typed launchers, shared by the GPU translation units
// (dwconv_<layout>_<dtype>.cu with DeviceExec) and the CPU emulator of the tests (EmuExec).
// Math: dwconv.h.
//
// Design (memory-bound, 9 FMAs per element for K = 3): no shared-memory halo; each thread computes a
// strip of R outputs and reads the (R + K - 1) x K input window straight from global memory (the
// neighbouring strips' re-reads hit L1), folding every loaded input into all the outputs it feeds, so a
// thread issues (R + K - 1) * K vector loads for R outputs; weights stay in registers (a thread keeps
// its channels for its whole life).
// * channels-last: a thread owns V consecutive channels (vector loads along C, neighbours in a warp
//   contiguous) and a strip of R pixels along W. Block = cvb channel vectors x py pixel threads; grid.y
//   walks channel chunks of cvb vectors.
// * channels-first: a thread owns a strip of R rows x V consecutive columns of one plane (vector loads
//   along W, the K/2 halo columns on each side as scalar loads). A block owns P consecutive channels
//   (tpp threads each: small planes, one strip per thread) or one channel and a segment of its plane
//   (large planes: 256 threads looping over the segment's strips), for one image (forward, kDpre) or a
//   range of images (kBwdx: the thread keeps its channel and accumulates over the range).
// * backward kBwdx: the same walk over dpre with the flipped kernel gives dx; the loaded dpre values
//   times x at the thread's own outputs accumulate dweight, and the centre taps dbias, in registers
//   across the thread's strips. Threads of the same channel(s) are added by a fixed tree in shared
//   memory into one partial row per block (channels-last) or per plane segment (channels-first), and
//   ColSum adds the rows in a fixed order: deterministic.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <type_traits>
#include <utility>

#include "../common/reduce.cuh"
#include "../common/thread_ctx.cuh"
#include "dwconv.h"

namespace vmamba {
namespace dw {

constexpr int kThreads = 256;
constexpr int kChunk = 8;  // partial values reduced per round of the block tree

VMAMBA_HD float act_fwd(float v, int act) {
  if (act == kSilu) return v / (1.f + exp_f(-v));
  if (act == kGelu) return 0.5f * v * (1.f + erf_f(v * 0.70710678118654752f));
  return v;
}

VMAMBA_HD float act_grad(float v, int act) {
  if (act == kSilu) {
    const float s = 1.f / (1.f + exp_f(-v));
    return s * (1.f + v * (1.f - s));
  }
  if (act == kGelu) return 0.5f * (1.f + erf_f(v * 0.70710678118654752f)) + v * 0.39894228040143268f * exp_f(-0.5f * v * v);
  return 1.f;
}

// outputs per thread: channels-last strips along W, channels-first strips along H. The channels-last
// kBwdx holds weights, weight partials and x at its outputs for V channels: one output per thread keeps
// K = 3 under 128 registers without spills (two blocks per SM; R = 2 spilled in fp32)
constexpr int strip_len(int K, int mode, bool channels_last) {
  if (channels_last) return mode == kBwdx ? (K == 3 ? 1 : 2) : (K == 3 ? 4 : 2);
  return K == 3 ? 4 : 2;
}

struct DwArgs {
  const void* in;  // kFwd / kDpre: x; kBwdx: dpre (or dy)
  const void* x;   // kBwdx: x
  const void* dy;  // kDpre
  const float* w;
  const float* bias;
  void* out;    // y, dpre or dx
  float* part;  // kBwdx: (part rows, C, K*K + 1)
  int act;
  uint32_t C, H, W;
  int64_t B;
  // channels-last
  uint32_t ncv, cvb, py, ns;
  int64_t nq, qpb;
  FastDivmod div_ns, div_h;
  // channels-first
  uint32_t nwv, ni, P, tpp, nseg, segi, ncg, bpb;  // ncg channel groups of P, bpb images per block
  FastDivmod div_nwv;
};

// Adds the thread's kBwdx partials (KK * V weight taps + V bias values, flattened as k * V + e, then
// KK * V + e) over the member threads of its group in chunks of kChunk and writes member 0's sums to
// part[(row * C + c0 + e) * (KK + 1) + k]
template <int KK, int V, class Ctx>
VMAMBA_HD void reduce_partials(const Ctx& ctx, float* red, const float (&aw)[KK][V], const float (&ab)[V],
                               uint32_t member, uint32_t count, uint32_t stride, bool write, float* part, int64_t row,
                               uint32_t C, uint32_t c0) {
  constexpr int NV = (KK + 1) * V;
#pragma unroll
  for (int base = 0; base < NV; base += kChunk) {
    float ch[kChunk];
#pragma unroll
    for (int u = 0; u < kChunk; ++u) {
      const int idx = base + u;
      ch[u] = idx < KK * V ? aw[idx / V][idx % V] : (idx < NV ? ab[idx - KK * V] : 0.f);
    }
    group_tree_sum<kChunk>(ctx, red, ch, member, count, stride);
    if (write) {
#pragma unroll
      for (int u = 0; u < kChunk; ++u) {
        const int idx = base + u;
        if (idx >= NV) continue;
        const int k = idx < KK * V ? idx / V : KK, e = idx < KK * V ? idx % V : idx - KK * V;
        part[(row * C + c0 + uint32_t(e)) * (KK + 1) + k] = ch[u];
      }
    }
  }
}

// ---- channels-last -------------------------------------------------------------------------------
template <typename T, int K, int V, int MODE>
struct DwCl {
  using Args = DwArgs;
  static constexpr int kMaxThreads = kThreads;
  // the backward's weights + weight partials + strip would take ~150 registers (K 3, V 4): cap at 128
  // so two blocks fit an SM (strip_len keeps it free of spills)
  static constexpr int kMinBlocks = (MODE == kBwdx && K == 3) ? 2 : 1;
  static constexpr int KK = K * K, H2 = K / 2, R = strip_len(K, MODE, true);

  template <class Ctx>
  static VMAMBA_HD void run(const Ctx& ctx, const Args& a, unsigned char* smem) {
    const T* in = static_cast<const T*>(a.in);
    const T* xg = static_cast<const T*>(a.x);
    const T* dyg = static_cast<const T*>(a.dy);
    T* out = static_cast<T*>(a.out);
    const uint32_t t = ctx.tid(), cvl = t % a.cvb, pyi = t / a.cvb;
    const uint32_t cv = ctx.block_y() * a.cvb + cvl;
    const bool cact = cv < a.ncv;
    const uint32_t c0 = cact ? cv * V : 0;
    float wr[KK][V], bv[V];
#pragma unroll
    for (int e = 0; e < V; ++e) {
#pragma unroll
      for (int k = 0; k < KK; ++k) wr[k][e] = cact ? a.w[(c0 + e) * KK + k] : 0.f;
      bv[e] = (cact && a.bias != nullptr) ? a.bias[c0 + e] : 0.f;
    }
    float aw[KK][V], ab[V];
    if constexpr (MODE == kBwdx) {
#pragma unroll
      for (int e = 0; e < V; ++e) {
        ab[e] = 0.f;
#pragma unroll
        for (int k = 0; k < KK; ++k) aw[k][e] = 0.f;
      }
    }
    const int64_t q0 = int64_t(ctx.block()) * a.qpb, q1 = std::min<int64_t>(a.nq, q0 + a.qpb);
    const int64_t rowstride = int64_t(a.W) * a.C;
    for (int64_t q = q0 + pyi; cact && q < q1; q += a.py) {
      uint32_t bh, s, b, h;
      a.div_ns.divmod(uint32_t(q), bh, s);
      a.div_h.divmod(bh, b, h);
      const int w0 = int(s) * R;
      const int64_t img = int64_t(b) * a.H * rowstride + c0;
      float acc[R][V], xo[R][V];
#pragma unroll
      for (int r = 0; r < R; ++r) {
#pragma unroll
        for (int e = 0; e < V; ++e) acc[r][e] = 0.f;
        if constexpr (MODE == kBwdx)
          load_floats<T, V>(xg + img + int64_t(h) * rowstride + int64_t(w0 + r) * a.C, w0 + r < int(a.W), xo[r]);
      }
#pragma unroll
      for (int i = 0; i < K; ++i) {
        const int hh = int(h) + i - H2;
        const bool rv = hh >= 0 && hh < int(a.H);
        const T* rowp = in + img + int64_t(hh) * rowstride;
#pragma unroll
        for (int jj = 0; jj < R + K - 1; ++jj) {
          const int ww = w0 + jj - H2;
          float v[V];
          load_floats<T, V>(rowp + int64_t(ww) * a.C, rv && ww >= 0 && ww < int(a.W), v);
#pragma unroll
          for (int r = 0; r < R; ++r) {
            const int j = jj - r;
            if (j < 0 || j >= K) continue;
            if constexpr (MODE == kBwdx) {
              const int k = (K - 1 - i) * K + (K - 1 - j);
#pragma unroll
              for (int e = 0; e < V; ++e) {
                acc[r][e] += wr[k][e] * v[e];
                aw[k][e] += xo[r][e] * v[e];
              }
              if (i == H2 && j == H2) {
#pragma unroll
                for (int e = 0; e < V; ++e) ab[e] += v[e];
              }
            } else {
#pragma unroll
              for (int e = 0; e < V; ++e) acc[r][e] += wr[i * K + j][e] * v[e];
            }
          }
        }
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
        if (w0 + r >= int(a.W)) continue;
        const int64_t o = img + int64_t(h) * rowstride + int64_t(w0 + r) * a.C;
        float res[V];
        if constexpr (MODE == kFwd) {
#pragma unroll
          for (int e = 0; e < V; ++e) res[e] = act_fwd(acc[r][e] + bv[e], a.act);
        } else if constexpr (MODE == kDpre) {
          float d[V];
          load_floats<T, V>(dyg + o, true, d);
#pragma unroll
          for (int e = 0; e < V; ++e) res[e] = d[e] * act_grad(acc[r][e] + bv[e], a.act);
        } else {
#pragma unroll
          for (int e = 0; e < V; ++e) res[e] = acc[r][e];
        }
        store_floats<T, V>(out + o, res);
      }
    }
    if constexpr (MODE == kBwdx)
      reduce_partials<KK, V>(ctx, reinterpret_cast<float*>(smem), aw, ab, pyi, a.py, a.cvb, pyi == 0 && cact, a.part,
                             int64_t(ctx.block()), a.C, c0);
  }
};

// ---- channels-first ------------------------------------------------------------------------------
template <typename T, int K, int V, int MODE>
struct DwCf {
  using Args = DwArgs;
  static constexpr int kMaxThreads = kThreads;
  // K = 3 backward with 8-wide vectors wants ~160 registers: cap at 128 (two blocks per SM)
  static constexpr int kMinBlocks = (MODE == kBwdx && K == 3) ? 2 : 1;
  static constexpr int KK = K * K, H2 = K / 2, R = strip_len(K, MODE, false);

  template <class Ctx>
  static VMAMBA_HD void run(const Ctx& ctx, const Args& a, unsigned char* smem) {
    // block = (image range bb, plane segment seg, channel group cg), channel group fastest
    const uint32_t t = ctx.tid(), pj = t / a.tpp, lt = t % a.tpp;
    const uint32_t cg = ctx.block() % a.ncg, rest = ctx.block() / a.ncg, seg = rest % a.nseg, bb = rest / a.nseg;
    const uint32_t c_raw = cg * a.P + pj;
    const bool pact = pj < a.P && c_raw < a.C;
    const uint32_t c = pact ? c_raw : 0;
    const int64_t b0 = int64_t(bb) * a.bpb, b1 = std::min<int64_t>(a.B, b0 + a.bpb);
    float wr[KK];
#pragma unroll
    for (int k = 0; k < KK; ++k) wr[k] = pact ? a.w[c * KK + k] : 0.f;
    const float bv = (pact && a.bias != nullptr) ? a.bias[c] : 0.f;
    float aw[KK][1], ab[1];
    if constexpr (MODE == kBwdx) {
      ab[0] = 0.f;
#pragma unroll
      for (int k = 0; k < KK; ++k) aw[k][0] = 0.f;
    }
    const uint32_t i0 = seg * a.segi, i1 = std::min(a.ni, i0 + a.segi);
    const int W = int(a.W), H = int(a.H);
    for (int64_t b = b0; pact && b < b1; ++b) {
      const int64_t poff = (b * a.C + c) * a.H * a.W;
      const T* in = static_cast<const T*>(a.in) + poff;
      const T* xg = static_cast<const T*>(a.x) + poff;
      const T* dyg = static_cast<const T*>(a.dy) + poff;
      T* out = static_cast<T*>(a.out) + poff;
      for (uint32_t it = i0 + lt; it < i1; it += a.tpp) {
        uint32_t sh, wv;
        a.div_nwv.divmod(it, sh, wv);
        const int h0 = int(sh) * R, w0 = int(wv) * V;
        float acc[R][V], xo[R][V];
#pragma unroll
        for (int r = 0; r < R; ++r) {
#pragma unroll
          for (int e = 0; e < V; ++e) acc[r][e] = 0.f;
          if constexpr (MODE == kBwdx) load_floats<T, V>(xg + int64_t(h0 + r) * W + w0, h0 + r < H, xo[r]);
        }
#pragma unroll
        for (int rr = 0; rr < R + K - 1; ++rr) {
          const int hh = h0 + rr - H2;
          const bool rv = hh >= 0 && hh < H;
          const T* rowp = in + int64_t(hh) * W;
          float row[V + K - 1], mid[V];
          load_floats<T, V>(rowp + w0, rv, mid);
#pragma unroll
          for (int e = 0; e < V; ++e) row[H2 + e] = mid[e];
#pragma unroll
          for (int l = 0; l < H2; ++l) {
            const int wl = w0 - H2 + l, wr_ = w0 + V + l;
            row[l] = (rv && wl >= 0) ? to_float(rowp[wl]) : 0.f;
            row[H2 + V + l] = (rv && wr_ < W) ? to_float(rowp[wr_]) : 0.f;
          }
#pragma unroll
          for (int i = 0; i < K; ++i) {
            const int r = rr - i;
            if (r < 0 || r >= R) continue;
#pragma unroll
            for (int j = 0; j < K; ++j) {
              if constexpr (MODE == kBwdx) {
                const int k = (K - 1 - i) * K + (K - 1 - j);
#pragma unroll
                for (int e = 0; e < V; ++e) {
                  acc[r][e] += wr[k] * row[e + j];
                  aw[k][0] += xo[r][e] * row[e + j];
                }
              } else {
#pragma unroll
                for (int e = 0; e < V; ++e) acc[r][e] += wr[i * K + j] * row[e + j];
              }
            }
            if constexpr (MODE == kBwdx) {
              if (i == H2) {
#pragma unroll
                for (int e = 0; e < V; ++e) ab[0] += row[H2 + e];
              }
            }
          }
        }
#pragma unroll
        for (int r = 0; r < R; ++r) {
          if (h0 + r >= H) continue;
          const int64_t o = int64_t(h0 + r) * W + w0;
          float res[V];
          if constexpr (MODE == kFwd) {
#pragma unroll
            for (int e = 0; e < V; ++e) res[e] = act_fwd(acc[r][e] + bv, a.act);
          } else if constexpr (MODE == kDpre) {
            float d[V];
            load_floats<T, V>(dyg + o, true, d);
#pragma unroll
            for (int e = 0; e < V; ++e) res[e] = d[e] * act_grad(acc[r][e] + bv, a.act);
          } else {
#pragma unroll
            for (int e = 0; e < V; ++e) res[e] = acc[r][e];
          }
          store_floats<T, V>(out + o, res);
        }
      }
    }
    if constexpr (MODE == kBwdx)
      reduce_partials<KK, 1>(ctx, reinterpret_cast<float*>(smem), aw, ab, lt, a.tpp, 1, lt == 0 && pact, a.part,
                             int64_t(bb) * a.nseg + seg, a.C, c);
  }
};

// ---- planning ------------------------------------------------------------------------------------
inline bool aligned_to(const void* p, size_t bytes) {
  return p == nullptr || reinterpret_cast<uintptr_t>(p) % bytes == 0;
}

// widest vector (elements) up to `maxv` (a power of two), at most max_vec, dividing n, every tensor
// pointer aligned to it
inline int pick_vec(int maxv, int es, int64_t n, int max_vec, std::initializer_list<const void*> ptrs) {
  for (int v = maxv; v > 1; v >>= 1) {
    if (max_vec > 0 && v > max_vec) continue;
    if (n % v != 0) continue;
    bool ok = true;
    for (const void* p : ptrs) ok = ok && aligned_to(p, size_t(v) * es);
    if (ok) return v;
  }
  return 1;
}

// widest vector the kernels are instantiated for: channels-last along C (K 3: 4, K 5: 2, K 7: 1),
// channels-first along W (K 3: 16 bytes, K 5: 4, K 7: 2)
inline int max_vec_for(int K, bool channels_last, int es) {
  if (channels_last) return K == 3 ? 4 : (K == 5 ? 2 : 1);
  return K == 3 ? 16 / es : (K == 5 ? 4 : 2);
}

inline Plan make_plan(const Params& p, int mode) {
  Plan pl;
  if (p.K != 3 && p.K != 5 && p.K != 7) {
    pl.error = "kernel size K must be 3, 5 or 7";
    return pl;
  }
  const int es = dtype_size(p.dtype);
  const void* in = mode == kBwdx ? (p.dpre != nullptr ? p.dpre : p.dy) : p.x;
  const void* out = mode == kFwd ? p.y : (mode == kDpre ? p.dpre : p.dx);
  const std::initializer_list<const void*> ptrs = {in, out, p.x, mode == kDpre ? p.dy : nullptr};
  pl.R = strip_len(p.K, mode, p.channels_last);
  if (p.B * p.C * p.H * p.W == 0) return pl;
  if (p.channels_last) {
    pl.vec = pick_vec(max_vec_for(p.K, true, es), es, p.C, p.max_vec, ptrs);
    const int64_t ncv = p.C / pl.vec;
    const int64_t chunks = (ncv + 63) / 64;
    pl.cvb = int((ncv + chunks - 1) / chunks);
    pl.py = kThreads / pl.cvb;
    pl.threads = pl.cvb * pl.py;
    pl.grid_y = unsigned(chunks);
    pl.ns = int((p.W + pl.R - 1) / pl.R);
    pl.nq = p.B * p.H * pl.ns;
    if (pl.nq >= (int64_t(1) << 31)) {
      pl.error = "too many pixels for one launch (B * H * ceil(W / R) must be < 2^31)";
      return pl;
    }
    const int64_t full = (pl.nq + pl.py - 1) / pl.py;
    int64_t gx = full;
    if (mode == kBwdx) {
      gx = std::min<int64_t>(full, std::max<int64_t>(1, int64_t(p.num_sms) * 4 / int64_t(chunks)));
      if (p.segs > 0) gx = std::min<int64_t>(p.segs, full);
      pl.part_rows = gx;
      pl.smem = size_t(pl.threads) * kChunk * sizeof(float);
    }
    pl.qpb = (pl.nq + gx - 1) / gx;
    pl.grid_x = unsigned((pl.nq + pl.qpb - 1) / pl.qpb);
    if (mode == kBwdx) pl.part_rows = pl.grid_x;
    return pl;
  }
  pl.vec = pick_vec(max_vec_for(p.K, false, es), es, p.W, p.max_vec, ptrs);
  pl.nwv = int(p.W / pl.vec);
  const int64_t nsh = (p.H + pl.R - 1) / pl.R, ni = nsh * pl.nwv;
  if (ni >= (int64_t(1) << 31) || p.H * p.W >= (int64_t(1) << 31)) {
    pl.error = "plane too large for one launch (H * W must be < 2^31)";
    return pl;
  }
  pl.ni = int(ni);
  if (ni <= kThreads) {
    pl.P = int(std::min<int64_t>(kThreads / ni, p.C));
    pl.tpp = int(ni);
    pl.nseg = 1;
    pl.segi = int(ni);
  } else {
    pl.P = 1;
    pl.tpp = kThreads;
    const int64_t per_thread = mode == kBwdx ? 4 : 1;
    int64_t nseg = (ni + kThreads * per_thread - 1) / (kThreads * per_thread);
    if (mode == kBwdx && p.segs > 0) nseg = std::min<int64_t>(p.segs, (ni + kThreads - 1) / kThreads);
    pl.segi = int((ni + nseg - 1) / nseg);
    pl.nseg = int((ni + pl.segi - 1) / pl.segi);
  }
  pl.threads = pl.P * pl.tpp;
  pl.ncg = int((p.C + pl.P - 1) / pl.P);
  // kBwdx: images per block so the GPU holds a few blocks per SM, each thread accumulating over them
  pl.bpb = 1;
  if (mode == kBwdx) {
    const int64_t base = int64_t(pl.ncg) * pl.nseg, target = int64_t(p.num_sms) * 4;
    const int64_t nbb = std::max<int64_t>(1, std::min<int64_t>(p.B, (target + base - 1) / base));
    pl.bpb = int((p.B + nbb - 1) / nbb);
  }
  const int64_t nbb = (p.B + pl.bpb - 1) / pl.bpb;
  const int64_t blocks = int64_t(pl.ncg) * pl.nseg * nbb;
  if (blocks >= (int64_t(1) << 31)) {
    pl.error = "too many blocks for one launch";
    return pl;
  }
  pl.grid_x = unsigned(blocks);
  if (mode == kBwdx) {
    pl.part_rows = nbb * pl.nseg;
    pl.smem = size_t(pl.threads) * kChunk * sizeof(float);
  }
  return pl;
}

inline DwArgs make_args(const Params& p, const Plan& pl, int mode) {
  DwArgs a{};
  a.in = mode == kBwdx ? (p.dpre != nullptr ? p.dpre : p.dy) : p.x;
  a.x = p.x;
  a.dy = p.dy;
  a.w = p.weight;
  a.bias = p.bias;
  a.out = mode == kFwd ? p.y : (mode == kDpre ? p.dpre : p.dx);
  a.part = p.part;
  a.act = p.act;
  a.C = uint32_t(p.C);
  a.H = uint32_t(p.H);
  a.W = uint32_t(p.W);
  a.B = p.B;
  if (p.channels_last) {
    a.ncv = uint32_t(p.C / pl.vec);
    a.cvb = uint32_t(pl.cvb);
    a.py = uint32_t(pl.py);
    a.ns = uint32_t(pl.ns);
    a.nq = pl.nq;
    a.qpb = pl.qpb;
    a.div_ns = FastDivmod(uint32_t(std::max(pl.ns, 1)));
    a.div_h = FastDivmod(uint32_t(std::max<int64_t>(p.H, 1)));
  } else {
    a.nwv = uint32_t(pl.nwv);
    a.ni = uint32_t(pl.ni);
    a.P = uint32_t(pl.P);
    a.tpp = uint32_t(pl.tpp);
    a.nseg = uint32_t(pl.nseg);
    a.segi = uint32_t(pl.segi);
    a.ncg = uint32_t(pl.ncg);
    a.bpb = uint32_t(pl.bpb);
    a.div_nwv = FastDivmod(uint32_t(std::max(pl.nwv, 1)));
  }
  return a;
}

// ---- typed launchers (Exec: DeviceExec or the tests' EmuExec) ------------------------------------
template <class Exec, typename T, bool CL, int K, int MODE>
cudaError_t run_k_mode(const Exec& ex, const Plan& pl, const DwArgs& a) {
  const dim3 grid(pl.grid_x, pl.grid_y);
  constexpr int vmax = CL ? (K == 3 ? 4 : (K == 5 ? 2 : 1)) : (K == 3 ? 16 / int(sizeof(T)) : (K == 5 ? 4 : 2));
  auto go = [&](auto vtag) -> cudaError_t {
    constexpr int V = decltype(vtag)::value;
    if constexpr (CL) return ex.template launch<DwCl<T, K, V, MODE>>(grid, pl.threads, pl.smem, a);
    else return ex.template launch<DwCf<T, K, V, MODE>>(grid, pl.threads, pl.smem, a);
  };
  switch (pl.vec) {
    case 8: if constexpr (vmax >= 8) return go(std::integral_constant<int, 8>{}); break;
    case 4: if constexpr (vmax >= 4) return go(std::integral_constant<int, 4>{}); break;
    case 2: if constexpr (vmax >= 2) return go(std::integral_constant<int, 2>{}); break;
    default: return go(std::integral_constant<int, 1>{});
  }
  return cudaErrorInvalidValue;
}

template <class Exec, typename T, bool CL, int MODE>
cudaError_t run_mode(const Exec& ex, const Params& p, const Plan& pl) {
  const DwArgs a = make_args(p, pl, MODE);
  switch (p.K) {
    case 3: return run_k_mode<Exec, T, CL, 3, MODE>(ex, pl, a);
    case 5: return run_k_mode<Exec, T, CL, 5, MODE>(ex, pl, a);
    case 7: return run_k_mode<Exec, T, CL, 7, MODE>(ex, pl, a);
    default: return cudaErrorInvalidValue;
  }
}

template <class Exec, typename T, bool CL>
cudaError_t run_typed(const Exec& ex, const Params& p, const Plan& pl, int mode) {
  switch (mode) {
    case kFwd: return run_mode<Exec, T, CL, kFwd>(ex, p, pl);
    case kDpre: return run_mode<Exec, T, CL, kDpre>(ex, p, pl);
    default: return run_mode<Exec, T, CL, kBwdx>(ex, p, pl);
  }
}

// dweight, dbias from the partial rows, in a fixed order
template <class Exec>
cudaError_t run_finish(const Exec& ex, const Params& p, const Plan& pl) {
  const uint32_t per = uint32_t(p.K * p.K + 1);
  const ColSumArgs a{p.part, pl.part_rows, uint32_t(p.C) * per, per, p.dweight, p.dbias};
  return ex.template launch<ColSum>(dim3(unsigned((uint32_t(p.C) * per + ColSum::kCols - 1) / ColSum::kCols)),
                                    ColSum::kMaxThreads, ColSum::kSmem, a);
}

}  // namespace dw
}  // namespace vmamba
