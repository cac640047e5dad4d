// torch-facing side of the depthwise conv + bias + activation: checks, allocation, stream/device,
// registration. Math and layouts: dwconv.h.
//   vmamba_cuda::dwconv2d_fwd(x, weight, bias?, act, channels_last) -> y
//   vmamba_cuda::dwconv2d_bwd(dy, x, weight, bias?, act, channels_last) -> (dx, dweight, dbias)
//       dbias is an empty tensor when bias is None. Deterministic.
// Debug knobs (read per call): VMAMBA_DWCONV_POISON=1 fills outputs and scratch with NaN first;
// VMAMBA_DWCONV_MAX_VEC caps the vector width (elements); VMAMBA_DWCONV_BWD_SEGS sets the backward's
// partial rows (channels-last: blocks along pixels; channels-first: segments per large plane).
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime_api.h>
#include <torch/library.h>

#include <cstdlib>
#include <limits>
#include <tuple>

#include "../common/alloc.h"
#include "../common/common.h"
#include "../ops.h"
#include "dwconv.h"

namespace vmamba {
namespace dw {
namespace {

int code_of(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return kF32;
    case at::kHalf: return kF16;
    default: return kBF16;
  }
}

int parse_act(c10::string_view act) {
  if (act == "none") return kNone;
  if (act == "silu") return kSilu;
  if (act == "gelu") return kGelu;
  TORCH_CHECK(false, ::vmamba::detail::message("vmamba_cuda: act must be one of 'none', 'silu', 'gelu', got '", act, "'"));
}

int env_int(const char* name) {
  const char* e = std::getenv(name);
  return e != nullptr ? std::atoi(e) : 0;
}

void poison(std::initializer_list<at::Tensor*> ts) {
  const char* e = std::getenv("VMAMBA_DWCONV_POISON");
  if (e == nullptr || e[0] != '1') return;
  for (at::Tensor* t : ts)
    if (t->numel() > 0) t->fill_(std::numeric_limits<double>::quiet_NaN());
}

int num_sms(const at::Tensor& t) {
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, t.device().index()) != cudaSuccess || sms <= 0) {
    (void)cudaGetLastError();
    sms = 132;
  }
  return sms;
}

// checks x, weight, bias; fills the problem fields of p
void check_and_fill(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias, bool channels_last,
                    c10::string_view act, Params& p) {
  VMAMBA_CHECK_CUDA(x, "x");
  VMAMBA_CHECK_DIM(x, "x", 4);
  VMAMBA_CHECK_FLOAT_DTYPE(x, "x");
  VMAMBA_CHECK(x.is_contiguous(), "x", "must be contiguous in its layout (", channels_last ? "(B, H, W, C)" : "(B, C, H, W)",
               "; the raw kernel contract), got shape ", x.sizes(), " strides ", x.strides());
  p.B = x.size(0);
  p.C = channels_last ? x.size(3) : x.size(1);
  p.H = channels_last ? x.size(1) : x.size(2);
  p.W = channels_last ? x.size(2) : x.size(3);
  VMAMBA_CHECK_SAME_DEVICE(weight, x, "weight", "x");
  VMAMBA_CHECK(weight.scalar_type() == at::kFloat, "weight", "must be float32, got ", weight.scalar_type());
  VMAMBA_CHECK(weight.dim() == 4 && weight.size(0) == p.C && weight.size(1) == 1 && weight.size(2) == weight.size(3),
               "weight", "must have shape (C, 1, K, K) with C = ", p.C, ", got ", weight.sizes());
  const int64_t K = weight.size(2);
  VMAMBA_CHECK(K == 3 || K == 5 || K == 7, "weight", "kernel size K must be 3, 5 or 7, got shape ", weight.sizes());
  VMAMBA_CHECK(weight.is_contiguous(), "weight", "must be contiguous, got strides ", weight.strides());
  if (bias.has_value()) {
    const at::Tensor& b = bias.value();
    VMAMBA_CHECK_SAME_DEVICE(b, x, "bias", "x");
    VMAMBA_CHECK(b.scalar_type() == at::kFloat, "bias", "must be float32, got ", b.scalar_type());
    VMAMBA_CHECK(b.dim() == 1 && b.size(0) == p.C, "bias", "must have shape (C,) = (", p.C, ",), got ", b.sizes());
    VMAMBA_CHECK(b.is_contiguous(), "bias", "must be contiguous, got strides ", b.strides());
  }
  p.K = int(K);
  p.act = parse_act(act);
  p.channels_last = channels_last;
  p.dtype = code_of(x.scalar_type());
  p.x = x.data_ptr();
  p.weight = weight.data_ptr<float>();
  p.bias = bias.has_value() ? bias->data_ptr<float>() : nullptr;
  p.max_vec = env_int("VMAMBA_DWCONV_MAX_VEC");
  p.segs = env_int("VMAMBA_DWCONV_BWD_SEGS");
  p.num_sms = num_sms(x);
}

}  // namespace

