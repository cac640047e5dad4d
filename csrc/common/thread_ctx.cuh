// What a kernel body sees of its thread, written once for two executors:
//   * the GPU: DeviceCtx (threadIdx / blockIdx / __syncthreads / __shfl_xor_sync), through the generic
//     __global__ wrapper of common/launch.cuh;
//   * the CPU: tests/cuda_emu/emu.h runs the same bodies with one fiber per CUDA thread (barriers and
//     warp shuffles emulated), so the index maps, the block cooperation and the math are checked on a
//     machine without a GPU.
// A body is a struct with `using Args = ...; static constexpr int kMaxThreads = ..., kMinBlocks = ...;`
// (the __launch_bounds__ of its kernel) and
//   template <class Ctx> static VMAMBA_HD void run(const Ctx& ctx, const Args& a, unsigned char* smem)
// using only ctx.tid() / nthreads() / block() / nblocks() / block_y() / sync() / shfl_xor(v, mask) and
// shfl_up(v, delta) / shfl_down(v, delta) / shfl_idx(v, lane) (CUDA's semantics: a lane whose source is
// outside the warp keeps its value; every lane of the warp calls them, full warps only).
// Also the dtype helpers the bodies share: to_float / from_float for float, __half, __nv_bfloat16.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>

#include "device.cuh"

#define VMAMBA_HD __host__ __device__ __forceinline__

namespace vmamba {

#ifdef __CUDACC__
struct DeviceCtx {
  __device__ __forceinline__ uint32_t tid() const { return threadIdx.x; }
  __device__ __forceinline__ uint32_t nthreads() const { return blockDim.x; }
  __device__ __forceinline__ uint32_t block() const { return blockIdx.x; }
  __device__ __forceinline__ uint32_t nblocks() const { return gridDim.x; }
  __device__ __forceinline__ uint32_t block_y() const { return blockIdx.y; }
  __device__ __forceinline__ void sync() const { __syncthreads(); }
  __device__ __forceinline__ float shfl_xor(float v, int mask) const { return __shfl_xor_sync(0xffffffffu, v, mask); }
  __device__ __forceinline__ float shfl_up(float v, int delta) const { return __shfl_up_sync(0xffffffffu, v, delta); }
  __device__ __forceinline__ float shfl_down(float v, int delta) const { return __shfl_down_sync(0xffffffffu, v, delta); }
  __device__ __forceinline__ float shfl_idx(float v, int lane) const { return __shfl_sync(0xffffffffu, v, lane); }
};
#endif

VMAMBA_HD float to_float(float v) { return v; }
VMAMBA_HD float to_float(__half v) { return __half2float(v); }
VMAMBA_HD float to_float(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
VMAMBA_HD T from_float(float v);
template <>
VMAMBA_HD float from_float<float>(float v) { return v; }
template <>
VMAMBA_HD __half from_float<__half>(float v) { return __float2half_rn(v); }
template <>
VMAMBA_HD __nv_bfloat16 from_float<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// round to T and back: the value a T tensor stores
template <typename T>
VMAMBA_HD float round_to(float v) { return to_float(from_float<T>(v)); }

VMAMBA_HD float rsqrt_f(float v) {
#ifdef __CUDA_ARCH__
  return rsqrtf(v);
#else
  return 1.0f / std::sqrt(v);
#endif
}

VMAMBA_HD float exp_f(float v) {
#ifdef __CUDA_ARCH__
  return __expf(v);
#else
  return std::exp(v);
#endif
}

VMAMBA_HD float erf_f(float v) {
#ifdef __CUDA_ARCH__
  return erff(v);
#else
  return std::erf(v);
#endif
}

// smallest power of two >= n (n >= 1)
VMAMBA_HD uint32_t pow2_ceil(uint32_t n) {
  uint32_t p = 1;
  while (p < n) p <<= 1;
  return p;
}

// V elements of T at p (aligned to V * sizeof(T)) as floats; zeros when !ok
template <typename T, int V>
VMAMBA_HD void load_floats(const T* p, bool ok, float (&out)[V]) {
  if (ok) {
    const AlignedVec<T, V> v = load_vec<T, V>(p);
#pragma unroll
    for (int e = 0; e < V; ++e) out[e] = to_float(v.v[e]);
  } else {
#pragma unroll
    for (int e = 0; e < V; ++e) out[e] = 0.f;
  }
}

template <typename T, int V>
VMAMBA_HD void store_floats(T* p, const float (&in)[V]) {
  AlignedVec<T, V> v;
#pragma unroll
  for (int e = 0; e < V; ++e) v.v[e] = from_float<T>(in[e]);
  store_vec<T, V>(p, v);
}

}  // namespace vmamba
