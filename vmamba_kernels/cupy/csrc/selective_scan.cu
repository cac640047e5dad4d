// Selective scan (Mamba S6 with VMamba's grouped B/C) for the CuPy backend: forward and backward.
//
// Work split: one warp owns one row (b, d) of u/delta and walks its L steps in chunks of
// CH = 32 * ITEMS; lane l holds the ITEMS consecutive steps [l*ITEMS, (l+1)*ITEMS) of a chunk.
// Global memory is read and written coalesced (lane-strided) and transposed through a padded
// per-warp shared buffer, so any L and any alignment work and no vector-alignment cases exist.
//
// Scan: the recurrence h_t = a_t h_{t-1} + b_t is an affine map per step. Each lane composes its
// ITEMS maps sequentially, a warp-shuffle Hillis-Steele scan composes the 32 lane aggregates, and
// a per-warp carry (shared memory, one slot per state n) links chunks. States are fp32.
//
// Forward also writes aux[row, chunk, n] = state at the start of each chunk (fp32), so the
// backward recomputes each chunk's states from its seed instead of storing them per step.
//
// Backward (chunks last to first, per state n): recompute h over the chunk, then a reverse affine
// scan g_t = a_{t+1} g_{t+1} + C_t dout_t (the state adjoint; the carry between chunks is
// a_first * g_first of the later chunk). Gradients per step: see reference/selective_scan.py.
// Deterministic reductions (no atomics anywhere):
//   dB/dC: a block is W warps = W consecutive channels of ONE group (host picks W | G); the warps
//     put their per-step values in shared memory and the block sums them in a fixed order into a
//     fp32 partial buffer (batch, K, P = G/W, N, L); the host sums over P (second pass).
//   dA (per row, per n), dD and ddelta_bias (per row): warp-shuffle sums into per-row fp32
//     partials (batch, KD, ...); the host sums over batch.
//
// Template parameters: T = input storage type (float, half_t, bf16_t), KN = d_state when fixed at
// compile time (1: VMamba v2's hot path) or 0 = runtime N, ITEMS = steps per lane.
// Offsets are 64-bit throughout.
#include "common.cuh"

namespace vmamba_cupy {

#define VMC_FULL 0xffffffffu
static constexpr float kLog2e = 1.4426950408889634f;

// Loading a chunk [t0, t0 + 32*ITEMS) of a row is split in two so that several rows' global loads
// are in flight before the first use: gload reads coalesced (lane-strided: r[j] = row[t0 + j*32 + lane],
// 0 at or past L), transpose turns that into the lane-consecutive order (v[k] = element
// lane*ITEMS + k) through the warp's padded shared buffer.
template <typename T, int ITEMS>
__device__ __forceinline__ void gload(const T* __restrict__ row, i64 t0, i64 L, int lane, float (&r)[ITEMS]) {
#pragma unroll
    for (int j = 0; j < ITEMS; ++j) {
        const i64 t = t0 + j * 32 + lane;
        r[j] = t < L ? to_float(row[t]) : 0.f;
    }
}

// as gload, but the row is float when is_f32 else T
template <typename T, int ITEMS>
__device__ __forceinline__ void gload_any(const void* row, int is_f32, i64 t0, i64 L, int lane, float (&r)[ITEMS]) {
    if (is_f32) gload<float, ITEMS>(static_cast<const float*>(row), t0, L, lane, r);
    else gload<T, ITEMS>(static_cast<const T*>(row), t0, L, lane, r);
}

template <int ITEMS>
__device__ __forceinline__ void transpose(float* buf, int lane, const float (&r)[ITEMS], float (&v)[ITEMS]) {
#pragma unroll
    for (int j = 0; j < ITEMS; ++j) buf[pad_idx(j * 32 + lane)] = r[j];
    __syncwarp();
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) v[k] = buf[pad_idx(lane * ITEMS + k)];
    __syncwarp();
}

template <typename T, int ITEMS>
__device__ __forceinline__ void warp_store(T* __restrict__ row, i64 t0, i64 L, float* buf, int lane,
                                           const float (&v)[ITEMS]) {
#pragma unroll
    for (int k = 0; k < ITEMS; ++k) buf[pad_idx(lane * ITEMS + k)] = v[k];
    __syncwarp();
#pragma unroll
    for (int j = 0; j < ITEMS; ++j) {
        const int idx = j * 32 + lane;
        const i64 t = t0 + idx;
        if (t < L) row[t] = from_float<T>(buf[pad_idx(idx)]);
    }
    __syncwarp();
}

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(VMC_FULL, v, off);
    return v;
}

