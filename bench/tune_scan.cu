// Standalone tuning harness for the CUDA selective scan (csrc/selective_scan): times the d_state = 1
// kernels against the generic ones on VMamba-T's stage shapes (fp16 in, fp32 out, batch 128) and
// checks that both give the same results; then the generic kernel on VMamba-vanilla-T's d_state = 16
// shapes. It also holds kernel prototypes under evaluation, each compared with the kernel it would
// replace. The kernels' tunables are macros, so one build per variant:
//
//   nvcc -std=c++17 -O3 --use_fast_math -arch=sm_90 -Icsrc -DVMAMBA_SCAN_FWD1_MIN_BLOCKS=6 \
//        bench/tune_scan.cu -o /tmp/tune && /tmp/tune [batch [stage]]
//
// Prints one line per (stage, kernel): ms (median of 20 after 3 warm-ups) and GB/s over the bytes
// each pass must move (fwd: u, delta, B, C, out; bwd: u, delta, B, C, dout, du, ddelta, dB, dC),
// and the largest difference between the two kernels' outputs (they share the arithmetic, so the
// differences are rounding-order only). Not part of the extension build (setup.py globs csrc/ only).
#include "selective_scan/selective_scan_kernels.cu"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

using namespace vmamba::scan;
using vmamba::FastDivmod;

// ---- prototype under evaluation: "flat rows" forward for d_state = 1 and 8 <= L <= 256 -----------
// The extension's forward gives each row (L <= 256: one chunk) a warp of which only ceil(L / 8) lanes
// work: 25 of 32 at L = 196 (VMamba's stage 3), where the kernel is issue-bound (ncu: 77% issue slots
// busy). Here a block of kFlatWarps warps owns R whole consecutive rows laid end to end (R * L <= the
// block's 2048 elements, R * L a multiple of 8 so every lane's run stays 16-byte aligned); each warp
// scans 256 consecutive elements with a reset (a = 0) at every row start, and the warps' carries are
// linked in shared memory. Lanes are ~96% busy for L = 196 and 49. Outputs match fwd_n1_kernel's.
constexpr int kFlatWarps = 8;
constexpr int kFlatSpan = kFlatWarps * kChunk;

int flat_rows_per_block(int L) {
  int g = L, m = 8;  // R must be a multiple of 8 / gcd(L, 8)
  while (m) { const int t = g % m; g = m; m = t; }
  const int step = 8 / g;
  return (kFlatSpan / L) / step * step;
}

