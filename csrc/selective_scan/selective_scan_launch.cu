// Host-side dispatch of the selective scan: the dtype switch into the per-dtype translation units
// (selective_scan_<direction>_<dtype>.cu); the kernel choice is plan_fwd / plan_bwd (selective_scan.h).
#include "selective_scan_kernels.cuh"

namespace vmamba {
namespace scan {

const char* launch_fwd(const FwdParams& p, cudaStream_t stream) {
  if (p.batch * p.KD == 0) return nullptr;
  const bool ok_out = p.out_dtype == kF32 || p.out_dtype == p.dtype;
  if (!ok_out) return "unsupported (input dtype, out_dtype) combination";
  switch (p.dtype) {
    case kF32: fwd_f32(p, stream); break;
    case kF16: fwd_f16(p, stream); break;
    case kBF16: fwd_bf16(p, stream); break;
    default: return "unsupported input dtype";
  }
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

const char* launch_bwd(const BwdParams& p, cudaStream_t stream) {
  if (p.KD == 0) return nullptr;
  const bool ok_dout = p.dout_dtype == kF32 || p.dout_dtype == p.dtype;
  if (!ok_dout) return "unsupported (input dtype, dout dtype) combination";
  switch (p.dtype) {
    case kF32: bwd_f32(p, stream); break;
    case kF16: bwd_f16(p, stream); break;
    case kBF16: bwd_bf16(p, stream); break;
    default: return "unsupported input dtype";
  }
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace scan
}  // namespace vmamba
