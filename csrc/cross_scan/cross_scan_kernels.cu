// Cross scan / cross merge kernels. Index maps: cross_scan.h (and reference/cross_scan.py).
//
// Design, from the bytes: the scan reads the map once and writes it four times; the merge reads four
// routes and writes the map once, so both are pure memory traffic (5 x the map). Two of the routes
// walk the map column-major, which needs a transpose to keep global accesses coalesced.
//
// * Plane-group kernels (the common case: a whole H x W plane fits in <= 64 KB of shared memory, up
//   to about 127 x 127 in fp32): one block owns P whole planes (consecutive channels of one image),
//   so its slice of the input and of each output route is one contiguous range. The block copies its
//   planes into shared memory (rows padded to an odd number of 4-byte words so column walks hit 32
//   different banks), then streams every output range linearly, gathering from shared memory through
//   the route's index map. Global accesses are V-element vectors (up to 16 bytes) whenever L, C and
//   the pointers allow it; shared-memory accesses stay scalar.
//   Channels-last input is the same kernel with a channel-fastest load (a transpose of (L, C) to
//   (C, L)), and P chosen so each pixel's channel run is at least 16 bytes. Kept for the
//   channels-last scan and for the merge on small maps (7 x 7, 14 x 14).
// * Tiled channels-last kernels (large maps, planes over the budget): owning whole planes forces
//   few channels per block on large maps, so the plane kernel reads (scan) / writes (merge) a pixel's
//   channels in 16-byte (or shorter) runs at a C*elem stride: half sectors, 70% / 45% of copy on
//   stage 1. Here a block owns a TH x TW tile (about 16 x 16, 19 x 19 on 56 x 56) of one image and a
//   group of PC channels (>= 64 bytes of a pixel where it fits, multiples of 32 bytes where C allows),
//   so the channel side moves whole sectors with vector accesses, while each route is written (scan) / read
//   (merge) in runs of TW or TH consecutive elements (>= 32 bytes). Shared memory holds the tile as
//   [c][th][tw]; the row routes are walked in row order, the column routes in column order, so
//   consecutive threads touch consecutive route elements. Block order keeps neighbouring tiles,
//   which share the partly covered sectors at run ends, running together. The plan (rule in
//   cross_scan_body.cuh, plan_cross; measurements in reports/tuning.md) takes it for the merge where the plane kernel
//   would use runs under 32 bytes on large maps, and for planes over the budget; the tiled scan
//   measured slower than the plane kernel on VMamba's maps (partial-sector route writes).
// * Banded channels-last scan (cross2d, square maps of >= 2048 pixels): the tiled scan body with
//   bands of rows (TH x W) writing only routes 0 / 2 and bands of columns (H x TW) writing only
//   routes 1 / 3, every route in contiguous runs; each pixel is read by two neighbouring blocks (the
//   second read mostly from L2).
//   In cross2d the tiled route phases move 8 bytes (4 halves / 2 floats) per thread and route where
//   the tile's runs allow (the scalar version was issue-bound in 16-bit types); the merge's default
//   tile is 8 rows x up to 64 columns so both route kinds take that path (stage 1: about 0.8-0.9 of
//   copy bandwidth against the plane kernel's 0.5-0.7; reports/tuning.md).
// * Direct kernels (planes too large for shared memory, channels-first or images over 2^31
//   elements): one thread per output element, gathering straight from global memory with 64-bit
//   indices. Correct for any size, not tuned.
//
// The scan is a permutation, so it moves raw bits (uint16_t / uint32_t) and needs no dtype dispatch.
// The merge adds in fp32 in the same association as reference/cross_scan.py and rounds once.
#include "cross_scan_kernels.cuh"

