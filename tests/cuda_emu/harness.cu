// The layer norm, depthwise conv and fused SS2D core kernel bodies of csrc/ run on the CPU by tests/cuda_emu/emu.h,
// behind a C interface for ctypes (tests/cuda_emu/__init__.py compiles this file with nvcc as host
// code into a shared library). Each entry point plans exactly as the extension does, runs the same
// typed launchers with EmuExec instead of DeviceExec, and reports the plan in `info`.
#include <cstdarg>
#include <cstdio>
#include <vector>

#include "../../csrc/dwconv/dwconv_body.cuh"
#include "../../csrc/layer_norm/layer_norm_body.cuh"
#include "../../csrc/ss2d_core/ss2d_seg_bwd_body.cuh"
#include "../../csrc/ss2d_core/ss2d_sweep_body.cuh"
#include "../../csrc/ss2d_core/ss2d_core_body.cuh"
#include "emu.h"

namespace {

void say(char* info, int len, const char* fmt, ...) __attribute__((format(printf, 3, 4)));
void say(char* info, int len, const char* fmt, ...) {
  if (info == nullptr || len <= 0) return;
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(info, size_t(len), fmt, ap);
  va_end(ap);
}

int finish(cudaError_t e, char* info, int len) {
  if (e != cudaSuccess) {
    say(info, len, "launch error %d", int(e));
    return 2;
  }
  return 0;
}

}  // namespace

