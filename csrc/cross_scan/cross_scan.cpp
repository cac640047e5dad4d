// torch-facing side of the cross scan ops: checks, allocation, stream/device, registration.
//   vmamba_cuda::cross_scan(Tensor x, str mode, bool channels_last) -> Tensor
//   vmamba_cuda::cross_merge(Tensor y, int H, int W, str mode, bool channels_last) -> Tensor
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <string>

#include "../common/alloc.h"
#include "../common/common.h"
#include "../ops.h"
#include "cross_scan.h"

namespace vmamba {
namespace cross {
namespace {

int parse_mode(c10::string_view mode) {
  if (mode == "cross2d") return kCross2d;
  if (mode == "unidi") return kUnidi;
  if (mode == "bidi") return kBidi;
  TORCH_CHECK(false, ::vmamba::detail::message("vmamba_cuda: mode must be one of 'cross2d', 'unidi', 'bidi', got '", mode, "'"));
}

int dtype_code(const at::Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat: return kF32;
    case at::kHalf: return kF16;
    default: return kBF16;
  }
}

}  // namespace

// ---- entry points (csrc/ops.h) ----
at::Tensor cross_scan(const at::Tensor& x_in, c10::string_view mode, bool channels_last) {
  VMAMBA_CHECK_CUDA(x_in, "x");
  VMAMBA_CHECK_DIM(x_in, "x", 4);
  VMAMBA_CHECK_FLOAT_DTYPE(x_in, "x");
  const int m = parse_mode(mode);
  const at::Tensor x = x_in.contiguous();
  const int64_t B = x.size(0);
  const int64_t C = channels_last ? x.size(3) : x.size(1);
  const int64_t H = channels_last ? x.size(1) : x.size(2);
  const int64_t W = channels_last ? x.size(2) : x.size(3);
  c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = empty_on({B, 4, C, H * W}, x.scalar_type(), x);
  Problem p;
  p.in = x.data_ptr(); p.out = y.data_ptr();
  p.B = B; p.C = C; p.H = H; p.W = W; p.mode = m; p.channels_last = channels_last; p.dtype = dtype_code(x);
  const char* err = launch_cross_scan(p, c10::cuda::getCurrentCUDAStream().stream(), nullptr);
  TORCH_CHECK(err == nullptr, ::vmamba::detail::message("vmamba_cuda::cross_scan: kernel launch failed: ", err));
  return y;
}

at::Tensor cross_merge(const at::Tensor& y_in, int64_t H, int64_t W, c10::string_view mode, bool channels_last) {
  VMAMBA_CHECK_CUDA(y_in, "y");
  VMAMBA_CHECK_DIM(y_in, "y", 4);
  VMAMBA_CHECK_FLOAT_DTYPE(y_in, "y");
  VMAMBA_CHECK(y_in.size(1) == 4, "y", "must have 4 routes in dimension 1 (B, 4, C, H*W), got shape ", y_in.sizes());
  VMAMBA_CHECK(H >= 1 && W >= 1, "H, W", "must be >= 1, got H=", H, " W=", W);
  VMAMBA_CHECK(y_in.size(3) == H * W, "y", "last dimension must be H*W = ", H * W, ", got shape ", y_in.sizes());
  const int m = parse_mode(mode);
  const at::Tensor y = y_in.contiguous();
  const int64_t B = y.size(0), C = y.size(2);
  c10::cuda::CUDAGuard guard(y.device());
  at::Tensor x = channels_last ? empty_on({B, H, W, C}, y.scalar_type(), y) : empty_on({B, C, H, W}, y.scalar_type(), y);
  Problem p;
  p.in = y.data_ptr(); p.out = x.data_ptr();
  p.B = B; p.C = C; p.H = H; p.W = W; p.mode = m; p.channels_last = channels_last; p.dtype = dtype_code(y);
  const char* err = launch_cross_merge(p, c10::cuda::getCurrentCUDAStream().stream(), nullptr);
  TORCH_CHECK(err == nullptr, ::vmamba::detail::message("vmamba_cuda::cross_merge: kernel launch failed: ", err));
  return x;
}

}  // namespace cross
}  // namespace vmamba

TORCH_LIBRARY_FRAGMENT(vmamba_cuda, m) {
  m.def("cross_scan(Tensor x, str mode, bool channels_last) -> Tensor");
  m.def("cross_merge(Tensor y, int H, int W, str mode, bool channels_last) -> Tensor");
}

TORCH_LIBRARY_IMPL(vmamba_cuda, CUDA, m) {
  m.impl("cross_scan", &vmamba::cross::cross_scan);
  m.impl("cross_merge", &vmamba::cross::cross_merge);
}
