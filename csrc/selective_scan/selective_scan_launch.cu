// Host-side dispatch of the selective scan: kernel choice helpers and the dtype switch into the
// per-dtype translation units (selective_scan_<direction>_<dtype>.cu).
#include "selective_scan_kernels.cuh"

namespace vmamba {
namespace scan {

bool use_seq(int N, int64_t rows, int64_t seq_min_rows) { return N > 1 && N <= 16 && rows >= seq_min_rows; }

int64_t bwd_rows_per_round(int64_t L, int N, bool seq) {
  if (seq) return N <= 8 ? seq_bwd_rows<8>() : seq_bwd_rows<16>();
  return int64_t(kBwdWarps) * (32 / lanes_per_row(L));
}

int bwd_splits(int64_t batch, int K, int64_t G, int N, int64_t L, int num_sms, bool seq) {
  const int64_t base = batch * K;
  const int64_t per_round = bwd_rows_per_round(L, N, seq);
  const int64_t rounds = (G + per_round - 1) / per_round;
  // blocks to fill the GPU: 8 of bwd_kernel's 256 threads, 12 of the 64-thread bwd_seq_kernel per SM
  const int64_t target = int64_t(num_sms) * (seq ? 12 : 8);
  int64_t S = std::max<int64_t>(1, std::min<int64_t>(rounds, (target + base - 1) / base));
  const int64_t per_split = base * N * L * 8;  // bytes of accB + accC per split
  while (S > 1 && S * per_split > (int64_t(512) << 20)) --S;
  return int(S);
}

const char* launch_fwd(const FwdParams& p, cudaStream_t stream) {
  if (p.batch * p.KD == 0) return nullptr;
  const bool ok_out = p.out_dtype == kF32 || p.out_dtype == p.dtype;
  if (!ok_out) return "unsupported (input dtype, out_dtype) combination";
  switch (p.dtype) {
    case kF32: fwd_f32(p, stream); break;
    case kF16: fwd_f16(p, stream); break;
    case kBF16: fwd_bf16(p, stream); break;
    default: return "unsupported input dtype";
  }
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

const char* launch_bwd(const BwdParams& p, cudaStream_t stream) {
  if (p.KD == 0) return nullptr;
  const bool ok_dout = p.dout_dtype == kF32 || p.dout_dtype == p.dtype;
  if (!ok_dout) return "unsupported (input dtype, dout dtype) combination";
  switch (p.dtype) {
    case kF32: bwd_f32(p, stream); break;
    case kF16: bwd_f16(p, stream); break;
    case kBF16: bwd_bf16(p, stream); break;
    default: return "unsupported input dtype";
  }
  const cudaError_t e = cudaGetLastError();
  return e == cudaSuccess ? nullptr : cudaGetErrorString(e);
}

}  // namespace scan
}  // namespace vmamba