template <typename T, typename OutT>
__global__ void __launch_bounds__(kFlatWarps * 32, 3) fwd_flat_n1(const FwdParams p, int R, FastDivmod Ldiv) {
  __shared__ float s_a[kFlatWarps], s_b[kFlatWarps];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int L = int(p.L), KD = int(p.KD);
  const int rows = int(p.batch * p.KD);
  const int row_first = int(blockIdx.x) * R;
  const int span = min(R, rows - row_first) * L;  // elements owned by this block
  const int e0 = warp * kChunk + lane * kItems;    // this lane's first element within the span
  const int nv = max(0, min(kItems, span - e0));
  const int64_t base = int64_t(row_first) * L;
  uint32_t r0u, t0u;
  Ldiv.divmod(uint32_t(min(e0, span - 1)), r0u, t0u);
  const int r0 = int(r0u), t0 = int(t0u);
  const int k = L - t0;  // elements i < k belong to row r0, i >= k to row r0 + 1 (L >= 8: one wrap at most)

  float Al[2], Dv[2], bias[2];
  int64_t bco[2];
#pragma unroll
  for (int j = 0; j < 2; ++j) {
    const int row = min(row_first + r0 + j, rows - 1);
    const int b = int(p.kd_div.div(uint32_t(row))), d = row - b * KD, g = int(p.g_div.div(uint32_t(d)));
    Al[j] = p.A[d] * kLog2e;
    Dv[j] = p.D ? p.D[d] : 0.f;
    bias[j] = p.delta_bias ? p.delta_bias[d] : 0.f;
    bco[j] = (int64_t(b) * p.K + g) * L;
  }
  Run<T> ru, rd;
  ru.load(static_cast<const T*>(p.u) + base + e0, nv, true);
  rd.load(static_cast<const T*>(p.delta) + base + e0, nv, true);
  const T* Bm = static_cast<const T*>(p.B);
  const T* Cm = static_cast<const T*>(p.C);
  float Bv[kItems], Cv[kItems];
  if (k >= kItems) {
    Run<T> rB, rC;
    rB.load(Bm + bco[0] + t0, nv, false);
    rC.load(Cm + bco[0] + t0, nv, false);
#pragma unroll
    for (int i = 0; i < kItems; ++i) { Bv[i] = rB[i]; Cv[i] = rC[i]; }
  } else {
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const int64_t idx = i < k ? bco[0] + t0 + i : bco[1] + (i - k);
      Bv[i] = i < nv ? Cvt<T>::to(Bm[idx]) : 0.f;
      Cv[i] = i < nv ? Cvt<T>::to(Cm[idx]) : 0.f;
    }
  }
  float a[kItems], bx[kItems], y[kItems];
  float ra = 1.f, rb = 0.f;
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    const int j = i < k ? 0 : 1;
    const float uv = ru[i];
    const float v = rd[i] + bias[j];
    const float dt = i < nv ? (p.softplus ? softplus20(v) : v) : 0.f;
    y[i] = Dv[j] * uv;
    bx[i] = dt * uv * Bv[i];
    const bool row_start = (i == 0 && t0 == 0) || i == k;  // the state before a row is 0: a reset
    a[i] = row_start ? 0.f : exp2f(dt * Al[j]);
    ra *= a[i];
    rb = fmaf(a[i], rb, bx[i]);
  }
  warp_scan_up(ra, rb, lane);
  float ea = __shfl_up_sync(kFull, ra, 1), eb = __shfl_up_sync(kFull, rb, 1);
  if (lane == 0) { ea = 1.f; eb = 0.f; }
  if (lane == 31) { s_a[warp] = ra; s_b[warp] = rb; }
  __syncthreads();
  float carry = 0.f;  // the state entering this warp's 256 elements (the block starts at a row start)
  for (int w = 0; w < warp; ++w) carry = fmaf(s_a[w], carry, s_b[w]);
  float x = fmaf(ea, carry, eb);
#pragma unroll
  for (int i = 0; i < kItems; ++i) {
    x = fmaf(a[i], x, bx[i]);
    y[i] = fmaf(Cv[i], x, y[i]);
    if (i < nv) {
      const int rrow = row_first + r0 + (i < k ? 0 : 1);
      if (i == k - 1) p.last_state[rrow] = x;                 // t = L - 1
      if ((i == 0 && t0 == 0) || i == k) p.aux[rrow] = 0.f;   // one chunk per row: it starts from 0
    }
  }
  store_run_stream(static_cast<OutT*>(p.out) + base + e0, nv, y);
}

#define CK(x)                                                                  \
  do {                                                                         \
    cudaError_t e_ = (x);                                                      \
    if (e_ != cudaSuccess) {                                                   \
      std::printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
      std::exit(1);                                                            \
    }                                                                          \
  } while (0)

__device__ float hash01(uint64_t i, uint32_t seed) {
  uint64_t x = i * 0x9E3779B97F4A7C15ull + seed * 0xD1B54A32D192ED03ull;
  x ^= x >> 31; x *= 0xBF58476D1CE4E5B9ull; x ^= x >> 27; x *= 0x94D049BB133111EBull; x ^= x >> 31;
  return float(x >> 40) * (1.f / 16777216.f);
}
template <typename T>
__global__ void fill(T* p, int64_t n, float lo, float hi, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = T(lo + (hi - lo) * hash01(uint64_t(i), seed));
}
template <typename T>
void rand_fill(T* p, int64_t n, float lo, float hi, uint32_t seed) {
  fill<T><<<1024, 256>>>(p, n, lo, hi, seed);
  CK(cudaGetLastError());
}

