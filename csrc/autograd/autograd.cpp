// The ops with autograd recorded in C++ (torch::autograd::Function), for eager calls whose inputs require grad
// (issue #20, item 1).
//
// A Python torch.autograd.Function costs about 9 us of host time per call on the CI VM (its apply, the Python
// forward and setup_context), more than the kernels it records at VMamba's small stages. These functions record
// the same graph node from C++: the same raw kernels forward and backward as the Python formulas, the same tensors
// saved, the same outputs marked non-differentiable, gradients not materialised. They mirror
// vmamba_kernels/_library.py's formulas (define_scan, define_cross, define_add_layer_norm, define_dwconv2d) for the
// raw-kernel contract of vmamba_kernels/dispatch.py: inputs already validated, contiguous and non-empty.
//
// The kernels a node calls ("kernel set" ks): the cuda backend's entry points of csrc/ops.h (ks = kCuda), or the raw
// kernels of a Python backend (triton, cupy, torch) registered with register_py_kernels (ks = the index it returned),
// called with the GIL held; the node itself is the same C++ either way. Dispatch's prepared calls (PreparedCall,
// kind "grad_native") take them (VMAMBA_CUDA_NATIVE_AUTOGRAD=0 / VMAMBA_NATIVE_AUTOGRAD=0 turn them off), the Python
// formulas elsewhere; tests/test_cuda_native_autograd.py and tests/test_native_autograd_py.py check outputs and
// gradients bitwise against the Python twins.
#include <torch/autograd.h>

#include <atomic>
#include <string>

#include "../common/common.h"
#include "../ops.h"

#ifndef VMAMBA_NO_PYTHON
#include <torch/extension.h>  // pybind11 with torch's type casters (Tensor, optional, dtype)
#endif

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

// ---- kernel sets ------------------------------------------------------------------------------------------------
constexpr int64_t kCuda = kCudaKernels;

#ifndef VMAMBA_NO_PYTHON
namespace py = pybind11;

// A Python backend's raw kernels (dispatch.py's contract). Sets are only added (at most kMaxPySets, each made once per
// backend) and never freed: a backward on the engine's thread reads them without the GIL, and their Python objects
// must not be destroyed after the interpreter's teardown.
struct PyKernels {
  py::object scan_fwd, scan_bwd, cross_scan, cross_merge, ln_fwd, ln_bwd, dw_fwd, dw_bwd;
  bool mixed_branch;  // the backend's add + LayerNorm reads a 16-bit branch on a float32 x as is
};
constexpr int kMaxPySets = 64;
PyKernels* g_py_sets[kMaxPySets];
std::atomic<int> g_py_count{0};

const PyKernels& py_set(int64_t ks) {
  TORCH_CHECK(ks >= 0 && ks < g_py_count.load(std::memory_order_acquire),
              ::vmamba::detail::message("vmamba_kernels._C: no kernel set ", ks));
  return *g_py_sets[ks];
}

Tensor as_tensor(py::handle h) { return h.is_none() ? Tensor() : h.cast<Tensor>(); }

// fn(args...) with the GIL held (the backward runs on autograd's engine thread without it): the arguments are
// converted, the call made and its result turned into tensors (None: undefined) before the GIL is given back
template <size_t N, typename... Args>
std::array<Tensor, N> call_py(const py::object& fn, const char* name, const Args&... args) {
  py::gil_scoped_acquire gil;
  TORCH_CHECK(!fn.is_none(),
              ::vmamba::detail::message("vmamba_kernels._C: the registered backend has no raw kernel ", name));
  py::object r = fn(args...);
  std::array<Tensor, N> out;
  if constexpr (N == 1) {
    out[0] = as_tensor(r);
  } else {
    py::tuple t = r.cast<py::tuple>();
    TORCH_CHECK(t.size() >= N,
                ::vmamba::detail::message("vmamba_kernels._C: ", name, " returned ", t.size(), " values, expected ",
                                          N));
    for (size_t i = 0; i < N; ++i) out[i] = as_tensor(t[i]);
  }
  return out;
}

#endif

