// Fused SS2D core (issue #18): cross scan + dt projection + selective scan + cross merge in one pass,
// forward and backward, for the raw-kernel contract of ../../SS2D_CORE_CONTRACT.md (the Python
// composition computes the x projection xdbl = x_proj(x) in pixel order and calls these kernels).
// Host side: ss2d_core.cpp (checks, allocation, registration); kernels: ss2d_core_kernels.cu.
//
// Work split (both directions): one block of W warps = W channels (W = 4 or 8) ("a tile") of one batch
// row; warp w owns channel d = tile * W + w and walks the K routes one after the other, each
// route in chunks of scan::kChunk = 256 steps (8 consecutive steps per lane, the selective scan's
// chunked warp scan, carries in lane n for state n). Per chunk, the block stages, one thread per step,
// the route's pixel index and the xdbl row of that pixel (dt terms, B, C: shared by the tile's channels)
// in shared memory (fp32, padded rows the warps read without bank conflicts); meanwhile each lane loads
// its own channel's x (and dy) at its steps' pixels into registers.
//   forward : delta = dt_w . dts + bias (softplus) in registers; y of the tile accumulated over the
//             routes in fp32 in shared memory (route 0 stores, later routes add: a fixed order), or in
//             a global fp32 scratch when the map does not fit; written once in x's layout at the end.
//   backward: per route, a forward pass over the chunks stores the state entering each chunk in a
//             small global buffer (B, D, nchunks, N), then the reverse pass recomputes each chunk's
//             states and runs the adjoint scan. du (the scan's u gradient) accumulates over routes
//             like y; the tile's dB / dC / dts gradients are summed over its warps in shared memory
//             in a fixed order and written per pixel to a per-split fp32 slice of (B, L, K, R + 2N)
//             (a block owns split s and walks tiles s, s + S, ...: round 0 stores, later rounds add),
//             a second kernel sums the S slices in order. ddt_w / dA / dD / ddelta_bias: per
//             (batch, route, channel) partials summed over the batch in order. No float atomics: the
//             backward is deterministic.
// d_state 1..kMaxDState, any H, W >= 1, 64-bit element offsets; dtypes are runtime codes (the
// staging converts to fp32), so one kernel serves every dtype combination of the contract.
#pragma once

#include <cstdint>
#include <cuda_runtime.h>

#include "../common/device.cuh"

