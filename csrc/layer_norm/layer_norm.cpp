// torch-facing side of the fused residual-add + LayerNorm over channels: checks, allocation,
// stream/device, registration. Math and layouts: layer_norm.h.
//   vmamba_cuda::add_layer_norm_fwd(x, branch?, weight, bias?, branch_scale?, eps, channels_last, out_dtype?)
//       -> (y, s, mean, rstd)          s is x itself when branch is None; branch in x's dtype, or 16-bit on
//                                      a float32 x (s in x's dtype)
//   vmamba_cuda::add_layer_norm_infer(same arguments) -> (y, s)   no statistics: inference
//   vmamba_cuda::add_layer_norm_bwd(dy, ds?, s, weight, bias?, mean, rstd, branch_scale?, has_branch,
//                                   channels_last, x_dtype) -> (dx, dbranch, dweight, dbias)
//       dbranch / dbias are empty tensors when has_branch is false / bias is None. Deterministic.
// Debug knobs (read per call): VMAMBA_NORM_POISON=1 fills outputs and scratch with NaN first;
// VMAMBA_NORM_MAX_VEC caps the vector width (elements); VMAMBA_NORM_TILE sets the channels-first
// pixels per tile; VMAMBA_NORM_BWD_BLOCKS sets the backward's block count (rows of partial sums).
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
#include "layer_norm.h"