namespace vmamba {
namespace cross {
namespace {

template <typename T, int V>
cudaError_t scan_plane(const Problem& p, const Geometry& g, cudaStream_t stream) {
  auto kernel = cross_scan_plane_kernel<T, V>;
  if (g.smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(g.smem));
    if (e != cudaSuccess) return e;
  }
  const PlaneArgs a = make_args(p, g);
  kernel<<<unsigned(int64_t(g.G) * p.B), kThreads, g.smem, stream>>>(static_cast<const T*>(p.in),
                                                                      static_cast<T*>(p.out), a);
  return cudaGetLastError();
}

template <typename T, int V>
cudaError_t merge_plane(const Problem& p, const Geometry& g, cudaStream_t stream) {
  auto kernel = cross_merge_plane_kernel<T, V>;
  if (g.smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(g.smem));
    if (e != cudaSuccess) return e;
  }
  const PlaneArgs a = make_args(p, g);
  kernel<<<unsigned(int64_t(g.G) * p.B), kThreads, g.smem, stream>>>(static_cast<const T*>(p.in),
                                                                      static_cast<T*>(p.out), a);
  return cudaGetLastError();
}

// scan (Merge = false: T is raw bits) or merge (T is the float type) over tiles
template <bool Merge, typename T, int V>
cudaError_t run_tiled(const Problem& p, const TileGeometry& g, cudaStream_t stream) {
  void (*kernel)(const T*, T*, const TileArgs);
  if constexpr (Merge) kernel = cross_merge_tiled_kernel<T, V>;
  else kernel = cross_scan_tiled_kernel<T, V>;
  if (g.smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(g.smem));
    if (e != cudaSuccess) return e;
  }
  const TileArgs a = make_tile_args(p, g);
  kernel<<<unsigned(tile_blocks(g, p.B)), kThreads, g.smem, stream>>>(static_cast<const T*>(p.in),
                                                                      static_cast<T*>(p.out), a);
  return cudaGetLastError();
}

template <typename T, int V>
cudaError_t run_band(const Problem& p, const TileGeometry& r, const TileGeometry& c, cudaStream_t stream) {
  auto kernel = cross_scan_band_kernel<T, V>;
  const size_t smem = std::max(r.smem, c.smem);
  if (smem > 48 * 1024) {
    cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
  }
  TileArgs ar = make_tile_args(p, r), ac = make_tile_args(p, c);
  ar.routes = 1;
  ac.routes = 2;
  kernel<<<unsigned(2 * tile_blocks(r, p.B)), kThreads, smem, stream>>>(static_cast<const T*>(p.in),
                                                                        static_cast<T*>(p.out), ar, ac);
  return cudaGetLastError();
}

template <typename T>
cudaError_t band_dispatch_vec(const Problem& p, const Launch& l, cudaStream_t stream) {
  switch (l.vec) {
    case 8: if constexpr (sizeof(T) == 2) return run_band<T, 8>(p, l.t, l.t_cols, stream); else break;
    case 4: return run_band<T, 4>(p, l.t, l.t_cols, stream);
    case 2: return run_band<T, 2>(p, l.t, l.t_cols, stream);
    default: break;
  }
  return run_band<T, 1>(p, l.t, l.t_cols, stream);
}

template <bool Merge, typename T>
cudaError_t tiled_dispatch_vec(const Problem& p, const TileGeometry& g, cudaStream_t stream) {
  switch (g.vec) {
    case 8: if constexpr (sizeof(T) == 2) return run_tiled<Merge, T, 8>(p, g, stream); else break;
    case 4: return run_tiled<Merge, T, 4>(p, g, stream);
    case 2: return run_tiled<Merge, T, 2>(p, g, stream);
    default: break;
  }
  return run_tiled<Merge, T, 1>(p, g, stream);
}

template <typename T>
cudaError_t scan_dispatch_vec(const Problem& p, const Geometry& g, int vec, cudaStream_t stream) {
  switch (vec) {
    case 8: if constexpr (sizeof(T) == 2) return scan_plane<T, 8>(p, g, stream); else break;
    case 4: return scan_plane<T, 4>(p, g, stream);
    case 2: return scan_plane<T, 2>(p, g, stream);
    default: break;
  }
  return scan_plane<T, 1>(p, g, stream);
}