bool mixed_branch(int64_t ks) {
#ifndef VMAMBA_NO_PYTHON
  if (ks != kCuda) return py_set(ks).mixed_branch;
#endif
  return true;  // the cuda kernels read a 16-bit branch on a float32 x
}

std::tuple<Tensor, Tensor, Tensor> k_scan_fwd(int64_t ks, const Tensor& u, const Tensor& delta, const Tensor& A,
                                              const Tensor& B, const Tensor& C, const OptTensor& D,
                                              const OptTensor& delta_bias, bool softplus, at::ScalarType out_dtype) {
#ifndef VMAMBA_NO_PYTHON
  if (ks != kCuda) {
    auto r = call_py<3>(py_set(ks).scan_fwd, "selective_scan_fwd",
                        u, delta, A, B, C, D, delta_bias, softplus, out_dtype);
    return {r[0], r[1], r[2]};
  }
#endif
  return scan::selective_scan_fwd(u, delta, A, B, C, D, delta_bias, softplus, out_dtype);
}

std::array<Tensor, 7> k_scan_bwd(int64_t ks, const Tensor& u, const Tensor& delta, const Tensor& A, const Tensor& B,
                                 const Tensor& C, const OptTensor& D, const OptTensor& delta_bias, bool softplus,
                                 const Tensor& dout, const Tensor& aux) {
#ifndef VMAMBA_NO_PYTHON
  if (ks != kCuda)
    return call_py<7>(py_set(ks).scan_bwd, "selective_scan_bwd",
                      u, delta, A, B, C, D, delta_bias, softplus, dout, aux);
#endif
  auto [du, ddelta, dA, dB, dC, dD, dbias] = scan::selective_scan_bwd(u, delta, A, B, C, D, delta_bias, softplus,
                                                                      dout, aux);
  return {du, ddelta, dA, dB, dC, dD, dbias};
}

Tensor k_cross_scan(int64_t ks, const Tensor& x, const std::string& mode, bool channels_last) {
#ifndef VMAMBA_NO_PYTHON
  if (ks != kCuda)
    return call_py<1>(py_set(ks).cross_scan, "cross_scan_fwd", x, mode, channels_last)[0];
#endif
  return cross::cross_scan(x, mode, channels_last);
}

Tensor k_cross_merge(int64_t ks, const Tensor& y, int64_t H, int64_t W, const std::string& mode, bool channels_last) {
#ifndef VMAMBA_NO_PYTHON
  if (ks != kCuda)
    return call_py<1>(py_set(ks).cross_merge, "cross_merge_fwd", y, H, W, mode, channels_last)[0];
#endif
  return cross::cross_merge(y, H, W, mode, channels_last);
}

Tensor k_dw_fwd(int64_t ks, const Tensor& x, const Tensor& weight, const OptTensor& bias, const std::string& act,
                bool channels_last) {
#ifndef VMAMBA_NO_PYTHON
  if (ks != kCuda)
    return call_py<1>(py_set(ks).dw_fwd, "dwconv2d_fwd", x, weight, bias, act, channels_last)[0];
#endif
  return dw::dwconv2d_fwd(x, weight, bias, act, channels_last);
}

std::array<Tensor, 3> k_dw_bwd(int64_t ks, const Tensor& dy, const Tensor& x, const Tensor& weight,
                               const OptTensor& bias, const std::string& act, bool channels_last) {
#ifndef VMAMBA_NO_PYTHON
  if (ks != kCuda)
    return call_py<3>(py_set(ks).dw_bwd, "dwconv2d_bwd", dy, x, weight, bias, act, channels_last);
#endif
  auto [dx, dw, db] = dw::dwconv2d_bwd(dy, x, weight, bias, act, channels_last);
  return {dx, dw, db};
}

std::array<Tensor, 4> k_ln_fwd(int64_t ks, const Tensor& x, const OptTensor& branch, const Tensor& weight,
                               const OptTensor& bias, const OptTensor& branch_scale, double eps, bool channels_last,
                               std::optional<at::ScalarType> out_dtype) {
#ifndef VMAMBA_NO_PYTHON
  if (ks != kCuda)
    return call_py<4>(py_set(ks).ln_fwd, "add_layer_norm_fwd",
                      x, branch, weight, bias, branch_scale, eps, channels_last, out_dtype);
#endif
  auto [y, s, mean, rstd] = ln::add_layer_norm_fwd(x, branch, weight, bias, branch_scale, eps, channels_last,
                                                   out_dtype);
  return {y, s, mean, rstd};
}