// ---- entry points (csrc/ops.h) ----
at::Tensor dwconv2d_fwd(const at::Tensor& x, const at::Tensor& weight, const c10::optional<at::Tensor>& bias,
                        c10::string_view act, bool channels_last) {
  Params p;
  check_and_fill(x, weight, bias, channels_last, act, p);
  c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = empty_on(x.sizes(), x.scalar_type(), x);
  poison({&y});
  p.y = y.data_ptr();
  const Plan pl = plan(p, kFwd);
  VMAMBA_CHECK(pl.error == nullptr, "x", pl.error == nullptr ? "" : pl.error, ", got shape ", x.sizes());
  const char* err = launch_fwd(p, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, ::vmamba::detail::message("vmamba_cuda::dwconv2d_fwd: kernel launch failed: ", err));
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dwconv2d_bwd(const at::Tensor& dy, const at::Tensor& x,
                                                            const at::Tensor& weight,
                                                            const c10::optional<at::Tensor>& bias,
                                                            c10::string_view act, bool channels_last) {
  Params p;
  check_and_fill(x, weight, bias, channels_last, act, p);
  VMAMBA_CHECK_SAME_DEVICE(dy, x, "dy", "x");
  VMAMBA_CHECK(dy.sizes() == x.sizes(), "dy", "must have x's shape ", x.sizes(), ", got ", dy.sizes());
  VMAMBA_CHECK(dy.scalar_type() == x.scalar_type(), "dy", "must have x's dtype ", x.scalar_type(), ", got ",
               dy.scalar_type());
  VMAMBA_CHECK(dy.is_contiguous(), "dy", "must be contiguous in its layout, got shape ", dy.sizes(), " strides ",
               dy.strides());
  c10::cuda::CUDAGuard guard(x.device());
  const auto f32 = at::kFloat;
  at::Tensor dx = empty_on(x.sizes(), x.scalar_type(), x);
  at::Tensor dweight = empty_on(weight.sizes(), f32, x);
  at::Tensor dbias = empty_on({bias.has_value() ? p.C : 0}, f32, x);
  p.dy = dy.data_ptr();
  p.dx = dx.data_ptr();
  p.dweight = dweight.data_ptr<float>();
  p.dbias = bias.has_value() ? dbias.data_ptr<float>() : nullptr;
  // the plan reads dpre's alignment, and part's size comes from the plan: two allocations
  at::Tensor dpre = empty_on({p.act != kNone ? x.numel() : 0}, x.scalar_type(), x);
  p.dpre = p.act != kNone ? dpre.data_ptr() : nullptr;
  const Plan pl = plan(p, kBwdx);
  VMAMBA_CHECK(pl.error == nullptr, "x", pl.error == nullptr ? "" : pl.error, ", got shape ", x.sizes());
  at::Tensor part = empty_on({pl.part_rows, p.C, int64_t(p.K) * p.K + 1}, f32, x);
  p.part = part.data_ptr<float>();
  poison({&dx, &dweight, &dbias, &dpre, &part});
  const char* err = launch_bwd(p, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, ::vmamba::detail::message("vmamba_cuda::dwconv2d_bwd: kernel launch failed: ", err));
  return {dx, dweight, dbias};
}

}  // namespace dw
}  // namespace vmamba

TORCH_LIBRARY_FRAGMENT(vmamba_cuda, m) {
  m.def("dwconv2d_fwd(Tensor x, Tensor weight, Tensor? bias, str act, bool channels_last) -> Tensor");
  m.def("dwconv2d_bwd(Tensor dy, Tensor x, Tensor weight, Tensor? bias, str act, bool channels_last) "
        "-> (Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(vmamba_cuda, CUDA, m) {
  m.impl("dwconv2d_fwd", &vmamba::dw::dwconv2d_fwd);
  m.impl("dwconv2d_bwd", &vmamba::dw::dwconv2d_bwd);
}
