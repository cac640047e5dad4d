// Host-side planning and (layout, dtype) dispatch of the depthwise conv kernels into the translation
// units dwconv_<layout>_<dtype>.cu, and the backward's sequence: dpre (unless act is none), dx with the
// weight partials, the fixed-order partial-sum pass.
#include "../common/launch.cuh"
#include "dwconv_body.cuh"

namespace vmamba {
namespace dw {

cudaError_t run_cf_f32(const Params& p, const Plan& pl, int mode, cudaStream_t stream);
cudaError_t run_cf_f16(const Params& p, const Plan& pl, int mode, cudaStream_t stream);
cudaError_t run_cf_bf16(const Params& p, const Plan& pl, int mode, cudaStream_t stream);
cudaError_t run_cl_f32(const Params& p, const Plan& pl, int mode, cudaStream_t stream);
cudaError_t run_cl_f16(const Params& p, const Plan& pl, int mode, cudaStream_t stream);
cudaError_t run_cl_bf16(const Params& p, const Plan& pl, int mode, cudaStream_t stream);

Plan plan(const Params& p, int mode) { return make_plan(p, mode); }

namespace {

cudaError_t run(const Params& p, int mode, cudaStream_t stream, const char** err) {
  const Plan pl = make_plan(p, mode);
  if (pl.error != nullptr) {
    *err = pl.error;
    return cudaErrorInvalidValue;
  }
  if (p.B * p.C * p.H * p.W == 0) return cudaSuccess;
  const int which = (p.channels_last ? 3 : 0) + p.dtype;
  switch (which) {
    case 0: return run_cf_f32(p, pl, mode, stream);
    case 1: return run_cf_f16(p, pl, mode, stream);
    case 2: return run_cf_bf16(p, pl, mode, stream);
    case 3: return run_cl_f32(p, pl, mode, stream);
    case 4: return run_cl_f16(p, pl, mode, stream);
    case 5: return run_cl_bf16(p, pl, mode, stream);
    default: *err = "unsupported dtype"; return cudaErrorInvalidValue;
  }
}

}  // namespace

const char* launch_fwd(const Params& p, cudaStream_t stream) {
  const char* err = nullptr;
  const cudaError_t e = run(p, kFwd, stream, &err);
  if (err != nullptr) return err;
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

const char* launch_bwd(const Params& p, cudaStream_t stream) {
  const char* err = nullptr;
  cudaError_t e = cudaSuccess;
  if (p.act != kNone) e = run(p, kDpre, stream, &err);
  if (e == cudaSuccess) e = run(p, kBwdx, stream, &err);
  if (e == cudaSuccess) e = run_finish(DeviceExec{stream}, p, make_plan(p, kBwdx));
  if (err != nullptr) return err;
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace dw
}  // namespace vmamba