std::array<Tensor, 4> k_ln_bwd(int64_t ks, const Tensor& dy, const OptTensor& ds, const Tensor& s,
                               const Tensor& weight, const OptTensor& bias, const OptTensor& mean, const Tensor& rstd,
                               const OptTensor& branch_scale, bool has_branch, bool channels_last,
                               at::ScalarType x_dtype, bool from_y) {
#ifndef VMAMBA_NO_PYTHON
  if (ks != kCuda) {
    // the Python formulas' backward never asks from_y (add_layer_norm_node is the cuda backend's only)
    TORCH_CHECK(!from_y, ::vmamba::detail::message("vmamba_kernels._C: from_y is the cuda kernels' only"));
    return call_py<4>(py_set(ks).ln_bwd, "add_layer_norm_bwd",
                      dy, ds, s, weight, bias, mean, rstd, branch_scale, has_branch, channels_last, x_dtype);
  }
#endif
  auto [dx, dbr, dw, db] = ln::add_layer_norm_bwd(dy, ds, s, weight, bias, mean, rstd, branch_scale, has_branch,
                                                  channels_last, x_dtype, from_y);
  return {dx, dbr, dw, db};
}

struct ScanFn : torch::autograd::Function<ScanFn> {
  static variable_list forward(AutogradContext* ctx, const Tensor& u, const Tensor& delta, const Tensor& A,
                               const Tensor& B, const Tensor& C, const OptTensor& D, const OptTensor& delta_bias,
                               bool delta_softplus, at::ScalarType out_dtype, int64_t ks) {
    auto [out, last_state, aux] = k_scan_fwd(ks, u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype);
    ctx->save_for_backward({u, delta, A, B, C, or_undefined(D), or_undefined(delta_bias), aux});
    ctx->saved_data["softplus"] = delta_softplus;
    ctx->saved_data["ks"] = ks;
    // last_state is returned detached (mamba_ssm's semantics) and aux is internal; no zero tensors for their
    // (absent) gradients
    ctx->mark_non_differentiable({last_state, aux});
    ctx->set_materialize_grads(false);
    return {out, last_state, aux};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list none(10);
    if (!grads[0].defined()) return none;
    const variable_list s = ctx->get_saved_variables();
    auto [du, ddelta, dA, dB, dC, dD, dbias] =
        k_scan_bwd(ctx->saved_data["ks"].toInt(), s[0], s[1], s[2], s[3], s[4], opt(s[5]), opt(s[6]),
                   ctx->saved_data["softplus"].toBool(), grads[0].contiguous(), s[7]);
    return {du, ddelta, dA, dB, dC, s[5].defined() ? dD : Tensor(), s[6].defined() ? dbias : Tensor(), Tensor(),
            Tensor(), Tensor()};
  }
};

struct CrossMergeFn;

struct CrossScanFn : torch::autograd::Function<CrossScanFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const std::string& mode, bool channels_last,
                        int64_t ks) {
    ctx->saved_data["mode"] = mode;
    ctx->saved_data["cl"] = channels_last;
    ctx->saved_data["ks"] = ks;
    // (H, W) of the map, for the merge that is this op's backward
    ctx->saved_data["H"] = channels_last ? x.size(1) : x.size(2);
    ctx->saved_data["W"] = channels_last ? x.size(2) : x.size(3);
    return k_cross_scan(ks, x, mode, channels_last);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads);
};

