// Layer norm forward kernels (both layouts, every output dtype) for bf16 inputs: one translation unit per
// (direction, input dtype) so the build compiles them in parallel; bodies in layer_norm_body.cuh.
#include "../common/launch.cuh"
#include "layer_norm_body.cuh"

namespace vmamba {
namespace ln {

cudaError_t fwd_bf16(const FwdParams& p, const Plan& pl, cudaStream_t stream) {
  return run_fwd<DeviceExec, __nv_bfloat16>(DeviceExec{stream}, p, pl);
}

}  // namespace ln
}  // namespace vmamba
