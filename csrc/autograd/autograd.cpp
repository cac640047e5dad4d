// The ops with autograd recorded in C++ (a hand-written graph node each), for eager calls whose inputs require grad
// (issue #20, item 1).
//
// A Python torch.autograd.Function costs about 9 us of host time per call on the CI VM (its apply, the Python
// forward and setup_context), more than the kernels it records at VMamba's small stages. These functions record
// the same graph node from C++: the same raw kernels forward and backward as the Python formulas, the same tensors
// saved, the same outputs non-differentiable, no gradient made for an unused output. They mirror
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
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/saved_variable.h>

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

// ---- the nodes ---------------------------------------------------------------------------------------------------
// Each op records a hand-written Node, as torch's generated VariableType code does, not a torch::autograd::Function:
// Function::apply keeps per-input and per-output metadata (sizes vectors), a string-keyed map of saved values and
// sets of marked tensors, and cost more per call than these nodes (reports/logs/2026-12-07_hand_nodes_cpu.md). The forward: refuse forward-mode AD (as Function::apply does for a
// function without jvp), run the kernels with grad mode off, and where grad mode is on and an input requires grad,
// make the node with edges to every tensor input, save what the backward reads and set the differentiable outputs'
// history. The backward returns one gradient per tensor input (undefined where there is none).
using torch::autograd::Node;
using torch::autograd::SavedVariable;
using NodePtr = decltype(std::declval<Node&>().getptr());  // std::shared_ptr<Node> up to torch 2.11, intrusive later

template <class T, class P = NodePtr>
struct NodeMaker;
template <class T>
struct NodeMaker<T, std::shared_ptr<Node>> {
  // deleteNode (found by argument-dependent lookup at instantiation; later torch has none) frees long chains
  // without deep recursion, as torch's own nodes are freed
  static std::shared_ptr<T> make() { return std::shared_ptr<T>(new T(), [](T* p) { deleteNode(p); }); }
};
template <class T>
struct NodeMaker<T, c10::intrusive_ptr<Node>> {
  static c10::intrusive_ptr<T> make() { return c10::make_intrusive<T>(); }
};

template <class... Ts>
void refuse_forward_ad(const char* op, const Ts&... inputs) {
  const bool dual = (torch::autograd::isFwGradDefined(inputs) || ...);
  TORCH_CHECK(!dual, ::vmamba::detail::message(
                         "vmamba_kernels.", op, ": forward-mode AD (torch.autograd.forward_ad, torch.func.jvp) is not "
                         "supported; use reverse mode (backward / torch.autograd.grad)"));
}

// A node for `inputs` when grad mode is on and one of them requires grad, else null (nothing recorded).
template <class T, class... Ts>
auto node_for(const Ts&... inputs) -> decltype(NodeMaker<T>::make()) {
  if (!torch::autograd::compute_requires_grad(inputs...)) return nullptr;
  auto n = NodeMaker<T>::make();
  n->set_next_edges(torch::autograd::collect_next_edges(inputs...));
  return n;
}

// A Python backend's raw kernel may hand back an input or a view of one (the contract does not promise fresh
// tensors); a differentiable output gets its own storage before it gets this node's history.
template <class... Ts>
Tensor owned_output(int64_t ks, const Tensor& out, const Ts&... inputs) {
  if (ks == kCuda || !out.defined()) return out;
  const bool is_input = ((inputs.defined() && inputs.unsafeGetTensorImpl() == out.unsafeGetTensorImpl()) || ...);
  return is_input || out.is_view() ? out.clone() : out;
}

SavedVariable save(const Tensor& t) { return SavedVariable(t, /*is_output=*/false); }
SavedVariable save(const OptTensor& t) { return SavedVariable(t, /*is_output=*/false); }

struct ScanNode : Node {
  SavedVariable u, delta, A, B, C, D, delta_bias, aux;
  bool softplus = false;
  int64_t ks = kCuda;

