// The selective scan's backward kernels for bf16 inputs (dout float32 or bf16): one translation
// unit per (direction, dtype), see selective_scan_kernels.cuh.
#include "selective_scan_kernels.cuh"

namespace vmamba {
namespace scan {

void bwd_bf16(const BwdParams& p, cudaStream_t stream) {
  if (p.dout_dtype == kF32)
    bwd_launch<__nv_bfloat16, float>(p, stream);
  else
    bwd_launch<__nv_bfloat16, __nv_bfloat16>(p, stream);
}

}  // namespace scan
}  // namespace vmamba