// softplus with threshold 20: max(v, 0) + log1p(z), z = exp(-|v|), log1p(z) = z * P(z) with P a
// degree-8 fit of log1p(z) / z on [0, 1] (max relative error 2e-7 in fp32). libdevice's
// log1pf(expf(v)) branches to a slower path for the small arguments VMamba's dt produces.
__device__ __forceinline__ float softplus20(float v) {
    const float z = __expf(-fabsf(v));
    float q = 0.005253457929939032f;
    q = fmaf(q, z, -0.02958850748836994f);
    q = fmaf(q, z, 0.07836166769266129f);
    q = fmaf(q, z, -0.13674770295619965f);
    q = fmaf(q, z, 0.19111430644989014f);
    q = fmaf(q, z, -0.24844369292259216f);
    q = fmaf(q, z, 0.33319270610809326f);
    q = fmaf(q, z, -0.49999502301216125f);
    q = fmaf(q, z, 1.0f);
    return v > 20.f ? v : fmaf(z, q, fmaxf(v, 0.f));
}

// ------------------------------------------------------------------------------------------------
// forward
// grid: ceil(rows / W) blocks of W warps; dynamic shared memory W * (CHP + N) floats
template <typename T, int KN, int ITEMS>
__global__ void __launch_bounds__(256)
ssm_fwd(const T* __restrict__ u, const T* __restrict__ delta, const float* __restrict__ A,
        const T* __restrict__ Bm, const T* __restrict__ Cm, const float* __restrict__ Dv,
        const float* __restrict__ bias, void* __restrict__ out, float* __restrict__ last,
        float* __restrict__ aux, i64 rows, int KD, int K, int n_rt, i64 L, int nchunks,
        int softplus, int out_f32) {
    constexpr int CH = 32 * ITEMS;
    constexpr int CHP = CH + CH / 32;
    const int N = KN > 0 ? KN : n_rt;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int nwarps = blockDim.x >> 5;
    extern __shared__ float smem[];
    float* buf = smem + warp * (CHP + N);
    float* carry = buf + CHP;

    const i64 row = (i64)blockIdx.x * nwarps + warp;
    if (row >= rows) return;  // whole warp leaves; no block-wide barrier in this kernel
    const i64 b = row / KD;
    const int d = (int)(row - b * KD);
    const int g = d / (KD / K);
    const i64 off = row * L;
    const T* urow = u + off;
    const T* drow = delta + off;
    const T* Brow = Bm + (b * K + g) * (i64)N * L;
    const T* Crow = Cm + (b * K + g) * (i64)N * L;
    const float Dd = Dv != nullptr ? Dv[d] : 0.f;
    const float bd = bias != nullptr ? bias[d] : 0.f;
    const float* Ad = A + (i64)d * N;

    for (int n = lane; n < N; n += 32) carry[n] = 0.f;
    __syncwarp();

    for (int c = 0; c < nchunks; ++c) {
        const i64 t0 = (i64)c * CH;
        float uu[ITEMS], dt[ITEMS], y[ITEMS];
        float rb[ITEMS], rc[ITEMS];  // raw B/C of state n (loaded here already when N = 1)
        if (KN == 1) {
            gload<T, ITEMS>(Brow, t0, L, lane, rb);
            gload<T, ITEMS>(Crow, t0, L, lane, rc);
        }
        {
            float ru[ITEMS], rd[ITEMS];
            gload<T, ITEMS>(urow, t0, L, lane, ru);
            gload<T, ITEMS>(drow, t0, L, lane, rd);
            transpose<ITEMS>(buf, lane, ru, uu);
            transpose<ITEMS>(buf, lane, rd, dt);
        }
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
            float v = dt[k] + bd;
            if (softplus) v = softplus20(v);
            dt[k] = (t0 + lane * ITEMS + k < L) ? v : 0.f;  // padding: identity map (a=1, b=0)
            y[k] = Dd * uu[k];
            uu[k] *= dt[k];  // uu now holds dt * u
        }
#pragma unroll 1
        for (int n = 0; n < N; ++n) {
            const float An = Ad[n] * kLog2e;
            float bb[ITEMS], cc[ITEMS];
            {
                if (KN != 1) {
                    gload<T, ITEMS>(Brow + (i64)n * L, t0, L, lane, rb);
                    gload<T, ITEMS>(Crow + (i64)n * L, t0, L, lane, rc);
                }
                transpose<ITEMS>(buf, lane, rb, bb);
                transpose<ITEMS>(buf, lane, rc, cc);
            }
            float a[ITEMS];
            float Pa = 1.f, Pb = 0.f;
#pragma unroll
            for (int k = 0; k < ITEMS; ++k) {
                a[k] = exp2f(dt[k] * An);
                bb[k] *= uu[k];  // bb now holds the step's input b_t = dt u B
                Pb = a[k] * Pb + bb[k];
                Pa *= a[k];
            }
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const float oa = __shfl_up_sync(VMC_FULL, Pa, o);
                const float ob = __shfl_up_sync(VMC_FULL, Pb, o);
                if (lane >= o) { Pb = Pa * ob + Pb; Pa = Pa * oa; }
            }
            float ea = __shfl_up_sync(VMC_FULL, Pa, 1);
            float eb = __shfl_up_sync(VMC_FULL, Pb, 1);
            if (lane == 0) { ea = 1.f; eb = 0.f; }
            const float h0 = carry[n];
            const float hend = __shfl_sync(VMC_FULL, Pa * h0 + Pb, 31);
            float h = ea * h0 + eb;
#pragma unroll
            for (int k = 0; k < ITEMS; ++k) {
                h = a[k] * h + bb[k];
                y[k] += h * cc[k];
            }
            __syncwarp();
            if (lane == 0) {
                aux[((i64)row * nchunks + c) * N + n] = h0;
                carry[n] = hend;
            }
            __syncwarp();
        }
        if (out_f32) warp_store<float, ITEMS>(static_cast<float*>(out) + off, t0, L, buf, lane, y);
        else warp_store<T, ITEMS>(static_cast<T*>(out) + off, t0, L, buf, lane, y);
    }
    for (int n = lane; n < N; n += 32) last[row * N + n] = carry[n];
}