  std::string name() const override { return "SelectiveScanBackward"; }
  void release_variables() override {
    for (SavedVariable* v : {&u, &delta, &A, &B, &C, &D, &delta_bias, &aux}) v->reset_data();
  }
  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);  // saved tensors: one backward at a time, as torch's nodes
    if (!grads[0].defined()) return variable_list(7);  // only last_state / aux were used: no gradient
    const Tensor d = D.unpack(), bias = delta_bias.unpack();
    auto [du, ddelta, dA, dB, dC, dD, dbias] =
        k_scan_bwd(ks, u.unpack(), delta.unpack(), A.unpack(), B.unpack(), C.unpack(), opt(d), opt(bias), softplus,
                   grads[0].contiguous(), aux.unpack());
    return {du, ddelta, dA, dB, dC, d.defined() ? dD : Tensor(), bias.defined() ? dbias : Tensor()};
  }
};

struct CrossMergeNode;

struct CrossScanNode : Node {
  std::string mode;
  bool channels_last = false;
  int64_t ks = kCuda, H = 0, W = 0;  // (H, W) of the map, for the merge that is this op's backward

  std::string name() const override { return "CrossScanBackward"; }
  variable_list apply(variable_list&& grads) override;
};

struct CrossMergeNode : Node {
  std::string mode;
  bool channels_last = false;
  int64_t ks = kCuda;

  std::string name() const override { return "CrossMergeBackward"; }
  variable_list apply(variable_list&& grads) override;
};

struct DwconvNode : Node {
  SavedVariable x, weight, bias;
  std::string act;
  bool channels_last = false;
  int64_t ks = kCuda;

  std::string name() const override { return "DwConv2dBackward"; }
  void release_variables() override {
    for (SavedVariable* v : {&x, &weight, &bias}) v->reset_data();
  }
  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);  // saved tensors: one backward at a time, as torch's nodes
    if (!grads[0].defined()) return variable_list(3);
    const Tensor b = bias.unpack();
    auto [dx, dw, db] = k_dw_bwd(ks, grads[0].contiguous(), x.unpack(), weight.unpack(), opt(b), act, channels_last);
    return {dx, dw, b.defined() ? db : Tensor()};
  }
};

// outputs (y, s, mean, rstd), y and s differentiable; s is empty without a branch (the public op hands back x
// itself). from_y (the models' "norms" recompute, models/norm_node.py): y is saved instead of s (or x) and the
// backward rebuilds xhat from it (add_layer_norm_bwd(from_y=true)); mean is not saved
struct AddNormNode : Node {
  SavedVariable s_or_y, weight, bias, mean, rstd, branch_scale;
  bool has_branch = false, channels_last = false, from_y = false;
  at::ScalarType x_dtype = at::kFloat, out_dtype = at::kFloat, branch_dtype = at::kFloat;
  int64_t ks = kCuda;

  std::string name() const override { return "AddLayerNormBackward"; }
  void release_variables() override {
    for (SavedVariable* v : {&s_or_y, &weight, &bias, &mean, &rstd, &branch_scale}) v->reset_data();
  }
  variable_list apply(variable_list&& grads) override {
    std::lock_guard<std::mutex> lock(mutex_);  // saved tensors: one backward at a time, as torch's nodes
    // y or s saved as an output of this node: unpacking it needs the node (the saved tensor does not keep it)
    const Tensor s = s_or_y.unpack(getptr());
    OptTensor ds = has_branch && grads[1].defined() ? OptTensor(grads[1].contiguous()) : OptTensor();
    Tensor dy = grads[0];
    if (!dy.defined()) {  // only the sum s is used downstream
      if (!ds.has_value()) return variable_list(5);
      dy = at::zeros(s.sizes(), s.options().dtype(out_dtype));
    }
    const Tensor b = bias.unpack();
    auto [dx, dbr, dw, db] = k_ln_bwd(ks, dy.contiguous(), ds, s, weight.unpack(), opt(b), opt(mean.unpack()),
                                      rstd.unpack(), opt(branch_scale.unpack()), has_branch, channels_last, x_dtype,
                                      from_y);
    Tensor dbranch;
    if (has_branch) dbranch = dbr.scalar_type() == branch_dtype ? dbr : dbr.to(branch_dtype);
    // edges: x, branch, weight, bias, branch_scale (never differentiated: drop path's per-sample factor)
    return {dx, dbranch, dw, b.defined() ? db : Tensor(), Tensor()};
  }
};

