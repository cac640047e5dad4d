// What the device code needs from the C/C++ and CUDA runtime headers, for both compilers that build it:
//   * nvcc (the extension, ahead of time): <cstdint> and <cuda_runtime.h>;
//   * NVRTC (the cupy backend, at first use; __CUDACC_RTC__ defined): NVRTC has no host C++ library
//     (no <cstdint>, <algorithm>, <atomic>, ...) and declares the CUDA built-ins itself, so the
//     fixed-width integer types are spelled out here. Host-only code in the headers that NVRTC reads
//     sits behind `#ifndef __CUDACC_RTC__` (launchers, knobs, occupancy queries).
#pragma once

#ifdef __CUDACC_RTC__
typedef signed char int8_t;
typedef short int16_t;
typedef int int32_t;
typedef long long int64_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
typedef unsigned long long uintptr_t;
#else
#include <cstddef>
#include <cstdint>
#include <cuda_runtime.h>
#endif

// The extension includes the kernel headers from several translation units, so their kernels sit in an
// unnamed namespace there (a private copy per unit, no duplicate symbols). An NVRTC module is one unit
// whose kernels the driver must find by name (cuModuleGetFunction): there the namespace is a named
// inline one, which keeps the kernels' qualified names (vmamba::scan::fwd_kernel<...>) the same.
#ifdef __CUDACC_RTC__
#define VMAMBA_KERNELS_NAMESPACE inline namespace rtc
#else
#define VMAMBA_KERNELS_NAMESPACE namespace
#endif
