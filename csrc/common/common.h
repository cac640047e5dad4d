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
#include <string>
#include <type_traits>

#include "int_math.h"

namespace vmamba {
namespace detail {
// Check messages are assembled here with std::string appends and std::to_string only, never by
// streaming numbers into a std::ostream: on the GPU machine (torch 2.11, extension compiled by
// /opt/gcc) an error message that streamed an integer or a shape crashed the process (segfault
// inside the op call, seen 2026-11-26 for both ops), while string-only messages raised normally.
inline void append(std::string& s, const char* v) { s += v; }
inline void append(std::string& s, const std::string& v) { s += v; }
inline void append(std::string& s, c10::string_view v) { s.append(v.data(), v.size()); }
inline void append(std::string& s, char v) { s += v; }
inline void append(std::string& s, bool v) { s += v ? "true" : "false"; }
template <typename T, typename std::enable_if<std::is_integral<T>::value, int>::type = 0>
inline void append(std::string& s, T v) { s += std::to_string(v); }
template <typename T, typename std::enable_if<std::is_floating_point<T>::value, int>::type = 0>
inline void append(std::string& s, T v) { s += std::to_string(v); }
inline void append(std::string& s, c10::IntArrayRef v) {
  s += '[';
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(v[i]);
  }
  s += ']';
}
inline void append(std::string& s, c10::ScalarType v) { s += c10::toString(v); }
inline void append(std::string& s, const c10::Device& v) { s += v.str(); }  // formatted inside libc10

template <typename... Args>
inline std::string message(const Args&... args) {
  std::string s;
  (append(s, args), ...);
  return s;
}
}  // namespace detail
}  // namespace vmamba

#define VMAMBA_CHECK(cond, tensor, ...) \
  TORCH_CHECK((cond), ::vmamba::detail::message("vmamba_cuda: ", tensor, ": ", __VA_ARGS__))

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
        TORCH_CHECK(false, ::vmamba::detail::message("vmamba_cuda: ", NAME,                       \
                    ": dtype must be float32, float16 or bfloat16, got ", DTYPE));                \
    }                                                                                             \
  }()

