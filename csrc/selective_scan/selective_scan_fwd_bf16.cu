// The selective scan's forward kernels for bf16 inputs (output float32 or bf16): one translation
// unit per (direction, dtype), see selective_scan_kernels.cuh.
#include "selective_scan_kernels.cuh"

namespace vmamba {
namespace scan {

void fwd_bf16(const FwdParams& p, cudaStream_t stream) {
  if (p.out_dtype == kF32)
    fwd_launch<__nv_bfloat16, float>(p, stream);
  else
    fwd_launch<__nv_bfloat16, __nv_bfloat16>(p, stream);
}

}  // namespace scan
}  // namespace vmamba