struct CrossMergeFn : torch::autograd::Function<CrossMergeFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& y, int64_t H, int64_t W, const std::string& mode,
                        bool channels_last, int64_t ks) {
    ctx->saved_data["mode"] = mode;
    ctx->saved_data["cl"] = channels_last;
    ctx->saved_data["ks"] = ks;
    return k_cross_merge(ks, y, H, W, mode, channels_last);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    // the adjoint, itself recorded (a double backward works, as through the Python formulas)
    return {CrossScanFn::apply(grads[0].contiguous(), ctx->saved_data["mode"].toStringRef(),
                               ctx->saved_data["cl"].toBool(), ctx->saved_data["ks"].toInt()),
            Tensor(), Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

variable_list CrossScanFn::backward(AutogradContext* ctx, variable_list grads) {
  return {CrossMergeFn::apply(grads[0].contiguous(), ctx->saved_data["H"].toInt(), ctx->saved_data["W"].toInt(),
                              ctx->saved_data["mode"].toStringRef(), ctx->saved_data["cl"].toBool(),
                              ctx->saved_data["ks"].toInt()),
          Tensor(), Tensor(), Tensor()};
}

struct DwconvFn : torch::autograd::Function<DwconvFn> {
  static Tensor forward(AutogradContext* ctx, const Tensor& x, const Tensor& weight, const OptTensor& bias,
                        const std::string& act, bool channels_last, int64_t ks) {
    ctx->save_for_backward({x, weight, or_undefined(bias)});
    ctx->saved_data["act"] = act;
    ctx->saved_data["cl"] = channels_last;
    ctx->saved_data["ks"] = ks;
    return k_dw_fwd(ks, x, weight, bias, act, channels_last);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const variable_list s = ctx->get_saved_variables();
    auto [dx, dw, db] = k_dw_bwd(ctx->saved_data["ks"].toInt(), grads[0].contiguous(), s[0], s[1], opt(s[2]),
                                 ctx->saved_data["act"].toStringRef(), ctx->saved_data["cl"].toBool());
    return {dx, dw, s[2].defined() ? db : Tensor(), Tensor(), Tensor(), Tensor()};
  }
};

struct AddNormFn : torch::autograd::Function<AddNormFn> {
  // outputs (y, s, mean, rstd); s is empty without a branch (the public op hands back x itself). from_y (the
  // models' "norms" recompute, models/norm_node.py): y is saved instead of s (or x) and the backward rebuilds
  // xhat from it (add_layer_norm_bwd(from_y=true)); mean is not saved
  static variable_list forward(AutogradContext* ctx, const Tensor& x, const OptTensor& branch, const Tensor& weight,
                               const OptTensor& bias, const OptTensor& branch_scale, double eps, bool channels_last,
                               std::optional<at::ScalarType> out_dtype, bool from_y, int64_t ks) {
    const bool has_branch = branch.has_value();
    OptTensor br = branch;
    // a backend with mixed_branch reads a 16-bit branch on a float32 x as is; other pairs go in x's dtype
    if (has_branch && br->scalar_type() != x.scalar_type() && !(mixed_branch(ks) && x.scalar_type() == at::kFloat))
      br = br->to(x.scalar_type());
    auto [y, s, mean, rstd] = k_ln_fwd(ks, x, br, weight, bias, branch_scale, eps, channels_last, out_dtype);
    Tensor s_out = has_branch ? s : x.new_empty({0});
    if (from_y)
      ctx->save_for_backward({y, weight, or_undefined(bias), Tensor(), rstd, or_undefined(branch_scale)});
    else
      ctx->save_for_backward({has_branch ? s : x, weight, or_undefined(bias), mean, rstd, or_undefined(branch_scale)});
    ctx->saved_data["from_y"] = from_y;
    ctx->saved_data["ks"] = ks;
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
    variable_list none(10);
    const bool has_branch = ctx->saved_data["has_branch"].toBool();
    const variable_list v = ctx->get_saved_variables();
    const Tensor& s = v[0];
    OptTensor ds = has_branch && grads[1].defined() ? OptTensor(grads[1].contiguous()) : OptTensor();
    Tensor dy = grads[0];
    if (!dy.defined()) {  // only the sum s is used downstream
      if (!ds.has_value()) return none;
      dy = at::zeros(s.sizes(), s.options().dtype(ctx->saved_data["out_dtype"].toScalarType()));
    }
    auto [dx, dbr, dw, db] = k_ln_bwd(ctx->saved_data["ks"].toInt(), dy.contiguous(), ds, s, v[1], opt(v[2]),
                                      opt(v[3]), v[4], opt(v[5]), has_branch, ctx->saved_data["cl"].toBool(),
                                      ctx->saved_data["x_dtype"].toScalarType(), ctx->saved_data["from_y"].toBool());
    Tensor dbranch;
    if (has_branch) {
      const auto bt = ctx->saved_data["branch_dtype"].toScalarType();
      dbranch = dbr.scalar_type() == bt ? dbr : dbr.to(bt);
    }
    return {dx, dbranch, dw, v[2].defined() ? db : Tensor(), Tensor(), Tensor(), Tensor(), Tensor(), Tensor(),
            Tensor()};
  }
};

}  // namespace

std::tuple<Tensor, Tensor, Tensor, Tensor> add_layer_norm_fwd(const Tensor& x, const OptTensor& branch,
                                                              const Tensor& weight, const OptTensor& bias,
                                                              const OptTensor& branch_scale, double eps,
                                                              bool channels_last,
                                                              std::optional<at::ScalarType> out_dtype, int64_t ks) {
  variable_list r = AddNormFn::apply(x, branch, weight, bias, branch_scale, eps, channels_last, out_dtype, false, ks);
  return {r[0], r[1], r[2], r[3]};
}

std::tuple<Tensor, Tensor, Tensor, Tensor> add_layer_norm_node(const Tensor& x, const OptTensor& branch,
                                                               const Tensor& weight, const OptTensor& bias,
                                                               const OptTensor& branch_scale, double eps,
                                                               bool channels_last,
                                                               std::optional<at::ScalarType> out_dtype, bool from_y) {
  variable_list r = AddNormFn::apply(x, branch, weight, bias, branch_scale, eps, channels_last, out_dtype, from_y,
                                     kCuda);
  return {r[0], r[1], r[2], r[3]};
}

std::tuple<Tensor, Tensor, Tensor> selective_scan_fwd(const Tensor& u, const Tensor& delta, const Tensor& A,
                                                      const Tensor& B, const Tensor& C, const OptTensor& D,
                                                      const OptTensor& delta_bias, bool delta_softplus,
                                                      at::ScalarType out_dtype, int64_t ks) {
  variable_list r = ScanFn::apply(u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype, ks);
  return {r[0], r[1], r[2]};
}

Tensor cross_scan(const Tensor& x, c10::string_view mode, bool channels_last, int64_t ks) {
  return CrossScanFn::apply(x, std::string(mode), channels_last, ks);
}

Tensor cross_merge(const Tensor& y, int64_t H, int64_t W, c10::string_view mode, bool channels_last, int64_t ks) {
  return CrossMergeFn::apply(y, H, W, std::string(mode), channels_last, ks);
}

Tensor dwconv2d_fwd(const Tensor& x, const Tensor& weight, const OptTensor& bias, c10::string_view act,
                    bool channels_last, int64_t ks) {
  return DwconvFn::apply(x, weight, bias, std::string(act), channels_last, ks);
}

#ifndef VMAMBA_NO_PYTHON
int64_t register_py_kernels(py::object scan_fwd, py::object scan_bwd, py::object cross_scan, py::object cross_merge,
                            py::object ln_fwd, py::object ln_bwd, py::object dw_fwd, py::object dw_bwd,
                            bool mixed_branch) {
  // called with the GIL held, so registrations do not race one another; readers see a set once the count has it
  const int n = g_py_count.load(std::memory_order_relaxed);
  TORCH_CHECK(n < kMaxPySets, ::vmamba::detail::message("vmamba_kernels._C: at most ", kMaxPySets, " kernel sets"));
  g_py_sets[n] = new PyKernels{std::move(scan_fwd), std::move(scan_bwd), std::move(cross_scan),
                               std::move(cross_merge), std::move(ln_fwd),  std::move(ln_bwd),
                               std::move(dw_fwd),      std::move(dw_bwd),  mixed_branch};
  g_py_count.store(n + 1, std::memory_order_release);
  return n;
}
#endif

}  // namespace autograd
}  // namespace vmamba
