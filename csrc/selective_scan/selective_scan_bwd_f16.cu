// The selective scan's backward kernels for fp16 inputs (dout float32 or fp16): one translation
// unit per (direction, dtype), see selective_scan_kernels.cuh.
#include "selective_scan_kernels.cuh"

namespace vmamba {
namespace scan {

void bwd_f16(const BwdParams& p, cudaStream_t stream) {
  if (p.dout_dtype == kF32)
    bwd_launch<__half, float>(p, stream);
  else
    bwd_launch<__half, __half>(p, stream);
}

}  // namespace scan
}  // namespace vmamba
