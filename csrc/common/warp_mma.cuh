// One warp-wide tensor-core product, D += A B with A 16 x 8, B 8 x 8, D 16 x 8 (PTX mma.m16n8k8, tf32 operands,
// fp32 accumulation), for the kernel bodies of thread_ctx.cuh: the mma instruction on sm_80 and newer, and the same
// product through the body's warp shuffles elsewhere (the CPU emulator, older GPUs), so a body's fragment layouts
// are checked on a machine without a GPU.
//
// Fragments (lane = 4 * g + t, g = lane / 4 in 0..7, t = lane % 4 in 0..3), as the PTX ISA defines them:
//   A (row-major 16 x 8): a[0] = A(g, t), a[1] = A(g + 8, t), a[2] = A(g, t + 4), a[3] = A(g + 8, t + 4)
//   B (col-major 8 x 8):  b[0] = B(t, g), b[1] = B(t + 4, g)
//   D (16 x 8):           d[0] = D(g, 2t), d[1] = D(g, 2t + 1), d[2] = D(g + 8, 2t), d[3] = D(g + 8, 2t + 1)
// Operands are floats already rounded to tf32 (tf32_round): the instruction ignores their low 13 bits, the
// emulation uses them as they are, so both multiply the same values.
#pragma once

#include <cstdint>
#include <cstring>

#include "thread_ctx.cuh"

namespace vmamba {

// f rounded to tf32 (10 mantissa bits, nearest, ties away from zero: cvt.rna's rounding), as a float whose low 13
// bits are zero; inf and NaN pass through
VMAMBA_HD float tf32_round(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  if ((u & 0x7f800000u) != 0x7f800000u) u += 0x1000u;
  u &= 0xffffe000u;
  memcpy(&f, &u, sizeof f);
  return f;
}

// Every lane of the warp calls it (full warps only: the emulation shuffles).
template <class Ctx>
VMAMBA_HD void warp_mma_tf32(const Ctx& ctx, const float (&a)[4], const float (&b)[2], float (&d)[4]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  (void)ctx;
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(__float_as_uint(a[0])), "r"(__float_as_uint(a[1])), "r"(__float_as_uint(a[2])),
        "r"(__float_as_uint(a[3])), "r"(__float_as_uint(b[0])), "r"(__float_as_uint(b[1])));
#else
  const int lane = int(ctx.tid() & 31u), g = lane >> 2, t = lane & 3;
  for (int k = 0; k < 8; ++k) {
    // A(m, k) is lane (m % 8) * 4 + k % 4's a[(m >= 8) + 2 (k >= 4)]; B(k, n) is lane n * 4 + k % 4's b[k >= 4]
    const int hi = k >= 4 ? 2 : 0;
    const float a_lo = ctx.shfl_idx(a[hi], g * 4 + (k & 3));      // A(g, k)
    const float a_hi = ctx.shfl_idx(a[hi + 1], g * 4 + (k & 3));  // A(g + 8, k)
    const float b0 = ctx.shfl_idx(b[k >> 2], (2 * t) * 4 + (k & 3));      // B(k, 2t)
    const float b1 = ctx.shfl_idx(b[k >> 2], (2 * t + 1) * 4 + (k & 3));  // B(k, 2t + 1)
    d[0] = fmaf(a_lo, b0, d[0]);
    d[1] = fmaf(a_lo, b1, d[1]);
    d[2] = fmaf(a_hi, b0, d[2]);
    d[3] = fmaf(a_hi, b1, d[3]);
  }
#endif
}

}  // namespace vmamba
