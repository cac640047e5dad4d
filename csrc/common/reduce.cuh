// Deterministic reductions shared by the backward kernels (layer norm, depthwise conv): every sum has a
// fixed order for a given launch, so two runs give bitwise equal gradients (no float atomics).
//   group_tree_sum   sums NV floats over the member threads of a group inside a block (fixed tree)
//   ColSum           second kernel: out[e] = sum over nb rows of part[nb][e] (fixed order), with an
//                    optional (value, last) split per channel: period p > 0 sends e = c * p + k to
//                    out_a[c * (p - 1) + k] for k < p - 1 and to out_b[c] for k = p - 1
#pragma once

#include <cstdint>

#include "thread_ctx.cuh"

namespace vmamba {

// Sums vals[NV] over the `count` members of each group, member m being thread base + m * stride, in a
// fixed tree; member 0 gets the sum in vals. red: nthreads * NV floats of shared memory. Every thread of
// the block calls it with the same `count` (the tree's depth must be block-uniform for the barriers).
template <int NV, class Ctx>
VMAMBA_HD void group_tree_sum(const Ctx& ctx, float* red, float (&vals)[NV], uint32_t member, uint32_t count,
                              uint32_t stride) {
  const uint32_t t = ctx.tid();
#pragma unroll
  for (int v = 0; v < NV; ++v) red[t * NV + v] = vals[v];
  ctx.sync();
  for (uint32_t s = pow2_ceil(count) >> 1; s > 0; s >>= 1) {
    if (member < s && member + s < count) {
#pragma unroll
      for (int v = 0; v < NV; ++v) red[t * NV + v] += red[(t + s * stride) * NV + v];
    }
    ctx.sync();
  }
  if (member == 0) {
#pragma unroll
    for (int v = 0; v < NV; ++v) vals[v] = red[t * NV + v];
  }
  ctx.sync();  // red is reused by the caller's next round
}

struct ColSumArgs {
  const float* part;  // (nb, n)
  int64_t nb;
  uint32_t n;
  uint32_t period;  // 0: out_a[e]; else the (value, last) split above
  float* out_a;
  float* out_b;  // may be null (the last value of each period is then dropped)
};

// 256 threads = 32 columns x 8 row-strides; grid = ceil(n / 32); 1 KB of shared memory.
struct ColSum {
  using Args = ColSumArgs;
  static constexpr int kMaxThreads = 256, kMinBlocks = 1;
  static constexpr uint32_t kCols = 32, kSegs = 8;
  static constexpr size_t kSmem = kCols * kSegs * sizeof(float);

  template <class Ctx>
  static VMAMBA_HD void run(const Ctx& ctx, const Args& a, unsigned char* smem) {
    float* red = reinterpret_cast<float*>(smem);
    const uint32_t t = ctx.tid(), col = t % kCols, seg = t / kCols;
    const uint32_t e = ctx.block() * kCols + col;
    float s = 0.f;
    if (e < a.n) {
      for (int64_t r = seg; r < a.nb; r += kSegs) s += a.part[r * a.n + e];
    }
    red[seg * kCols + col] = s;
    ctx.sync();
    if (seg == 0 && e < a.n) {
      float total = red[col];
      for (uint32_t k = 1; k < kSegs; ++k) total += red[k * kCols + col];
      if (a.period == 0) {
        a.out_a[e] = total;
      } else {
        const uint32_t c = e / a.period, k = e % a.period;
        if (k + 1 < a.period) a.out_a[c * (a.period - 1) + k] = total;
        else if (a.out_b != nullptr) a.out_b[c] = total;
      }
    }
  }
};

}  // namespace vmamba