template <typename T>
float max_diff(const T* a, const T* b, int64_t n, float* scale) {
  std::vector<T> ha(n), hb(n);
  CK(cudaMemcpy(ha.data(), a, n * sizeof(T), cudaMemcpyDeviceToHost));
  CK(cudaMemcpy(hb.data(), b, n * sizeof(T), cudaMemcpyDeviceToHost));
  float m = 0.f, s = 0.f;
  for (int64_t i = 0; i < n; ++i) {
    const float x = float(ha[i]), y = float(hb[i]);
    if (!(std::fabs(x - y) <= m)) m = std::isnan(x - y) ? INFINITY : std::max(m, std::fabs(x - y));
    s = std::max(s, std::fabs(y));
  }
  if (scale) *scale = s;
  return m;
}

template <typename F>
float time_ms(F&& f) {
  cudaEvent_t e0, e1;
  CK(cudaEventCreate(&e0));
  CK(cudaEventCreate(&e1));
  for (int i = 0; i < 3; ++i) f();
  std::vector<float> t;
  for (int i = 0; i < 20; ++i) {
    CK(cudaEventRecord(e0));
    f();
    CK(cudaEventRecord(e1));
    CK(cudaEventSynchronize(e1));
    float ms;
    CK(cudaEventElapsedTime(&ms, e0, e1));
    t.push_back(ms);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void run_stage(int64_t batch, int64_t KD, int64_t L, int sms) {
  const int K = 4, N = 1;
  const int64_t n = batch * KD * L, nbc = batch * K * N * L, nch = num_chunks(L);
  __half *u, *dl, *B, *C, *du, *ddl, *dB, *dC, *du2, *ddl2, *dB2, *dC2;
  float *A, *D, *bias, *out, *out2, *aux, *aux2, *last, *last2, *dout, *dA, *dA2, *dD, *dD2, *dbias, *dbias2;
  CK(cudaMalloc(&u, n * 2)); CK(cudaMalloc(&dl, n * 2)); CK(cudaMalloc(&B, nbc * 2)); CK(cudaMalloc(&C, nbc * 2));
  CK(cudaMalloc(&du, n * 2)); CK(cudaMalloc(&ddl, n * 2)); CK(cudaMalloc(&dB, nbc * 2)); CK(cudaMalloc(&dC, nbc * 2));
  CK(cudaMalloc(&du2, n * 2)); CK(cudaMalloc(&ddl2, n * 2)); CK(cudaMalloc(&dB2, nbc * 2)); CK(cudaMalloc(&dC2, nbc * 2));
  CK(cudaMalloc(&A, KD * 4)); CK(cudaMalloc(&D, KD * 4)); CK(cudaMalloc(&bias, KD * 4));
  CK(cudaMalloc(&out, n * 4)); CK(cudaMalloc(&out2, n * 4)); CK(cudaMalloc(&dout, n * 4));
  CK(cudaMalloc(&aux, batch * KD * nch * 4)); CK(cudaMalloc(&aux2, batch * KD * nch * 4));
  CK(cudaMalloc(&last, batch * KD * 4)); CK(cudaMalloc(&last2, batch * KD * 4));
  CK(cudaMalloc(&dA, KD * 4)); CK(cudaMalloc(&dA2, KD * 4)); CK(cudaMalloc(&dD, KD * 4)); CK(cudaMalloc(&dD2, KD * 4));
  CK(cudaMalloc(&dbias, KD * 4)); CK(cudaMalloc(&dbias2, KD * 4));
  rand_fill(u, n, -1.f, 1.f, 1); rand_fill(dl, n, -1.f, 1.f, 2);
  rand_fill(B, nbc, -1.f, 1.f, 3); rand_fill(C, nbc, -1.f, 1.f, 4);
  rand_fill(A, KD, -2.f, -0.5f, 5); rand_fill(D, KD, 0.5f, 1.5f, 6); rand_fill(bias, KD, -5.f, -2.f, 7);
  rand_fill(dout, n, -1.f, 1.f, 8);

  FwdParams f;
  f.u = u; f.delta = dl; f.A = A; f.B = B; f.C = C; f.D = D; f.delta_bias = bias;
  f.out = out; f.last_state = last; f.aux = aux;
  f.batch = batch; f.KD = KD; f.L = L; f.G = KD / K; f.N = N; f.K = K; f.lpr = lanes_per_row(L);
  f.softplus = true; f.dtype = kF16; f.out_dtype = kF32;
  FwdParams f2 = f;
  f2.out = out2; f2.last_state = last2; f2.aux = aux2;
  const int64_t per_block = int64_t(kFwdWarps) * (32 / f.lpr);
  const unsigned fblocks = unsigned((batch * KD + per_block - 1) / per_block);
  auto fwd_new = [&] { CK(cudaError_t(launch_fwd(f, 0) ? cudaErrorUnknown : cudaSuccess)); };
  auto fwd_old = [&] { fwd_kernel<__half, float><<<fblocks, kFwdWarps * 32>>>(f2); };
  // the flat prototype writes into f2's buffers after the n1/generic comparison below
  FwdParams f3 = f2;
  f3.kd_div = FastDivmod(uint32_t(KD));
  f3.g_div = FastDivmod(uint32_t(KD / K));
  const int R = L <= kChunk && L >= kItems ? flat_rows_per_block(int(L)) : 0;
  auto fwd_flat = [&] {
    fwd_flat_n1<__half, float><<<unsigned((batch * KD + R - 1) / R), kFlatWarps * 32>>>(f3, R, FastDivmod(uint32_t(L)));
  };

  const int S = bwd_splits(batch, K, KD / K, N, L, sms);
  float* acc;
  float* part;
  CK(cudaMalloc(&acc, 2 * int64_t(S) * nbc * 4));
  CK(cudaMalloc(&part, batch * KD * (N + 2) * 4));
  BwdParams bp;
  bp.u = u; bp.delta = dl; bp.A = A; bp.B = B; bp.C = C; bp.D = D; bp.delta_bias = bias; bp.dout = dout; bp.aux = aux;
  bp.du = du; bp.ddelta = ddl; bp.dA = dA; bp.dB = dB; bp.dC = dC; bp.dD = dD; bp.ddelta_bias = dbias;
  bp.accB = acc; bp.accC = acc + int64_t(S) * nbc;
  bp.partA = part; bp.partD = part + batch * KD * N; bp.partBias = part + batch * KD * (N + 1);
  bp.batch = batch; bp.KD = KD; bp.L = L; bp.G = KD / K; bp.N = N; bp.K = K; bp.S = S; bp.lpr = f.lpr;
  bp.softplus = true; bp.dtype = kF16; bp.dout_dtype = kF32;
  BwdParams bp2 = bp;
  bp2.du = du2; bp2.ddelta = ddl2; bp2.dA = dA2; bp2.dB = dB2; bp2.dC = dC2; bp2.dD = dD2; bp2.ddelta_bias = dbias2;
  const unsigned bblocks = unsigned(batch * K * S);
  auto finalize = [&](const BwdParams& q) {
    finalize_bc_kernel<__half><<<4096, 256>>>(q.accB, q.accC, static_cast<__half*>(q.dB), static_cast<__half*>(q.dC), nbc, q.S);
    finalize_small_kernel<<<unsigned((KD + 31) / 32), dim3(32, kFinRows)>>>(q);
  };
  auto bwd_new = [&] { bwd_n1_kernel<__half, float><<<bblocks, kBwdWarps * 32>>>(bp); finalize(bp); };
  auto bwd_main = [&] { bwd_n1_kernel<__half, float><<<bblocks, kBwdWarps * 32>>>(bp); };
  auto bwd_fin = [&] { finalize(bp); };
  auto bwd_old = [&] { bwd_kernel<__half, float><<<bblocks, kBwdWarps * 32>>>(bp2); finalize(bp2); };

  fwd_new(); fwd_old(); bwd_new(); bwd_old();
  CK(cudaDeviceSynchronize());
  float sc;
  const float e_out = max_diff(out, out2, n, &sc);
  const float e_aux = max_diff(aux, aux2, batch * KD * nch, nullptr);
  const float e_last = max_diff(last, last2, batch * KD, nullptr);
  const float e_du = max_diff(du, du2, n, nullptr), e_dd = max_diff(ddl, ddl2, n, nullptr);
  const float e_dB = max_diff(dB, dB2, nbc, nullptr), e_dC = max_diff(dC, dC2, nbc, nullptr);
  float sA;
  const float e_dA = max_diff(dA, dA2, KD, &sA), e_dD = max_diff(dD, dD2, KD, nullptr);
  const float e_db = max_diff(dbias, dbias2, KD, nullptr);

  const double fbytes = double(n) * (2 + 2 + 4) + double(nbc) * 4;
  const double bbytes = double(n) * (2 + 2 + 4 + 2 + 2) + double(nbc) * 8;
  const float tfn = time_ms(fwd_new), tfo = time_ms(fwd_old), tbn = time_ms(bwd_new), tbo = time_ms(bwd_old);
  std::printf("B%lld KD%lld L%lld  fwd n1 %.3f ms (%.0f GB/s)  generic %.3f ms | bwd n1 %.3f ms (%.0f GB/s)  generic %.3f ms (S=%d)\n",
              (long long)batch, (long long)KD, (long long)L, tfn, fbytes / tfn * 1e-6, tfo, tbn, bbytes / tbn * 1e-6, tbo, S);
  if (R > 0) {
    fwd_flat();
    CK(cudaDeviceSynchronize());
    CK(cudaGetLastError());
    std::printf("   fwd flat prototype (R=%d rows per block): %.3f ms; max|flat - n1|: out %.2e last %.2e aux %.2e\n", R,
                time_ms(fwd_flat), max_diff(out2, out, n, nullptr), max_diff(last2, last, batch * KD, nullptr),
                max_diff(aux2, aux, batch * KD * nch, nullptr));
  }
  std::printf("   bwd n1 main kernel %.3f ms, finalize kernels %.3f ms\n", time_ms(bwd_main), time_ms(bwd_fin));
  std::printf("   max|n1 - generic|: out %.2e (max|out| %.2e) aux %.2e last %.2e du %.2e ddelta %.2e dB %.2e dC %.2e dA %.2e (max %.2e) dD %.2e dbias %.2e\n",
              e_out, sc, e_aux, e_last, e_du, e_dd, e_dB, e_dC, e_dA, sA, e_dD, e_db);
  void* ptrs[] = {u, dl, B, C, du, ddl, dB, dC, du2, ddl2, dB2, dC2, A, D, bias, out, out2, dout, aux, aux2,
                  last, last2, dA, dA2, dD, dD2, dbias, dbias2, acc, part};
  for (void* q : ptrs) CK(cudaFree(q));
}


// ---- prototype under evaluation: generic-N forward that advances two states per step --------------
// The extension's generic forward (N > 1) walks the states one at a time, each a dependent chain
// (exp2, an 8-step local scan, 5 shuffle rounds, an 8-step second pass) hidden only by 16 warps per
// SM; it ran at mamba_ssm's speed for N = 16 (12.3 vs 12.1 ms on VMamba-vanilla-T stage 1, slower
// on stages 2-3). Here each iteration advances states n and n + 1 as two independent chains, so
// each warp has twice the work in flight. Same arithmetic per state: outputs match fwd_kernel's up
// to the order of the y sums.
template <typename T, typename OutT>
__global__ void __launch_bounds__(kFwdWarps * 32, 4) fwd_nx2(const FwdParams p) {
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int lpr = p.lpr, R = 32 / lpr;
  const int seg = lane / lpr, sl = lane - seg * lpr;
  const int64_t rows = p.batch * p.KD;
  const int64_t row_raw = (int64_t(blockIdx.x) * kFwdWarps + warp) * R + seg;
  const bool valid = seg < R && row_raw < rows;
  const int64_t row = valid ? row_raw : 0;
  const int64_t b = row / p.KD, d = row - b * p.KD, g = d / p.G;
  const int64_t L = p.L;
  const int N = p.N;
  const T* __restrict__ u = static_cast<const T*>(p.u) + row * L;
  const T* __restrict__ dl = static_cast<const T*>(p.delta) + row * L;
  const T* __restrict__ Bp = static_cast<const T*>(p.B) + (b * p.K + g) * N * L;
  const T* __restrict__ Cp = static_cast<const T*>(p.C) + (b * p.K + g) * N * L;
  OutT* __restrict__ out = static_cast<OutT*>(p.out) + row * L;
  const float* __restrict__ A = p.A + d * N;
  const float Dv = p.D ? p.D[d] : 0.f;
  const float bias = p.delta_bias ? p.delta_bias[d] : 0.f;
  const int64_t nchunks = num_chunks(L);
  float* __restrict__ aux = p.aux + row * nchunks * N;
  const int last_lane = min(seg * lpr + lpr - 1, 31);
  float carry0 = 0.f, carry1 = 0.f;  // lpr == 32: state n lives in lane n % 32, register n / 32

  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t t0 = c * kChunk + int64_t(sl) * kItems;
    const int nv = valid ? run_len(L, t0) : 0;
    const bool has_next = c + 1 < nchunks;
    Run<T> ru, rd;
    ru.load(u + t0, nv, true);
    rd.load(dl + t0, nv, true);
    float dtu[kItems], dt[kItems], y[kItems];
#pragma unroll
    for (int i = 0; i < kItems; ++i) {
      const float uv = ru[i];
      const float v = rd[i] + bias;
      dt[i] = i < nv ? (p.softplus ? softplus20(v) : v) : 0.f;
      dtu[i] = dt[i] * uv;
      y[i] = Dv * uv;
    }
#pragma unroll 1
    for (int n = 0; n < N; n += 2) {
      const bool two = n + 1 < N;
      Run<T> B0, C0, B1, C1;
      B0.load(Bp + int64_t(n) * L + t0, nv, false);
      C0.load(Cp + int64_t(n) * L + t0, nv, false);
      B1.load(Bp + int64_t(two ? n + 1 : n) * L + t0, two ? nv : 0, false);
      C1.load(Cp + int64_t(two ? n + 1 : n) * L + t0, two ? nv : 0, false);
      const float A0 = __ldg(A + n) * kLog2e, A1 = two ? __ldg(A + n + 1) * kLog2e : 0.f;
      float a0[kItems], b0[kItems], a1[kItems], b1[kItems];
      float ra0 = 1.f, rb0 = 0.f, ra1 = 1.f, rb1 = 0.f;
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        a0[i] = exp2f(dt[i] * A0);
        a1[i] = exp2f(dt[i] * A1);
        b0[i] = dtu[i] * B0[i];
        b1[i] = dtu[i] * B1[i];
        ra0 *= a0[i];
        ra1 *= a1[i];
        rb0 = fmaf(a0[i], rb0, b0[i]);
        rb1 = fmaf(a1[i], rb1, b1[i]);
      }
#pragma unroll
      for (int off = 1; off < 32; off <<= 1) {
        const float pa0 = __shfl_up_sync(kFull, ra0, off), pb0 = __shfl_up_sync(kFull, rb0, off);
        const float pa1 = __shfl_up_sync(kFull, ra1, off), pb1 = __shfl_up_sync(kFull, rb1, off);
        if (sl >= off) {
          rb0 = fmaf(ra0, pb0, rb0);
          ra0 *= pa0;
          rb1 = fmaf(ra1, pb1, rb1);
          ra1 *= pa1;
        }
      }
      float ea0 = __shfl_up_sync(kFull, ra0, 1), eb0 = __shfl_up_sync(kFull, rb0, 1);
      float ea1 = __shfl_up_sync(kFull, ra1, 1), eb1 = __shfl_up_sync(kFull, rb1, 1);
      if (sl == 0) { ea0 = ea1 = 1.f; eb0 = eb1 = 0.f; }
      const float cin0 = lpr == 32 ? get_dist(carry0, carry1, n) : 0.f;
      const float cin1 = lpr == 32 && two ? get_dist(carry0, carry1, n + 1) : 0.f;
      const float ta0 = __shfl_sync(kFull, ra0, last_lane), tb0 = __shfl_sync(kFull, rb0, last_lane);
      const float ta1 = __shfl_sync(kFull, ra1, last_lane), tb1 = __shfl_sync(kFull, rb1, last_lane);
      float x0 = fmaf(ea0, cin0, eb0), x1 = fmaf(ea1, cin1, eb1);
#pragma unroll
      for (int i = 0; i < kItems; ++i) {
        x0 = fmaf(a0[i], x0, b0[i]);
        x1 = fmaf(a1[i], x1, b1[i]);
        y[i] = fmaf(C0[i], x0, fmaf(C1[i], x1, y[i]));
      }
      const float nc0 = fmaf(ta0, cin0, tb0), nc1 = fmaf(ta1, cin1, tb1);
      if (valid && sl == 0) {
        aux[c * N + n] = cin0;
        if (!has_next) p.last_state[row * N + n] = nc0;
        if (two) {
          aux[c * N + n + 1] = cin1;
          if (!has_next) p.last_state[row * N + n + 1] = nc1;
        }
      }
      if (lane == (n & 31)) {
        if (n < 32) carry0 = nc0; else carry1 = nc0;
      }
      if (two && lane == ((n + 1) & 31)) {
        if (n + 1 < 32) carry0 = nc1; else carry1 = nc1;
      }
    }
    store_run_stream(out + t0, nv, y);
  }
}