template <typename T>
cudaError_t merge_dispatch_vec(const Problem& p, const Geometry& g, int vec, cudaStream_t stream) {
  switch (vec) {
    case 8: if constexpr (sizeof(T) == 2) return merge_plane<T, 8>(p, g, stream); else break;
    case 4: return merge_plane<T, 4>(p, g, stream);
    case 2: return merge_plane<T, 2>(p, g, stream);
    default: break;
  }
  return merge_plane<T, 1>(p, g, stream);
}

}  // namespace

const char* launch_cross_scan(const Problem& p, cudaStream_t stream, Plan* plan) {
  const Launch l = plan_cross(p, /*merge=*/false);
  fill_plan(l, p.B, plan);
  if (l.total == 0) return nullptr;
  cudaError_t e;
  if (l.band) {
    e = l.elem == 4 ? band_dispatch_vec<uint32_t>(p, l, stream) : band_dispatch_vec<uint16_t>(p, l, stream);
  } else if (l.tiled) {
    e = l.elem == 4 ? tiled_dispatch_vec<false, uint32_t>(p, l.t, stream)
                    : tiled_dispatch_vec<false, uint16_t>(p, l.t, stream);
  } else if (l.g.fits) {
    e = l.elem == 4 ? scan_dispatch_vec<uint32_t>(p, l.g, l.vec, stream)
                    : scan_dispatch_vec<uint16_t>(p, l.g, l.vec, stream);
  } else {
    const DirectArgs d = make_direct(p, l.total);
    const unsigned blocks = unsigned(direct_blocks(l.total));
    if (l.elem == 4)
      cross_scan_direct_kernel<uint32_t><<<blocks, kThreads, 0, stream>>>(
          static_cast<const uint32_t*>(p.in), static_cast<uint32_t*>(p.out), d);
    else
      cross_scan_direct_kernel<uint16_t><<<blocks, kThreads, 0, stream>>>(
          static_cast<const uint16_t*>(p.in), static_cast<uint16_t*>(p.out), d);
    e = cudaGetLastError();
  }
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

const char* launch_cross_merge(const Problem& p, cudaStream_t stream, Plan* plan) {
  const Launch l = plan_cross(p, /*merge=*/true);
  fill_plan(l, p.B, plan);
  if (l.total == 0) return nullptr;
  cudaError_t e;
  if (l.tiled) {
    if (p.dtype == kF32) e = tiled_dispatch_vec<true, float>(p, l.t, stream);
    else if (p.dtype == kF16) e = tiled_dispatch_vec<true, __half>(p, l.t, stream);
    else e = tiled_dispatch_vec<true, __nv_bfloat16>(p, l.t, stream);
  } else if (l.g.fits) {
    if (p.dtype == kF32) e = merge_dispatch_vec<float>(p, l.g, l.vec, stream);
    else if (p.dtype == kF16) e = merge_dispatch_vec<__half>(p, l.g, l.vec, stream);
    else e = merge_dispatch_vec<__nv_bfloat16>(p, l.g, l.vec, stream);
  } else {
    const DirectArgs d = make_direct(p, l.total);
    const unsigned blocks = unsigned(direct_blocks(l.total));
    if (p.dtype == kF32)
      cross_merge_direct_kernel<float><<<blocks, kThreads, 0, stream>>>(
          static_cast<const float*>(p.in), static_cast<float*>(p.out), d);
    else if (p.dtype == kF16)
      cross_merge_direct_kernel<__half><<<blocks, kThreads, 0, stream>>>(
          static_cast<const __half*>(p.in), static_cast<__half*>(p.out), d);
    else
      cross_merge_direct_kernel<__nv_bfloat16><<<blocks, kThreads, 0, stream>>>(
          static_cast<const __nv_bfloat16*>(p.in), static_cast<__nv_bfloat16*>(p.out), d);
    e = cudaGetLastError();
  }
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace cross
}  // namespace vmamba
