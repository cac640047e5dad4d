// torch-facing side of the fused SS2D core (issue #18; the raw-kernel contract of SS2D_CORE_CONTRACT.md):
//   vmamba_cuda::ss2d_core_fwd(x, xdbl, dt_w, A, D?, delta_bias?, mode, channels_last, delta_softplus,
//                              out_dtype) -> y
//   vmamba_cuda::ss2d_core_bwd(x, xdbl, dt_w, A, D?, delta_bias?, dy, mode, channels_last, delta_softplus)
//       -> (dx, dxdbl, ddt_w, dA, dD, ddelta_bias)   (dD / ddelta_bias empty when D / bias absent)
// Checks, the tile size / accumulator / split choice, scratch allocation, registration. Kernels and the
// work split: ss2d_core.h, ss2d_core_kernels.cu. The backward is deterministic.
#include <cuda_runtime_api.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <tuple>
#include <utility>

#include "../common/common.h"
#include "../common/knobs.h"
#include "../ops.h"
#include "ss2d_core.h"
#include "ss2d_splits.h"

namespace vmamba {
namespace ss2d {
namespace {

int code_of(at::ScalarType t) {
  switch (t) {
    case at::kFloat: return kF32;
    case at::kHalf: return kF16;
    default: return kBF16;
  }
}

void check_contig(const at::Tensor& t, const char* name) {
  VMAMBA_CHECK(t.is_contiguous(), name, "must be contiguous (the raw kernel contract), got strides ", t.strides());
}

int parse_mode(c10::string_view mode) {
  if (mode == "cross2d") return kCross2d;
  if (mode == "unidi") return kUnidi;
  if (mode == "bidi") return kBidi;
  TORCH_CHECK(false, ::vmamba::detail::message("vmamba_cuda: mode must be one of 'cross2d', 'unidi', 'bidi', got '",
                                               mode, "'"));
}

// validated shapes and the pointers shared by both directions
Common check_inputs(const at::Tensor& x, const at::Tensor& xdbl, const at::Tensor& dt_w, const at::Tensor& A,
                    const c10::optional<at::Tensor>& D, const c10::optional<at::Tensor>& delta_bias,
                    c10::string_view mode, bool channels_last) {
  Common p;
  VMAMBA_CHECK_CUDA(x, "x");
  VMAMBA_CHECK_DIM(x, "x", 4);
  VMAMBA_CHECK_FLOAT_DTYPE(x, "x");
  check_contig(x, "x");
  p.batch = x.size(0);
  p.D = channels_last ? x.size(3) : x.size(1);
  p.H = channels_last ? x.size(1) : x.size(2);
  p.W = channels_last ? x.size(2) : x.size(3);
  p.L = p.H * p.W;
  VMAMBA_CHECK(p.L < (int64_t(1) << 31), "x", "H * W = ", p.L, " pixels: at most 2^31 - 1 per map");
  if (p.H >= 1) p.h_div = FastDivmod(uint32_t(p.H));

  VMAMBA_CHECK_SAME_DEVICE(xdbl, x, "xdbl", "x");
  VMAMBA_CHECK_DIM(xdbl, "xdbl", 4);
  VMAMBA_CHECK(xdbl.scalar_type() == x.scalar_type() || xdbl.scalar_type() == at::kFloat, "xdbl",
               "dtype must be x's (", x.scalar_type(), ") or float32, got ", xdbl.scalar_type());
  check_contig(xdbl, "xdbl");
  VMAMBA_CHECK(xdbl.size(0) == p.batch && xdbl.size(1) == p.L, "xdbl", "must be (B, H*W, K, R + 2N) = (", p.batch,
               ", ", p.L, ", K, R + 2N), got ", xdbl.sizes());
  VMAMBA_CHECK(xdbl.size(2) == 1 || xdbl.size(2) == 2 || xdbl.size(2) == 4, "xdbl",
               "K = xdbl.size(2) must be 1, 2 or 4, got ", xdbl.size(2));
  p.K = int(xdbl.size(2));
  VMAMBA_CHECK(route_kinds(parse_mode(mode), p.K, p.kinds), "xdbl", "mode '", mode, "' has K = ",
               mode == "cross2d" ? "4" : mode == "unidi" ? "4 (or 1)" : "4 (or 2)",
               " routes (xdbl.size(2)), got ", p.K);

  VMAMBA_CHECK_SAME_DEVICE(dt_w, x, "dt_w", "x");
  VMAMBA_CHECK_DIM(dt_w, "dt_w", 3);
  VMAMBA_CHECK(dt_w.scalar_type() == x.scalar_type() || dt_w.scalar_type() == at::kFloat, "dt_w",
               "dtype must be float32 or x's (", x.scalar_type(), "), got ", dt_w.scalar_type());
  check_contig(dt_w, "dt_w");
  VMAMBA_CHECK(dt_w.size(0) == p.K && dt_w.size(1) == p.D && dt_w.size(2) >= 1, "dt_w", "must be (K, D, R) = (",
               p.K, ", ", p.D, ", R >= 1), got ", dt_w.sizes());
  p.R = int(dt_w.size(2));

  VMAMBA_CHECK_SAME_DEVICE(A, x, "A", "x");
  VMAMBA_CHECK_DIM(A, "A", 2);
  VMAMBA_CHECK(A.scalar_type() == at::kFloat, "A", "must be float32, got ", A.scalar_type());
  check_contig(A, "A");
  const int64_t KD = int64_t(p.K) * p.D;
  VMAMBA_CHECK(A.size(0) == KD, "A", "must be (K*D, N) with K*D = ", KD, ", got ", A.sizes());
  VMAMBA_CHECK(A.size(1) >= 1 && A.size(1) <= kMaxDState, "A", "d_state N = A.size(1) must be in 1..", kMaxDState,
               " for impl cuda's ss2d_core, got ", A.size(1),
               " (larger d_state: the unfused chain of cross_scan / selective_scan / cross_merge)");
  p.N = int(A.size(1));
  VMAMBA_CHECK(xdbl.size(3) == p.R + 2 * p.N, "xdbl", "last dimension must be R + 2N = ", p.R + 2 * p.N, " (R = ",
               p.R, " from dt_w, N = ", p.N, " from A), got ", xdbl.size(3));
  p.C = int(xdbl.size(3));
  VMAMBA_CHECK(p.C <= kMaxComp, "xdbl", "R + 2N = ", p.C, " exceeds the ", kMaxComp,
               " that impl cuda's ss2d_core stages per step in shared memory");

  const c10::optional<at::Tensor>* opt[2] = {&D, &delta_bias};
  const char* names[2] = {"D", "delta_bias"};
  for (int i = 0; i < 2; ++i) {
    if (!opt[i]->has_value()) continue;
    const at::Tensor& t = opt[i]->value();
    VMAMBA_CHECK_SAME_DEVICE(t, x, names[i], "x");
    VMAMBA_CHECK(t.dim() == 1 && t.size(0) == KD, names[i], "must be (K*D,) = (", KD, ",), got ", t.sizes());
    VMAMBA_CHECK(t.scalar_type() == at::kFloat, names[i], "must be float32, got ", t.scalar_type());
    check_contig(t, names[i]);
  }
  p.x = x.data_ptr();
  p.xdbl = xdbl.data_ptr();
  p.dt_w = dt_w.data_ptr();
  p.A = A.data_ptr<float>();
  p.Dp = D.has_value() ? D->data_ptr<float>() : nullptr;
  p.bias = delta_bias.has_value() ? delta_bias->data_ptr<float>() : nullptr;
  p.channels_last = channels_last;
  p.x_dtype = code_of(x.scalar_type());
  p.xdbl_dtype = code_of(xdbl.scalar_type());
  p.w_dtype = code_of(dt_w.scalar_type());
  return p;
}

struct Device {
  int sms = 132;
  size_t smem_optin = 227 * 1024;
  int major = 9;  // compute capability
};

Device device_props(int index) {
  Device d;
  int v = 0;
  if (cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, index) == cudaSuccess && v > 0) d.sms = v;
  if (cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, index) == cudaSuccess && v > 0)
    d.smem_optin = size_t(v);
  if (cudaDeviceGetAttribute(&v, cudaDevAttrComputeCapabilityMajor, index) == cudaSuccess && v > 0) d.major = v;
  (void)cudaGetLastError();
  return d;
}

// The kernel families whose occupancy the plans ask for.
enum class Family { kFwd, kBwd, kSegFwd, kSegBwd, kSweep };

// resident blocks per SM of a kernel family at (a, b, shared memory) on a device, cached (the occupancy query costs
// microseconds). a, b: warps (kFwd / kBwd), d_state and channels per block (kSegFwd / kSegBwd), threads (kSweep).
int blocks_per_sm_cached(Family f, int a, int b, size_t smem, int dev) {
  static std::mutex m;
  static std::map<std::tuple<int, int, int, size_t, int>, int> cache;
  const auto key = std::make_tuple(int(f), a, b, smem, dev);
  {
    std::lock_guard<std::mutex> g(m);
    const auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  int nb = 0;
  switch (f) {
    case Family::kFwd: nb = fwd_blocks_per_sm(a, smem); break;
    case Family::kBwd: nb = bwd_blocks_per_sm(a, smem); break;
    case Family::kSegFwd: nb = seg_blocks_per_sm(a, b, smem); break;
    case Family::kSegBwd: nb = seg_bwd_blocks_per_sm(a, b, smem); break;
    case Family::kSweep: nb = sweep_blocks_per_sm(a, b != 0, smem); break;
  }
  std::lock_guard<std::mutex> g(m);
  cache[key] = nb;
  return nb;
}

// The tile (4 or 8 channels) and accumulator: shared memory when the tile's map fits, the tile size with
// more resident warps per SM (8 on a tie: half the backward's dxdbl partials); else the global fp32 scratch
// with 8 channels. Knobs (../common/knobs.h) can force the global accumulator or one tile size.
struct Plan {
  int warps = 8;
  bool smem_acc = true;
  int blocks_per_sm = 1;
};

Plan plan(bool bwd, const Common& p, const Device& dev, int dev_index) {
  auto bytes = [&](int w, bool acc) {
    return bwd ? bwd_smem_bytes(w, p.L, p.C, p.R, acc) : fwd_smem_bytes(w, p.L, p.C, p.R, acc);
  };
  Plan best;
  int best_warps = -1;
  // knob VMAMBA_SS2D_GLOBAL_ACC=1: the global accumulator even where shared memory would hold the map
  // (tests reach that path on small maps with it)
  const bool force_global = knob(Knob::kSs2dGlobalAcc)[0] == '1';
  // knob VMAMBA_SS2D_WARPS=4|8: that tile size only (timing runs compare them; tests reach both)
  const std::string forced = knob(Knob::kSs2dWarps);
  const int only = forced == "4" ? 4 : forced == "8" ? 8 : 0;
  for (int w : {8, 4}) {
    if (force_global) break;
    if (only != 0 && w != only) continue;
    const size_t smem = bytes(w, true);
    if (smem > dev.smem_optin) continue;
    const int nb = blocks_per_sm_cached(bwd ? Family::kBwd : Family::kFwd, w, 0, smem, dev_index);
    if (nb >= 1 && w * nb > best_warps) {
      best_warps = w * nb;
      best = Plan{w, true, nb};
    }
  }
  if (best_warps > 0) return best;
  const int w = only != 0 ? only : 8;
  const size_t smem = bytes(w, false);
  VMAMBA_CHECK(smem <= dev.smem_optin, "xdbl", "R + 2N = ", p.C, " needs ", int64_t(smem),
               " bytes of shared memory per block, more than this GPU's ", int64_t(dev.smem_optin));
  const int nb = blocks_per_sm_cached(bwd ? Family::kBwd : Family::kFwd, w, 0, smem, dev_index);
  VMAMBA_CHECK(nb >= 1, "x", "the ss2d_core kernel cannot run with ", int64_t(smem), " bytes of shared memory");
  return Plan{w, false, nb};
}

bool poison_enabled() { return knob(Knob::kScanPoison)[0] == '1'; }

void poison(std::initializer_list<at::Tensor*> ts) {
  if (!poison_enabled()) return;
  for (at::Tensor* t : ts)
    if (t->defined() && t->numel() > 0) t->fill_(std::numeric_limits<double>::quiet_NaN());
}

void check_blocks(int64_t blocks) {
  VMAMBA_CHECK(blocks < (int64_t(1) << 31), "x", "batch x channel tiles = ", blocks,
               " blocks: at most 2^31 - 1 per launch");
}

// The segmented forward's / backward's positions per segment (0: the whole-map kernels). Knobs
// VMAMBA_SS2D_FWD_SEG / VMAMBA_SS2D_BWD_SEG: 0, the whole-map kernels; n > 0, segments of n positions; "auto": one
// segment for the map (no transfer or prefix kernel) where its block leaves at least kSegOneMinBlocks blocks per SM,
// else segments of about kSegSteps (forward) / kSegBwdSteps (backward) positions, fewer while the block's shared
// memory exceeds the device's or leaves fewer than kSegMinBlocks blocks per SM; anything else is an error. Unset:
// the backward "auto", the forward "auto" channels-last and whole-map channels-first (the forward runs the sweep
// instead where it applies, unless auto takes the map as one segment: ss2d_core_fwd); a whole-map-only knob
// (VMAMBA_SS2D_WARPS, VMAMBA_SS2D_GLOBAL_ACC=1, and for the backward VMAMBA_SS2D_BWD_SPLITS) set asks for the
// whole-map kernels. Why (GPU call 64, reports/logs/2026-12-06_segmented_core.md): the segmented backward beat the
// whole-map one at every VMamba-T stage in both layouts; the segmented forward beat whole-map channels-last and lost
// channels-first. Constants from GPU call 53 (same write-up): 32 positions beat 64 and 128 at stages 1-3, and stage 4
// in one segment beat two.
constexpr int kSegSteps = 32;
constexpr int kSegBwdSteps = 16;
constexpr int kSegMinBlocks = 4;
constexpr int kSegOneMinBlocks = 2;

int seg_steps_for(bool bwd, const Common& p, const Device& dev, int dev_index) {
  std::string forced = knob(bwd ? Knob::kSs2dBwdSeg : Knob::kSs2dFwdSeg);
  if (forced.empty() && knob(Knob::kSs2dWarps).empty() && knob(Knob::kSs2dGlobalAcc) != "1" &&
      (bwd ? knob(Knob::kSs2dBwdSplits).empty() : p.channels_last))
    forced = "auto";
  if (forced.empty() || forced == "0") return 0;
  const char* name = bwd ? "VMAMBA_SS2D_BWD_SEG" : "VMAMBA_SS2D_FWD_SEG";
  const int G = seg_group(p.D);
  auto smem_of = [&](int64_t steps) {
    return (bwd ? seg_bwd_smem_floats(int(steps), G, p.R, p.N) : seg_smem_floats(true, int(steps), G, p.R, p.N)) *
           sizeof(float);
  };
  auto blocks_of = [&](size_t smem) {
    return smem > dev.smem_optin
               ? 0
               : blocks_per_sm_cached(bwd ? Family::kSegBwd : Family::kSegFwd, p.N, G, smem, dev_index);
  };
  if (forced != "auto") {
    char* end = nullptr;
    const int64_t steps = std::strtoll(forced.c_str(), &end, 10);
    VMAMBA_CHECK(end != forced.c_str() && *end == '\0' && steps > 0, bwd ? "ss2d_bwd_seg" : "ss2d_fwd_seg", "knob ",
                 name, " must be 'auto', 0 (the whole-map kernel) or a positive number of positions per segment, got '",
                 forced, "'");
    for (int64_t s = std::min<int64_t>(steps, p.L); s >= 1; s /= 2)
      if (smem_of(s) <= dev.smem_optin) return int(s);
    return 0;
  }
  if (p.L <= (int64_t(1) << 16) && blocks_of(smem_of(p.L)) >= kSegOneMinBlocks) return int(p.L);
  const int64_t target = bwd ? kSegBwdSteps : kSegSteps;
  const int64_t nseg = (p.L + target - 1) / target;
  int64_t steps = std::min<int64_t>(p.L, ((p.L + nseg - 1) / nseg + 3) & ~int64_t(3));
  for (; steps >= 1; steps = steps > 4 ? ((steps / 2 + 3) & ~int64_t(3)) : steps / 2) {
    const int nb = blocks_of(smem_of(steps));
    if (nb >= kSegMinBlocks || (steps <= 4 && nb >= 1)) return int(steps);
  }
  return 0;
}

// The sweep forward's tile (G lanes x S slots; G == 0: the sweep does not run). Knob VMAMBA_SS2D_FWD_SWEEP: unset or
// "auto", the sweep wherever it applies (d_state 1, its map-sized accumulator fits shared memory, at least one block
// per SM, at least kSweepMinWarps resident warps per SM) unless VMAMBA_SS2D_FWD_SEG is set (an explicit segmented or
// whole-map choice); "0", never; "GxS" (G in 8 / 16 / 32, G * S in 64..256), that tile, an error where it cannot
// run. Auto picks the tile with the most useful resident warps per SM: resident warps (capped at 32), times the
// share of lanes on real channels and of slot steps on real route steps; ties: the larger G (the staged rows serve
// more channels), then the smaller S. The warp floor: with one 8-warp block per SM (VMamba-T stage 1's accumulator)
// the sweep measured slower than the whole-map forward, with 16 it was the fastest fused forward (GPU calls 57-58,
// before call 60's faster staging, which was not timed at stage 1: reports/logs/2026-12-06_sweep_forward.md).
// The tile's dt projection runs on tensor cores only where knob VMAMBA_SS2D_SWEEP_MMA is "1" (and sweep_mma_applies,
// ss2d_core.h, on sm_80 and newer): it measured slower than the FMA projection at every VMamba-T stage
// (reports/tuning.md, "fused SS2D core, sweep forward").
struct SweepTile {
  int G = 0, S = 0;
  bool mma = false;
};
constexpr int kSweepMinWarps = 16;

bool sweep_mma_for(const Common& p, const Device& dev, int G) {
  return sweep_mma_applies(G, p.xdbl_dtype) && dev.major >= 8 && knob(Knob::kSs2dSweepMma) == "1";
}

SweepTile sweep_tile(const Common& p, const Device& dev, int dev_index) {
  const std::string v = knob(Knob::kSs2dFwdSweep);
  if (v == "0") return {};
  int fg = 0, fs = 0;
  if (!v.empty() && v != "auto") {
    char* end = nullptr;
    fg = int(std::strtol(v.c_str(), &end, 10));
    const bool x_ok = end != v.c_str() && *end == 'x';
    const char* rest = x_ok ? end + 1 : end;
    fs = x_ok ? int(std::strtol(rest, &end, 10)) : 0;
    VMAMBA_CHECK(x_ok && end != rest && *end == '\0' && (fg == 8 || fg == 16 || fg == 32) && fg * fs >= 64 &&
                     fg * fs <= kSweepMaxThreads && (fs & (fs - 1)) == 0,
                 "ss2d_fwd_sweep", "knob VMAMBA_SS2D_FWD_SWEEP must be 'auto', 0 (off) or a tile 'GxS' with G in 8, "
                 "16, 32, S a power of two and 64 <= G * S <= 256, got '", v, "'");
  }
  const bool forced = fg > 0;
  if (!forced && !knob(Knob::kSs2dFwdSeg).empty()) return {};
  if (p.N != 1) {
    VMAMBA_CHECK(!forced, "A", "the sweep forward (knob ss2d_fwd_sweep) serves d_state 1 only, got d_state ", p.N,
                 "; unset the knob for the segmented / whole-map kernels");
    return {};
  }
  auto smem_of = [&](int G, int S) {
    return sweep_smem_floats(p.L, G, S, p.R, p.K, sweep_mma_for(p, dev, G)) * sizeof(float);
  };
  auto blocks_of = [&](int G, int S) {
    const size_t smem = smem_of(G, S);
    return smem > dev.smem_optin
               ? 0
               : blocks_per_sm_cached(Family::kSweep, G * S, int(sweep_mma_for(p, dev, G)), smem, dev_index);
  };
  if (forced) {
    VMAMBA_CHECK(blocks_of(fg, fs) >= 1, "x", "the sweep forward's tile ", fg, "x", fs, " needs ",
                 int64_t(smem_of(fg, fs)), " bytes of shared memory for a ", p.H, " x ", p.W,
                 " map, more than this GPU allows; unset the knob ss2d_fwd_sweep");
    return SweepTile{fg, fs, sweep_mma_for(p, dev, fg)};
  }
  SweepTile best;
  double best_score = 0.0;
  for (int G : {32, 16, 8}) {
    for (int S = 64 / G; S * G <= kSweepMaxThreads; S *= 2) {
      const int nb = blocks_of(G, S);
      const int64_t groups = (p.D + G - 1) / G, blocks = p.batch * groups;
      if (nb < 1 || blocks < dev.sms || nb * G * S < 32 * kSweepMinWarps) continue;
      const int64_t per_it = int64_t(S) * kSweepItems, its = (p.L + per_it - 1) / per_it;
      const double warps = std::min(32.0, double(nb) * G * S / 32.0);
      const double score = warps * double(p.D) / double(groups * G) * double(p.L) / double(its * per_it);
      if (score > best_score * (1.0 + 1e-9)) {
        best_score = score;
        best = SweepTile{G, S, sweep_mma_for(p, dev, G)};
      }
    }
  }
  return best;
}

}  // namespace

// ---- entry points (csrc/ops.h) ----
at::Tensor ss2d_core_fwd(const at::Tensor& x, const at::Tensor& xdbl, const at::Tensor& dt_w, const at::Tensor& A,
                         const c10::optional<at::Tensor>& D, const c10::optional<at::Tensor>& delta_bias,
                         c10::string_view mode, bool channels_last, bool delta_softplus, at::ScalarType out_dtype) {
  FwdParams p;
  static_cast<Common&>(p) = check_inputs(x, xdbl, dt_w, A, D, delta_bias, mode, channels_last);
  VMAMBA_CHECK(out_dtype == at::kFloat || out_dtype == at::kHalf || out_dtype == at::kBFloat16, "out_dtype",
               "must be float32, float16 or bfloat16, got ", out_dtype);
  c10::cuda::CUDAGuard guard(x.device());
  at::Tensor y = at::empty_like(x, x.options().dtype(out_dtype));
  if (y.numel() == 0) return y;
  const Device dev = device_props(x.device().index());
  p.softplus = delta_softplus;
  // the plan: the segmented forward where it takes the map as one segment (no transfer walk or prefix kernel),
  // else the sweep where it applies (or is forced), else the segmented forward, else the whole-map one (the
  // knobs' rules: seg_steps_for, sweep_tile)
  const int seg_steps = seg_steps_for(false, p, dev, x.device().index());
  const std::string sweep_knob = knob(Knob::kSs2dFwdSweep);
  const bool one_segment = seg_steps >= p.L && (sweep_knob.empty() || sweep_knob == "auto");
  if (const SweepTile tile = one_segment ? SweepTile{} : sweep_tile(p, dev, x.device().index()); tile.G > 0) {
    SweepParams sp;
    static_cast<Common&>(sp) = static_cast<const Common&>(p);
    sp.G = tile.G;
    sp.S = tile.S;
    sp.mma = tile.mma;
    sp.ngroups = int((p.D + tile.G - 1) / tile.G);
    sp.c_div = FastDivmod(uint32_t(p.C));
    sp.l_div = FastDivmod(uint32_t(p.L));
    check_blocks(p.batch * sp.ngroups);
    poison({&y});
    sp.out = y.data_ptr();
    sp.out_dtype = code_of(out_dtype);
    const char* err = launch_sweep_fwd(sp, c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(err == nullptr, ::vmamba::detail::message("vmamba_cuda::ss2d_core_fwd: kernel launch failed: ", err));
    return y;
  }
  if (const int steps = seg_steps; steps > 0) {
    SegParams sp;
    static_cast<Common&>(sp) = static_cast<const Common&>(p);
    seg_geometry(sp, steps);
    check_blocks(p.batch * sp.nseg * sp.ngroups * sp.npass);
    const auto f32 = x.options().dtype(at::kFloat);
    at::Tensor T = sp.nseg > 1 ? at::empty({p.batch, p.K, sp.nseg, 1 + p.N, p.D}, f32) : at::Tensor();
    at::Tensor partial = sp.npass > 1 ? at::empty({p.batch, p.L, p.D}, f32) : at::Tensor();
    poison({&y, &T, &partial});
    sp.T = T.defined() ? T.data_ptr<float>() : nullptr;
    sp.partial = partial.defined() ? partial.data_ptr<float>() : nullptr;
    sp.out = y.data_ptr();
    sp.out_dtype = code_of(out_dtype);
    const char* err = launch_seg_fwd(sp, c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(err == nullptr, ::vmamba::detail::message("vmamba_cuda::ss2d_core_fwd: kernel launch failed: ", err));
    return y;
  }
  const Plan pl = plan(false, p, dev, x.device().index());
  p.warps = pl.warps;
  p.ntiles = int((p.D + pl.warps - 1) / pl.warps);
  p.smem_acc = pl.smem_acc;
  at::Tensor acc;
  if (!pl.smem_acc) {
    acc = at::empty({p.batch, p.D, p.L}, x.options().dtype(at::kFloat));
    p.acc_global = acc.data_ptr<float>();
  }
  poison({&y, &acc});
  p.out = y.data_ptr();
  p.out_dtype = code_of(out_dtype);
  check_blocks(p.batch * p.ntiles);
  const char* err = launch_fwd(p, c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, ::vmamba::detail::message("vmamba_cuda::ss2d_core_fwd: kernel launch failed: ", err));
  return y;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> ss2d_core_bwd(
    const at::Tensor& x, const at::Tensor& xdbl, const at::Tensor& dt_w, const at::Tensor& A,
    const c10::optional<at::Tensor>& D, const c10::optional<at::Tensor>& delta_bias, const at::Tensor& dy,
    c10::string_view mode, bool channels_last, bool delta_softplus) {
  BwdParams p;
  static_cast<Common&>(p) = check_inputs(x, xdbl, dt_w, A, D, delta_bias, mode, channels_last);
  VMAMBA_CHECK_SAME_DEVICE(dy, x, "dy", "x");
  VMAMBA_CHECK(dy.sizes() == x.sizes(), "dy", "must have x's shape ", x.sizes(), ", got ", dy.sizes());
  VMAMBA_CHECK_FLOAT_DTYPE(dy, "dy");
  check_contig(dy, "dy");
  c10::cuda::CUDAGuard guard(x.device());
  const auto f32 = x.options().dtype(at::kFloat);
  const int64_t KD = int64_t(p.K) * p.D;
  at::Tensor dx = at::empty(x.sizes(), f32);
  at::Tensor dxdbl = at::empty(xdbl.sizes(), f32);
  at::Tensor dw = at::empty(dt_w.sizes(), f32);
  at::Tensor dA = at::empty({KD, p.N}, f32);
  at::Tensor dD = at::empty({D.has_value() ? KD : 0}, f32);
  at::Tensor dbias = at::empty({delta_bias.has_value() ? KD : 0}, f32);
  if (p.batch * p.L == 0 || p.D == 0) {  // no steps: every gradient is 0
    for (at::Tensor* t : {&dx, &dxdbl, &dw, &dA, &dD, &dbias}) t->zero_();
    return {dx, dxdbl, dw, dA, dD, dbias};
  }
  const Device dev = device_props(x.device().index());
  if (const int steps = seg_steps_for(true, p, dev, x.device().index()); steps > 0) {
    SegBwdParams sp;
    static_cast<Common&>(sp) = static_cast<const Common&>(p);
    sp.softplus = delta_softplus;
    seg_bwd_geometry(sp, steps);
    check_blocks(p.batch * sp.nseg * sp.ngroups * sp.npass);
    const int64_t rows = p.batch * sp.nseg, chunks = sum_chunks(rows);
    at::Tensor T = sp.nseg > 1 ? at::empty({p.batch, p.K, sp.nseg, sp.tc, p.D}, f32) : at::Tensor();
    at::Tensor partial = sp.npass > 1 ? at::empty({p.batch, p.L, p.D}, f32) : at::Tensor();
    at::Tensor part_x = sp.ngroups > 1 ? at::empty({sp.ngroups, p.batch, p.L, p.K, p.C}, f32) : at::Tensor();
    at::Tensor parts = at::empty({rows, KD * (p.N + 2 + p.R)}, f32);
    at::Tensor scratch = at::empty({chunks > 1 ? chunks * KD * std::max(p.N, p.R) : 0}, f32);
    poison({&dx, &dxdbl, &dw, &dA, &dD, &dbias, &T, &partial, &part_x, &parts, &scratch});
    sp.T = T.defined() ? T.data_ptr<float>() : nullptr;
    sp.partial_dx = partial.defined() ? partial.data_ptr<float>() : nullptr;
    sp.part_xdbl = sp.ngroups > 1 ? part_x.data_ptr<float>() : dxdbl.data_ptr<float>();
    float* base = parts.data_ptr<float>();
    sp.part_A = base;
    sp.part_D = sp.part_A + rows * KD * p.N;
    sp.part_bias = sp.part_D + rows * KD;
    sp.part_w = sp.part_bias + rows * KD;
    sp.sum_scratch = chunks > 1 ? scratch.data_ptr<float>() : nullptr;
    sp.dy = dy.data_ptr();
    sp.dy_dtype = code_of(dy.scalar_type());
    sp.dx = dx.data_ptr<float>();
    const char* err = launch_seg_bwd(sp, dxdbl.data_ptr<float>(), dA.data_ptr<float>(),
                                     D.has_value() ? dD.data_ptr<float>() : nullptr,
                                     delta_bias.has_value() ? dbias.data_ptr<float>() : nullptr, dw.data_ptr<float>(),
                                     c10::cuda::getCurrentCUDAStream().stream());
    TORCH_CHECK(err == nullptr, ::vmamba::detail::message("vmamba_cuda::ss2d_core_bwd: kernel launch failed: ", err));
    return {dx, dxdbl, dw, dA, dD, dbias};
  }
  const Plan pl = plan(true, p, dev, x.device().index());
  p.softplus = delta_softplus;
  p.warps = pl.warps;
  p.ntiles = int((p.D + pl.warps - 1) / pl.warps);
  p.smem_acc = pl.smem_acc;
  // splits: the fewest waves x tiles per block (ss2d_splits.h), at most one per tile (each split must own a
  // tile, or its slice of dxdbl stays unwritten)
  const int64_t wave = int64_t(dev.sms) * std::max(pl.blocks_per_sm, 1);
  int64_t S = bwd_splits(p.batch, p.ntiles, wave);
  if (const std::string e = knob(Knob::kSs2dBwdSplits); !e.empty()) {
    const int64_t forced = std::atoll(e.c_str());
    if (forced >= 1) S = std::min<int64_t>(forced, p.ntiles);
  }
  p.S = int(S);
  const int64_t nchunks = (p.L + kChunk - 1) / kChunk;
  at::Tensor aux = at::empty({p.batch, p.D, nchunks, p.N}, f32);
  at::Tensor part_x = S > 1 ? at::empty({S, p.batch, p.L, p.K, p.C}, f32) : at::Tensor();
  at::Tensor parts = at::empty({p.batch, KD * (p.N + 2 + p.R)}, f32);
  at::Tensor acc;
  if (!pl.smem_acc) acc = at::empty({p.batch, p.D, p.L}, f32);
  poison({&dx, &dxdbl, &dw, &dA, &dD, &dbias, &aux, &part_x, &parts, &acc});
  p.dy = dy.data_ptr();
  p.dy_dtype = code_of(dy.scalar_type());
  p.dx = dx.data_ptr<float>();
  p.part_xdbl = S > 1 ? part_x.data_ptr<float>() : dxdbl.data_ptr<float>();
  p.aux = aux.data_ptr<float>();
  if (!pl.smem_acc) p.acc_global = acc.data_ptr<float>();
  // parts = [A (B, KD*N) | D (B, KD) | bias (B, KD) | w (B, KD*R)], each block of the batch contiguous
  float* base = parts.data_ptr<float>();
  p.part_A = base;
  p.part_D = base + p.batch * KD * p.N;
  p.part_bias = p.part_D + p.batch * KD;
  p.part_w = p.part_bias + p.batch * KD;
  check_blocks(p.batch * S);
  const char* err = launch_bwd(p, dxdbl.data_ptr<float>(), dA.data_ptr<float>(),
                               D.has_value() ? dD.data_ptr<float>() : nullptr,
                               delta_bias.has_value() ? dbias.data_ptr<float>() : nullptr, dw.data_ptr<float>(),
                               c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, ::vmamba::detail::message("vmamba_cuda::ss2d_core_bwd: kernel launch failed: ", err));
  return {dx, dxdbl, dw, dA, dD, dbias};
}

}  // namespace ss2d
}  // namespace vmamba

TORCH_LIBRARY_FRAGMENT(vmamba_cuda, m) {
  m.def("ss2d_core_fwd(Tensor x, Tensor xdbl, Tensor dt_w, Tensor A, Tensor? D, Tensor? delta_bias, str mode, "
        "bool channels_last, bool delta_softplus, ScalarType out_dtype) -> Tensor");
  m.def("ss2d_core_bwd(Tensor x, Tensor xdbl, Tensor dt_w, Tensor A, Tensor? D, Tensor? delta_bias, Tensor dy, "
        "str mode, bool channels_last, bool delta_softplus) -> (Tensor, Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(vmamba_cuda, CUDA, m) {
  m.impl("ss2d_core_fwd", &vmamba::ss2d::ss2d_core_fwd);
  m.impl("ss2d_core_bwd", &vmamba::ss2d::ss2d_core_bwd);
}
