// Cross scan / cross merge launchers (no ATen here: cross_scan_kernels.cu needs only CUDA headers).
//
// For a map X (C, H, W), L = H*W, row-major p = h*W + w, column-major q = w*H + h, routes are
//   cross2d: route0[p] = X[h,w], route1[q] = X[h,w], route2[L-1-p] = X[h,w], route3[L-1-q] = X[h,w]
//   unidi:   every route is route0          bidi: routes 0, 0, 2, 2 of cross2d
// scan:  x (B, C, H, W) or (B, H, W, C) -> y (B, 4, C, L)
// merge: y (B, 4, C, L) -> x (B, C, H, W) or (B, H, W, C), the sum of the four routes mapped back.
#pragma once

#include "../common/rtc_compat.h"

namespace vmamba {
namespace cross {

enum Mode : int { kCross2d = 0, kUnidi = 1, kBidi = 2 };
enum DType : int { kF32 = 0, kF16 = 1, kBF16 = 2 };

struct Problem {
  const void* in = nullptr;  // scan: x; merge: y (both contiguous)
  void* out = nullptr;       // scan: y; merge: x (contiguous, fully written)
  int64_t B = 0, C = 0, H = 0, W = 0;
  int mode = kCross2d;
  bool channels_last = false;
  int dtype = kF32;
  int max_vec = 0;  // widest vector (elements) the kernels may use; 0 = as wide as 16-byte accesses allow
};

// How a launch was planned (for build_info / tests / tuning).
struct Plan {
  bool plane = false;  // true: shared-memory plane-group kernel
  bool tiled = false;  // true: channels-last tiled kernel (both false: direct gather kernel)
  int vec = 1;         // elements per access (tiled: along channels)
  int planes_per_block = 0;  // channels per block (plane and tiled kernels)
  int tile_h = 0, tile_w = 0;  // tiled: pixels per tile (edge tiles are cut); bands: the row bands'
  bool band = false;           // tiled scan in row bands and column bands (cross_scan_band_body)
  int64_t blocks = 0;
  size_t smem_bytes = 0;
};

#ifndef __CUDACC_RTC__
// Return nullptr on success, else a static error string (the caller raises it).
const char* launch_cross_scan(const Problem& p, cudaStream_t stream, Plan* plan);
const char* launch_cross_merge(const Problem& p, cudaStream_t stream, Plan* plan);
#endif

}  // namespace cross
}  // namespace vmamba
