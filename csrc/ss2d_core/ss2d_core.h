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

// The banded forward (ss2d_band_body.cuh): blocks of kBandWarps channels x one band of band_rows map rows; a
// route's segments (one per band for row routes, one per band and column for column routes) are chained through
// T and E.
constexpr int kBandWarps = 8;

struct BandParams : FwdParams {
  int band_rows = 1, nbands = 1;
  int seg_off[4] = {0, 0, 0, 0};  // route k's first segment in a batch row's list
  int nseg_total = 0;             // segments per batch row, all routes
  int row_len = 0;                // floats of a channel's row of x / y in shared memory
  int rp = 4, cp = 12;            // staged xdbl row: R rounded up to 4; floats per pixel (4 * odd)
  float* T = nullptr;             // (B, nseg_total, 1 + N, D): per segment, the sum of delta and the state from 0
  float* E = nullptr;             // (B, nseg_total, N, D): the state entering each segment
};

// band geometry: a band pixel i lives at pb(i) in the per-channel rows (see ss2d_band_body.cuh)
inline VMAMBA_HOST_DEVICE int band_pb(int i) { return i + (i >> 3); }
// per-channel row of xs / acc: every pb(i), i < pixels, rounded to 4 floats
inline VMAMBA_HOST_DEVICE int band_row_len(int pixels) { return (band_pb(pixels) + 1 + 3) & ~3; }
inline VMAMBA_HOST_DEVICE int band_rp(int R) { return (R + 3) & ~3; }
// floats per staged xdbl row: >= rp + 2N, a multiple of 4 whose quotient by 4 is odd (bank spread)
inline VMAMBA_HOST_DEVICE int band_cp(int R, int N) {
  int q = (band_rp(R) + 2 * N + 3) / 4;
  if ((q & 1) == 0) ++q;
  return 4 * q;
}

inline VMAMBA_HOST_DEVICE size_t band_smem_floats(bool out, int band_rows, int64_t W, int R, int N) {
  const int pixels = int(int64_t(band_rows) * W);
  const size_t row = size_t(band_row_len(pixels));
  return size_t(kBandWarps) * row * (out ? 2 : 1) + row * size_t(band_cp(R, N)) + size_t(kBandWarps) * band_rp(R);
}

// Fill in the band geometry of p (its Common fields set): nbands, segment offsets, the staging sizes.
inline VMAMBA_HOST_DEVICE void band_geometry(BandParams& p, int band_rows) {
  p.band_rows = band_rows;
  p.nbands = int((p.H + band_rows - 1) / band_rows);
  p.ntiles = int((p.D + kBandWarps - 1) / kBandWarps);
  p.warps = kBandWarps;
  int off = 0;
  for (int k = 0; k < p.K; ++k) {
    p.seg_off[k] = off;
    off += (p.kinds[k] == kCol || p.kinds[k] == kColRev) ? int(p.W) * p.nbands : p.nbands;
  }
  p.nseg_total = off;
  p.row_len = band_row_len(int(int64_t(band_rows) * p.W));
  p.rp = band_rp(p.R);
  p.cp = band_cp(p.R, p.N);
}

// shared memory bytes of a block (smem_acc: with the route accumulator)
size_t fwd_smem_bytes(int warps, int64_t L, int C, int R, bool smem_acc);
size_t bwd_smem_bytes(int warps, int64_t L, int C, int R, bool smem_acc);

// nullptr on success, else a message
const char* launch_fwd(const FwdParams& p, cudaStream_t stream);
const char* launch_bwd(const BwdParams& p, float* dxdbl, float* dA, float* dD, float* dbias, float* dw,
                       cudaStream_t stream);
// the banded forward (p planned: band_geometry, T, E); its output block's shared memory and residency
const char* launch_band_fwd(const BandParams& p, cudaStream_t stream);
size_t band_out_smem_bytes(int band_rows, int64_t W, int R, int N);
int band_blocks_per_sm(int N, size_t smem);
// blocks of the forward / backward kernel with `warps` warps resident per SM at this shared memory size
int fwd_blocks_per_sm(int warps, size_t smem);
int bwd_blocks_per_sm(int warps, size_t smem);

}  // namespace ss2d
}  // namespace vmamba
