// The cuda backend's ops with autograd recorded in C++ (torch::autograd::Function), for eager calls whose inputs
// require grad (issue #20, item 1).
//
// A Python torch.autograd.Function costs about 9 us of host time per call on the CI VM (its apply, the Python
// forward and setup_context), more than the kernels it records at VMamba's small stages. These functions record
// the same graph node from C++: the same entry points of csrc/ops.h forward and backward, the same tensors saved,
// the same outputs marked non-differentiable, gradients not materialised. They mirror vmamba_kernels/_library.py's
// formulas (define_scan, define_cross, define_add_layer_norm, define_dwconv2d) for the raw-kernel contract of
// vmamba_kernels/dispatch.py: inputs already validated, contiguous and non-empty. Dispatch's prepared calls
// (PreparedCall, kind "grad_native") take them for the cuda backend (off with VMAMBA_CUDA_NATIVE_AUTOGRAD=0), the
// Python formulas everywhere else; tests/test_cuda_native_autograd.py checks outputs and gradients bitwise against
// the Python twins.
#include <torch/autograd.h>

#include <string>

#include "../ops.h"

#if defined(VMAMBA_WITH_AUTOGRAD) && !(defined(VMAMBA_WITH_CROSS_SCAN) && defined(VMAMBA_WITH_SELECTIVE_SCAN) && \
                                       defined(VMAMBA_WITH_DWCONV) && defined(VMAMBA_WITH_LAYER_NORM))
#error "csrc/autograd records the cross_scan, selective_scan, dwconv and layer_norm entry points: build them too"
#endif

namespace vmamba {
namespace autograd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

Tensor or_undefined(const OptTensor& t) { return t.has_value() ? *t : Tensor(); }
OptTensor opt(const Tensor& t) { return t.defined() ? OptTensor(t) : OptTensor(); }

struct ScanFn : torch::autograd::Function<ScanFn> {
  static variable_list forward(AutogradContext* ctx, const Tensor& u, const Tensor& delta, const Tensor& A,
                               const Tensor& B, const Tensor& C, const OptTensor& D, const OptTensor& delta_bias,
                               bool delta_softplus, at::ScalarType out_dtype) {
    auto [out, last_state, aux] = scan::selective_scan_fwd(u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype);
    ctx->save_for_backward({u, delta, A, B, C, or_undefined(D), or_undefined(delta_bias), aux});
    ctx->saved_data["softplus"] = delta_softplus;
    // last_state is returned detached (mamba_ssm's semantics) and aux is internal; no zero tensors for their
    // (absent) gradients
    ctx->mark_non_differentiable({last_state, aux});
    ctx->set_materialize_grads(false);
    return {out, last_state, aux};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list none(9);
    if (!grads[0].defined()) return none;
    const variable_list s = ctx->get_saved_variables();
    auto [du, ddelta, dA, dB, dC, dD, dbias] =
        scan::selective_scan_bwd(s[0], s[1], s[2], s[3], s[4], opt(s[5]), opt(s[6]),
                                 ctx->saved_data["softplus"].toBool(), grads[0].contiguous(), s[7]);
    return {du, ddelta, dA, dB, dC, s[5].defined() ? dD : Tensor(), s[6].defined() ? dbias : Tensor(), Tensor(),
            Tensor()};
  }
};

struct CrossMergeFn;

struct CrossScanFn : torch::autograd::Function<CrossScanFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const std::string& mode, bool channels_last) {
    ctx->saved_data["mode"] = mode;
    ctx->saved_data["cl"] = channels_last;
    // (H, W) of the map, for the merge that is this op's backward
    ctx->saved_data["H"] = channels_last ? x.size(1) : x.size(2);
    ctx->saved_data["W"] = channels_last ? x.size(2) : x.size(3);
    return cross::cross_scan(x, mode, channels_last);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads);
};

struct CrossMergeFn : torch::autograd::Function<CrossMergeFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& y, int64_t H, int64_t W, const std::string& mode,
                        bool channels_last) {
    ctx->saved_data["mode"] = mode;
    ctx->saved_data["cl"] = channels_last;
    return cross::cross_merge(y, H, W, mode, channels_last);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // the adjoint, itself recorded (a double backward works, as through the Python formulas)
    return {CrossScanFn::apply(grads[0].contiguous(), ctx->saved_data["mode"].toStringRef(),
                               ctx->saved_data["cl"].toBool()),
            Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

variable_list CrossScanFn::backward(AutogradContext* ctx, variable_list grads) {
  return {CrossMergeFn::apply(grads[0].contiguous(), ctx->saved_data["H"].toInt(), ctx->saved_data["W"].toInt(),
                              ctx->saved_data["mode"].toStringRef(), ctx->saved_data["cl"].toBool()),
          Tensor(), Tensor()};
}

struct DwconvFn : torch::autograd::Function<DwconvFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& weight, const OptTensor& bias,
                        const std::string& act, bool channels_last) {
    ctx->save_for_backward({x, weight, or_undefined(bias)});
    ctx->saved_data["act"] = act;
    ctx->saved_data["cl"] = channels_last;
    return dw::dwconv2d_fwd(x, weight, bias, act, channels_last);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    auto [dx, dw, db] = dw::dwconv2d_bwd(grads[0].contiguous(), s[0], s[1], opt(s[2]),
                                         ctx->saved_data["act"].toStringRef(), ctx->saved_data["cl"].toBool());
    return {dx, dw, s[2].defined() ? db : Tensor(), Tensor(), Tensor()};
  }
};

