// The selective scan's forward kernels for fp32 inputs (output float32 or fp32): one translation
// unit per (direction, dtype), see selective_scan_kernels.cuh.
#include "selective_scan_kernels.cuh"

namespace vmamba {
namespace scan {

void fwd_f32(const FwdParams& p, cudaStream_t stream) {
  fwd_launch<float, float>(p, stream);  // out_dtype is float32 too (checked by the caller)
}

}  // namespace scan
}  // namespace vmamba
