// Integer helpers usable from host (.cpp) and device (.cu) code.
#pragma once

#if defined(__CUDACC__)
#define VMAMBA_HOST_DEVICE __host__ __device__
#else
#define VMAMBA_HOST_DEVICE
#endif

namespace vmamba {

template <typename T>
VMAMBA_HOST_DEVICE constexpr T ceil_div(T a, T b) { return (a + b - 1) / b; }

}  // namespace vmamba
