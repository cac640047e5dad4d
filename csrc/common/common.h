// Small, stable helpers shared by the CUDA sources of vmamba_kernels._C.
//
//   VMAMBA_CHECK(cond, "tensor", "rule ...")  -> TORCH_CHECK whose message names the tensor and the rule
//   VMAMBA_CHECK_CUDA / _DTYPE / _DIM / _SAME_DEVICE      common tensor checks with such messages
//   VMAMBA_DISPATCH_FLOAT(dtype, name, ...)     runs the lambda body with `scalar_t` = float / at::Half /
//                                               at::BFloat16 (names the tensor on an unsupported dtype)
//   vmamba::ceil_div (common/int_math.h, host and device); FastDivmod, AlignedVec: common/device.cuh
//
// Host-only: include this from .cpp files (it pulls in ATen). Kernels (.cu) include device.cuh instead,
// which needs only the CUDA headers and compiles fast.
#pragma once

#include <ATen/ATen.h>
#include <c10/util/Exception.h>

#include <cstdint>

#include "int_math.h"

#define VMAMBA_CHECK(cond, tensor, ...) \
  TORCH_CHECK((cond), "vmamba_cuda: ", tensor, ": ", __VA_ARGS__)

#define VMAMBA_CHECK_CUDA(t, name) \
  VMAMBA_CHECK((t).is_cuda(), name, "must be a CUDA tensor, got device ", (t).device())

#define VMAMBA_CHECK_DIM(t, name, d) \
  VMAMBA_CHECK((t).dim() == (d), name, "must have ", (d), " dimensions, got shape ", (t).sizes())

#define VMAMBA_CHECK_SAME_DEVICE(a, b, name_a, name_b)                                          \
  VMAMBA_CHECK((a).device() == (b).device(), name_a, "must be on the same device as ", name_b, \
               " (", (a).device(), " vs ", (b).device(), ")")

#define VMAMBA_CHECK_FLOAT_DTYPE(t, name)                                                \
  VMAMBA_CHECK((t).scalar_type() == at::kFloat || (t).scalar_type() == at::kHalf ||     \
                   (t).scalar_type() == at::kBFloat16,                                  \
               name, "dtype must be float32, float16 or bfloat16, got ", (t).scalar_type())

// VMAMBA_DISPATCH_FLOAT(t.scalar_type(), "x", [&] { launch<scalar_t>(...); });
#define VMAMBA_DISPATCH_FLOAT(DTYPE, NAME, ...)                                                   \
  [&] {                                                                                           \
    switch (DTYPE) {                                                                              \
      case at::kFloat: { using scalar_t = float; return __VA_ARGS__(); }                          \
      case at::kHalf: { using scalar_t = at::Half; return __VA_ARGS__(); }                        \
      case at::kBFloat16: { using scalar_t = at::BFloat16; return __VA_ARGS__(); }                \
      default:                                                                                    \
        TORCH_CHECK(false, "vmamba_cuda: ", NAME, ": dtype must be float32, float16 or bfloat16, got ", \
                    DTYPE);                                                                       \
    }                                                                                             \
  }()

