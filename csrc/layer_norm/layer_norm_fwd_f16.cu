// Layer norm forward kernels (both layouts, every output dtype) for f16 inputs: one translation unit per
// (direction, input dtype) so the build compiles them in parallel; bodies in layer_norm_body.cuh.
#include "../common/launch.cuh"
#include "layer_norm_body.cuh"

namespace vmamba {
namespace ln {

cudaError_t fwd_f16(const FwdParams& p, const Plan& pl, cudaStream_t stream) {
  return run_fwd<DeviceExec, __half>(DeviceExec{stream}, p, pl);
}

}  // namespace ln
}  // namespace vmamba