std::tuple<Tensor, Tensor, Tensor, Tensor> add_norm(const Tensor& x, const OptTensor& branch, const Tensor& weight,
                                                    const OptTensor& bias, const OptTensor& branch_scale, double eps,
                                                    bool channels_last, std::optional<at::ScalarType> out_dtype,
                                                    bool from_y, int64_t ks) {
  refuse_forward_ad("add_layer_norm", x, branch, weight, bias, branch_scale);
  auto node = node_for<AddNormNode>(x, branch, weight, bias, branch_scale);
  const bool has_branch = branch.has_value();
  Tensor y, s, mean, rstd, s_out;
  {
    at::AutoGradMode no_grad(false);
    OptTensor br = branch;
    // a backend with mixed_branch reads a 16-bit branch on a float32 x as is; other pairs go in x's dtype
    if (has_branch && br->scalar_type() != x.scalar_type() && !(mixed_branch(ks) && x.scalar_type() == at::kFloat))
      br = br->to(x.scalar_type());
    auto r = k_ln_fwd(ks, x, br, weight, bias, branch_scale, eps, channels_last, out_dtype);
    y = std::move(r[0]), s = std::move(r[1]), mean = std::move(r[2]), rstd = std::move(r[3]);
    s_out = has_branch ? s : x.new_empty({0});
  }
  if (node) {
    y = owned_output(ks, y, x, or_undefined(branch), weight);
    if (has_branch) s_out = owned_output(ks, s_out, x, *branch, weight);
    node->from_y = from_y;
    node->weight = save(weight);
    node->bias = save(bias);
    node->mean = from_y ? SavedVariable() : save(mean);
    node->rstd = save(rstd);
    node->branch_scale = save(branch_scale);
    node->ks = ks;
    node->has_branch = has_branch;
    node->channels_last = channels_last;
    node->x_dtype = x.scalar_type();
    node->out_dtype = y.scalar_type();
    node->branch_dtype = has_branch ? branch->scalar_type() : x.scalar_type();
    torch::autograd::set_history(y, node);
    torch::autograd::set_history(s_out, node);
    // y and s now have this node as their grad_fn: saved as outputs, which do not own them (saving them as inputs
    // would make the cycle node -> s -> node and keep every dropped graph alive)
    if (from_y)
      node->s_or_y = SavedVariable(y, /*is_output=*/true);
    else
      node->s_or_y = has_branch ? SavedVariable(s_out, /*is_output=*/true) : save(x);
  }
  return {y, s_out, mean, rstd};
}

Tensor cross_merge_impl(const Tensor& y, int64_t H, int64_t W, const std::string& mode, bool channels_last,
                        int64_t ks);

Tensor cross_scan_impl(const Tensor& x, const std::string& mode, bool channels_last, int64_t ks) {
  refuse_forward_ad("cross_scan", x);
  auto node = node_for<CrossScanNode>(x);
  Tensor out;
  {
    at::AutoGradMode no_grad(false);
    out = k_cross_scan(ks, x, mode, channels_last);
  }
  if (node) {
    out = owned_output(ks, out, x);
    node->mode = mode;
    node->channels_last = channels_last;
    node->ks = ks;
    node->H = channels_last ? x.size(1) : x.size(2);
    node->W = channels_last ? x.size(2) : x.size(3);
    torch::autograd::set_history(out, node);
  }
  return out;
}

Tensor cross_merge_impl(const Tensor& y, int64_t H, int64_t W, const std::string& mode, bool channels_last,
                        int64_t ks) {
  refuse_forward_ad("cross_merge", y);
  auto node = node_for<CrossMergeNode>(y);
  Tensor out;
  {
    at::AutoGradMode no_grad(false);
    out = k_cross_merge(ks, y, H, W, mode, channels_last);
  }
  if (node) {
    out = owned_output(ks, out, y);
    node->mode = mode;
    node->channels_last = channels_last;
    node->ks = ks;
    torch::autograd::set_history(out, node);
  }
  return out;
}

