// The fused SS2D core backward's split count (host only, no CUDA headers: tests/test_ss2d_splits.py compiles it
// alone). The backward runs batch x S blocks; block (b, s) walks channel tiles s, s + S, ... of batch row b, so
// its time is about ceil(ntiles / S) tiles, and the launch takes ceil(batch * S / wave) waves of resident blocks.
#pragma once

#include <cstdint>

namespace vmamba {
namespace ss2d {

// S in [1, ntiles] minimising waves x tiles per block, the smallest on ties (every extra split adds an fp32 slice
// of dxdbl to sum). The earlier rule, "just enough blocks for one wave" (ceil(wave / batch)), can overshoot into a
// mostly idle second wave: at VMamba-T stage 3 (batch 128, 14x14, D 384) on an H100 it took 4.90 ms, as S = 3
// forced did, against 3.86 for S = 2 or 4; this rule gets 3.87 (reports/logs/2026-12-05_gpu_calls_H100.md).
inline int64_t bwd_splits(int64_t batch, int64_t ntiles, int64_t wave) {
  if (batch < 1 || ntiles < 1) return 1;
  if (wave < 1) wave = 1;
  int64_t best = 1, best_cost = -1;
  for (int64_t s = 1; s <= ntiles; ++s) {
    const int64_t cost = ((batch * s + wave - 1) / wave) * ((ntiles + s - 1) / s);
    if (best_cost < 0 || cost < best_cost) {
      best = s;
      best_cost = cost;
    }
  }
  return best;
}

}  // namespace ss2d
}  // namespace vmamba
