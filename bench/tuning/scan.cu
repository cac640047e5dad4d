// Standalone tuning harness for the CUDA selective scan (csrc/selective_scan): times the d_state = 1
// kernels against the generic ones on VMamba-T's stage shapes (fp16 in, fp32 out, batch 128) and
// checks that both give the same results; then, on VMamba-vanilla-T's d_state = 16 shapes, the
// warp-per-row forward against the row-per-thread one (stage argument 8: over batch 1, 2, 4, ..., to
// place kSeqMinRows); stage argument 9 / 10: VMamba-S / -B's d_state 1 stages, 11..14 one stage of -B.
// On one-chunk rows it also times bwd_n1_kernel's kOne instance against the multi-chunk one. The
// kernels' tunables are macros, so one build per variant:
//
//   nvcc -std=c++17 -O3 --use_fast_math -arch=sm_90 -Icsrc -DVMAMBA_SCAN_FWD1_MIN_BLOCKS=6 \
//        bench/tuning/scan.cu -o /tmp/tune && /tmp/tune [batch [stage]]
//
// What it measured, and the prototypes measured here and dropped (a "flat rows" d_state 1 forward, a
// forward advancing two states per step, a cp.async tile kernel, ...): reports/tuning.md, "cuda:
// selective scan".
//
// Prints one line per (stage, kernel): ms (median of 20 after 3 warm-ups) and GB/s over the bytes
// each pass must move (fwd: u, delta, B, C, out; bwd: u, delta, B, C, dout, du, ddelta, dB, dC),
// and the largest difference between the two kernels' outputs (they share the arithmetic, so the
// differences are rounding-order only). Not part of the extension build (setup.py globs csrc/ only).
#include "selective_scan/selective_scan_kernels.cuh"
// the extension's launch code and its per-dtype units, compiled into this one program
#include "selective_scan/selective_scan_launch.cu"
#include "selective_scan/selective_scan_fwd_f16.cu"
#include "selective_scan/selective_scan_bwd_f16.cu"
#include "selective_scan/selective_scan_fwd_f32.cu"
#include "selective_scan/selective_scan_bwd_f32.cu"
#include "selective_scan/selective_scan_fwd_bf16.cu"
#include "selective_scan/selective_scan_bwd_bf16.cu"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

