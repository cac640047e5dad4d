// LayerNorm over channels with the residual add before it, on either layout (no ATen here).
//
//   s = x + scale[b] * branch      (branch optional; scale optional: drop-path's per-sample factor)
//   y = (s - mean) * rstd * weight + bias, statistics in fp32 over C (biased variance), y in out dtype
//   x, branch, s: (B, C, H, W) channels-first or (B, H, W, C) channels-last, float32/float16/bfloat16;
//   branch in x's dtype, or float16/bfloat16 on a float32 x (read as is); dbranch comes back in x's dtype
//   mean, rstd: float32 (B, H*W)
// Backward, with xhat = (s - mean) * rstd, gw = dy * weight:
//   g = ds + rstd * (gw - mean_C(gw) - xhat * mean_C(gw * xhat));  dx = g;  dbranch = g * scale[b]
//   dweight = sum over pixels of dy * xhat, dbias = sum of dy (per-block partials, fixed-order second pass)
// Backward from the output (BwdParams::from_y; the models' "norms" recompute): `s` is then y itself (dy's
// dtype) and xhat = (y - bias) / weight, |weight| clamped at kMinWeight: the norm keeps its 16-bit output,
// which the projection after it keeps anyway, instead of its float32 input (as apex's memory-efficient
// LayerNorm). mean is not read.
// Kernels: layer_norm_body.cuh; torch side: layer_norm.cpp.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>

namespace vmamba {
namespace ln {

enum DType : int { kF32 = 0, kF16 = 1, kBF16 = 2 };

inline int dtype_size(int d) { return d == kF32 ? 4 : 2; }

// backward from the output: weights of smaller magnitude are read as +-kMinWeight (a zero weight leaves no
// trace of xhat in y; the clamp keeps the division finite)
constexpr float kMinWeight = 1e-5f;

struct FwdParams {
  const void* x = nullptr;
  const void* branch = nullptr;   // null: s is x
  const float* scale = nullptr;   // (B,), only with branch; null means 1
  const float* weight = nullptr;  // (C,)
  const float* bias = nullptr;    // (C,) or null
  void* s = nullptr;              // x dtype, written only with branch
  void* y = nullptr;              // y dtype
  float* mean = nullptr;          // (B, HW)
  float* rstd = nullptr;
  int64_t B = 0, C = 0, HW = 0;
  float eps = 1e-5f;
  bool channels_last = false;
  int x_dtype = kF32, y_dtype = kF32;
  int branch_dtype = -1;  // -1: x's; a float16 / bfloat16 branch is also read as is when x is float32
  // knobs (0: automatic): widest vector in elements; channels-first pixels per tile (power of two)
  int max_vec = 0, tile = 0;
  int num_sms = 132;
};

inline int branch_dtype_of(const FwdParams& p) { return p.branch_dtype < 0 ? p.x_dtype : p.branch_dtype; }

struct BwdParams {
  const void* dy = nullptr;       // dy dtype, shape of s
  const void* ds = nullptr;       // x dtype or null (no gradient flowing into s itself)
  const void* s = nullptr;        // x dtype; with from_y: y, in dy's dtype
  const float* weight = nullptr;
  const float* bias = nullptr;    // read only with from_y (null: no bias)
  bool from_y = false;
  const float* mean = nullptr;    // not read with from_y
  const float* rstd = nullptr;
  const float* scale = nullptr;   // (B,) or null
  void* dx = nullptr;             // x dtype
  void* dbranch = nullptr;        // x dtype or null
  float* dweight = nullptr;       // (C,)
  float* dbias = nullptr;         // (C,) or null
  float* part = nullptr;          // scratch (plan.part_rows, C, 2), set by the caller after planning
  int64_t B = 0, C = 0, HW = 0;
  bool channels_last = false;
  int x_dtype = kF32, dy_dtype = kF32;
  int max_vec = 0, tile = 0;
  int blocks = 0;  // knob: force the backward's block count (partials rows)
  int num_sms = 132;
};

// How a launch is shaped (planned on the host; also printed by the tests' emulator)
struct Plan {
  const char* error = nullptr;  // non-null: the problem cannot be launched (message)
  int vec = 1;                  // elements per vector access
  int threads = 256;
  int64_t blocks = 0;
  size_t smem = 0;
  // channels-last: threads per row (power of two), vectors per row, register slots per thread
  int tpr = 1, nvr = 0, nv = 0;
  // channels-first: pixels per tile (power of two), tiles per image, threads per channel in the
  // backward's weight-gradient pass, shared-memory row bytes of the s and dy tiles
  int tile = 0, tiles = 0, cpt = 1, row_s = 0, row_dy = 0;
  int64_t part_rows = 0;  // backward: rows of the partial-sum scratch (= blocks)
};

Plan plan_fwd(const FwdParams& p);
Plan plan_bwd(const BwdParams& p);

// nullptr on success, else a message; launch_bwd needs p.part sized (plan.part_rows, C, 2)
const char* launch_fwd(const FwdParams& p, const Plan& plan, cudaStream_t stream);
const char* launch_bwd(const BwdParams& p, const Plan& plan, cudaStream_t stream);

}  // namespace ln
}  // namespace vmamba