extern "C" {

int emu_ln_fwd(const void* x, const void* branch, const float* scale, const float* w, const float* b, void* s, void* y,
               float* mean, float* rstd, int64_t B, int64_t C, int64_t HW, float eps, int channels_last, int x_dtype,
               int y_dtype, int branch_dtype, int max_vec, int tile, int num_sms, char* info, int info_len) {
  using namespace vmamba::ln;
  FwdParams p;
  p.x = x; p.branch = branch; p.scale = scale; p.weight = w; p.bias = b; p.s = s; p.y = y; p.mean = mean; p.rstd = rstd;
  p.B = B; p.C = C; p.HW = HW; p.eps = eps; p.channels_last = channels_last != 0; p.x_dtype = x_dtype;
  p.y_dtype = y_dtype; p.branch_dtype = branch_dtype; p.max_vec = max_vec; p.tile = tile; p.num_sms = num_sms;
  const Plan pl = make_fwd_plan(p);
  if (pl.error != nullptr) {
    say(info, info_len, "error: %s", pl.error);
    return 1;
  }
  emu::EmuExec ex;
  cudaError_t e = cudaSuccess;
  if (B * HW > 0) {
    switch (x_dtype) {
      case kF32: e = run_fwd<emu::EmuExec, float>(ex, p, pl); break;
      case kF16: e = run_fwd<emu::EmuExec, __half>(ex, p, pl); break;
      default: e = run_fwd<emu::EmuExec, __nv_bfloat16>(ex, p, pl); break;
    }
  }
  say(info, info_len, "vec=%d tpr=%d nv=%d tile=%d tiles=%d blocks=%lld smem=%zu barriers=%llu shuffles=%llu", pl.vec, pl.tpr,
      pl.nv, pl.tile, pl.tiles, (long long)pl.blocks, pl.smem, (unsigned long long)ex.block.barriers,
      (unsigned long long)ex.block.shuffles);
  return finish(e, info, info_len);
}

int emu_ln_bwd(const void* dy, const void* ds, const void* s, const float* w, const float* mean, const float* rstd,
               const float* scale, void* dx, void* dbranch, float* dweight, float* dbias, const float* bias, int64_t B,
               int64_t C, int64_t HW, int channels_last, int x_dtype, int dy_dtype, int from_y, int max_vec, int tile,
               int blocks, int num_sms, char* info, int info_len) {
  using namespace vmamba::ln;
  BwdParams p;
  p.bias = bias; p.from_y = from_y != 0;
  p.dy = dy; p.ds = ds; p.s = s; p.weight = w; p.mean = mean; p.rstd = rstd; p.scale = scale; p.dx = dx;
  p.dbranch = dbranch; p.dweight = dweight; p.dbias = dbias; p.B = B; p.C = C; p.HW = HW;
  p.channels_last = channels_last != 0; p.x_dtype = x_dtype; p.dy_dtype = dy_dtype; p.max_vec = max_vec; p.tile = tile;
  p.blocks = blocks; p.num_sms = num_sms;
  const Plan pl = make_bwd_plan(p);
  if (pl.error != nullptr) {
    say(info, info_len, "error: %s", pl.error);
    return 1;
  }
  std::vector<float> part(size_t(pl.part_rows) * size_t(C) * 2 + 1, __builtin_nanf(""));
  p.part = part.data();
  emu::EmuExec ex;
  cudaError_t e = cudaSuccess;
  if (B * HW > 0) {
    switch (x_dtype) {
      case kF32: e = run_bwd<emu::EmuExec, float>(ex, p, pl); break;
      case kF16: e = run_bwd<emu::EmuExec, __half>(ex, p, pl); break;
      default: e = run_bwd<emu::EmuExec, __nv_bfloat16>(ex, p, pl); break;
    }
  }
  if (e == cudaSuccess) e = run_finish(ex, p, pl);
  say(info, info_len, "vec=%d tpr=%d nv=%d tile=%d tiles=%d cpt=%d row_s=%d row_dy=%d blocks=%lld smem=%zu barriers=%llu "
      "shuffles=%llu", pl.vec, pl.tpr, pl.nv, pl.tile, pl.tiles, pl.cpt, pl.row_s, pl.row_dy, (long long)pl.blocks, pl.smem,
      (unsigned long long)ex.block.barriers, (unsigned long long)ex.block.shuffles);
  return finish(e, info, info_len);
}

int emu_dw(const void* x, const void* dy, const float* w, const float* b, void* out, float* dweight, float* dbias, int bwd,
           int64_t B, int64_t C, int64_t H, int64_t W, int K, int act, int channels_last, int dtype, int max_vec, int segs,
           int num_sms, char* info, int info_len) {
  using namespace vmamba::dw;
  Params p;
  p.x = x; p.dy = dy; p.weight = w; p.bias = b; p.B = B; p.C = C; p.H = H; p.W = W; p.K = K; p.act = act;
  p.channels_last = channels_last != 0; p.dtype = dtype; p.max_vec = max_vec; p.segs = segs; p.num_sms = num_sms;
  const size_t n = size_t(B * C * H * W), es = size_t(dtype_size(dtype));
  std::vector<unsigned char> dpre;
  std::vector<float> part;
  if (!bwd) {
    p.y = out;
  } else {
    p.dx = out; p.dweight = dweight; p.dbias = dbias;
    if (act != kNone) {
      dpre.assign(n * es + 16, 0xFF);
      p.dpre = dpre.data();
    }
  }
  const int mode0 = bwd ? (act != kNone ? kDpre : kBwdx) : kFwd;
  emu::EmuExec ex;
  cudaError_t e = cudaSuccess;
  for (int mode = mode0; mode <= (bwd ? int(kBwdx) : int(kFwd)); ++mode) {
    const Plan pl = make_plan(p, mode);
    if (pl.error != nullptr) {
      say(info, info_len, "error: %s", pl.error);
      return 1;
    }
    if (mode == kBwdx) {
      part.assign(size_t(pl.part_rows) * size_t(C) * size_t(K * K + 1) + 1, __builtin_nanf(""));
      p.part = part.data();
    }
    if (n > 0) {
      const int which = (p.channels_last ? 3 : 0) + dtype;
      switch (which) {
        case 0: e = run_typed<emu::EmuExec, float, false>(ex, p, pl, mode); break;
        case 1: e = run_typed<emu::EmuExec, __half, false>(ex, p, pl, mode); break;
        case 2: e = run_typed<emu::EmuExec, __nv_bfloat16, false>(ex, p, pl, mode); break;
        case 3: e = run_typed<emu::EmuExec, float, true>(ex, p, pl, mode); break;
        case 4: e = run_typed<emu::EmuExec, __half, true>(ex, p, pl, mode); break;
        default: e = run_typed<emu::EmuExec, __nv_bfloat16, true>(ex, p, pl, mode); break;
      }
    }
    if (e == cudaSuccess && mode == kBwdx) e = run_finish(ex, p, pl);
    if (e != cudaSuccess) break;
    say(info, info_len, "vec=%d R=%d threads=%d grid=%ux%u smem=%zu cvb=%d py=%d ns=%d qpb=%lld nwv=%d ni=%d P=%d tpp=%d "
        "nseg=%d segi=%d ncg=%d bpb=%d part_rows=%lld barriers=%llu", pl.vec, pl.R, pl.threads, pl.grid_x, pl.grid_y, pl.smem,
        pl.cvb, pl.py, pl.ns, (long long)pl.qpb, pl.nwv, pl.ni, pl.P, pl.tpp, pl.nseg, pl.segi, pl.ncg, pl.bpb,
        (long long)pl.part_rows,
        (unsigned long long)ex.block.barriers);
  }
  return finish(e, info, info_len);
}

// The fused SS2D core (csrc/ss2d_core/): bwd = 0 writes y into `out`; bwd = 1 writes dx into `out` and the
// other gradients. The plan (warps 4 / 8, shared or global accumulator, splits S) is the caller's, as
// ss2d_core.cpp would choose it; scratch buffers are allocated here, NaN-filled.
int emu_ss2d(int bwd, const void* x, const void* xdbl, const void* dt_w, const float* A, const float* Dp,
             const float* bias, const void* dy, void* out, float* dxdbl, float* ddt_w, float* dA, float* dD,
             float* dbias, int64_t B, int64_t D, int64_t H, int64_t W, int K, int R, int N, int mode,
             int channels_last, int softplus, int x_dtype, int xdbl_dtype, int w_dtype, int dy_dtype, int out_dtype,
             int warps, int smem_acc, int S, int seg_steps, int sweep_g, int sweep_s, int sweep_mma, char* info,
             int info_len) {
  using namespace vmamba::ss2d;
  BwdParams p;  // FwdParams' fields are Common's plus out / out_dtype
  p.x = x; p.xdbl = xdbl; p.dt_w = dt_w; p.A = A; p.Dp = Dp; p.bias = bias;
  p.batch = B; p.D = D; p.H = H; p.W = W; p.L = H * W; p.K = K; p.R = R; p.N = N; p.C = R + 2 * N;
  if (H >= 1) p.h_div = vmamba::FastDivmod(uint32_t(H));
  if (!route_kinds(mode, K, p.kinds)) {
    say(info, info_len, "error: mode %d has no %d-route form", mode, K);
    return 1;
  }
  p.channels_last = channels_last != 0; p.softplus = softplus != 0;
  p.x_dtype = x_dtype; p.xdbl_dtype = xdbl_dtype; p.w_dtype = w_dtype;
  p.warps = warps; p.ntiles = int((D + warps - 1) / warps); p.smem_acc = smem_acc != 0;
  const float nan = __builtin_nanf("");
  std::vector<float> acc(p.smem_acc ? 1 : size_t(B * D * p.L) + 1, nan);
  if (!p.smem_acc) p.acc_global = acc.data();
  emu::EmuExec ex;
  cudaError_t e;
  if (!bwd && sweep_g > 0) {
    SweepParams f;
    static_cast<Common&>(f) = static_cast<const Common&>(p);
    f.out = out; f.out_dtype = out_dtype;
    f.G = sweep_g; f.S = sweep_s; f.ngroups = int((D + sweep_g - 1) / sweep_g);
    // sweep_mma: 0 the FMA projection (the plan's default), 1 the tensor-core one (G >= 16; 16-bit xdbl, else
    // the FMA projection, as the plan's sweep_mma_for)
    f.mma = sweep_mma != 0 && sweep_mma_applies(sweep_g, xdbl_dtype);
    if (sweep_mma != 0 && sweep_g < 16) {
      say(info, info_len, "error: the tensor-core projection needs G >= 16, got %d", sweep_g);
      return 1;
    }
    f.c_div = vmamba::FastDivmod(uint32_t(p.C));
    if (p.L >= 1) f.l_div = vmamba::FastDivmod(uint32_t(p.L));
    e = run_sweep_fwd(ex, f);
    say(info, info_len, "G=%d S=%d mma=%d ngroups=%d smem=%zu barriers=%llu", f.G, f.S, int(f.mma), f.ngroups,
        sweep_smem_floats(p.L, f.G, f.S, R, K, f.mma) * sizeof(float), (unsigned long long)ex.block.barriers);
    return finish(e, info, info_len);
  }
  if (!bwd && seg_steps > 0) {
    SegParams f;
    static_cast<Common&>(f) = static_cast<const Common&>(p);
    f.out = out; f.out_dtype = out_dtype;
    seg_geometry(f, seg_steps > p.L ? int(p.L) : seg_steps);
    std::vector<float> T(size_t(B * K * f.nseg * (1 + N) * D) + 1, nan), partial(size_t(B * p.L * D) + 1, nan);
    f.T = T.data(); f.partial = partial.data();
    e = run_seg_fwd(ex, f);
    say(info, info_len, "P=%d nseg=%d G=%d ngroups=%d npass=%d smem=%zu barriers=%llu", f.P, f.nseg, f.G, f.ngroups,
        f.npass, seg_smem_floats(true, f.P, f.G, R, N) * sizeof(float), (unsigned long long)ex.block.barriers);
    return finish(e, info, info_len);
  } else if (!bwd) {
    FwdParams f;
    static_cast<Common&>(f) = static_cast<const Common&>(p);
    f.out = out; f.out_dtype = out_dtype;
    e = run_fwd(ex, f);
  } else if (seg_steps > 0) {
    SegBwdParams f;
    static_cast<Common&>(f) = static_cast<const Common&>(p);
    seg_bwd_geometry(f, seg_steps > p.L ? int(p.L) : seg_steps);
    const int64_t KD = int64_t(K) * D, rows = B * f.nseg, chunks = sum_chunks(rows);
    std::vector<float> T(size_t(B * K * f.nseg * f.tc * D) + 1, nan), partial(size_t(B * p.L * D) + 1, nan);
    std::vector<float> part_x(f.ngroups > 1 ? size_t(f.ngroups * B * p.L * K * p.C) + 1 : 1, nan);
    std::vector<float> parts(size_t(rows * KD * (N + 2 + R)) + 1, nan);
    std::vector<float> scratch(size_t(chunks * KD * (N > R ? N : R)) + 1, nan);
    f.T = T.data(); f.partial_dx = partial.data();
    f.part_xdbl = f.ngroups > 1 ? part_x.data() : dxdbl;
    f.part_A = parts.data();
    f.part_D = f.part_A + rows * KD * N;
    f.part_bias = f.part_D + rows * KD;
    f.part_w = f.part_bias + rows * KD;
    f.sum_scratch = scratch.data();
    f.dy = dy; f.dy_dtype = dy_dtype; f.dx = static_cast<float*>(out);
    e = run_seg_bwd(ex, f, dxdbl, dA, dD, dbias, ddt_w);
    say(info, info_len, "P=%d nseg=%d G=%d ngroups=%d npass=%d smem=%zu barriers=%llu shuffles=%llu", f.P, f.nseg, f.G,
        f.ngroups, f.npass, seg_bwd_smem_floats(f.P, f.G, R, N) * sizeof(float), (unsigned long long)ex.block.barriers,
        (unsigned long long)ex.block.shuffles);
    return finish(e, info, info_len);
  } else {
    const int64_t KD = int64_t(K) * D, nchunks = (p.L + kChunk - 1) / kChunk;
    p.S = S < 1 ? 1 : (S > p.ntiles ? p.ntiles : S);
    std::vector<float> aux(size_t(B * D * nchunks * N) + 1, nan);
    std::vector<float> part_x(p.S > 1 ? size_t(p.S * B * p.L * K * p.C) + 1 : 1, nan);
    std::vector<float> parts(size_t(B * KD * (N + 2 + R)) + 1, nan);
    p.dy = dy; p.dy_dtype = dy_dtype; p.dx = static_cast<float*>(out);
    p.part_xdbl = p.S > 1 ? part_x.data() : dxdbl;
    p.aux = aux.data();
    p.part_A = parts.data();
    p.part_D = p.part_A + B * KD * N;
    p.part_bias = p.part_D + B * KD;
    p.part_w = p.part_bias + B * KD;
    e = run_bwd(ex, p, dxdbl, dA, dD, dbias, ddt_w);
  }
  say(info, info_len, "warps=%d ntiles=%d smem_acc=%d S=%d smem=%zu barriers=%llu shuffles=%llu", p.warps, p.ntiles,
      int(p.smem_acc), p.S, smem_floats(bwd != 0, p.warps, p.L, p.C, p.R, p.smem_acc) * sizeof(float),
      (unsigned long long)ex.block.barriers, (unsigned long long)ex.block.shuffles);
  return finish(e, info, info_len);
}

}  // extern "C"
