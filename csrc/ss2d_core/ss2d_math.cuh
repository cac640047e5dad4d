// Math of the fused SS2D core's kernel bodies, host + device (the bodies also run on the CPU emulator of
// tests/cuda_emu): torch's softplus with threshold 20 and the warp scans of affine maps of the chunked scan,
// through a thread context (../common/thread_ctx.cuh). The same softplus polynomial and scans as the
// selective scan kernels (../selective_scan/selective_scan_kernels.cuh, device-only there, and compiled by
// NVRTC for the cupy backend, which this header is not): one shared header once that settles.
#pragma once
#include <cuda_runtime.h>

#include "../common/thread_ctx.cuh"

namespace vmamba {
namespace ss2d {
namespace {

constexpr float kLog2e = 1.4426950408889634f;

// softplus with torch's threshold 20: v above it passes through. Below, softplus(v) = max(v, 0) +
// log1p(z), z = exp(-|v|) in (0, 1], and log1p(z) = z * P(z) with P a degree-8 fit of log1p(z) / z
// on [0, 1] (max relative error 2e-7 in fp32). Branch-free and ~14 instructions: libdevice's
// log1pf(expf(v)) takes a slower path for small arguments, which VMamba's dt (softplus^-1 of
// 0.001..0.1) hits (a much slower forward on such inputs: reports/tuning.md).
__host__ __device__ __forceinline__ float softplus20(float v) {
  const float z = exp_f(-fabsf(v));
  float q = 0.005253457929939032f;
  q = fmaf(q, z, -0.02958850748836994f);
  q = fmaf(q, z, 0.07836166769266129f);
  q = fmaf(q, z, -0.13674770295619965f);
  q = fmaf(q, z, 0.19111430644989014f);
  q = fmaf(q, z, -0.24844369292259216f);
  q = fmaf(q, z, 0.33319270610809326f);
  q = fmaf(q, z, -0.49999502301216125f);
  q = fmaf(q, z, 1.0f);
  return v > 20.f ? v : fmaf(z, q, fmaxf(v, 0.f));
}

// Warp scans of affine maps through a thread context (full warps; lane = the lane index): inclusive scans
// up and down (lane ends with the composition of lanes 0..lane / 31..lane) and a fixed-order warp sum.
template <class Ctx>
VMAMBA_HD void ctx_scan_up(const Ctx& ctx, float& a, float& b, int lane) {
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const float pa = ctx.shfl_up(a, off);
    const float pb = ctx.shfl_up(b, off);
    if (lane >= off) {
      b = fmaf(a, pb, b);
      a *= pa;
    }
  }
}

template <class Ctx>
VMAMBA_HD void ctx_scan_down(const Ctx& ctx, float& a, float& b, int lane) {
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const float pa = ctx.shfl_down(a, off);
    const float pb = ctx.shfl_down(b, off);
    if (lane + off < 32) {
      b = fmaf(a, pb, b);
      a *= pa;
    }
  }
}

// sum over the warp, valid in lane 0; fixed order
template <class Ctx>
VMAMBA_HD float ctx_sum_first(const Ctx& ctx, float v, int lane) {
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const float o = ctx.shfl_down(v, off);
    if (lane + off < 32) v += o;
  }
  return v;
}

}  // namespace
}  // namespace ss2d
}  // namespace vmamba