// vanilla (d_state = 16) stage shapes: the generic kernels and the two-states prototype
void run_stage_n(int64_t batch, int64_t KD, int64_t L, int N) {
  const int K = 4;
  const int64_t n = batch * KD * L, nbc = batch * K * N * L, nch = num_chunks(L);
  __half *u, *dl, *B, *C;
  float *A, *D, *bias, *out, *out2, *aux, *aux2, *last, *last2;
  CK(cudaMalloc(&u, n * 2)); CK(cudaMalloc(&dl, n * 2)); CK(cudaMalloc(&B, nbc * 2)); CK(cudaMalloc(&C, nbc * 2));
  CK(cudaMalloc(&A, KD * N * 4)); CK(cudaMalloc(&D, KD * 4)); CK(cudaMalloc(&bias, KD * 4));
  CK(cudaMalloc(&out, n * 4)); CK(cudaMalloc(&out2, n * 4));
  CK(cudaMalloc(&aux, batch * KD * nch * N * 4)); CK(cudaMalloc(&aux2, batch * KD * nch * N * 4));
  CK(cudaMalloc(&last, batch * KD * N * 4)); CK(cudaMalloc(&last2, batch * KD * N * 4));
  rand_fill(u, n, -1.f, 1.f, 1); rand_fill(dl, n, -1.f, 1.f, 2);
  rand_fill(B, nbc, -1.f, 1.f, 3); rand_fill(C, nbc, -1.f, 1.f, 4);
  rand_fill(A, KD * N, -2.f, -0.5f, 5); rand_fill(D, KD, 0.5f, 1.5f, 6); rand_fill(bias, KD, -5.f, -2.f, 7);
  FwdParams f;
  f.u = u; f.delta = dl; f.A = A; f.B = B; f.C = C; f.D = D; f.delta_bias = bias;
  f.out = out; f.last_state = last; f.aux = aux;
  f.batch = batch; f.KD = KD; f.L = L; f.G = KD / K; f.N = N; f.K = K; f.lpr = lanes_per_row(L);
  f.softplus = true; f.dtype = kF16; f.out_dtype = kF32;
  FwdParams f2 = f;
  f2.out = out2; f2.last_state = last2; f2.aux = aux2;
  const int64_t per_block = int64_t(kFwdWarps) * (32 / f.lpr);
  const unsigned blocks = unsigned((batch * KD + per_block - 1) / per_block);
  auto gen = [&] { fwd_kernel<__half, float><<<blocks, kFwdWarps * 32>>>(f); };
  auto x2 = [&] { fwd_nx2<__half, float><<<blocks, kFwdWarps * 32>>>(f2); };
  gen(); x2();
  CK(cudaDeviceSynchronize());
  CK(cudaGetLastError());
  float sc;
  const float e_out = max_diff(out2, out, n, &sc);
  const float e_aux = max_diff(aux2, aux, batch * KD * nch * N, nullptr);
  const float e_last = max_diff(last2, last, batch * KD * N, nullptr);
  std::printf("B%lld KD%lld L%lld N%d  fwd generic %.3f ms | two-states prototype %.3f ms; max|x2 - generic|: out %.2e "
              "(max|out| %.2e) aux %.2e last %.2e\n", (long long)batch, (long long)KD, (long long)L, N, time_ms(gen),
              time_ms(x2), e_out, sc, e_aux, e_last);
  void* ptrs[] = {u, dl, B, C, A, D, bias, out, out2, aux, aux2, last, last2};
  for (void* q : ptrs) CK(cudaFree(q));
}