// ------------------------------------------------------------------------------------------------
// backward
// grid: rows / W blocks of W warps (W divides G = KD / K, so a block is one batch, one group);
// dynamic shared memory W * (2 * CHP + 2 * N) floats
template <typename T, int KN, int ITEMS>
__global__ void __launch_bounds__(256)
ssm_bwd(const T* __restrict__ u, const T* __restrict__ delta, const float* __restrict__ A,
        const T* __restrict__ Bm, const T* __restrict__ Cm, const float* __restrict__ Dv,
        const float* __restrict__ bias, const void* __restrict__ dout, int dout_f32,
        const float* __restrict__ aux, T* __restrict__ du, T* __restrict__ ddelta,
        float* __restrict__ dA_part, float* __restrict__ dD_part, float* __restrict__ dbias_part,
        float* __restrict__ dB_part, float* __restrict__ dC_part,
        int KD, int K, int n_rt, i64 L, int nchunks, int softplus) {
    constexpr int CH = 32 * ITEMS;
    constexpr int CHP = CH + CH / 32;
    const int N = KN > 0 ? KN : n_rt;
    const int lane = threadIdx.x & 31;
    const int warp = threadIdx.x >> 5;
    const int W = blockDim.x >> 5;
    const int stride = 2 * CHP + 2 * N;
    extern __shared__ float smem[];
    float* bufA = smem + warp * stride;  // loads, transposes, then this warp's dB values
    float* bufB = bufA + CHP;            // this warp's dC values
    float* gcarry = bufB + CHP;          // reverse-scan carry per n
    float* dAs = gcarry + N;             // dA sum per n

    const i64 row = (i64)blockIdx.x * W + warp;
    const i64 b = row / KD;
    const int d = (int)(row - b * KD);
    const int G = KD / K;
    const int g = d / G;
    const int P = G / W;
    const int p = (d - g * G) / W;
    const i64 off = row * L;
    const T* Brow = Bm + (b * K + g) * (i64)N * L;
    const T* Crow = Cm + (b * K + g) * (i64)N * L;
    const char* dorow = static_cast<const char*>(dout) + off * (dout_f32 ? 4 : (i64)sizeof(T));
    float* dBp = dB_part + ((b * K + g) * P + p) * (i64)N * L;
    float* dCp = dC_part + ((b * K + g) * P + p) * (i64)N * L;
    const float Dd = Dv != nullptr ? Dv[d] : 0.f;
    const float bd = bias != nullptr ? bias[d] : 0.f;
    const float* Ad = A + (i64)d * N;

    for (int n = lane; n < N; n += 32) { gcarry[n] = 0.f; dAs[n] = 0.f; }
    __syncwarp();
    float dD_acc = 0.f, dbias_acc = 0.f;

    for (int c = nchunks - 1; c >= 0; --c) {
        const i64 t0 = (i64)c * CH;
        float uu[ITEMS], dt[ITEMS], dy[ITEMS], sg[ITEMS], du_acc[ITEMS], ddt_acc[ITEMS];
        float rb[ITEMS], rc[ITEMS];  // raw B/C of state n (loaded here already when N = 1)
        if (KN == 1) {
            gload<T, ITEMS>(Brow, t0, L, lane, rb);
            gload<T, ITEMS>(Crow, t0, L, lane, rc);
        }
        {
            float ru[ITEMS], rd[ITEMS], ry[ITEMS];
            gload<T, ITEMS>(u + off, t0, L, lane, ru);
            gload<T, ITEMS>(delta + off, t0, L, lane, rd);
            gload_any<T, ITEMS>(dorow, dout_f32, t0, L, lane, ry);
            transpose<ITEMS>(bufA, lane, ru, uu);
            transpose<ITEMS>(bufA, lane, rd, dt);
            transpose<ITEMS>(bufA, lane, ry, dy);
        }
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
            const float pre = dt[k] + bd;
            const bool valid = t0 + lane * ITEMS + k < L;
            float v = pre;
            sg[k] = 1.f;
            if (softplus) {
                v = softplus20(pre);
                if (pre <= 20.f) sg[k] = 1.f / (1.f + expf(-pre));
            }
            dt[k] = valid ? v : 0.f;
            dD_acc += dy[k] * uu[k];
            du_acc[k] = Dd * dy[k];
            ddt_acc[k] = 0.f;
        }
#pragma unroll 1
        for (int n = 0; n < N; ++n) {
            const float An_raw = Ad[n];
            const float An = An_raw * kLog2e;
            float bb[ITEMS], cc[ITEMS], a[ITEMS], bx[ITEMS], hh[ITEMS];
            {
                if (KN != 1) {
                    gload<T, ITEMS>(Brow + (i64)n * L, t0, L, lane, rb);
                    gload<T, ITEMS>(Crow + (i64)n * L, t0, L, lane, rc);
                }
                transpose<ITEMS>(bufA, lane, rb, bb);
                transpose<ITEMS>(bufA, lane, rc, cc);
            }
            // forward recompute of the chunk's states, seeded by the forward's saved state
            float Pa = 1.f, Pb = 0.f;
#pragma unroll
            for (int k = 0; k < ITEMS; ++k) {
                a[k] = exp2f(dt[k] * An);
                bx[k] = dt[k] * uu[k] * bb[k];
                Pb = a[k] * Pb + bx[k];
                Pa *= a[k];
            }
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const float oa = __shfl_up_sync(VMC_FULL, Pa, o);
                const float ob = __shfl_up_sync(VMC_FULL, Pb, o);
                if (lane >= o) { Pb = Pa * ob + Pb; Pa = Pa * oa; }
            }
            {
                float ea = __shfl_up_sync(VMC_FULL, Pa, 1);
                float eb = __shfl_up_sync(VMC_FULL, Pb, 1);
                if (lane == 0) { ea = 1.f; eb = 0.f; }
                const float h0 = aux[((i64)row * nchunks + c) * N + n];
                float h = ea * h0 + eb;
#pragma unroll
                for (int k = 0; k < ITEMS; ++k) { h = a[k] * h + bx[k]; hh[k] = h; }
            }
            // reverse scan of the adjoint: g_t = alpha_t g_{t+1} + beta_t, alpha_t = a_{t+1}
            const float a_next = __shfl_down_sync(VMC_FULL, a[0], 1);
            const float a_last = lane < 31 ? a_next : 1.f;  // lane 31 continues from the carry
            float Ra = 1.f, Rb = 0.f;
#pragma unroll
            for (int k = ITEMS - 1; k >= 0; --k) {
                const float al = k < ITEMS - 1 ? a[k + 1] : a_last;
                Rb = al * Rb + cc[k] * dy[k];
                Ra = al * Ra;
            }
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const float oa = __shfl_down_sync(VMC_FULL, Ra, o);
                const float ob = __shfl_down_sync(VMC_FULL, Rb, o);
                if (lane + o < 32) { Rb = Ra * ob + Rb; Ra = Ra * oa; }
            }
            float ea = __shfl_down_sync(VMC_FULL, Ra, 1);
            float eb = __shfl_down_sync(VMC_FULL, Rb, 1);
            if (lane == 31) { ea = 1.f; eb = 0.f; }
            const float gc = gcarry[n];
            float gv = ea * gc + eb;
            float dA_acc = 0.f, first = 0.f;
