// Depthwise conv kernels (forward, dpre, dx + weight partials; K 3, 5, 7) on channels-last f32 maps: one
// translation unit per (layout, dtype) so the build compiles them in parallel; bodies in dwconv_body.cuh.
#include "../common/launch.cuh"
#include "dwconv_body.cuh"

namespace vmamba {
namespace dw {

cudaError_t run_cl_f32(const Params& p, const Plan& pl, int mode, cudaStream_t stream) {
  return run_typed<DeviceExec, float, true>(DeviceExec{stream}, p, pl, mode);
}

}  // namespace dw
}  // namespace vmamba
