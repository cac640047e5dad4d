// The inference forward of a VMamba v2 stage's blocks (forward type v05_noz, channels last) as host code in C++:
// one call from Python per stage instead of about 40 Python operator calls per block (issue #20).
//
// At small batches a VMamba forward waits on the host issuing kernels, not on the GPU (reports/logs/
// 2026-12-07_cpp_stages.md). This function issues exactly the kernels the Python fast path issues for the same
// blocks (models/vmamba.py VSSBlock.forward_fused with models/chain.py's unfused chain, the cuda backend's entry
// points of csrc/ops.h for the norms, the depthwise conv, the cross scan / merge and the scan, ATen for the GEMMs,
// cudnn's convolution and the activations), in the same order with the same arguments, so the result is the
// Python path's bit for bit. Python (models/cpp_stages.py) decides when it may run (inference, eager, the layers'
// policies resolved to these kernels) and hands over the weights as the kernels take them (cast to the compute
// dtype, A = -exp(A_logs)), kept across calls while the parameters are unchanged.
//
// Each intermediate is released where the Python path releases it, so the peak memory is the Python path's or lower
// (call 66 measured 3157 against 2297 MB at batch 128 before the chain and the MLP were scoped as below).
// Arguments: per block kSlots tensors in the order of `enum Slot` (None where the layer has no such tensor), per
// block three eps (norm, out_norm, norm2) and one flags word (`enum Flag`).
#include <ATen/ATen.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <c10/util/Exception.h>

#include <string>
#include <vector>

#include "../common/common.h"
#include "../ops.h"

#if defined(VMAMBA_WITH_VSS_STAGE) && !(defined(VMAMBA_WITH_LAYER_NORM) && defined(VMAMBA_WITH_CROSS_SCAN) && \
                                        defined(VMAMBA_WITH_SELECTIVE_SCAN) && defined(VMAMBA_WITH_DWCONV))
#error "csrc/vss_stage calls the layer_norm, cross_scan, selective_scan and dwconv entry points: build those folders too"
#endif

#ifdef VMAMBA_WITH_VSS_STAGE
// messages assembled by vmamba::detail::message (csrc/common/common.h: streaming a number into a std::ostream in this
// extension crashed the GPU machine's process; call 66-67's bad-pack segfault was exactly that)
#define VSS_CHECK(cond, ...) TORCH_CHECK((cond), ::vmamba::detail::message("vss_stage_infer: ", __VA_ARGS__))

