// The GPU executor of kernel bodies (see thread_ctx.cuh): one generic __global__ wrapper per body type
// and DeviceExec, which the per-dtype translation units hand to the typed launchers. The CPU executor
// with the same launch() is tests/cuda_emu/emu.h (EmuExec).
#pragma once

#include <cuda_runtime.h>

#include "thread_ctx.cuh"

namespace vmamba {

template <class K>
__global__ void __launch_bounds__(K::kMaxThreads, K::kMinBlocks) body_kernel(const typename K::Args a) {
  extern __shared__ __align__(16) unsigned char smem[];
  K::run(DeviceCtx{}, a, smem);
}

struct DeviceExec {
  static constexpr int kMaxDevices = 64;
  cudaStream_t stream;

  template <class K>
  cudaError_t launch(dim3 grid, unsigned threads, size_t smem, const typename K::Args& a) const {
    if (grid.x == 0 || grid.y == 0) return cudaSuccess;
    auto kernel = body_kernel<K>;
    if (smem > 48 * 1024) {
      // opt in above 48 KB, once per kernel, device and larger size (cheap, but not free on every call)
      static size_t opted[kMaxDevices] = {};
      int dev = 0;
      cudaError_t e = cudaGetDevice(&dev);
      if (e != cudaSuccess) return e;
      if (dev >= kMaxDevices || smem > opted[dev]) {
        e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
        if (e != cudaSuccess) return e;
        if (dev < kMaxDevices) opted[dev] = smem;
      }
    }
    kernel<<<grid, threads, smem, stream>>>(a);
    return cudaGetLastError();
  }
};

}  // namespace vmamba
