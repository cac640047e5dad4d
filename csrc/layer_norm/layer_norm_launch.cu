// Host-side planning and dtype dispatch of the layer norm kernels into the per-dtype translation units
// (layer_norm_<direction>_<dtype>.cu), and the backward's fixed-order partial-sum pass.
#include "../common/launch.cuh"
#include "layer_norm_body.cuh"

namespace vmamba {
namespace ln {

cudaError_t fwd_f32(const FwdParams& p, const Plan& pl, cudaStream_t stream);
cudaError_t fwd_f16(const FwdParams& p, const Plan& pl, cudaStream_t stream);
cudaError_t fwd_bf16(const FwdParams& p, const Plan& pl, cudaStream_t stream);
cudaError_t bwd_f32(const BwdParams& p, const Plan& pl, cudaStream_t stream);
cudaError_t bwd_f16(const BwdParams& p, const Plan& pl, cudaStream_t stream);
cudaError_t bwd_bf16(const BwdParams& p, const Plan& pl, cudaStream_t stream);

Plan plan_fwd(const FwdParams& p) { return make_fwd_plan(p); }
Plan plan_bwd(const BwdParams& p) { return make_bwd_plan(p); }

const char* launch_fwd(const FwdParams& p, const Plan& pl, cudaStream_t stream) {
  if (pl.error != nullptr) return pl.error;
  if (p.B * p.HW == 0) return nullptr;
  cudaError_t e;
  switch (p.x_dtype) {
    case kF32: e = fwd_f32(p, pl, stream); break;
    case kF16: e = fwd_f16(p, pl, stream); break;
    case kBF16: e = fwd_bf16(p, pl, stream); break;
    default: return "unsupported input dtype";
  }
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

const char* launch_bwd(const BwdParams& p, const Plan& pl, cudaStream_t stream) {
  if (pl.error != nullptr) return pl.error;
  cudaError_t e = cudaSuccess;
  if (p.B * p.HW > 0) {
    switch (p.x_dtype) {
      case kF32: e = bwd_f32(p, pl, stream); break;
      case kF16: e = bwd_f16(p, pl, stream); break;
      case kBF16: e = bwd_bf16(p, pl, stream); break;
      default: return "unsupported input dtype";
    }
  }
  if (e == cudaSuccess) e = run_finish(DeviceExec{stream}, p, pl);
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace ln
}  // namespace vmamba