namespace vmamba {
namespace ln {
namespace {

int code_of(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return kF32;
    case at::kHalf: return kF16;
    default: return kBF16;
  }
}

int env_int(const char* name) {
  const char* e = std::getenv(name);
  return e != nullptr ? std::atoi(e) : 0;
}

void poison(std::initializer_list<at::Tensor*> ts) {
  const char* e = std::getenv("VMAMBA_NORM_POISON");
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

void check_contig(const at::Tensor& t, const char* name, bool channels_last) {
  VMAMBA_CHECK(t.is_contiguous(), name, "must be contiguous in its layout (", channels_last ? "(B, H, W, C)" : "(B, C, H, W)",
               " with C ", channels_last ? "last" : "second", "; the raw kernel contract), got shape ", t.sizes(),
               " strides ", t.strides());
}

// (B, C, HW) of a 4-d activation in the given layout
struct Dims {
  int64_t B, C, HW;
};

Dims dims_of(const at::Tensor& x, bool channels_last) {
  return {x.size(0), channels_last ? x.size(3) : x.size(1), channels_last ? x.size(1) * x.size(2) : x.size(2) * x.size(3)};
}

void check_param(const at::Tensor& t, const char* name, int64_t C, const at::Tensor& like) {
  VMAMBA_CHECK_SAME_DEVICE(t, like, name, "x");
  VMAMBA_CHECK(t.scalar_type() == at::kFloat, name, "must be float32, got ", t.scalar_type());
  VMAMBA_CHECK(t.dim() == 1 && t.size(0) == C, name, "must have shape (C,) = (", C, ",), got ", t.sizes());
  VMAMBA_CHECK(t.is_contiguous(), name, "must be contiguous, got strides ", t.strides());
}

void check_scale(const c10::optional<at::Tensor>& scale, bool has_branch, int64_t B, const at::Tensor& like) {
  if (!scale.has_value()) return;
  VMAMBA_CHECK(has_branch, "branch_scale", "is the drop-path factor of branch and needs a branch (got branch None)");
  const at::Tensor& t = scale.value();
  VMAMBA_CHECK_SAME_DEVICE(t, like, "branch_scale", "x");
  VMAMBA_CHECK(t.scalar_type() == at::kFloat, "branch_scale", "must be float32, got ", t.scalar_type());
  VMAMBA_CHECK(t.dim() == 1 && t.size(0) == B, "branch_scale", "must have shape (B,) = (", B, ",), got ", t.sizes());
  VMAMBA_CHECK(t.is_contiguous(), "branch_scale", "must be contiguous, got strides ", t.strides());
}

// stats = false (inference): mean / rstd are neither written nor allocated (returned undefined; the ops below
// return only what they promise)
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> fwd_impl(
    const at::Tensor& x, const c10::optional<at::Tensor>& branch, const at::Tensor& weight,
    const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& branch_scale, double eps,
    bool channels_last, c10::optional<at::ScalarType> out_dtype, bool stats) {
  VMAMBA_CHECK_CUDA(x, "x");
  VMAMBA_CHECK_DIM(x, "x", 4);
  VMAMBA_CHECK_FLOAT_DTYPE(x, "x");
  check_contig(x, "x", channels_last);
  const Dims d = dims_of(x, channels_last);
  VMAMBA_CHECK(d.C >= 1, "x", "must have at least one channel, got shape ", x.sizes());
  if (branch.has_value()) {
    const at::Tensor& br = branch.value();
    VMAMBA_CHECK_SAME_DEVICE(br, x, "branch", "x");
    VMAMBA_CHECK(br.sizes() == x.sizes(), "branch", "must have x's shape ", x.sizes(), ", got ", br.sizes());
    VMAMBA_CHECK(br.scalar_type() == x.scalar_type() ||
                     (x.scalar_type() == at::kFloat && (br.scalar_type() == at::kHalf || br.scalar_type() == at::kBFloat16)),
                 "branch", "must have x's dtype ", x.scalar_type(),
                 " (or float16 / bfloat16 when x is float32), got ", br.scalar_type());
    check_contig(br, "branch", channels_last);
  }
  check_param(weight, "weight", d.C, x);
  if (bias.has_value()) check_param(bias.value(), "bias", d.C, x);
  check_scale(branch_scale, branch.has_value(), d.B, x);
  const at::ScalarType yt = out_dtype.has_value() ? out_dtype.value() : x.scalar_type();
  VMAMBA_CHECK(yt == at::kFloat || yt == at::kHalf || yt == at::kBFloat16, "out_dtype",
               "must be float32, float16 or bfloat16 (or None for x's dtype), got ", yt);
  VMAMBA_CHECK(eps >= 0.0, "eps", "must be >= 0, got ", eps);
  c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = empty_on(x.sizes(), yt, x);
  at::Tensor s = branch.has_value() ? empty_on(x.sizes(), x.scalar_type(), x) : x;
  at::Tensor mean, rstd;
  if (stats) {
    // the statistics are saved together and freed together: one allocation
    auto st = empty_shared(x, {Piece{{d.B, d.HW}, at::kFloat}, Piece{{d.B, d.HW}, at::kFloat}});
    mean = st[0];
    rstd = st[1];
    if (branch.has_value()) poison({&y, &s, &mean, &rstd});
    else poison({&y, &mean, &rstd});
  } else if (branch.has_value()) {
    poison({&y, &s});
  } else {
    poison({&y});
  }
  FwdParams p;
  p.x = x.data_ptr();
  p.branch = branch.has_value() ? branch->data_ptr() : nullptr;
  p.scale = branch_scale.has_value() ? branch_scale->data_ptr<float>() : nullptr;
  p.weight = weight.data_ptr<float>();
  p.bias = bias.has_value() ? bias->data_ptr<float>() : nullptr;
  p.s = branch.has_value() ? s.data_ptr() : nullptr;
  p.y = y.data_ptr();
  p.mean = stats ? mean.data_ptr<float>() : nullptr;  // null: the kernels skip the statistics' stores
  p.rstd = stats ? rstd.data_ptr<float>() : nullptr;
  p.B = d.B; p.C = d.C; p.HW = d.HW;
  p.eps = float(eps);
  p.channels_last = channels_last;
  p.x_dtype = code_of(x.scalar_type());
  p.branch_dtype = branch.has_value() ? code_of(branch->scalar_type()) : -1;
  p.y_dtype = code_of(yt);
  p.max_vec = env_int("VMAMBA_NORM_MAX_VEC");
  p.tile = env_int("VMAMBA_NORM_TILE");
  p.num_sms = num_sms(x);
  VMAMBA_CHECK(d.B * d.HW < (int64_t(1) << 31) && d.HW < (int64_t(1) << 31), "x", "too many pixels for one launch, got shape ", x.sizes());
  const Plan pl = plan_fwd(p);
  VMAMBA_CHECK(pl.error == nullptr, "x", pl.error == nullptr ? "" : pl.error, ", got shape ", x.sizes());
  const char* err = launch_fwd(p, pl, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, ::vmamba::detail::message("vmamba_cuda::add_layer_norm_fwd: kernel launch failed: ", err));
  return {y, s, mean, rstd};
}

}  // namespace

// ---- entry points (csrc/ops.h) ----
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> add_layer_norm_fwd(
    const at::Tensor& x, const c10::optional<at::Tensor>& branch, const at::Tensor& weight,
    const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& branch_scale, double eps,
    bool channels_last, c10::optional<at::ScalarType> out_dtype) {
  return fwd_impl(x, branch, weight, bias, branch_scale, eps, channels_last, out_dtype, true);
}

// inference: (y, s) without the statistics a backward would need (two allocations fewer per call: host time
// at small batches, reports/logs/2026-12-04_host_views_H200.md)
std::tuple<at::Tensor, at::Tensor> add_layer_norm_infer(
    const at::Tensor& x, const c10::optional<at::Tensor>& branch, const at::Tensor& weight,
    const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& branch_scale, double eps,
    bool channels_last, c10::optional<at::ScalarType> out_dtype) {
  auto out = fwd_impl(x, branch, weight, bias, branch_scale, eps, channels_last, out_dtype, false);
  return {std::get<0>(out), std::get<1>(out)};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> add_layer_norm_bwd(
    const at::Tensor& dy, const c10::optional<at::Tensor>& ds, const at::Tensor& s, const at::Tensor& weight,
    const c10::optional<at::Tensor>& bias, const c10::optional<at::Tensor>& mean, const at::Tensor& rstd,
    const c10::optional<at::Tensor>& branch_scale, bool has_branch, bool channels_last, at::ScalarType x_dtype,
    bool from_y) {
  VMAMBA_CHECK_CUDA(s, "s");
  VMAMBA_CHECK_DIM(s, "s", 4);
  VMAMBA_CHECK_FLOAT_DTYPE(s, "s");
  VMAMBA_CHECK_FLOAT_DTYPE(dy, "dy");
  if (from_y) {
    VMAMBA_CHECK(s.scalar_type() == dy.scalar_type(), "s", "with from_y s is the norm's output y and must have dy's dtype ",
                 dy.scalar_type(), ", got ", s.scalar_type());
    VMAMBA_CHECK(x_dtype == at::kFloat || x_dtype == at::kHalf || x_dtype == at::kBFloat16, "x_dtype",
                 "must be float32, float16 or bfloat16, got ", x_dtype);
  } else {
    VMAMBA_CHECK(s.scalar_type() == x_dtype, "s", "must have x_dtype ", x_dtype,
                 " (it is x, or x + branch in x's dtype), got ", s.scalar_type());
    VMAMBA_CHECK(mean.has_value(), "mean", "is needed unless from_y (the backward from the output)");
  }
  check_contig(s, "s", channels_last);
  const Dims d = dims_of(s, channels_last);
  VMAMBA_CHECK(d.C >= 1, "s", "must have at least one channel, got shape ", s.sizes());
  VMAMBA_CHECK_SAME_DEVICE(dy, s, "dy", "s");
  VMAMBA_CHECK(dy.sizes() == s.sizes(), "dy", "must have s's shape ", s.sizes(), ", got ", dy.sizes());
  check_contig(dy, "dy", channels_last);
  if (ds.has_value()) {
    const at::Tensor& t = ds.value();
    VMAMBA_CHECK_SAME_DEVICE(t, s, "ds", "s");
    VMAMBA_CHECK(t.sizes() == s.sizes(), "ds", "must have s's shape ", s.sizes(), ", got ", t.sizes());
    VMAMBA_CHECK(t.scalar_type() == x_dtype, "ds", "must have x_dtype ", x_dtype, ", got ", t.scalar_type());
    check_contig(t, "ds", channels_last);
  }
  check_param(weight, "weight", d.C, s);
  if (bias.has_value()) check_param(bias.value(), "bias", d.C, s);
  const at::Tensor* stats[2] = {mean.has_value() ? &mean.value() : nullptr, &rstd};
  const char* snames[2] = {"mean", "rstd"};
  for (int i = 0; i < 2; ++i) {
    if (stats[i] == nullptr) continue;
    const at::Tensor& t = *stats[i];
    VMAMBA_CHECK_SAME_DEVICE(t, s, snames[i], "s");
    VMAMBA_CHECK(t.scalar_type() == at::kFloat, snames[i], "must be float32 (saved by add_layer_norm_fwd), got ", t.scalar_type());
    VMAMBA_CHECK(t.dim() == 2 && t.size(0) == d.B && t.size(1) == d.HW, snames[i], "must have shape (B, H*W) = (", d.B, ", ",
                 d.HW, "), got ", t.sizes());
    VMAMBA_CHECK(t.is_contiguous(), snames[i], "must be contiguous, got strides ", t.strides());
  }
  check_scale(branch_scale, has_branch, d.B, s);
  c10::cuda::CUDAGuard guard(s.device());
  at::Tensor dx = empty_on(s.sizes(), x_dtype, s);
  at::Tensor dbranch = has_branch ? empty_on(s.sizes(), x_dtype, s) : empty_on({0}, x_dtype, s);
  const auto f32 = at::kFloat;
  at::Tensor dweight = empty_on({d.C}, f32, s);
  at::Tensor dbias = empty_on({bias.has_value() ? d.C : 0}, f32, s);
  BwdParams p;
  p.dy = dy.data_ptr();
  p.ds = ds.has_value() ? ds->data_ptr() : nullptr;
  p.s = s.data_ptr();
  p.weight = weight.data_ptr<float>();
  p.bias = bias.has_value() ? bias->data_ptr<float>() : nullptr;
  p.from_y = from_y;
  p.mean = (mean.has_value() && !from_y) ? mean->data_ptr<float>() : nullptr;
  p.rstd = rstd.data_ptr<float>();
  p.scale = branch_scale.has_value() ? branch_scale->data_ptr<float>() : nullptr;
  p.dx = dx.data_ptr();
  p.dbranch = has_branch ? dbranch.data_ptr() : nullptr;
  p.dweight = dweight.data_ptr<float>();
  p.dbias = bias.has_value() ? dbias.data_ptr<float>() : nullptr;
  p.B = d.B; p.C = d.C; p.HW = d.HW;
  p.channels_last = channels_last;
  p.x_dtype = code_of(x_dtype);
  p.dy_dtype = code_of(dy.scalar_type());
  p.max_vec = env_int("VMAMBA_NORM_MAX_VEC");
  p.tile = env_int("VMAMBA_NORM_TILE");
  p.blocks = env_int("VMAMBA_NORM_BWD_BLOCKS");
  p.num_sms = num_sms(s);
  VMAMBA_CHECK(d.B * d.HW < (int64_t(1) << 31), "s", "too many pixels for one launch, got shape ", s.sizes());
  const Plan pl = plan_bwd(p);
  VMAMBA_CHECK(pl.error == nullptr, "s", pl.error == nullptr ? "" : pl.error, ", got shape ", s.sizes());
  at::Tensor part = empty_on({pl.part_rows, d.C, 2}, f32, s);
  p.part = part.data_ptr<float>();
  poison({&dx, &dbranch, &dweight, &dbias, &part});
  const char* err = launch_bwd(p, pl, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, ::vmamba::detail::message("vmamba_cuda::add_layer_norm_bwd: kernel launch failed: ", err));
  return {dx, dbranch, dweight, dbias};
}

}  // namespace ln
}  // namespace vmamba

TORCH_LIBRARY_FRAGMENT(vmamba_cuda, m) {
  m.def("add_layer_norm_fwd(Tensor x, Tensor? branch, Tensor weight, Tensor? bias, Tensor? branch_scale, float eps, "
        "bool channels_last, ScalarType? out_dtype) -> (Tensor, Tensor, Tensor, Tensor)");
  m.def("add_layer_norm_infer(Tensor x, Tensor? branch, Tensor weight, Tensor? bias, Tensor? branch_scale, float eps, "
        "bool channels_last, ScalarType? out_dtype) -> (Tensor, Tensor)");
  m.def("add_layer_norm_bwd(Tensor dy, Tensor? ds, Tensor s, Tensor weight, Tensor? bias, Tensor? mean, Tensor rstd, "
        "Tensor? branch_scale, bool has_branch, bool channels_last, ScalarType x_dtype, bool from_y=False) "
        "-> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(vmamba_cuda, CUDA, m) {
  m.impl("add_layer_norm_fwd", &vmamba::ln::add_layer_norm_fwd);
  m.impl("add_layer_norm_infer", &vmamba::ln::add_layer_norm_infer);
  m.impl("add_layer_norm_bwd", &vmamba::ln::add_layer_norm_bwd);
}
