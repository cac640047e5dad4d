// The selective scan's forward kernels for fp16 inputs (output float32 or fp16): one translation
// unit per (direction, dtype), see selective_scan_kernels.cuh.
#include "selective_scan_kernels.cuh"

namespace vmamba {
namespace scan {

void fwd_f16(const FwdParams& p, cudaStream_t stream) {
  if (p.out_dtype == kF32)
    fwd_launch<__half, float>(p, stream);
  else
    fwd_launch<__half, __half>(p, stream);
}

}  // namespace scan
}  // namespace vmamba