using namespace vmamba::scan;
using vmamba::FastDivmod;

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
  f.bc_bstride = int64_t(K) * N * L; f.bc_gstride = int64_t(N) * L;  // contiguous B, C
  FwdParams f2 = f;
  f2.out = out2; f2.last_state = last2; f2.aux = aux2;
  const int64_t per_block = int64_t(kFwdWarps) * (32 / f.lpr);
  const unsigned fblocks = unsigned((batch * KD + per_block - 1) / per_block);
  auto fwd_new = [&] { CK(cudaError_t(launch_fwd(f, 0) ? cudaErrorUnknown : cudaSuccess)); };
  auto fwd_old = [&] { fwd_kernel<__half, float><<<fblocks, kFwdWarps * 32>>>(f2); };
  // fwd_n1_kernel itself (launch_fwd takes fwd_n1_packed_kernel for L <= kChunk)
  FwdParams f3 = f2;
  f3.kd_div = FastDivmod(uint32_t(KD)); f3.g_div = FastDivmod(uint32_t(KD / K));
  auto fwd_chunked = [&] { fwd_n1_kernel<__half, float><<<fblocks, kFwdWarps * 32>>>(f3); };

  const int S = bwd_splits(batch, K, KD / K, N, L, sms, false);
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
  bp.bc_bstride = f.bc_bstride; bp.bc_gstride = f.bc_gstride;
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
  if (L <= kChunk) {  // the one-chunk d_state = 1 forwards side by side: lane-packed rows, warp per row
    FwdParams f4 = f3;
    f4.out = out; f4.last_state = last; f4.aux = aux;
    const FwdLaunch pl = plan_fwd(f4, int(sizeof(__half)), int(sizeof(float)), packed_resident_warps<__half, float>());
    const int rpw = pl.rpw;
    const unsigned pblocks = unsigned(pl.grid);
    const bool pc8 = pl.piece8;
    const int opc = pl.out_piece;
    auto fwd_packed = [&] { fwd_n1_packed_kernel<__half, float><<<pblocks, kFwdWarps * 32>>>(f4, rpw, pc8, opc); };
    fwd_chunked();  // reference: out2 / last2 / aux2
    CK(cudaMemset(out, 0xff, n * 4));  // NaN: an element a kernel misses shows up in max_diff
    CK(cudaMemset(last, 0xff, batch * KD * 4));
    fwd_packed();
    CK(cudaDeviceSynchronize());
    const float e_p = max_diff(out, out2, n, nullptr), e_pl = max_diff(last, last2, batch * KD, nullptr);
    const float e_pa = max_diff(aux, aux2, batch * KD * nch, nullptr);
    const float t_p = time_ms(fwd_packed), t_c = time_ms(fwd_chunked);
    std::printf("   fwd n1: packed (%d rows/warp, pieces %d/%d) %.3f ms (%.0f GB/s) | fwd_n1_kernel %.3f ms; "
                "max|packed - fwd_n1_kernel| out %.2e last %.2e aux %.2e\n",
                rpw, int(pc8) * 8, opc, t_p, fbytes / t_p * 1e-6, t_c, e_p, e_pl, e_pa);
  }
  std::printf("   bwd n1 main kernel %.3f ms, finalize kernels %.3f ms\n", time_ms(bwd_main), time_ms(bwd_fin));
  if (L <= kChunk) {  // the one-chunk instance (kOne: dB/dC summed over the rounds, no per-round barrier)
    // against the multi-chunk instance above (bp's outputs); into bp2's buffers
    BwdParams bp3 = bp2;
    auto bwd_one = [&] { bwd_n1_kernel<__half, float, true><<<bblocks, kBwdWarps * 32>>>(bp3); finalize(bp3); };
    auto bwd_one_main = [&] { bwd_n1_kernel<__half, float, true><<<bblocks, kBwdWarps * 32>>>(bp3); };
    bwd_new();
    CK(cudaMemset(du2, 0xff, n * 2)); CK(cudaMemset(ddl2, 0xff, n * 2));
    CK(cudaMemset(dB2, 0xff, nbc * 2)); CK(cudaMemset(dC2, 0xff, nbc * 2));
    bwd_one();
    CK(cudaDeviceSynchronize());
    CK(cudaGetLastError());
    const float o_du = max_diff(du, du2, n, nullptr), o_dd = max_diff(ddl, ddl2, n, nullptr);
    float sB;
    const float o_dB = max_diff(dB, dB2, nbc, &sB), o_dC = max_diff(dC, dC2, nbc, nullptr);
    const float o_dA = max_diff(dA, dA2, KD, nullptr);
    const float tone = time_ms(bwd_one);
    std::printf("   bwd n1 one-chunk (min blocks %d) %.3f ms (%.0f GB/s), main kernel %.3f ms | "
                "max|one - n1|: du %.2e ddelta %.2e dB %.2e (max|dB| %.2e) dC %.2e dA %.2e\n",
                VMAMBA_SCAN_BWD1ONE_MIN_BLOCKS, tone, bbytes / tone * 1e-6, time_ms(bwd_one_main), o_du, o_dd, o_dB, sB,
                o_dC, o_dA);
  }
  std::printf("   max|n1 - generic|: out %.2e (max|out| %.2e) aux %.2e last %.2e du %.2e ddelta %.2e dB %.2e dC %.2e dA %.2e (max %.2e) dD %.2e dbias %.2e\n",
              e_out, sc, e_aux, e_last, e_du, e_dd, e_dB, e_dC, e_dA, sA, e_dD, e_db);
  void* ptrs[] = {u, dl, B, C, du, ddl, dB, dC, du2, ddl2, dB2, dC2, A, D, bias, out, out2, dout, aux, aux2,
                  last, last2, dA, dA2, dD, dD2, dbias, dbias2, acc, part};
  for (void* q : ptrs) CK(cudaFree(q));
}


