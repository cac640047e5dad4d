// Cross scan / cross merge (VMamba's four 2-D routes) for the CuPy backend.
//
// Both kernels run one thread per map element (b, c, pixel) and use the position of that pixel in
// each route (reference/cross_scan.py; p = h*W + w row-major, q = w*H + h column-major):
//   cross2d: p, q, L-1-p, L-1-q      unidi: p, p, p, p      bidi: p, p, L-1-p, L-1-p
// cross_scan scatters the pixel to its four route positions; cross_merge gathers the four and sums
// them in fp32 (the adjoint). Threads are ordered so that the map side is read/written coalesced:
// pixel fastest for (B, C, H, W), channel fastest for channels_last (B, H, W, C). 64-bit indices.
#include "common.cuh"

namespace vmamba_cupy {

// mode: 0 = cross2d, 1 = unidi, 2 = bidi
__device__ __forceinline__ void route_positions(int mode, i64 p, i64 H, i64 W, i64 (&pos)[4]) {
    const i64 L = H * W;
    const i64 h = p / W;
    const i64 w = p - h * W;
    const i64 q = w * H + h;
    if (mode == 0) { pos[0] = p; pos[1] = q; pos[2] = L - 1 - p; pos[3] = L - 1 - q; }
    else if (mode == 1) { pos[0] = p; pos[1] = p; pos[2] = p; pos[3] = p; }
    else { pos[0] = p; pos[1] = p; pos[2] = L - 1 - p; pos[3] = L - 1 - p; }
}

// element e of the map -> (b, c, p) and its offset in the map
__device__ __forceinline__ void map_coords(i64 e, i64 C, i64 L, int channels_last, i64& b, i64& c, i64& p) {
    if (channels_last) {  // (B, H, W, C): e = (b*L + p)*C + c
        c = e % C;
        const i64 r = e / C;
        p = r % L;
        b = r / L;
    } else {              // (B, C, H, W): e = (b*C + c)*L + p
        p = e % L;
        const i64 r = e / L;
        c = r % C;
        b = r / C;
    }
}

// x: map (B, C, H, W) or (B, H, W, C); y: (B, 4, C, L)
template <typename T>
__global__ void __launch_bounds__(256)
cross_scan_k(const T* __restrict__ x, T* __restrict__ y, i64 Bn, i64 C, i64 H, i64 W, int mode,
             int channels_last) {
    const i64 L = H * W;
    const i64 total = Bn * C * L;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (i64)gridDim.x * blockDim.x) {
        i64 b, c, p;
        map_coords(e, C, L, channels_last, b, c, p);
        const T v = x[e];
        i64 pos[4];
        route_positions(mode, p, H, W, pos);
#pragma unroll
        for (int k = 0; k < 4; ++k) y[((b * 4 + k) * C + c) * L + pos[k]] = v;
    }
}

// y: (B, 4, C, L); x: map (B, C, H, W) or (B, H, W, C)
template <typename T>
__global__ void __launch_bounds__(256)
cross_merge_k(const T* __restrict__ y, T* __restrict__ x, i64 Bn, i64 C, i64 H, i64 W, int mode,
              int channels_last) {
    const i64 L = H * W;
    const i64 total = Bn * C * L;
    for (i64 e = (i64)blockIdx.x * blockDim.x + threadIdx.x; e < total; e += (i64)gridDim.x * blockDim.x) {
        i64 b, c, p;
        map_coords(e, C, L, channels_last, b, c, p);
        i64 pos[4];
        route_positions(mode, p, H, W, pos);
        float s = 0.f;
#pragma unroll
        for (int k = 0; k < 4; ++k) s += to_float(y[((b * 4 + k) * C + c) * L + pos[k]]);
        x[e] = from_float<T>(s);
    }
}

}  // namespace vmamba_cupy

#ifdef VMAMBA_CUPY_INSTANTIATE_ALL
#define VMC_CROSS(T)                                                                                  \
    template __global__ void vmamba_cupy::cross_scan_k<T>(const T*, T*, vmamba_cupy::i64,             \
        vmamba_cupy::i64, vmamba_cupy::i64, vmamba_cupy::i64, int, int);                              \
    template __global__ void vmamba_cupy::cross_merge_k<T>(const T*, T*, vmamba_cupy::i64,            \
        vmamba_cupy::i64, vmamba_cupy::i64, vmamba_cupy::i64, int, int);
VMC_CROSS(float)
VMC_CROSS(vmamba_cupy::half_t)
VMC_CROSS(vmamba_cupy::bf16_t)
#endif
