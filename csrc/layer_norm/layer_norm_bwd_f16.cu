// Layer norm backward kernels (both layouts, every dy dtype) for f16 inputs: one translation unit per
// (direction, input dtype) so the build compiles them in parallel; bodies in layer_norm_body.cuh.
#include "../common/launch.cuh"
#include "layer_norm_body.cuh"

namespace vmamba {
namespace ln {

cudaError_t bwd_f16(const BwdParams& p, const Plan& pl, cudaStream_t stream) {
  return run_bwd<DeviceExec, __half>(DeviceExec{stream}, p, pl);
}

}  // namespace ln
}  // namespace vmamba