#pragma unroll
            for (int k = ITEMS - 1; k >= 0; --k) {
                const float al = k < ITEMS - 1 ? a[k + 1] : a_last;
                gv = al * gv + cc[k] * dy[k];
                const float q = gv * (hh[k] - bx[k]);  // g_t * a_t * h_{t-1}
                dA_acc += dt[k] * q;
                ddt_acc[k] += An_raw * q + gv * bb[k] * uu[k];
                du_acc[k] += gv * dt[k] * bb[k];
                bufA[pad_idx(lane * ITEMS + k)] = gv * dt[k] * uu[k];  // dB contribution
                bufB[pad_idx(lane * ITEMS + k)] = dy[k] * hh[k];       // dC contribution
                if (k == 0) first = a[0] * gv;
            }
            dA_acc = warp_sum(dA_acc);
            first = __shfl_sync(VMC_FULL, first, 0);
            __syncwarp();
            if (lane == 0) { gcarry[n] = first; dAs[n] += dA_acc; }
            __syncthreads();
            // fixed-order sum over the block's W channels -> this block's dB/dC partial
            for (int i = threadIdx.x; i < CH; i += blockDim.x) {
                const i64 t = t0 + i;
                if (t < L) {
                    float sb = 0.f, sc = 0.f;
                    for (int w = 0; w < W; ++w) {
                        sb += smem[w * stride + pad_idx(i)];
                        sc += smem[w * stride + CHP + pad_idx(i)];
                    }
                    dBp[(i64)n * L + t] = sb;
                    dCp[(i64)n * L + t] = sc;
                }
            }
            __syncthreads();
        }
