// Selective scan (Mamba S6 with VMamba's grouped B/C): shared declarations of the host side
// (selective_scan.cpp: checks, allocation, registration) and the kernels (selective_scan_kernels.cu).
//
// Work split
//   forward : one warp scans one (batch, channel) row over L in chunks of kChunk = 32 * kItems
//             time steps; each lane owns kItems consecutive steps (16-byte vector loads when aligned),
//             the warp composes the affine maps x -> a x + b with shuffles, the chunk's end state is
//             the carry into the next chunk (kept in registers, lane n%32 holds state n). The carry
//             into every chunk is saved in `aux` (batch, KD, nchunks, N) fp32 for the backward.
//   backward: one block = kBwdWarps warps = kBwdWarps channels of one B/C group of one batch row,
//             all walking the chunks in reverse in lockstep. Each warp recomputes its chunk's states
//             from the saved carry, runs the adjoint recurrence backwards (same affine composition),
//             and the block sums dB/dC over its channels in shared memory. A block owns a private
//             fp32 slice of the split buffer accB/accC (S, batch, K, N, L) and walks its channels in
//             a fixed order, so every sum has a fixed order: the backward is always deterministic
//             (no float atomics). Small second kernels add the S splits (dB, dC) and the per-batch
//             partials (dA, dD, ddelta_bias).
//   d_state 1: fwd_n1_kernel / bwd_n1_kernel (VMamba v2) keep the same layout and scratch, with the
//             carries in registers, operands held packed as loaded, the forward's next chunk prefetched
//             and streaming loads/stores; bench/tune_scan.cu times them against the generic kernels.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

#include "../common/device.cuh"

namespace vmamba {
namespace scan {

enum DTypeCode { kF32 = 0, kF16 = 1, kBF16 = 2 };

constexpr int kItems = 8;              // consecutive time steps per lane
constexpr int kChunk = 32 * kItems;    // time steps per warp iteration
constexpr int kFwdWarps = 4;           // rows per forward block
constexpr int kBwdWarps = 8;           // channels per backward block
constexpr int kMaxDState = 64;

__host__ __device__ inline int64_t num_chunks(int64_t L) { return (L + kChunk - 1) / kChunk; }
// lanes per row: rows of L <= 128 steps are packed 32 / lpr per warp (one chunk each)
inline int lanes_per_row(int64_t L) { return L <= 4 * kItems * 4 ? int(L < 1 ? 1 : (L + kItems - 1) / kItems) : 32; }

struct FwdParams {
  const void* u = nullptr;
  const void* delta = nullptr;
  const float* A = nullptr;
  const void* B = nullptr;
  const void* C = nullptr;
  const float* D = nullptr;           // may be null
  const float* delta_bias = nullptr;  // may be null
  void* out = nullptr;
  float* last_state = nullptr;  // (batch, KD, N)
  float* aux = nullptr;         // (batch, KD, nchunks, N): state entering each chunk
  int64_t batch = 0, KD = 0, L = 0, G = 1;  // G = channels per group = KD / K
  int N = 1, K = 1, lpr = 32;  // lpr = lanes_per_row(L)
  bool softplus = false;
  int dtype = kF32, out_dtype = kF32;
  FastDivmod kd_div, g_div;  // row -> (batch, channel), channel -> group; set by launch_fwd
};

struct BwdParams {
  const void* u = nullptr;
  const void* delta = nullptr;
  const float* A = nullptr;
  const void* B = nullptr;
  const void* C = nullptr;
  const float* D = nullptr;
  const float* delta_bias = nullptr;
  const void* dout = nullptr;
  const float* aux = nullptr;
  void* du = nullptr;
  void* ddelta = nullptr;
  float* dA = nullptr;
  void* dB = nullptr;
  void* dC = nullptr;
  float* dD = nullptr;           // null when D is absent
  float* ddelta_bias = nullptr;  // null when delta_bias is absent
  float* accB = nullptr;         // (S, batch, K, N, L) scratch
  float* accC = nullptr;
  float* partA = nullptr;        // (batch, KD, N) scratch
  float* partD = nullptr;        // (batch, KD) scratch
  float* partBias = nullptr;     // (batch, KD) scratch
  int64_t batch = 0, KD = 0, L = 0, G = 1;
  int N = 1, K = 1, S = 1, lpr = 32;
  bool softplus = false;
  int dtype = kF32, dout_dtype = kF32;
};

// number of channel splits S of the backward for this problem (fills the GPU, bounded scratch)
int bwd_splits(int64_t batch, int K, int64_t G, int N, int64_t L, int num_sms);

// return nullptr on success, else a message
const char* launch_fwd(const FwdParams& p, cudaStream_t stream);
const char* launch_bwd(const BwdParams& p, cudaStream_t stream);

}  // namespace scan
}  // namespace vmamba
