// torch-facing side of the selective scan: checks, allocation, stream/device, registration.
//   vmamba_cuda::selective_scan_fwd(u, delta, A, B, C, D?, delta_bias?, delta_softplus, out_dtype)
//       -> (out, last_state, aux)
//   vmamba_cuda::selective_scan_bwd(u, delta, A, B, C, D?, delta_bias?, delta_softplus, dout, aux)
//       -> (du, ddelta, dA, dB, dC, dD, ddelta_bias)   (dD / ddelta_bias empty when D / bias absent)
// aux = fp32 (batch, KD, ceil(L / kChunk), N): the state entering each kChunk-step chunk (Python reads
// kChunk from build_info's scan_chunk, csrc/module.cpp, to declare the same shape). The backward is
// deterministic.
#include <cuda_runtime_api.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <tuple>

#include "../common/alloc.h"
#include "../common/common.h"
#include "../common/knobs.h"
#include "../ops.h"
#include "selective_scan.h"

namespace vmamba {
namespace scan {
namespace {

int code_of(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return kF32;
    case at::kHalf: return kF16;
    default: return kBF16;
  }
}

struct Dims {
  int64_t batch, KD, L, N, K;
};

void check_contig(const at::Tensor& t, const char* name) {
  VMAMBA_CHECK(t.is_contiguous(), name, "must be contiguous (the raw kernel contract), got strides ", t.strides());
}

Dims check_inputs(const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B,
                  const at::Tensor& C, const c10::optional<at::Tensor>& D,
                  const c10::optional<at::Tensor>& delta_bias) {
  VMAMBA_CHECK_CUDA(u, "u");
  VMAMBA_CHECK_DIM(u, "u", 3);
  VMAMBA_CHECK_FLOAT_DTYPE(u, "u");
  check_contig(u, "u");
  Dims dm{u.size(0), u.size(1), u.size(2), 0, 0};
  VMAMBA_CHECK_SAME_DEVICE(delta, u, "delta", "u");
  VMAMBA_CHECK(delta.sizes() == u.sizes(), "delta", "must have u's shape (batch, KD, L) = ", u.sizes(), ", got ", delta.sizes());
  VMAMBA_CHECK(delta.scalar_type() == u.scalar_type(), "delta", "must have u's dtype ", u.scalar_type(), ", got ", delta.scalar_type());
  check_contig(delta, "delta");
  VMAMBA_CHECK_SAME_DEVICE(A, u, "A", "u");
  VMAMBA_CHECK_DIM(A, "A", 2);
  VMAMBA_CHECK(A.scalar_type() == at::kFloat, "A", "must be float32, got ", A.scalar_type());
  VMAMBA_CHECK(A.size(0) == dm.KD, "A", "must be (KD, N) with KD = ", dm.KD, ", got ", A.sizes());
  check_contig(A, "A");
  dm.N = A.size(1);
  VMAMBA_CHECK(dm.N >= 1 && dm.N <= kMaxDState, "A", "d_state N = A.size(1) must be in 1..", kMaxDState, ", got ", dm.N);
  const at::Tensor* bc[2] = {&B, &C};
  const char* names[2] = {"B", "C"};
  for (int i = 0; i < 2; ++i) {
    const at::Tensor& t = *bc[i];
    VMAMBA_CHECK_SAME_DEVICE(t, u, names[i], "u");
    VMAMBA_CHECK_DIM(t, names[i], 4);
    VMAMBA_CHECK(t.scalar_type() == u.scalar_type(), names[i], "must have u's dtype ", u.scalar_type(), ", got ", t.scalar_type());
    VMAMBA_CHECK(t.size(0) == dm.batch && t.size(2) == dm.N && t.size(3) == dm.L, names[i],
                 "must be (batch, K, N, L) = (", dm.batch, ", K, ", dm.N, ", ", dm.L, "), got ", t.sizes());
    // any batch and group strides (the x projection's output is read in place), dense (N, L) planes
    VMAMBA_CHECK((dm.N == 1 || t.stride(2) == dm.L) && (dm.L <= 1 || t.stride(3) == 1), names[i],
                 "must have dense (N, L) planes (strides (..., L, 1) = (..., ", dm.L, ", 1)), got strides ", t.strides());
  }
  dm.K = B.size(1);
  VMAMBA_CHECK(C.size(1) == dm.K, "C", "must have as many groups as B (", dm.K, "), got ", C.size(1));
  VMAMBA_CHECK(dm.batch <= 1 || C.stride(0) == B.stride(0), "C", "must have B's batch stride ", B.stride(0),
               " (the kernels address both with one offset), got ", C.stride(0));
  VMAMBA_CHECK(dm.K <= 1 || C.stride(1) == B.stride(1), "C", "must have B's group stride ", B.stride(1),
               " (the kernels address both with one offset), got ", C.stride(1));
  VMAMBA_CHECK(dm.K >= 1 && dm.KD % dm.K == 0, "B", "group count K = ", dm.K, " must divide KD = ", dm.KD);
  const c10::optional<at::Tensor>* opt[2] = {&D, &delta_bias};
  const char* onames[2] = {"D", "delta_bias"};
  for (int i = 0; i < 2; ++i) {
    if (!opt[i]->has_value()) continue;
    const at::Tensor& t = opt[i]->value();
    VMAMBA_CHECK_SAME_DEVICE(t, u, onames[i], "u");
    VMAMBA_CHECK(t.dim() == 1 && t.size(0) == dm.KD, onames[i], "must be (KD,) = (", dm.KD, ",), got ", t.sizes());
    VMAMBA_CHECK(t.scalar_type() == at::kFloat, onames[i], "must be float32, got ", t.scalar_type());
    check_contig(t, onames[i]);
  }
  return dm;
}

// Debug/test knobs (../common/knobs.h: from the environment at first use, or set through an op):
//   VMAMBA_SCAN_POISON=1        fill every output and scratch buffer with NaN before the kernels run,
//                               so an element a kernel forgets to write shows up in the tests
//   VMAMBA_SCAN_SEQ_MIN_ROWS=R  rows (batch * KD) from which 1 < d_state <= 16 takes the row-per-thread
//                               forward and backward (default kSeqMinRows); 0 forces it, a huge value forces the
//                               warp-per-row kernel (tests run both)
//   VMAMBA_SCAN_BWD_SPLITS=S    force the backward's channel split count (tests use it to exercise
//                               several channel rounds per block)
//   VMAMBA_SCAN_PACKED_ROWS=R   rows per warp of the lane-packed d_state = 1 forward (L <= 256;
//                               default: spread over one wave of resident warps). Tests force small
//                               values so that rows cross chunk and warp boundaries on small inputs.
int packed_rows() {
  const std::string e = knob(Knob::kScanPackedRows);
  return e.empty() ? 0 : std::max(0, std::atoi(e.c_str()));
}

int64_t seq_min_rows() {
  const std::string e = knob(Knob::kScanSeqMinRows);
  return e.empty() ? kSeqMinRows : std::atoll(e.c_str());
}

bool poison_enabled() {
  return knob(Knob::kScanPoison)[0] == '1';
}

void poison(std::initializer_list<at::Tensor*> ts) {
  if (!poison_enabled()) return;
  for (at::Tensor* t : ts)
    if (t->numel() > 0) t->fill_(std::numeric_limits<double>::quiet_NaN());
}

const float* opt_ptr(const c10::optional<at::Tensor>& t) {
  return t.has_value() ? t->data_ptr<float>() : nullptr;
}

}  // namespace

// ---- entry points (csrc/ops.h) ----
std::tuple<at::Tensor, at::Tensor, at::Tensor> selective_scan_fwd(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const c10::optional<at::Tensor>& D, const c10::optional<at::Tensor>& delta_bias, bool delta_softplus,
    at::ScalarType out_dtype) {
  const Dims dm = check_inputs(u, delta, A, B, C, D, delta_bias);
  VMAMBA_CHECK(out_dtype == at::kFloat || out_dtype == u.scalar_type(), "out_dtype",
               "must be float32 or u's dtype ", u.scalar_type(), ", got ", out_dtype);
  c10::cuda::CUDAGuard guard(u.device());
  at::Tensor out = empty_on({dm.batch, dm.KD, dm.L}, out_dtype, u);
  // last and aux in one allocation: both small (N floats per row and chunk), and the graph keeps aux anyway
  auto [last, aux] = empty_shared(u, {Piece{{dm.batch, dm.KD, dm.N}, at::kFloat},
                                      Piece{{dm.batch, dm.KD, num_chunks(dm.L), dm.N}, at::kFloat}});
  poison({&out, &last, &aux});
  FwdParams p;
  p.u = u.data_ptr(); p.delta = delta.data_ptr(); p.A = A.data_ptr<float>();
  p.B = B.data_ptr(); p.C = C.data_ptr(); p.D = opt_ptr(D); p.delta_bias = opt_ptr(delta_bias);
  p.out = out.data_ptr(); p.last_state = last.data_ptr<float>(); p.aux = aux.data_ptr<float>();
  p.batch = dm.batch; p.KD = dm.KD; p.L = dm.L; p.N = int(dm.N); p.K = int(dm.K); p.G = dm.KD / dm.K;
  p.lpr = lanes_per_row(dm.L);
  p.softplus = delta_softplus; p.dtype = code_of(u.scalar_type()); p.out_dtype = code_of(out_dtype);
  p.seq_min_rows = seq_min_rows();
  p.packed_rows = packed_rows();
  p.bc_bstride = B.stride(0); p.bc_gstride = B.stride(1);
  if (dm.L == 0) last.zero_();  // no steps: the state stays 0
  if (dm.batch * dm.KD > 0) {
    VMAMBA_CHECK(dm.batch * dm.KD < (int64_t(1) << 31), "u",
                 "batch * KD = ", dm.batch * dm.KD, " rows: at most 2^31 - 1 rows per call (the kernels index rows in 32 bits)");
    const char* err = launch_fwd(p, c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(err == nullptr, ::vmamba::detail::message("vmamba_cuda::selective_scan_fwd: kernel launch failed: ", err));
  }
  return {out, last, aux};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> selective_scan_bwd(
    const at::Tensor& u, const at::Tensor& delta, const at::Tensor& A, const at::Tensor& B, const at::Tensor& C,
    const c10::optional<at::Tensor>& D, const c10::optional<at::Tensor>& delta_bias, bool delta_softplus,
    const at::Tensor& dout, const at::Tensor& aux) {
  const Dims dm = check_inputs(u, delta, A, B, C, D, delta_bias);
  VMAMBA_CHECK_SAME_DEVICE(dout, u, "dout", "u");
  VMAMBA_CHECK(dout.sizes() == u.sizes(), "dout", "must have u's shape ", u.sizes(), ", got ", dout.sizes());
  VMAMBA_CHECK(dout.scalar_type() == at::kFloat || dout.scalar_type() == u.scalar_type(), "dout",
               "dtype must be float32 or u's dtype ", u.scalar_type(), ", got ", dout.scalar_type());
  check_contig(dout, "dout");
  VMAMBA_CHECK_SAME_DEVICE(aux, u, "aux", "u");
  VMAMBA_CHECK(aux.scalar_type() == at::kFloat, "aux", "must be float32 (saved by selective_scan_fwd), got ", aux.scalar_type());
  const int64_t nch = num_chunks(dm.L);
  VMAMBA_CHECK(aux.dim() == 4 && aux.size(0) == dm.batch && aux.size(1) == dm.KD && aux.size(2) == nch && aux.size(3) == dm.N,
               "aux", "must be the (batch, KD, ceil(L/256), N) = (", dm.batch, ", ", dm.KD, ", ", nch, ", ", dm.N,
               ") tensor saved by selective_scan_fwd, got ", aux.sizes());
  check_contig(aux, "aux");
  c10::cuda::CUDAGuard guard(u.device());
  const auto f32 = at::kFloat;
  at::Tensor du = empty_on(u.sizes(), u.scalar_type(), u), ddelta = empty_on(delta.sizes(), delta.scalar_type(), u);
  at::Tensor dA = empty_on({dm.KD, dm.N}, f32, u);
  // contiguous whatever B's strides (empty_like would keep a dense permuted layout; finalize writes in order)
  at::Tensor dB = empty_on(B.sizes(), B.scalar_type(), u), dC = empty_on(C.sizes(), C.scalar_type(), u);
  at::Tensor dD = empty_on({D.has_value() ? dm.KD : 0}, f32, u);
  at::Tensor dbias = empty_on({delta_bias.has_value() ? dm.KD : 0}, f32, u);
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, u.device().index()) != cudaSuccess || sms <= 0) {
    (void)cudaGetLastError();
    sms = 132;
  }
  const bool seq = use_seq(int(dm.N), dm.batch * dm.KD, seq_min_rows());
  const std::string forced = knob(Knob::kScanBwdSplits);
  const int S = bwd_splits_or(forced.empty() ? 0 : std::atoi(forced.c_str()), dm.batch, int(dm.K), dm.KD / dm.K,
                              int(dm.N), dm.L, sms, seq);
  // the kernels' scratch, freed together on return: one allocation
  auto [acc, part] = empty_shared(u, {Piece{{2, S, dm.batch, dm.K, dm.N, dm.L}, f32},
                                      Piece{{dm.batch, dm.KD, dm.N + 2}, f32}});
  poison({&du, &ddelta, &dA, &dB, &dC, &dD, &dbias, &acc, &part});
  BwdParams p;
  p.u = u.data_ptr(); p.delta = delta.data_ptr(); p.A = A.data_ptr<float>();
  p.B = B.data_ptr(); p.C = C.data_ptr(); p.D = opt_ptr(D); p.delta_bias = opt_ptr(delta_bias);
  p.dout = dout.data_ptr(); p.aux = aux.data_ptr<float>();
  p.du = du.data_ptr(); p.ddelta = ddelta.data_ptr(); p.dA = dA.data_ptr<float>();
  p.dB = dB.data_ptr(); p.dC = dC.data_ptr();
  p.dD = D.has_value() ? dD.data_ptr<float>() : nullptr;
  p.ddelta_bias = delta_bias.has_value() ? dbias.data_ptr<float>() : nullptr;
  float* accp = acc.data_ptr<float>();
  const int64_t acc_half = int64_t(S) * dm.batch * dm.K * dm.N * dm.L;
  p.accB = accp; p.accC = accp + acc_half;
  float* partp = part.data_ptr<float>();
  const int64_t rows = dm.batch * dm.KD;
  p.partA = partp; p.partD = partp + rows * dm.N; p.partBias = partp + rows * (dm.N + 1);
  p.batch = dm.batch; p.KD = dm.KD; p.L = dm.L; p.N = int(dm.N); p.K = int(dm.K); p.G = dm.KD / dm.K; p.S = S;
  p.lpr = lanes_per_row(dm.L);
  p.seq = seq;
  p.softplus = delta_softplus; p.dtype = code_of(u.scalar_type()); p.dout_dtype = code_of(dout.scalar_type());
  p.bc_bstride = B.stride(0); p.bc_gstride = B.stride(1);
  VMAMBA_CHECK(dm.batch * dm.K * S < (int64_t(1) << 31), "u", "batch * K too large for one launch");
  const char* err = launch_bwd(p, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, ::vmamba::detail::message("vmamba_cuda::selective_scan_bwd: kernel launch failed: ", err));
  return {du, ddelta, dA, dB, dC, dD, dbias};
}

}  // namespace scan
}  // namespace vmamba

TORCH_LIBRARY_FRAGMENT(vmamba_cuda, m) {
  m.def("selective_scan_fwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? delta_bias, "
        "bool delta_softplus, ScalarType out_dtype) -> (Tensor, Tensor, Tensor)");
  m.def("selective_scan_bwd(Tensor u, Tensor delta, Tensor A, Tensor B, Tensor C, Tensor? D, Tensor? delta_bias, "
        "bool delta_softplus, Tensor dout, Tensor aux) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(vmamba_cuda, CUDA, m) {
  m.impl("selective_scan_fwd", &vmamba::scan::selective_scan_fwd);
  m.impl("selective_scan_bwd", &vmamba::scan::selective_scan_bwd);
}
