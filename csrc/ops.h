// The ATen entry points of the extension's ops, one per raw kernel of the cuda backend. Each op's .cpp defines
// its entry points and registers them with torch.library (torch.ops.vmamba_cuda.*, the schema); module.cpp binds
// the same functions directly into the Python module vmamba_kernels._C, which vmamba_kernels/cuda/extension.py
// calls: a direct binding skips the dispatcher's per-call argument parsing (3.2 against 0.5 us for a call with
// nine arguments on a 2-core AMD EPYC VM, reports/logs/2026-12-06_direct_bindings.md). Arguments arrive validated
// (vmamba_kernels/validate.py); each entry point still checks what its kernels rely on.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>
#include <c10/util/string_view.h>

#include <tuple>
#include <vector>

namespace vmamba {
using at::Tensor;
using OptTensor = c10::optional<at::Tensor>;

namespace scan {
std::tuple<Tensor, Tensor, Tensor> selective_scan_fwd(const Tensor& u, const Tensor& delta, const Tensor& A,
                                                      const Tensor& B, const Tensor& C, const OptTensor& D,
                                                      const OptTensor& delta_bias, bool delta_softplus,
                                                      at::ScalarType out_dtype);
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> selective_scan_bwd(
    const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B, const Tensor& C, const OptTensor& D,
    const OptTensor& delta_bias, bool delta_softplus, const Tensor& dout, const Tensor& aux);
}  // namespace scan

namespace cross {
Tensor cross_scan(const Tensor& x, c10::string_view mode, bool channels_last);
Tensor cross_merge(const Tensor& y, int64_t H, int64_t W, c10::string_view mode, bool channels_last);
}  // namespace cross

namespace ln {
std::tuple<Tensor, Tensor, Tensor, Tensor> add_layer_norm_fwd(const Tensor& x, const OptTensor& branch,
                                                              const Tensor& weight, const OptTensor& bias,
                                                              const OptTensor& branch_scale, double eps,
                                                              bool channels_last,
                                                              c10::optional<at::ScalarType> out_dtype);
std::tuple<Tensor, Tensor> add_layer_norm_infer(const Tensor& x, const OptTensor& branch, const Tensor& weight,
                                                const OptTensor& bias, const OptTensor& branch_scale, double eps,
                                                bool channels_last, c10::optional<at::ScalarType> out_dtype);
std::tuple<Tensor, Tensor, Tensor, Tensor> add_layer_norm_bwd(const Tensor& dy, const OptTensor& ds, const Tensor& s,
                                                              const Tensor& weight, const OptTensor& bias,
                                                              const OptTensor& mean, const Tensor& rstd,
                                                              const OptTensor& branch_scale, bool has_branch,
                                                              bool channels_last, at::ScalarType x_dtype,
                                                              bool from_y);
}  // namespace ln

namespace dw {
Tensor dwconv2d_fwd(const Tensor& x, const Tensor& weight, const OptTensor& bias, c10::string_view act,
                    bool channels_last);
std::tuple<Tensor, Tensor, Tensor> dwconv2d_bwd(const Tensor& dy, const Tensor& x, const Tensor& weight,
                                                const OptTensor& bias, c10::string_view act, bool channels_last);
}  // namespace dw

namespace ss2d {
Tensor ss2d_core_fwd(const Tensor& x, const Tensor& xdbl, const Tensor& dt_w, const Tensor& A, const OptTensor& D,
                     const OptTensor& delta_bias, c10::string_view mode, bool channels_last, bool delta_softplus,
                     at::ScalarType out_dtype);
std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> ss2d_core_bwd(
    const Tensor& x, const Tensor& xdbl, const Tensor& dt_w, const Tensor& A, const OptTensor& D,
    const OptTensor& delta_bias, const Tensor& dy, c10::string_view mode, bool channels_last, bool delta_softplus);
}  // namespace ss2d

// the same ops with autograd recorded in C++ (csrc/autograd/autograd.cpp): for calls whose inputs require grad. ks:
// the kernels the node calls, kCudaKernels (the entry points above) or a Python backend's set (register_py_kernels)
namespace autograd {
constexpr int64_t kCudaKernels = -1;
std::tuple<Tensor, Tensor, Tensor> selective_scan_fwd(const Tensor& u, const Tensor& delta, const Tensor& A,
                                                      const Tensor& B, const Tensor& C, const OptTensor& D,
                                                      const OptTensor& delta_bias, bool delta_softplus,
                                                      at::ScalarType out_dtype, int64_t ks = kCudaKernels);
Tensor cross_scan(const Tensor& x, c10::string_view mode, bool channels_last, int64_t ks = kCudaKernels);
Tensor cross_merge(const Tensor& y, int64_t H, int64_t W, c10::string_view mode, bool channels_last,
                   int64_t ks = kCudaKernels);
Tensor dwconv2d_fwd(const Tensor& x, const Tensor& weight, const OptTensor& bias, c10::string_view act,
                    bool channels_last, int64_t ks = kCudaKernels);
std::tuple<Tensor, Tensor, Tensor, Tensor> add_layer_norm_fwd(const Tensor& x, const OptTensor& branch,
                                                              const Tensor& weight, const OptTensor& bias,
                                                              const OptTensor& branch_scale, double eps,
                                                              bool channels_last,
                                                              c10::optional<at::ScalarType> out_dtype,
                                                              int64_t ks = kCudaKernels);
// add_layer_norm_fwd with models/norm_node.py's from_y choice (save y instead of the sum for the backward); cuda only
std::tuple<Tensor, Tensor, Tensor, Tensor> add_layer_norm_node(const Tensor& x, const OptTensor& branch,
                                                               const Tensor& weight, const OptTensor& bias,
                                                               const OptTensor& branch_scale, double eps,
                                                               bool channels_last,
                                                               c10::optional<at::ScalarType> out_dtype, bool from_y);
}  // namespace autograd

namespace stage {
// Not an op: the inference forward of a VMamba v2 stage's blocks (v05_noz, channels last) composed of the entry
// points above and ATen calls, one Python call per stage (csrc/vss_stage/vss_stage.cpp; models/cpp_stages.py).
Tensor vss_stage_infer(const Tensor& x, const std::vector<OptTensor>& params, const std::vector<double>& eps,
                       const std::vector<int64_t>& flags, c10::string_view act, c10::string_view mlp_gelu_approximate,
                       at::ScalarType compute_dtype);
}  // namespace stage
}  // namespace vmamba
