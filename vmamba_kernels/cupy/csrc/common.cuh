// Shared helpers of the CuPy backend's kernels (compiled by NVRTC at run time, by nvcc in CI).
//
// No CUDA headers are included: the 16-bit types are plain 2-byte storage structs converted with
// single PTX instructions (cvt), so NVRTC needs no include path for cuda_fp16.h / cuda_bf16.h and
// the sources compile the same under NVRTC and nvcc.
#pragma once

namespace vmamba_cupy {

typedef long long i64;

struct half_t { unsigned short x; };  // IEEE binary16 storage (torch.float16)
struct bf16_t { unsigned short x; };  // bfloat16 storage (torch.bfloat16)

__device__ __forceinline__ float to_float(float v) { return v; }
__device__ __forceinline__ float to_float(half_t v) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(v.x));
    return f;
}
__device__ __forceinline__ float to_float(bf16_t v) {
    return __uint_as_float(((unsigned int)v.x) << 16);
}

template <typename T> __device__ __forceinline__ T from_float(float f);
template <> __device__ __forceinline__ float from_float<float>(float f) { return f; }
template <> __device__ __forceinline__ half_t from_float<half_t>(float f) {
    half_t h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h.x) : "f"(f));
    return h;
}
template <> __device__ __forceinline__ bf16_t from_float<bf16_t>(float f) {
    bf16_t h;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h.x) : "f"(f));
#else
    // round to nearest even by integer arithmetic (NaN kept quiet)
    unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) {
        h.x = (unsigned short)((u >> 16) | 0x40u);
    } else {
        u += 0x7fffu + ((u >> 16) & 1u);
        h.x = (unsigned short)(u >> 16);
    }
#endif
    return h;
}

// padded shared-memory index: consecutive runs of a lane (stride ITEMS) hit distinct banks
__device__ __forceinline__ int pad_idx(int i) { return i + (i >> 5); }

}  // namespace vmamba_cupy