struct AddNormFn : torch::autograd::Function<AddNormFn> {
  // outputs (y, s, mean, rstd); s is empty without a branch (the public op hands back x itself). from_y (the
  // models' "norms" recompute, models/norm_node.py): y is saved instead of s (or x) and the backward rebuilds
  // xhat from it (add_layer_norm_bwd(from_y=true)); mean is not saved
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const OptTensor& branch, const Tensor& weight,
                               const OptTensor& bias, const OptTensor& branch_scale, double eps, bool channels_last,
                               std::optional<at::ScalarType> out_dtype, bool from_y) {
    const bool has_branch = branch.has_value();
    OptTensor br = branch;
    // the kernels read a 16-bit branch on a float32 x as is (the backend's mixed_branch); other pairs in x's dtype
    if (has_branch && br->scalar_type() != x.scalar_type() && x.scalar_type() != at::kFloat)
      br = br->to(x.scalar_type());
    auto [y, s, mean, rstd] = ln::add_layer_norm_fwd(x, br, weight, bias, branch_scale, eps, channels_last, out_dtype);
    Tensor s_out = has_branch ? s : x.new_empty({0});
    if (from_y)
      ctx->save_for_backward({y, weight, or_undefined(bias), Tensor(), rstd, or_undefined(branch_scale)});
    else
      ctx->save_for_backward({has_branch ? s : x, weight, or_undefined(bias), mean, rstd, or_undefined(branch_scale)});
    ctx->saved_data["from_y"] = from_y;
    ctx->saved_data["has_branch"] = has_branch;
    ctx->saved_data["cl"] = channels_last;
    ctx->saved_data["x_dtype"] = x.scalar_type();
    ctx->saved_data["out_dtype"] = y.scalar_type();
    ctx->saved_data["branch_dtype"] = has_branch ? branch->scalar_type() : x.scalar_type();
    // the statistics are outputs for the backward, not functions to differentiate; an unused s / mean / rstd
    // costs no zero tensor
    ctx->mark_non_differentiable({mean, rstd});
    ctx->set_materialize_grads(false);
    return {y, s_out, mean, rstd};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list none(9);
    const bool has_branch = ctx->saved_data["has_branch"].toBool();
    const variable_list v = ctx->get_saved_variables();
    const Tensor& s = v[0];
    OptTensor ds = has_branch && grads[1].defined() ? OptTensor(grads[1].contiguous()) : OptTensor();
    Tensor dy = grads[0];
    if (!dy.defined()) {  // only the sum s is used downstream
      if (!ds.has_value()) return none;
      dy = at::zeros(s.sizes(), s.options().dtype(ctx->saved_data["out_dtype"].toScalarType()));
    }
    auto [dx, dbr, dw, db] = ln::add_layer_norm_bwd(dy.contiguous(), ds, s, v[1], opt(v[2]), opt(v[3]), v[4], opt(v[5]),
                                                    has_branch, ctx->saved_data["cl"].toBool(),
                                                    ctx->saved_data["x_dtype"].toScalarType(),
                                                    ctx->saved_data["from_y"].toBool());
    Tensor dbranch;
    if (has_branch) {
      const auto bt = ctx->saved_data["branch_dtype"].toScalarType();
      dbranch = dbr.scalar_type() == bt ? dbr : dbr.to(bt);
    }
    return {dx, dbranch, dw, v[2].defined() ? db : Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

}  // namespace

std::tuple<Tensor, Tensor, Tensor, Tensor> add_layer_norm_fwd(const Tensor& x, const OptTensor& branch,
                                                              const Tensor& weight, const OptTensor& bias,
                                                              const OptTensor& branch_scale, double eps,
                                                              bool channels_last,
                                                              std::optional<at::ScalarType> out_dtype) {
  return add_layer_norm_node(x, branch, weight, bias, branch_scale, eps, channels_last, out_dtype, false);
}

std::tuple<Tensor, Tensor, Tensor, Tensor> add_layer_norm_node(const Tensor& x, const OptTensor& branch,
                                                               const Tensor& weight, const OptTensor& bias,
                                                               const OptTensor& branch_scale, double eps,
                                                               bool channels_last,
                                                               std::optional<at::ScalarType> out_dtype, bool from_y) {
  variable_list r = AddNormFn::apply(x, branch, weight, bias, branch_scale, eps, channels_last, out_dtype, from_y);
  return {r[0], r[1], r[2], r[3]};
}

std::tuple<Tensor, Tensor, Tensor> selective_scan_fwd(const Tensor& u, const Tensor& delta, const Tensor& A,
                                                      const Tensor& B, const Tensor& C, const OptTensor& D,
                                                      const OptTensor& delta_bias, bool delta_softplus,
                                                      at::ScalarType out_dtype) {
  variable_list r = ScanFn::apply(u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype);
  return {r[0], r[1], r[2]};
}

Tensor cross_scan(const Tensor& x, c10::string_view mode, bool channels_last) {
  return CrossScanFn::apply(x, std::string(mode), channels_last);
}

Tensor cross_merge(const Tensor& y, int64_t H, int64_t W, c10::string_view mode, bool channels_last) {
  return CrossMergeFn::apply(y, H, W, std::string(mode), channels_last);
}

Tensor dwconv2d_fwd(const Tensor& x, const Tensor& weight, const OptTensor& bias, c10::string_view act,
                    bool channels_last) {
  return DwconvFn::apply(x, weight, bias, std::string(act), channels_last);
}

}  // namespace autograd
}  // namespace vmamba
