// The selective scan's backward kernels for fp32 inputs (dout float32 or fp32): one translation
// unit per (direction, dtype), see selective_scan_kernels.cuh.
#include "selective_scan_kernels.cuh"

namespace vmamba {
namespace scan {

void bwd_f32(const BwdParams& p, cudaStream_t stream) {
  bwd_launch<float, float>(p, stream);  // dout_dtype is float32 too (checked by the caller)
}

}  // namespace scan
}  // namespace vmamba