// vanilla (d_state = 16) stage shapes: warp-per-row against row-per-thread kernels, forward and backward
void run_stage_n(int64_t batch, int64_t KD, int64_t L, int N, int sms) {
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
  f.bc_bstride = int64_t(K) * N * L; f.bc_gstride = int64_t(N) * L;  // contiguous B, C
  FwdParams f2 = f;
  f2.out = out2; f2.last_state = last2; f2.aux = aux2;
  f.seq_min_rows = int64_t(1) << 62;  // the warp-per-row kernel
  f2.seq_min_rows = 0;                // the row-per-thread kernel
  auto gen = [&] { CK(cudaError_t(launch_fwd(f, 0) ? cudaErrorUnknown : cudaSuccess)); };
  auto seq = [&] { CK(cudaError_t(launch_fwd(f2, 0) ? cudaErrorUnknown : cudaSuccess)); };
  CK(cudaMemset(out2, 0xff, n * 4));
  gen(); seq();
  CK(cudaDeviceSynchronize());
  CK(cudaGetLastError());
  float sc;
  const float e_out = max_diff(out2, out, n, &sc);
  const float e_aux = max_diff(aux2, aux, batch * KD * nch * N, nullptr);
  const float e_last = max_diff(last2, last, batch * KD * N, nullptr);
  std::printf("B%lld KD%lld L%lld N%d (%lld rows)  fwd warp-per-row %.3f ms | row-per-thread %.3f ms; max|diff|: out %.2e "
              "(max|out| %.2e) aux %.2e last %.2e\n", (long long)batch, (long long)KD, (long long)L, N,
              (long long)(batch * KD), time_ms(gen), time_ms(seq), e_out, sc, e_aux, e_last);

  // backward: both kernels from the same aux (the warp-per-row forward's)
  __half *du[2], *ddl[2], *dB[2], *dC[2];
  float *dout, *dA[2], *dD[2], *dbias[2], *acc[2], *part[2];
  int S[2];
  BwdParams bp[2];
  CK(cudaMalloc(&dout, n * 4));
  rand_fill(dout, n, -1.f, 1.f, 8);
  for (int i = 0; i < 2; ++i) {
    const bool sq = i == 1;
    S[i] = bwd_splits(batch, K, KD / K, N, L, sms, sq);
    CK(cudaMalloc(&du[i], n * 2)); CK(cudaMalloc(&ddl[i], n * 2)); CK(cudaMalloc(&dB[i], nbc * 2)); CK(cudaMalloc(&dC[i], nbc * 2));
    CK(cudaMalloc(&dA[i], KD * N * 4)); CK(cudaMalloc(&dD[i], KD * 4)); CK(cudaMalloc(&dbias[i], KD * 4));
    CK(cudaMalloc(&acc[i], 2 * int64_t(S[i]) * nbc * 4)); CK(cudaMalloc(&part[i], batch * KD * (N + 2) * 4));
    BwdParams& q = bp[i];
    q.u = u; q.delta = dl; q.A = A; q.B = B; q.C = C; q.D = D; q.delta_bias = bias; q.dout = dout; q.aux = aux;
    q.du = du[i]; q.ddelta = ddl[i]; q.dA = dA[i]; q.dB = dB[i]; q.dC = dC[i]; q.dD = dD[i]; q.ddelta_bias = dbias[i];
    q.accB = acc[i]; q.accC = acc[i] + int64_t(S[i]) * nbc;
    q.partA = part[i]; q.partD = part[i] + batch * KD * N; q.partBias = part[i] + batch * KD * (N + 1);
    q.batch = batch; q.KD = KD; q.L = L; q.G = KD / K; q.N = N; q.K = K; q.S = S[i]; q.lpr = f.lpr;
    q.softplus = true; q.seq = sq; q.dtype = kF16; q.dout_dtype = kF32;
    q.bc_bstride = f.bc_bstride; q.bc_gstride = f.bc_gstride;
  }
  auto bgen = [&] { CK(cudaError_t(launch_bwd(bp[0], 0) ? cudaErrorUnknown : cudaSuccess)); };
  auto bseq = [&] { CK(cudaError_t(launch_bwd(bp[1], 0) ? cudaErrorUnknown : cudaSuccess)); };
  bgen(); bseq();
  CK(cudaDeviceSynchronize());
  CK(cudaGetLastError());
  float sdu, sdd, sdB, sdC, sdA;
  const float edu = max_diff(du[1], du[0], n, &sdu), edd = max_diff(ddl[1], ddl[0], n, &sdd);
  const float edB = max_diff(dB[1], dB[0], nbc, &sdB), edC = max_diff(dC[1], dC[0], nbc, &sdC);
  const float edA = max_diff(dA[1], dA[0], KD * N, &sdA), edD = max_diff(dD[1], dD[0], KD, nullptr);
  const float edb = max_diff(dbias[1], dbias[0], KD, nullptr);
  std::printf("   bwd warp-per-row %.3f ms (S=%d) | row-per-thread %.3f ms (S=%d); max|diff| (max|ref|): du %.1e (%.1e) "
              "ddelta %.1e (%.1e) dB %.1e (%.1e) dC %.1e (%.1e) dA %.1e (%.1e) dD %.1e dbias %.1e\n",
              time_ms(bgen), S[0], time_ms(bseq), S[1], edu, sdu, edd, sdd, edB, sdB, edC, sdC, edA, sdA, edD, edb);
  for (int i = 0; i < 2; ++i) {
    void* qs[] = {du[i], ddl[i], dB[i], dC[i], dA[i], dD[i], dbias[i], acc[i], part[i]};
    for (void* q : qs) CK(cudaFree(q));
  }
  CK(cudaFree(dout));
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
    if (only < 0 || only == 4 + i) run_stage_n(batch, 2 * shapes[i][0], shapes[i][1], 16, sms);
  // 9 / 10: VMamba-S / -B's stages (ssm_ratio 2: KD = 4 x 2 x dims), d_state 1; 11..14: one VMamba-B stage
  const int64_t wide[2][4] = {{768, 1536, 3072, 6144}, {1024, 2048, 4096, 8192}};
  for (int m = 0; m < 2; ++m)
    for (int i = 0; i < 4; ++i)
      if (only == 9 + m || (m == 1 && only == 11 + i)) run_stage(batch, wide[m][i], shapes[i][1], sms);
  if (only == 8)  // where the row-per-thread forward starts to win (kSeqMinRows): small batches
    for (int64_t b = 1; b <= batch; b *= 2)
      for (int i = 0; i < 4; ++i) run_stage_n(b, 2 * shapes[i][0], shapes[i][1], 16, sms);
  return 0;
}