namespace vmamba {
namespace stage {
namespace {

enum Slot : int {
  kNormW, kNormB,          // block.norm (float32)
  kInW, kInB,              // op.in_proj (compute dtype)
  kConvW32, kConvB32,      // op.conv2d for the fused depthwise conv (float32)
  kConvW, kConvB,          // op.conv2d for cudnn (compute dtype)
  kXProjW, kDtProjW,       // op.x_proj_weight (K, R + 2N, D), op.dt_projs_weight (K, D, R) (compute dtype)
  kA, kDs, kDtBias,        // -exp(A_logs) (K*D, N), Ds (K*D,), dt_projs_bias flat (K*D,) (float32)
  kOutNormW, kOutNormB,    // op.out_norm (float32)
  kOutW, kOutB,            // op.out_proj (compute dtype)
  kNorm2W, kNorm2B,        // block.norm2 (float32)
  kFc1W, kFc1B, kFc2W, kFc2B,  // block.mlp (compute dtype)
  kSlots
};
enum Flag : int64_t { kFusedDwconv = 1, kMlp = 2 };
constexpr int64_t K = 4;  // routes

using Params = std::vector<c10::optional<at::Tensor>>;

const at::Tensor& need(const Params& p, size_t block, int slot) {
  const auto& t = p[block * kSlots + slot];
  VSS_CHECK(t.has_value() && t->defined(), "block ", block, " has no tensor in slot ", slot,
              " (models/cpp_stages.py packs the weights)");
  return *t;
}

const c10::optional<at::Tensor>& opt(const Params& p, size_t block, int slot) { return p[block * kSlots + slot]; }

at::Tensor act(const at::Tensor& x, const std::string& name) {
  if (name == "silu") return at::silu(x);
  return at::gelu(x);  // "gelu" (exact erf); the caller allows nothing else
}

// y, s of models.norm_node.add_norm_node in inference: s = x + branch (x itself without a branch), y = LN(s).
// A branch in another dtype is cast to x's unless x is float32 (the cuda kernels read a 16-bit branch on a float32
// stream themselves: the backend's mixed_branch).
std::pair<at::Tensor, at::Tensor> add_norm(const at::Tensor& x, const c10::optional<at::Tensor>& branch,
                                           const at::Tensor& w, const c10::optional<at::Tensor>& b, double eps,
                                           at::ScalarType out_dtype) {
  c10::optional<at::Tensor> br = branch;
  if (br.has_value() && br->scalar_type() != x.scalar_type() && x.scalar_type() != at::kFloat) {
    br = br->to(x.scalar_type());
  }
  auto ys = ln::add_layer_norm_infer(x, br, w, b, c10::nullopt, eps, /*channels_last=*/true, out_dtype);
  return {std::get<0>(ys), branch.has_value() ? std::get<1>(ys) : x};
}

// Every argument check, before any kernel runs (messages by vmamba::detail::message: see VSS_CHECK).
void check_stage_args(const at::Tensor& x, const Params& p, const std::vector<double>& eps,
                      const std::vector<int64_t>& flags, c10::string_view act_name,
                      c10::string_view mlp_gelu_approximate) {
  const size_t n = flags.size();
  const size_t slots = static_cast<size_t>(kSlots);
  VSS_CHECK(n >= 1, "a stage has at least one block");
  VSS_CHECK(p.size() == n * slots, n, " blocks take ", n * slots, " weight slots (", slots, " per block), got ",
            p.size());
  VSS_CHECK(eps.size() == 3 * n, n, " blocks take ", 3 * n, " eps values, got ", eps.size());
  VSS_CHECK(x.dim() == 4 && x.is_cuda(), "x must be a CUDA map (B, H, W, C), got ", x.sizes(), " on ", x.device());
  const std::string act_s(act_name), approx(mlp_gelu_approximate);
  VSS_CHECK(act_s == "silu" || act_s == "gelu", "act must be 'silu' or 'gelu', got '", act_s, "'");
  VSS_CHECK(approx == "none" || approx == "tanh", "the MLP's GELU approximate must be 'none' or 'tanh', got '", approx,
            "'");
  for (size_t i = 0; i < n; ++i) {
    for (int slot : {kNormW, kInW, kXProjW, kDtProjW, kA, kOutNormW, kOutW}) need(p, i, slot);
    need(p, i, (flags[i] & kFusedDwconv) ? kConvW32 : kConvW);
    if (flags[i] & kMlp) {
      for (int slot : {kNorm2W, kFc1W, kFc2W}) need(p, i, slot);
    }
  }
}

// models.chain._forward: cross scan, x and dt projections, scan, cross merge. Its route tensors are freed when it
// returns, as the Python chain's are.
at::Tensor chain(const at::Tensor& h, const Params& p, size_t i) {
  const int64_t Bn = h.size(0), H = h.size(1), W = h.size(2), D = h.size(3), L = H * W;
  const at::Tensor& xw = need(p, i, kXProjW);
  const at::Tensor& dtw = need(p, i, kDtProjW);
  const at::Tensor& A = need(p, i, kA);
  const int64_t R = dtw.size(2), N = A.size(1);
  VSS_CHECK(xw.dim() == 3 && dtw.dim() == 3 && xw.size(0) == K && xw.size(2) == D && xw.size(1) == R + 2 * N,
            "block ", i, ": x_proj_weight ", xw.sizes(), " does not fit ", D, " channels, dt_rank ",
              R, ", d_state ", N);
  at::Tensor xs = cross::cross_scan(h, "cross2d", /*channels_last=*/true);  // (B, K, D, L)
  if (xs.scalar_type() != xw.scalar_type()) xs = xs.to(xw.scalar_type());
  at::Tensor xdbl = at::matmul(xw, xs);                      // (B, K, R + 2N, L)
  at::Tensor delta = at::matmul(dtw, xdbl.narrow(2, 0, R));  // (B, K, D, L)
  auto scan = scan::selective_scan_fwd(xs.view({Bn, K * D, L}), delta.view({Bn, K * D, L}), A, xdbl.narrow(2, R, N),
                                       xdbl.narrow(2, R + N, N), opt(p, i, kDs), opt(p, i, kDtBias),
                                       /*delta_softplus=*/true, at::kFloat);
  return cross::cross_merge(std::get<0>(scan).view({Bn, K, D, L}), H, W, "cross2d", /*channels_last=*/true);
}

// SS2Dv05.forward without the gate: in_proj, depthwise conv + act, the chain, out_norm (to the conv output's dtype),
// out_proj. Each intermediate is released where the Python path releases it (the same peak memory).
at::Tensor ss2d(const at::Tensor& y, const Params& p, size_t i, bool fused_dwconv, const std::string& act_s,
                double out_norm_eps) {
  at::Tensor h = at::linear(y, need(p, i, kInW), opt(p, i, kInB));
  if (fused_dwconv) {
    h = dw::dwconv2d_fwd(h.contiguous(), need(p, i, kConvW32), opt(p, i, kConvB32), act_s, /*channels_last=*/true);
  } else {  // cudnn on the (B, C, H, W) view of the channels-last map, as models.fused.dwconv_act
    const at::Tensor& cw = need(p, i, kConvW);
    const int64_t k = cw.size(-1);
    h = act(at::conv2d(h.permute({0, 3, 1, 2}), cw, opt(p, i, kConvB), /*stride=*/{1, 1}, /*padding=*/{k / 2, k / 2},
                       /*dilation=*/{1, 1}, /*groups=*/cw.size(0)),
            act_s).permute({0, 2, 3, 1});
  }
  h = h.contiguous();
  at::Tensor yn = add_norm(chain(h, p, i), c10::nullopt, need(p, i, kOutNormW), opt(p, i, kOutNormB), out_norm_eps,
                           h.scalar_type()).first;
  return at::linear(yn, need(p, i, kOutW), opt(p, i, kOutB));
}

// Mlp.forward: fc1, GELU, fc2, each input released once the next output exists.
at::Tensor mlp(const at::Tensor& y, const Params& p, size_t i, const std::string& approximate) {
  at::Tensor a = at::linear(y, need(p, i, kFc1W), opt(p, i, kFc1B));
  a = at::gelu(a, approximate);
  return at::linear(a, need(p, i, kFc2W), opt(p, i, kFc2B));
}

}  // namespace

at::Tensor vss_stage_infer(const at::Tensor& x_in, const Params& p, const std::vector<double>& eps,
                           const std::vector<int64_t>& flags, c10::string_view act_name,
                           c10::string_view mlp_gelu_approximate, at::ScalarType compute_dtype) {
  check_stage_args(x_in, p, eps, flags, act_name, mlp_gelu_approximate);
  const std::string act_s(act_name), approx(mlp_gelu_approximate);
  // no autograd bookkeeping: the caller runs with grad disabled, and nothing here is differentiated
  at::AutoDispatchBelowADInplaceOrView below_autograd;

  at::Tensor x = x_in.contiguous();
  c10::optional<at::Tensor> pending;  // the previous branch output, added by the next norm (forward_fused)
  for (size_t i = 0; i < flags.size(); ++i) {
    at::Tensor h;
    {  // norm: s = x + pending, y = LN(s) in the compute dtype; then the op (y released before the MLP, as in Python)
      auto [y, s] = add_norm(x, pending, need(p, i, kNormW), opt(p, i, kNormB), eps[3 * i], compute_dtype);
      x = s;
      h = ss2d(y, p, i, flags[i] & kFusedDwconv, act_s, eps[3 * i + 1]);
    }
    if (flags[i] & kMlp) {  // norm2 (adds the op's output), then the MLP
      auto [y2, s2] = add_norm(x, h, need(p, i, kNorm2W), opt(p, i, kNorm2B), eps[3 * i + 2], compute_dtype);
      x = s2;
      h = mlp(y2, p, i, approx);
    }
    pending = h;
  }
  return at::add(x, *pending);
}

}  // namespace stage
}  // namespace vmamba
#undef VSS_CHECK
#endif  // VMAMBA_WITH_VSS_STAGE