// copy bandwidth of this card, for the GB/s above
__global__ void copy_kernel(const float4* __restrict__ a, float4* __restrict__ b, int64_t n) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) b[i] = a[i];
}

int main(int argc, char** argv) {
  const int64_t batch = argc > 1 ? std::atoll(argv[1]) : 128;
  int sms = 0;
  CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
  {
    const int64_t n4 = (int64_t(1) << 30) / 16;
    float4 *a, *b;
    CK(cudaMalloc(&a, n4 * 16)); CK(cudaMalloc(&b, n4 * 16));
    CK(cudaMemset(a, 1, n4 * 16));
    const float ms = time_ms([&] { copy_kernel<<<sms * 8, 512>>>(a, b, n4); });
    std::printf("copy 1 GiB: %.3f ms = %.0f GB/s; fwd1 min blocks %d, bwd1 min blocks %d\n", ms, 2.0 * n4 * 16 / ms * 1e-6,
                VMAMBA_SCAN_FWD1_MIN_BLOCKS, VMAMBA_SCAN_BWD1_MIN_BLOCKS);
    CK(cudaFree(a)); CK(cudaFree(b));
  }
  const int64_t shapes[4][2] = {{384, 3136}, {768, 784}, {1536, 196}, {3072, 49}};
  const int only = argc > 2 ? std::atoi(argv[2]) : -1;  // run one stage only (for profilers); 4..7: vanilla
  for (int i = 0; i < 4; ++i)
    if (only < 0 || only == i) run_stage(batch, shapes[i][0], shapes[i][1], sms);
  for (int i = 0; i < 4; ++i)  // VMamba-vanilla-T: d_inner doubles (ssm_ratio 2), d_state 16
    if (only < 0 || only == 4 + i) run_stage_n(batch, 2 * shapes[i][0], shapes[i][1], 16);
  return 0;
}