// the adjoints, themselves recorded when the backward builds a graph (a double backward works, as through the
// Python formulas)
variable_list CrossScanNode::apply(variable_list&& grads) {
  if (!grads[0].defined()) return variable_list(1);
  return {cross_merge_impl(grads[0].contiguous(), H, W, mode, channels_last, ks)};
}

variable_list CrossMergeNode::apply(variable_list&& grads) {
  if (!grads[0].defined()) return variable_list(1);
  return {cross_scan_impl(grads[0].contiguous(), mode, channels_last, ks)};
}

}  // namespace

std::tuple<Tensor, Tensor, Tensor, Tensor> add_layer_norm_fwd(const Tensor& x, const OptTensor& branch,
                                                              const Tensor& weight, const OptTensor& bias,
                                                              const OptTensor& branch_scale, double eps,
                                                              bool channels_last,
                                                              std::optional<at::ScalarType> out_dtype, int64_t ks) {
  return add_norm(x, branch, weight, bias, branch_scale, eps, channels_last, out_dtype, false, ks);
}

std::tuple<Tensor, Tensor, Tensor, Tensor> add_layer_norm_node(const Tensor& x, const OptTensor& branch,
                                                               const Tensor& weight, const OptTensor& bias,
                                                               const OptTensor& branch_scale, double eps,
                                                               bool channels_last,
                                                               std::optional<at::ScalarType> out_dtype, bool from_y) {
  return add_norm(x, branch, weight, bias, branch_scale, eps, channels_last, out_dtype, from_y, kCuda);
}

std::tuple<Tensor, Tensor, Tensor> selective_scan_fwd(const Tensor& u, const Tensor& delta, const Tensor& A,
                                                      const Tensor& B, const Tensor& C, const OptTensor& D,
                                                      const OptTensor& delta_bias, bool delta_softplus,
                                                      at::ScalarType out_dtype, int64_t ks) {
  refuse_forward_ad("selective_scan", u, delta, A, B, C, D, delta_bias);
  auto node = node_for<ScanNode>(u, delta, A, B, C, D, delta_bias);
  Tensor out, last_state, aux;
  {
    at::AutoGradMode no_grad(false);
    std::tie(out, last_state, aux) = k_scan_fwd(ks, u, delta, A, B, C, D, delta_bias, delta_softplus, out_dtype);
  }
  if (node) {
    out = owned_output(ks, out, u, delta, B, C);
    node->u = save(u);
    node->delta = save(delta);
    node->A = save(A);
    node->B = save(B);
    node->C = save(C);
    node->D = save(D);
    node->delta_bias = save(delta_bias);
    node->aux = save(aux);  // not differentiable and not given this node's history: no cycle
    node->softplus = delta_softplus;
    node->ks = ks;
    // last_state is returned detached (mamba_ssm's semantics) and aux is internal: only out gets the history
    torch::autograd::set_history(out, node);
  }
  return {out, last_state, aux};
}

Tensor cross_scan(const Tensor& x, c10::string_view mode, bool channels_last, int64_t ks) {
  return cross_scan_impl(x, std::string(mode), channels_last, ks);
}

Tensor cross_merge(const Tensor& y, int64_t H, int64_t W, c10::string_view mode, bool channels_last, int64_t ks) {
  return cross_merge_impl(y, H, W, std::string(mode), channels_last, ks);
}

Tensor dwconv2d_fwd(const Tensor& x, const Tensor& weight, const OptTensor& bias, c10::string_view act,
                    bool channels_last, int64_t ks) {
  refuse_forward_ad("dwconv2d", x, weight, bias);
  auto node = node_for<DwconvNode>(x, weight, bias);
  const std::string a(act);
  Tensor out;
  {
    at::AutoGradMode no_grad(false);
    out = k_dw_fwd(ks, x, weight, bias, a, channels_last);
  }
  if (node) {
    out = owned_output(ks, out, x, weight);
    node->x = save(x);
    node->weight = save(weight);
    node->bias = save(bias);
    node->act = a;
    node->channels_last = channels_last;
    node->ks = ks;
    torch::autograd::set_history(out, node);
  }
  return out;
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
