// Device math shared by the selective scan kernels (selective_scan_kernels.cuh) and the fused SS2D core
// (../ss2d_core/): torch's softplus with threshold 20 and its gradient, and the segmented warp scans of
// affine maps that the chunked scans compose (as CUDA intrinsics for the scan kernels, and through a
// thread context for kernel bodies, ../common/thread_ctx.cuh, which also run on the CPU emulator of
// tests/cuda_emu). Only CUDA headers.
#pragma once
#include <cuda_runtime.h>

#include "../common/thread_ctx.cuh"

namespace vmamba {
namespace scan {
namespace {

constexpr unsigned kFullMask = 0xffffffffu;
constexpr float kLog2e = 1.4426950408889634f;

// softplus with torch's threshold 20: v above it passes through. Below, softplus(v) = max(v, 0) +
// log1p(z), z = exp(-|v|) in (0, 1], and log1p(z) = z * P(z) with P a degree-8 fit of log1p(z) / z
// on [0, 1] (max relative error 2e-7 in fp32). Branch-free and ~14 instructions: libdevice's
// log1pf(expf(v)) takes a slower path for small arguments, which VMamba's dt (softplus^-1 of
// 0.001..0.1) hits (a much slower forward on such inputs: reports/tuning.md).
// d softplus(v) / dv = sigmoid(v) from dt = softplus(v) alone: sigmoid(v) = 1 - exp(-dt) =
// -expm1(-dt), with a degree-7 Taylor polynomial below dt = 0.5 where 1 - exp(-dt) would cancel
// (max relative error 3e-7), and 1 - exp(-dt) rounds to 1 above the threshold (dt = v > 20). Lets
// the d_state = 1 backward drop delta's raw values after its first pass (registers are its limit).
__host__ __device__ __forceinline__ float softplus_grad(float dt) {
  const float x = -dt;
  float q = 1.f / 5040.f;
  q = fmaf(q, x, 1.f / 720.f);
  q = fmaf(q, x, 1.f / 120.f);
  q = fmaf(q, x, 1.f / 24.f);
  q = fmaf(q, x, 1.f / 6.f);
  q = fmaf(q, x, 0.5f);
  q = fmaf(q, x, 1.f);
  return dt < 0.5f ? -x * q : 1.f - exp_f(x);
}

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

// Segmented warp scans: a warp holds 32 / lpr segments of lpr lanes (one row each); sl = lane's
// index inside its segment. With lpr = 32 these are plain warp scans.
// inclusive scan of affine maps (a, b): lane ends with the composition of its segment's lanes 0..sl
__device__ __forceinline__ void warp_scan_up(float& a, float& b, int sl) {
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const float pa = __shfl_up_sync(kFullMask, a, off);
    const float pb = __shfl_up_sync(kFullMask, b, off);
    if (sl >= off) {
      b = fmaf(a, pb, b);
      a *= pa;
    }
  }
}

// inclusive reverse scan: lane ends with the composition of its segment's lanes lpr-1..sl
__device__ __forceinline__ void warp_scan_down(float& a, float& b, int sl, int lpr) {
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const float pa = __shfl_down_sync(kFullMask, a, off);
    const float pb = __shfl_down_sync(kFullMask, b, off);
    if (sl + off < lpr) {
      b = fmaf(a, pb, b);
      a *= pa;
    }
  }
}

// sum over the segment, valid in its first lane (sl == 0); fixed order
__device__ __forceinline__ float seg_sum_first(float v, int sl, int lpr) {
#pragma unroll
  for (int off = 1; off < 32; off <<= 1) {
    const float o = __shfl_down_sync(kFullMask, v, off);
    if (sl + off < lpr) v += o;
  }
  return v;
}


// The same scans through a thread context (full warps, segment = the whole warp: lpr = 32).
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
}  // namespace scan
}  // namespace vmamba
