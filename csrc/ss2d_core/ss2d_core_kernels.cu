// The fused SS2D core's kernels on the GPU: the bodies of ss2d_core_body.cuh run by DeviceExec
// (../common/launch.cuh), and the occupancy queries the host plan uses (ss2d_core.cpp).
#include "../common/launch.cuh"
#include "ss2d_core_body.cuh"
#include "ss2d_seg_body.cuh"
#include "ss2d_seg_bwd_body.cuh"
#include "ss2d_sweep_body.cuh"

namespace vmamba {
namespace ss2d {
namespace {

// Blocks of body K resident per SM at this dynamic shared memory. The kernel's shared-memory limit is raised to
// the device's maximum first (never lowered: DeviceExec::launch only raises it as far as its launches need and
// remembers the largest size it set, so lowering it here could make a later launch fail).
template <class K>
int occupancy(int threads, size_t smem) {
  auto kernel = body_kernel<K>;
  int dev = 0, optin = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess ||
      size_t(optin) < smem ||
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, optin) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  int nb = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&nb, kernel, threads, smem) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return nb;
}

}  // namespace

size_t fwd_smem_bytes(int warps, int64_t L, int C, int R, bool smem_acc) {
  return smem_floats(false, warps, L, C, R, smem_acc) * sizeof(float);
}
size_t bwd_smem_bytes(int warps, int64_t L, int C, int R, bool smem_acc) {
  return smem_floats(true, warps, L, C, R, smem_acc) * sizeof(float);
}

int fwd_blocks_per_sm(int warps, size_t smem) {
  return warps == 4 ? occupancy<FwdBody<4>>(128, smem) : occupancy<FwdBody<8>>(256, smem);
}
int bwd_blocks_per_sm(int warps, size_t smem) {
  return warps == 4 ? occupancy<BwdBody<4>>(128, smem) : occupancy<BwdBody<8>>(256, smem);
}

int seg_blocks_per_sm(int N, int G, size_t smem) {
  if (N == 1) return occupancy<SegBody<1, true>>(G, smem);
  if (N <= 4) return occupancy<SegBody<4, true>>(G, smem);
  return occupancy<SegBody<kMaxDState, true>>(G, smem);
}

int seg_bwd_blocks_per_sm(int N, int G, size_t smem) {
  if (N == 1) return occupancy<SegBwdBody<1>>(G, smem);
  if (N <= 4) return occupancy<SegBwdBody<4>>(G, smem);
  return occupancy<SegBwdBody<kMaxDState>>(G, smem);
}

const char* launch_seg_bwd(const SegBwdParams& p, float* dxdbl, float* dA, float* dD, float* dbias, float* dw,
                           cudaStream_t stream) {
  cudaError_t e = run_seg_bwd(DeviceExec{stream}, p, dxdbl, dA, dD, dbias, dw);
  if (e == cudaSuccess) e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

// the three x dtypes' kernels have the same resources up to a few registers: the fp16 one stands for them
int sweep_blocks_per_sm(int threads, bool mma, size_t smem) {
  return mma ? occupancy<SweepFwdBody<__half, true>>(threads, smem) : occupancy<SweepFwdBody<__half, false>>(threads, smem);
}

const char* launch_sweep_fwd(const SweepParams& p, cudaStream_t stream) {
  cudaError_t e = run_sweep_fwd(DeviceExec{stream}, p);
  if (e == cudaSuccess) e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

const char* launch_seg_fwd(const SegParams& p, cudaStream_t stream) {
  cudaError_t e = run_seg_fwd(DeviceExec{stream}, p);
  if (e == cudaSuccess) e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

const char* launch_fwd(const FwdParams& p, cudaStream_t stream) {
  cudaError_t e = run_fwd(DeviceExec{stream}, p);
  if (e == cudaSuccess) e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

const char* launch_bwd(const BwdParams& p, float* dxdbl, float* dA, float* dD, float* dbias, float* dw,
                       cudaStream_t stream) {
  cudaError_t e = run_bwd(DeviceExec{stream}, p, dxdbl, dA, dD, dbias, dw);
  if (e == cudaSuccess) e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace ss2d
}  // namespace vmamba
