// The layer norm and depthwise conv kernel bodies of csrc/ run on the CPU by tests/cuda_emu/emu.h,
// behind a C interface for ctypes (tests/cuda_emu/__init__.py compiles this file with nvcc as host
// code into a shared library). Each entry point plans exactly as the extension does, runs the same
// typed launchers with EmuExec instead of DeviceExec, and reports the plan in `info`.
#include <cstdarg>
#include <cstdio>
#include <vector>

// DWCONV_INCLUDE
#include "../../csrc/layer_norm/layer_norm_body.cuh"
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
               int y_dtype, int max_vec, int tile, int num_sms, char* info, int info_len) {
  using namespace vmamba::ln;
  FwdParams p;
  p.x = x; p.branch = branch; p.scale = scale; p.weight = w; p.bias = b; p.s = s; p.y = y; p.mean = mean; p.rstd = rstd;
  p.B = B; p.C = C; p.HW = HW; p.eps = eps; p.channels_last = channels_last != 0; p.x_dtype = x_dtype;
  p.y_dtype = y_dtype; p.max_vec = max_vec; p.tile = tile; p.num_sms = num_sms;
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
               const float* scale, void* dx, void* dbranch, float* dweight, float* dbias, int64_t B, int64_t C, int64_t HW,
               int channels_last, int x_dtype, int dy_dtype, int max_vec, int tile, int blocks, int num_sms, char* info,
               int info_len) {
  using namespace vmamba::ln;
  BwdParams p;
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

}  // extern "C"