namespace vmamba {
namespace ss2d {

enum DTypeCode { kF32 = 0, kF16 = 1, kBF16 = 2 };

constexpr int kMaxWarps = 8;              // channels per tile: 4 or 8 (the launcher picks by occupancy)
constexpr int kItems = 8;                 // consecutive steps per lane
constexpr int kChunk = 32 * kItems;       // steps per chunk
constexpr int kPad = kChunk + kChunk / 8;  // padded staging row: 4 floats after every 32 (padv in the bodies)
constexpr int kMaxDState = 16;
constexpr int kMaxComp = 96;              // R + 2N per route (staging rows in shared memory)


// route kinds: which pixel route k visits at step l (reference/cross_scan.py route_index)
enum RouteKind { kRow = 0, kCol = 1, kRowRev = 2, kColRev = 3 };
enum Mode { kCross2d = 0, kUnidi = 1, kBidi = 2 };

// The kinds of the K routes of a mode: K = 4 for every mode (route_index's four), and the distinct
// routes alone for K = 1 (unidi: row-major) and K = 2 (bidi: row-major, reversed). False when the
// mode has no K-route form.
inline bool route_kinds(int mode, int K, int (&kinds)[4]) {
  kinds[0] = kinds[1] = kinds[2] = kinds[3] = kRow;
  if (mode == kCross2d && K == 4) {
    kinds[1] = kCol; kinds[2] = kRowRev; kinds[3] = kColRev;
    return true;
  }
  if (mode == kUnidi) return K == 4 || K == 1;
  if (mode == kBidi && K == 4) {
    kinds[2] = kinds[3] = kRowRev;
    return true;
  }
  if (mode == kBidi && K == 2) {
    kinds[1] = kRowRev;
    return true;
  }
  return false;
}

struct Common {
  const void* x = nullptr;       // (B, D, H, W) or (B, H, W, D)
  const void* xdbl = nullptr;    // (B, L, K, C), C = R + 2N
  const void* dt_w = nullptr;    // (K, D, R)
  const float* A = nullptr;      // (K*D, N)
  const float* Dp = nullptr;     // (K*D,) or null
  const float* bias = nullptr;   // (K*D,) or null
  int64_t batch = 0, D = 0, H = 0, W = 0, L = 0;
  int K = 4, R = 1, N = 1, C = 3;
  int kinds[4] = {0, 1, 2, 3};
  FastDivmod h_div;  // by H: column routes map step -> (column, row) (set with H; L < 2^31)
  bool channels_last = false, softplus = true;
  int x_dtype = kF32, xdbl_dtype = kF32, w_dtype = kF32;
  int warps = 8;                // channels per tile (4 or 8)
  int ntiles = 1;               // ceil(D / warps)
  bool smem_acc = true;         // accumulate over routes in shared memory (else in acc_global)
  float* acc_global = nullptr;  // (B, D, L) fp32 scratch when !smem_acc
};

struct FwdParams : Common {
  void* out = nullptr;  // x's layout
  int out_dtype = kF32;
};

struct BwdParams : Common {
  const void* dy = nullptr;  // x's layout
  int dy_dtype = kF32;
  float* dx = nullptr;       // fp32, x's layout
  float* part_xdbl = nullptr;  // (S, B, L, K, C) fp32 (S == 1: the dxdbl output itself)
  float* aux = nullptr;        // (B, D, nchunks, N) fp32: state entering each chunk of the current route
  float* part_A = nullptr;     // (B, K*D*N)
  float* part_D = nullptr;     // (B, K*D)
  float* part_bias = nullptr;  // (B, K*D)
  float* part_w = nullptr;     // (B, K*D*R)
  int S = 1;                   // splits: block (b, s) walks tiles s, s + S, ...
};

// The segmented forward (ss2d_seg_body.cuh): a thread per channel, blocks of G channels x one segment of P
// consecutive positions of a pass's order (pass 0: the row routes, row-major; pass 1: the column routes,
// column-major), segments chained through T.
constexpr int kSegMaxThreads = 128;

struct SegParams : FwdParams {
  int P = 64, nseg = 1;    // positions per segment; segments per pass (ceil(L / P))
  int G = 128, ngroups = 1;  // channels (threads) per block; channel groups (ceil(D / G))
  int npass = 1;           // 2 when the mode has column routes
  int pass = 0;            // the output kernel's pass (set per launch)
  int tc = 2;              // floats per segment in T: 1 + N (forward), 1 + 2N (backward)
  float* T = nullptr;        // (B, K, nseg, tc, D): S and b per segment; the prefix puts the entering state in b
  float* partial = nullptr;  // (B, L, D) fp32: the row pass's sum of y, when a column pass follows
};

inline VMAMBA_HOST_DEVICE int seg_r4(int R) { return (R + 3) & ~3; }
// staged xdbl row length: 4 consecutive positions are one aligned float4
inline VMAMBA_HOST_DEVICE int seg_ps(int P) { return ((P + 3) & ~3) + 4; }
inline VMAMBA_HOST_DEVICE size_t seg_acc_floats(int P, int G) { return (size_t(P) * (G + 1) + 3) & ~size_t(3); }
inline VMAMBA_HOST_DEVICE size_t seg_smem_floats(bool out, int P, int G, int R, int N) {
  return (out ? seg_acc_floats(P, G) : 0) + size_t(seg_r4(R) + 2 * N) * seg_ps(P) + size_t(seg_r4(R)) * G +
         size_t((P + 3) & ~3);
}

// channels per block: the multiple of 32 up to kSegMaxThreads that leaves the fewest idle threads (the larger on a
// tie: the staged xdbl rows serve more channels)
inline VMAMBA_HOST_DEVICE int seg_group(int64_t D) {
  int best = kSegMaxThreads;
  int64_t best_idle = -1;
  for (int g = kSegMaxThreads; g >= 32; g -= 32) {
    const int64_t idle = (D + g - 1) / g * g - D;
    if (best_idle < 0 || idle < best_idle) {
      best_idle = idle;
      best = g;
    }
  }
  return best;
}

// Fill in the segment geometry of p (its Common fields set).
inline VMAMBA_HOST_DEVICE void seg_geometry(SegParams& p, int P) {
  p.P = P;
  p.nseg = int((p.L + P - 1) / P);
  p.G = seg_group(p.D);
  p.ngroups = int((p.D + p.G - 1) / p.G);
  p.npass = 1;
  for (int k = 0; k < p.K; ++k)
    if (p.kinds[k] & 1) p.npass = 2;
  p.tc = 1 + p.N;
}

// The segmented backward (ss2d_seg_bwd_body.cuh): the forward's blocks and segments; T holds (S, b, c) per segment
// (c: the adjoint a segment passes back from zero), the prefix turns b and c into the entering forward state and
// the adjoint entering from after the segment.
struct SegBwdParams : SegParams {
  const void* dy = nullptr;     // x's layout
  int dy_dtype = kF32;
  float* dx = nullptr;          // fp32, x's layout
  float* partial_dx = nullptr;  // (B, L, D) fp32: the row pass's dx, when a column pass follows
  float* part_xdbl = nullptr;   // (ngroups, B, L, K, C) fp32 (ngroups == 1: dxdbl itself)
  float* part_A = nullptr;      // (B * nseg, K*D*N): per batch row and segment
  float* part_D = nullptr;      // (B * nseg, K*D)
  float* part_bias = nullptr;   // (B * nseg, K*D)
  float* part_w = nullptr;      // (B * nseg, K*D*R)
  float* sum_scratch = nullptr;  // (sum_chunks(B * nseg), K*D*max(N, R)): the first level of those sums
};
// Rows per first-level chunk of the partial sums: kSumChunk, more where the chunks would pass the grid's y limit
// of 65535 (the chunks are the grid's y; batch 65538 x 256 segments made 262k of them: "invalid argument")
constexpr int kSumChunk = 64;
constexpr int64_t kMaxGridY = 65535;
inline VMAMBA_HOST_DEVICE int64_t sum_chunk_rows(int64_t rows) {
  const int64_t least = (rows + kMaxGridY - 1) / kMaxGridY;
  return least > kSumChunk ? least : kSumChunk;
}
inline VMAMBA_HOST_DEVICE int64_t sum_chunks(int64_t rows) {
  const int64_t c = sum_chunk_rows(rows);
  return (rows + c - 1) / c;
}

inline VMAMBA_HOST_DEVICE size_t seg_bwd_smem_floats(int P, int G, int R, int N) {
  // hs, r2, dl, dd, dxa, uu, dyy: [P][G + 1] each
  return 7 * seg_acc_floats(P, G) + size_t(seg_r4(R) + 2 * N) * seg_ps(P) + size_t(seg_r4(R)) * G +
         size_t((P + 3) & ~3);
}

inline VMAMBA_HOST_DEVICE void seg_bwd_geometry(SegBwdParams& p, int P) {
  seg_geometry(p, P);
  p.tc = 1 + 2 * p.N;
}

// The sweep forward (ss2d_sweep_body.cuh, d_state 1): a block = (batch row, G channels) sweeps the whole map, its
// S x G threads = S slots of G lanes, each slot kSweepItems consecutive steps of a route per iteration; the routes'
// sum of y stays in shared memory ([L][G + 1] fp32).
constexpr int kSweepItems = 8;
constexpr int kSweepMaxThreads = 256;

struct SweepParams : FwdParams {
  int G = 32, S = 8, ngroups = 1;  // lanes (channels) per slot, slots, channel groups (ceil(D / G))
  bool mma = false;                // the dt projection on tensor cores (sweep_mma_applies)
  FastDivmod c_div;                // by C = R + 2N: a staged element -> (step, component)
  FastDivmod l_div;                // by L: the channels-first write-out's element -> (channel, pixel)
};

// The dt projection of an iteration, delta[channel][step] = dt_w . dts, as a (G x R) by (R x S * kSweepItems)
// tensor-core product (tf32 operands, fp32 sums): where the tile has 16-channel row blocks (G >= 16) and the
// staged rows are exact in tf32 (16-bit xdbl; fp32 xdbl keeps the fp32 FMA projection). The weights round to tf32
// (10 mantissa bits, as autocast's fp16 weights have in the unfused chain).
inline VMAMBA_HOST_DEVICE bool sweep_mma_applies(int G, int xdbl_dtype) { return G >= 16 && xdbl_dtype != kF32; }
// staged dts rows: R padded to the product's k-step of 8 (mma), else to 4 (the FMA loop reads 4 terms at a time)
inline VMAMBA_HOST_DEVICE int sweep_rpad(int R, bool mma) { return mma ? (R + 7) & ~7 : (R + 3) & ~3; }
// the weights' row stride: G + 8 for the mma (its A-fragment loads, lanes (g, t) at rows t and columns g, then hit
// 32 distinct banks), else G
inline VMAMBA_HOST_DEVICE int sweep_wld(int G, bool mma) { return mma ? G + 8 : G; }
inline VMAMBA_HOST_DEVICE int sweep_row(int S) { return S * kSweepItems + 4; }
inline VMAMBA_HOST_DEVICE size_t sweep_acc_floats(int64_t L, int G) { return (size_t(L) * (G + 1) + 3) & ~size_t(3); }
inline VMAMBA_HOST_DEVICE size_t sweep_smem_floats(int64_t L, int G, int S, int R, int K, bool mma) {
  const int Rp = sweep_rpad(R, mma);
  return sweep_acc_floats(L, G) + 2 * size_t(Rp + 2) * sweep_row(S) + (mma ? size_t(G) * sweep_row(S) : 0) +
         size_t(K) * Rp * sweep_wld(G, mma) + 3 * size_t(K) * G + 2 * size_t(S) * G + 2 * size_t(G);
}

// shared memory bytes of a block (smem_acc: with the route accumulator)
size_t fwd_smem_bytes(int warps, int64_t L, int C, int R, bool smem_acc);
size_t bwd_smem_bytes(int warps, int64_t L, int C, int R, bool smem_acc);

// nullptr on success, else a message
const char* launch_fwd(const FwdParams& p, cudaStream_t stream);
const char* launch_bwd(const BwdParams& p, float* dxdbl, float* dA, float* dD, float* dbias, float* dw,
                       cudaStream_t stream);
// the segmented forward (p planned: seg_geometry, T, partial); its output kernel's resident blocks per SM
const char* launch_seg_fwd(const SegParams& p, cudaStream_t stream);
// the segmented backward (p planned: seg_bwd_geometry and every buffer); dxdbl and the parameter gradients
const char* launch_seg_bwd(const SegBwdParams& p, float* dxdbl, float* dA, float* dD, float* dbias, float* dw,
                           cudaStream_t stream);
// the sweep forward (p planned: G, S, ngroups, c_div, l_div); its resident blocks per SM at this shared memory
const char* launch_sweep_fwd(const SweepParams& p, cudaStream_t stream);
int sweep_blocks_per_sm(int threads, bool mma, size_t smem);
int seg_bwd_blocks_per_sm(int N, int G, size_t smem);
int seg_blocks_per_sm(int N, int G, size_t smem);
// blocks of the forward / backward kernel with `warps` warps resident per SM at this shared memory size
int fwd_blocks_per_sm(int warps, size_t smem);
int bwd_blocks_per_sm(int warps, size_t smem);

}  // namespace ss2d
}  // namespace vmamba