#pragma unroll
        for (int k = 0; k < ITEMS; ++k) {
            ddt_acc[k] *= sg[k];
            dbias_acc += ddt_acc[k];  // zero at padding (g = 0 there)
        }
        warp_store<T, ITEMS>(du + off, t0, L, bufA, lane, du_acc);
        warp_store<T, ITEMS>(ddelta + off, t0, L, bufA, lane, ddt_acc);
    }
    dD_acc = warp_sum(dD_acc);
    dbias_acc = warp_sum(dbias_acc);
    __syncwarp();
    for (int n = lane; n < N; n += 32) dA_part[row * N + n] = dAs[n];
    if (lane == 0) { dD_part[row] = dD_acc; dbias_part[row] = dbias_acc; }
}

}  // namespace vmamba_cupy

// CI compiles this file with nvcc and -DVMAMBA_CUPY_INSTANTIATE_ALL, forcing every template the
// Python side can name (launch.py builds the same names), so a syntax or type error fails CI.
#ifdef VMAMBA_CUPY_INSTANTIATE_ALL
#define VMC_FWD(T, KN, IT)                                                                             \
    template __global__ void vmamba_cupy::ssm_fwd<T, KN, IT>(                                          \
        const T*, const T*, const float*, const T*, const T*, const float*, const float*, void*,     \
        float*, float*, vmamba_cupy::i64, int, int, int, vmamba_cupy::i64, int, int, int);
#define VMC_BWD(T, KN, IT)                                                                             \
    template __global__ void vmamba_cupy::ssm_bwd<T, KN, IT>(                                          \
        const T*, const T*, const float*, const T*, const T*, const float*, const float*,            \
        const void*, int, const float*, T*, T*, float*, float*, float*, float*, float*, int, int, int, \
        vmamba_cupy::i64, int, int);
#define VMC_ALL_ITEMS(M, T, KN) M(T, KN, 2) M(T, KN, 4) M(T, KN, 8)
#define VMC_ALL(M, T) VMC_ALL_ITEMS(M, T, 0) VMC_ALL_ITEMS(M, T, 1)
VMC_ALL(VMC_FWD, float)
VMC_ALL(VMC_FWD, vmamba_cupy::half_t)
VMC_ALL(VMC_FWD, vmamba_cupy::bf16_t)
VMC_ALL(VMC_BWD, float)
VMC_ALL(VMC_BWD, vmamba_cupy::half_t)
VMC_ALL(VMC_BWD, vmamba_cupy::bf16_t)
#endif
