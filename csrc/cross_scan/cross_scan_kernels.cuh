// The __global__ wrappers of the cross scan / cross merge bodies (cross_scan_body.cuh), one per kernel
// kind. Torch-free and NVRTC-compatible: the extension's cross_scan_kernels.cu (nvcc) and the cupy
// backend (NVRTC, vmamba_kernels/cupy/sources.py names the instances) both launch these. The design of
// each kernel and the planning rule: cross_scan_kernels.cu and cross_scan_body.cuh.
#pragma once

#include "cross_scan_body.cuh"

namespace vmamba {
namespace cross {
VMAMBA_KERNELS_NAMESPACE {

template <typename T, int V>
__global__ void __launch_bounds__(kThreads, 4)  // <= 64 registers: 4 blocks (1024 threads) per SM
cross_scan_plane_kernel(const T* __restrict__ x, T* __restrict__ y, const PlaneArgs a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  cross_scan_plane_body<T, V>(x, y, a, blockIdx.x, threadIdx.x, blockDim.x, smem_raw);
}

template <typename T, int V>
__global__ void __launch_bounds__(kThreads, 4)  // <= 64 registers: 4 blocks (1024 threads) per SM
cross_merge_plane_kernel(const T* __restrict__ y, T* __restrict__ x, const PlaneArgs a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  cross_merge_plane_body<T, V>(y, x, a, blockIdx.x, threadIdx.x, blockDim.x, smem_raw);
}

template <typename T, int V>
__global__ void __launch_bounds__(kThreads, 4)  // <= 64 registers: 4 blocks (1024 threads) per SM
cross_scan_tiled_kernel(const T* __restrict__ x, T* __restrict__ y, const TileArgs a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  cross_scan_tiled_body<T, V>(x, y, a, blockIdx.x, threadIdx.x, blockDim.x, smem_raw);
}

template <typename T, int V>
__global__ void __launch_bounds__(kThreads, 4)  // <= 64 registers: 4 blocks (1024 threads) per SM
cross_scan_band_kernel(const T* __restrict__ x, T* __restrict__ y, const TileArgs rows, const TileArgs cols) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  cross_scan_band_body<T, V>(x, y, rows, cols, blockIdx.x, threadIdx.x, blockDim.x, smem_raw);
}

template <typename T, int V>
__global__ void __launch_bounds__(kThreads, 4)  // <= 64 registers: 4 blocks (1024 threads) per SM
cross_merge_tiled_kernel(const T* __restrict__ y, T* __restrict__ x, const TileArgs a) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  cross_merge_tiled_body<T, V>(y, x, a, blockIdx.x, threadIdx.x, blockDim.x, smem_raw);
}

template <typename T>
__global__ void cross_scan_direct_kernel(const T* __restrict__ x, T* __restrict__ y, const DirectArgs a) {
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < a.total; o += int64_t(gridDim.x) * blockDim.x)
    cross_scan_direct_body<T>(x, y, a, o);
}

template <typename T>
__global__ void cross_merge_direct_kernel(const T* __restrict__ y, T* __restrict__ x, const DirectArgs a) {
  for (int64_t o = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; o < a.total; o += int64_t(gridDim.x) * blockDim.x)
    cross_merge_direct_body<T>(y, x, a, o);
}

}  // namespace
}  // namespace cross
}  // namespace vmamba
