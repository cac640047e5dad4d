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

#include "../common/device.cuh"
#include "../common/rtc_compat.h"

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
constexpr int kSeqRows = 64;        // rows (threads) per block of fwd_seq_kernel
constexpr int kSeqBwdThreads = 64;  // threads per block of bwd_seq_kernel
constexpr int kFinRows = 8;         // batch strides per block of finalize_small_kernel (block 32 x kFinRows)
constexpr int kFinBcThreads = 256;  // threads per block of finalize_bc_kernel

// rows per block of bwd_seq_kernel<NS> (NS / 4 lanes per row)
template <int NS>
__host__ __device__ constexpr int seq_bwd_rows() { return kSeqBwdThreads / (NS / 4); }

__host__ __device__ inline int64_t num_chunks(int64_t L) { return (L + kChunk - 1) / kChunk; }
// lanes per row: rows of L <= 128 steps are packed 32 / lpr per warp (one chunk each)
__host__ __device__ inline int lanes_per_row(int64_t L) {
  return L <= 4 * kItems * 4 ? int(L < 1 ? 1 : (L + kItems - 1) / kItems) : 32;
}

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
  // B and C: element strides of their batch and group dims (both tensors the same; the N and L dims dense,
  // strides L and 1). A contiguous (batch, K, N, L) has K * N * L and N * L; slices of the x projection's
  // (batch, K, R + 2N, L) output are read in place (models.chain: no copies). Set by every launcher.
  int64_t bc_bstride = 0, bc_gstride = 0;
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
  int64_t bc_bstride = 0, bc_gstride = 0;  // as FwdParams (dB, dC and the scratch stay contiguous)
};

#ifndef __CUDACC_RTC__
// ---- launch rules (host) ------------------------------------------------------------------------
// The extension's launchers (selective_scan_kernels.cuh, selective_scan.cpp) take every kernel choice
// from these functions; the cupy backend, which launches the same kernels through NVRTC, follows them in
// vmamba_kernels/cupy/plan.py, and tests/test_cupy_sources.py compiles this header on the CPU to check
// the two agree.

// whether 1 < N <= 16 takes the row-per-thread kernels (rows = batch * KD)
inline bool use_seq(int N, int64_t rows, int64_t seq_min_rows) { return N > 1 && N <= 16 && rows >= seq_min_rows; }

// channels per block and round of the backward
inline int64_t bwd_rows_per_round(int64_t L, int N, bool seq) {
  if (seq) return N <= 8 ? seq_bwd_rows<8>() : seq_bwd_rows<16>();
  return int64_t(kBwdWarps) * (32 / lanes_per_row(L));
}

// number of channel splits S of the backward for this problem (fills the GPU, bounded scratch)
inline int bwd_splits(int64_t batch, int K, int64_t G, int N, int64_t L, int num_sms, bool seq) {
  const int64_t base = batch * K;
  const int64_t per_round = bwd_rows_per_round(L, N, seq);
  const int64_t rounds = (G + per_round - 1) / per_round;
  // blocks to fill the GPU: 8 of bwd_kernel's 256 threads, 12 of the 64-thread bwd_seq_kernel per SM
  const int64_t target = int64_t(num_sms) * (seq ? 12 : 8);
  int64_t S = base > 0 ? (target + base - 1) / base : 1;
  S = rounds < S ? rounds : S;
  S = S < 1 ? 1 : S;
  const int64_t per_split = base * N * L * 8;  // bytes of accB + accC per split
  while (S > 1 && S * per_split > (int64_t(512) << 20)) --S;
  return int(S);
}

// bwd_splits, or `forced` (> 0: the VMAMBA_SCAN_BWD_SPLITS knob) capped so that every split owns at least
// one channel round (else its scratch slice stays unwritten)
inline int bwd_splits_or(int forced, int64_t batch, int K, int64_t G, int N, int64_t L, int num_sms, bool seq) {
  if (forced < 1) return bwd_splits(batch, K, G, N, L, num_sms, seq);
  const int64_t per_round = bwd_rows_per_round(L, N, seq);
  const int64_t rounds = (G + per_round - 1) / per_round;
  return int(forced < rounds ? forced : rounds);
}

inline bool aligned_to(const void* q, int bytes) {
  return (reinterpret_cast<uintptr_t>(q) & uintptr_t(bytes - 1)) == 0;
}

enum FwdKernel : int { kFwdPacked = 0, kFwdN1 = 1, kFwdSeq4 = 2, kFwdSeq8 = 3, kFwdSeq16 = 4, kFwdGeneric = 5 };

