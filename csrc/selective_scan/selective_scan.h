// Selective scan (Mamba S6 with VMamba's grouped B/C): shared declarations of the host side
// (selective_scan.cpp: checks, allocation, registration) and the kernels (selective_scan_kernels.cuh,
// instantiated per direction and dtype in selective_scan_{fwd,bwd}_*.cu, dispatched in selective_scan_launch.cu).
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
//   1 < d_state <= 16 with many rows: fwd_seq_kernel, a thread per row walking time with every
//             state in registers (VMamba v0's d_state 16), and bwd_seq_kernel, 2-4 lanes per row
//             walking time backwards after recomputing the chunk's states (same aux and scratch).
//   d_state 1: fwd_n1_kernel / bwd_n1_kernel (VMamba v2) keep the same layout and scratch, with the
//             carries in registers, operands held packed as loaded, the forward's next chunk prefetched
//             and streaming loads/stores; bench/tuning/scan.cu times them against the generic kernels.
//             Rows of one chunk (L <= kChunk) take fwd_n1_packed_kernel: rows laid end to end at lane
//             granularity (ceil(L / kItems) lanes each), so no lane idles at L = 196 or 49.
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
// rows (batch * KD) from which 1 < d_state <= 16 takes the row-per-thread kernels (fwd_seq_kernel,
// bwd_seq_kernel): below it a thread per row leaves the GPU idle and the warp-per-row kernels are
// faster; they win from 6144 rows on over VMamba-vanilla-T's stages at batch 1..128 (reports/tuning.md).
// The knob VMAMBA_SCAN_SEQ_MIN_ROWS overrides it (csrc/common/knobs.h; tests force either kernel with it).
constexpr int64_t kSeqMinRows = 6144;

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
  // 1 < N <= 16 with at least this many rows (batch * KD): the row-per-thread forward
  int64_t seq_min_rows = kSeqMinRows;
  // rows per warp of fwd_n1_packed_kernel; 0: spread the rows over one wave of resident warps
  int packed_rows = 0;
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
  bool seq = false;  // the row-per-thread backward (use_seq); S and the scratch depend on it
  int dtype = kF32, dout_dtype = kF32;
};

// whether 1 < N <= 16 takes the row-per-thread kernels (rows = batch * KD)
bool use_seq(int N, int64_t rows, int64_t seq_min_rows);
// channels per block and round of the backward
int64_t bwd_rows_per_round(int64_t L, int N, bool seq);
// number of channel splits S of the backward for this problem (fills the GPU, bounded scratch)
int bwd_splits(int64_t batch, int K, int64_t G, int N, int64_t L, int num_sms, bool seq);

// return nullptr on success, else a message
const char* launch_fwd(const FwdParams& p, cudaStream_t stream);
const char* launch_bwd(const BwdParams& p, cudaStream_t stream);

}  // namespace scan
}  // namespace vmamba
