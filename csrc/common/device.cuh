// Device-side helpers for the kernels of vmamba_kernels._C and the cupy backend. Needs only the CUDA
// headers (no ATen), so .cu files that include it compile quickly, and NVRTC compiles it too (rtc_compat.h).
//
//   vmamba::ceil_div(a, b)
//   vmamba::FastDivmod   division by a runtime-invariant divisor with a multiply-high and a shift
//   vmamba::AlignedVec<T, V>, load_vec / store_vec   V elements moved as one 4/8/16-byte access
//   vmamba::is_aligned(ptr, bytes)
//   VMAMBA_SYNC()       __syncthreads() on the device, a no-op in host builds of a kernel body
// Everything here is __host__ __device__, so kernel bodies written with it can also run on the CPU
// (tests/ does that to check index maps without a GPU).
#pragma once

#include "int_math.h"
#include "rtc_compat.h"

namespace vmamba {

// Unsigned 32-bit division by an invariant divisor d >= 1, valid for dividends < 2^31.
// With s = ceil(log2 d) and m = floor(2^32 (2^s - d) / d) + 1: n / d = (umulhi(n, m) + n) >> s.
struct FastDivmod {
  uint32_t d = 1, m = 0, s = 0;
  FastDivmod() = default;
  __host__ __device__ explicit FastDivmod(uint32_t divisor) : d(divisor) {
    s = 0;
    while ((uint64_t(1) << s) < divisor) ++s;
    m = uint32_t(((uint64_t(1) << 32) * ((uint64_t(1) << s) - divisor)) / divisor + 1);
  }
  __host__ __device__ __forceinline__ uint32_t div(uint32_t n) const {
#ifdef __CUDA_ARCH__
    return (__umulhi(n, m) + n) >> s;
#else
    return uint32_t(((uint64_t(n) * m >> 32) + n) >> s);
#endif
  }
  __host__ __device__ __forceinline__ void divmod(uint32_t n, uint32_t& q, uint32_t& r) const {
    q = div(n);
    r = n - q * d;
  }
};

template <typename T, int V>
struct alignas(sizeof(T) * V) AlignedVec {
  T v[V];
};

template <typename T, int V>
__host__ __device__ __forceinline__ AlignedVec<T, V> load_vec(const T* p) {
  return *reinterpret_cast<const AlignedVec<T, V>*>(p);
}

template <typename T, int V>
__host__ __device__ __forceinline__ void store_vec(T* p, const AlignedVec<T, V>& v) {
  *reinterpret_cast<AlignedVec<T, V>*>(p) = v;
}

// __syncthreads() on the device; nothing when a kernel body runs as host code (one thread per block)
#ifdef __CUDA_ARCH__
#define VMAMBA_SYNC() __syncthreads()
#else
#define VMAMBA_SYNC() ((void)0)
#endif

#ifndef __CUDACC_RTC__
inline bool is_aligned(const void* p, size_t bytes) {
  return reinterpret_cast<uintptr_t>(p) % bytes == 0;
}
#endif

}  // namespace vmamba