struct FwdLaunch {
  int kernel = kFwdGeneric;
  int64_t grid = 0;
  int block = 0;
  int rpw = 0;             // fwd_n1_packed_kernel: rows per warp
  bool piece8 = false;     //   every lane's input runs are whole aligned 8-byte pieces
  int out_piece = 0;       //   widest aligned piece (bytes) of its output runs, 0: none
  int bpg = 0;             // fwd_seq_kernel: blocks per (batch, group)
};

// The forward's kernel and launch geometry. in_bytes / out_bytes: element sizes of the input and output;
// resident_warps: warps of fwd_n1_packed_kernel resident on the device (SMs x blocks per SM x kFwdWarps;
// used only when N = 1, L <= kChunk and p.packed_rows is 0: the rows are spread over one such wave).
inline FwdLaunch plan_fwd(const FwdParams& p, int in_bytes, int out_bytes, int resident_warps) {
  FwdLaunch l;
  const int64_t rows = p.batch * p.KD;
  const int64_t per_block = int64_t(kFwdWarps) * (32 / p.lpr);
  const int64_t blocks = (rows + per_block - 1) / per_block;
  l.block = kFwdWarps * 32;
  if (p.N == 1 && p.L >= 1 && p.L <= kChunk) {
    // at most 2^20 rows per warp: the kernel counts a warp's virtual lanes (rows x ell <= 32) in 32 bits
    const int64_t warps = resident_warps < 1 ? 1 : resident_warps;
    const int64_t spread = p.packed_rows > 0 ? p.packed_rows : (rows + warps - 1) / warps;
    l.rpw = int(spread < (int64_t(1) << 20) ? spread : (int64_t(1) << 20));
    const int64_t per = int64_t(kFwdWarps) * l.rpw;
    l.kernel = kFwdPacked;
    l.grid = (rows + per - 1) / per;
    l.piece8 = (p.L * in_bytes) % 8 == 0 && (p.bc_bstride * in_bytes) % 8 == 0 && (p.bc_gstride * in_bytes) % 8 == 0 &&
               aligned_to(p.u, 8) && aligned_to(p.delta, 8) && aligned_to(p.B, 8) && aligned_to(p.C, 8);
    for (int w = 16; w >= 8 && l.out_piece == 0; w /= 2)
      if ((p.L * out_bytes) % w == 0 && aligned_to(p.out, w)) l.out_piece = w;
  } else if (p.N == 1) {
    l.kernel = kFwdN1;
    l.grid = blocks;
  } else if (use_seq(p.N, rows, p.seq_min_rows)) {
    l.bpg = int((p.G + kSeqRows - 1) / kSeqRows);
    l.kernel = p.N <= 4 ? kFwdSeq4 : (p.N <= 8 ? kFwdSeq8 : kFwdSeq16);
    l.grid = p.batch * p.K * l.bpg;
    l.block = kSeqRows;
  } else {
    l.kernel = kFwdGeneric;
    l.grid = blocks;
  }
  return l;
}

enum BwdKernel : int { kBwdNone = 0, kBwdN1 = 1, kBwdSeq8 = 2, kBwdSeq16 = 3, kBwdGeneric = 4, kBwdN1One = 5 };

struct BwdLaunch {
  int kernel = kBwdNone;
  int64_t grid = 0;
  int block = 0;
  int64_t bc_elems = 0, bc_grid = 0;  // finalize_bc_kernel: elements of dB (and dC), blocks (0: not launched)
  int64_t small_grid = 0;             // finalize_small_kernel: blocks of 32 x kFinRows threads
};

// The backward's main kernel (p.S and p.seq already chosen: bwd_splits_or, use_seq) and its finalizers.
inline BwdLaunch plan_bwd(const BwdParams& p) {
  BwdLaunch l;
  const int64_t blocks = p.batch * p.K * p.S;
  if (blocks > 0) {
    l.grid = blocks;
    if (p.N == 1) { l.kernel = p.L <= kChunk ? kBwdN1One : kBwdN1; l.block = kBwdWarps * 32; }
    else if (p.seq && p.N <= 8) { l.kernel = kBwdSeq8; l.block = kSeqBwdThreads; }
    else if (p.seq) { l.kernel = kBwdSeq16; l.block = kSeqBwdThreads; }
    else { l.kernel = kBwdGeneric; l.block = kBwdWarps * 32; }
  }
  l.bc_elems = p.batch * p.K * p.N * p.L;
  if (l.bc_elems > 0) {
    const int64_t g = (l.bc_elems + kFinBcThreads - 1) / kFinBcThreads;
    l.bc_grid = g < 65535LL * 8 ? g : 65535LL * 8;
  }
  l.small_grid = (p.KD * p.N + 31) / 32;
  return l;
}

// return nullptr on success, else a message
const char* launch_fwd(const FwdParams& p, cudaStream_t stream);
const char* launch_bwd(const BwdParams& p, cudaStream_t stream);
#endif

}  // namespace scan
}  // namespace vmamba
