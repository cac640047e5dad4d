// Depthwise 2-d convolution + bias + activation on either layout (no ATen here).
//
//   pre[b, c, h, w] = sum_{i, j < K} weight[c, 0, i, j] * x[b, c, h + i - K/2, w + j - K/2]  (zero padding)
//                     + bias[c];   y = act(pre),  act in {none, silu, gelu (exact erf)}
//   x, y: (B, C, H, W) channels-first or (B, H, W, C) channels-last, float32/float16/bfloat16, stride 1,
//   K odd in {3, 5, 7}; weight (C, 1, K, K) and bias (C,) float32; fp32 accumulation.
// Backward (two passes over the map, pre recomputed from x):
//   kDpre: dpre = dy * act'(pre) (stored in x's dtype; skipped when act is none: dpre = dy)
//   kBwdx: dx = the correlation of dpre with the flipped kernel; dweight[c, i, j] = sum x * dpre shifted,
//          dbias[c] = sum dpre, as per-block partial rows (part) added in a fixed order by ColSum.
// Kernels: dwconv_body.cuh; torch side: dwconv.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

namespace vmamba {
namespace dw {

enum DType : int { kF32 = 0, kF16 = 1, kBF16 = 2 };
enum Act : int { kNone = 0, kSilu = 1, kGelu = 2 };
enum Mode : int { kFwd = 0, kDpre = 1, kBwdx = 2 };

inline int dtype_size(int d) { return d == kF32 ? 4 : 2; }

struct Params {
  const void* x = nullptr;
  const void* dy = nullptr;       // backward
  const float* weight = nullptr;  // (C, 1, K, K)
  const float* bias = nullptr;    // (C,) or null
  void* y = nullptr;              // forward output
  void* dpre = nullptr;           // backward scratch in x's dtype (null when act is none)
  void* dx = nullptr;
  float* dweight = nullptr;
  float* dbias = nullptr;         // null when bias is absent
  float* part = nullptr;          // scratch (plan.part_rows, C, K*K + 1), set after planning
  int64_t B = 0, C = 0, H = 0, W = 0;
  int K = 3;
  int act = kNone;
  bool channels_last = false;
  int dtype = kF32;
  // knobs (0: automatic): widest vector (elements); backward partial rows (channels-last: blocks along
  // pixels; channels-first: segments per plane)
  int max_vec = 0, segs = 0;
  int num_sms = 132;
};

struct Plan {
  const char* error = nullptr;
  int vec = 1;  // elements per vector: channels-last along C, channels-first along W
  int R = 1;    // outputs per thread along W (channels-last) / H (channels-first)
  int threads = 256;
  unsigned grid_x = 0, grid_y = 1;
  size_t smem = 0;
  // channels-last: channel vectors per block (cvb), pixel threads (py), strips per row (ns), strips
  // per block (qpb), channel chunks (grid_y)
  int cvb = 0, py = 0, ns = 0;
  int64_t nq = 0, qpb = 0;
  // channels-first: vectors per row (nwv), items per plane (ni), channels per block (P), threads per
  // channel (tpp), segments per plane (nseg) of segi items, channel groups (ncg), images per block (bpb)
  int nwv = 0, ni = 0, P = 0, tpp = 0, nseg = 1, segi = 0, ncg = 0, bpb = 1;
  int64_t part_rows = 0;  // kBwdx
};

Plan plan(const Params& p, int mode);
// nullptr on success, else a message. Forward: y. Backward: dx, dweight, dbias (p.part sized by
// plan(p, kBwdx).part_rows, p.dpre allocated when act is not none).
const char* launch_fwd(const Params& p, cudaStream_t stream);
const char* launch_bwd(const Params& p, cudaStream_t stream);

}  // namespace dw
}  // namespace vmamba
