// The extension's launch rules as a CPU program, for tests/test_cupy_sources.py: it checks that
// vmamba_kernels/cupy/plan.py (the cupy backend's transcription) agrees with them. Compiled with nvcc as
// host code (no GPU); reads one query per line on stdin, answers one line each on stdout:
//   layout                                 offsets and sizes of the kernel argument structs
//   fwd batch KD L N K in_bytes out_bytes addr_u addr_delta addr_B addr_C addr_out warps seq_min_rows packed_rows
//   bwd batch KD L N K sms seq_min_rows forced_splits
//   cross op(scan|merge) B C H W mode channels_last dtype(0 f32, 1 f16, 2 bf16) addr_in addr_out max_vec
//         then the nine knobs (scan_seq_min_rows .. cross_cl_tile of plan.Knobs), "-" for unset
// Answers are "key=value" pairs separated by spaces; struct values are their fields in declaration order.
#include <cstddef>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <string>

#include "../../csrc/cross_scan/cross_scan_body.cuh"
#include "../../csrc/selective_scan/selective_scan.h"

using namespace vmamba;

#define OFF(S, f) std::cout << " " #S "." #f "=" << offsetof(S, f)

static void put(const char* k, long long v) { std::cout << " " << k << "=" << v; }
static void put_div(std::ostringstream& o, const FastDivmod& d) { o << "," << d.d << "," << d.m << "," << d.s; }

static void layout() {
  using scan::FwdParams;
  using scan::BwdParams;
  using cross::PlaneArgs;
  using cross::TileArgs;
  using cross::DirectArgs;
  std::cout << "sizeof.FwdParams=" << sizeof(FwdParams);
  OFF(FwdParams, u); OFF(FwdParams, delta); OFF(FwdParams, A); OFF(FwdParams, B); OFF(FwdParams, C); OFF(FwdParams, D);
  OFF(FwdParams, delta_bias); OFF(FwdParams, out); OFF(FwdParams, last_state); OFF(FwdParams, aux);
  OFF(FwdParams, batch); OFF(FwdParams, KD); OFF(FwdParams, L); OFF(FwdParams, G); OFF(FwdParams, N); OFF(FwdParams, K);
  OFF(FwdParams, lpr); OFF(FwdParams, softplus); OFF(FwdParams, dtype); OFF(FwdParams, out_dtype);
  OFF(FwdParams, kd_div); OFF(FwdParams, g_div); OFF(FwdParams, seq_min_rows); OFF(FwdParams, packed_rows);
  OFF(FwdParams, bc_bstride); OFF(FwdParams, bc_gstride);
  std::cout << " sizeof.BwdParams=" << sizeof(BwdParams);
  OFF(BwdParams, u); OFF(BwdParams, delta); OFF(BwdParams, A); OFF(BwdParams, B); OFF(BwdParams, C); OFF(BwdParams, D);
  OFF(BwdParams, delta_bias); OFF(BwdParams, dout); OFF(BwdParams, aux); OFF(BwdParams, du); OFF(BwdParams, ddelta);
  OFF(BwdParams, dA); OFF(BwdParams, dB); OFF(BwdParams, dC); OFF(BwdParams, dD); OFF(BwdParams, ddelta_bias);
  OFF(BwdParams, accB); OFF(BwdParams, accC); OFF(BwdParams, partA); OFF(BwdParams, partD); OFF(BwdParams, partBias);
  OFF(BwdParams, batch); OFF(BwdParams, KD); OFF(BwdParams, L); OFF(BwdParams, G); OFF(BwdParams, N); OFF(BwdParams, K);
  OFF(BwdParams, S); OFF(BwdParams, lpr); OFF(BwdParams, softplus); OFF(BwdParams, seq); OFF(BwdParams, dtype);
  OFF(BwdParams, dout_dtype); OFF(BwdParams, bc_bstride); OFF(BwdParams, bc_gstride);
  std::cout << " sizeof.PlaneArgs=" << sizeof(PlaneArgs);
  OFF(PlaneArgs, C); OFF(PlaneArgs, H); OFF(PlaneArgs, W); OFF(PlaneArgs, L); OFF(PlaneArgs, P); OFF(PlaneArgs, SW);
  OFF(PlaneArgs, PS); OFF(PlaneArgs, mode); OFF(PlaneArgs, channels_last); OFF(PlaneArgs, divL); OFF(PlaneArgs, divW);
  OFF(PlaneArgs, divH); OFF(PlaneArgs, divG);
  std::cout << " sizeof.TileArgs=" << sizeof(TileArgs);
  OFF(TileArgs, C); OFF(TileArgs, H); OFF(TileArgs, W); OFF(TileArgs, L); OFF(TileArgs, TH); OFF(TileArgs, TW);
  OFF(TileArgs, PC); OFF(TileArgs, SW); OFF(TileArgs, PS); OFF(TileArgs, lq); OFF(TileArgs, routes);
  OFF(TileArgs, mode);
  OFF(TileArgs, divTW); OFF(TileArgs, divTH); OFF(TileArgs, divTilesW); OFF(TileArgs, divNT); OFF(TileArgs, divG);
  OFF(TileArgs, divNPG);
  std::cout << " sizeof.DirectArgs=" << sizeof(DirectArgs);
  OFF(DirectArgs, B); OFF(DirectArgs, C); OFF(DirectArgs, H); OFF(DirectArgs, W); OFF(DirectArgs, L);
  OFF(DirectArgs, total); OFF(DirectArgs, mode); OFF(DirectArgs, channels_last);
  std::cout << " sizeof.FastDivmod=" << sizeof(FastDivmod) << "\n";
}

static void fwd(std::istringstream& in) {
  scan::FwdParams p;
  long long batch, KD, L, N, K, ib, ob, au, ad, aB, aC, ao, warps, smr, pr;
  in >> batch >> KD >> L >> N >> K >> ib >> ob >> au >> ad >> aB >> aC >> ao >> warps >> smr >> pr;
  p.batch = batch; p.KD = KD; p.L = L; p.N = int(N); p.K = int(K); p.G = KD / K; p.lpr = scan::lanes_per_row(L);
  p.bc_bstride = K * N * L; p.bc_gstride = N * L;  // contiguous B, C (as the cupy backend passes them)
  p.u = reinterpret_cast<const void*>(au); p.delta = reinterpret_cast<const void*>(ad);
  p.B = reinterpret_cast<const void*>(aB); p.C = reinterpret_cast<const void*>(aC); p.out = reinterpret_cast<void*>(ao);
  p.seq_min_rows = smr; p.packed_rows = int(pr);
  const scan::FwdLaunch l = scan::plan_fwd(p, int(ib), int(ob), int(warps));
  std::cout << "kernel=" << l.kernel;
  put("grid", l.grid); put("block", l.block); put("rpw", l.rpw); put("piece8", l.piece8); put("out_piece", l.out_piece);
  put("bpg", l.bpg); put("lpr", p.lpr); put("nch", scan::num_chunks(L));
  std::cout << "\n";
}

static void bwd(std::istringstream& in) {
  long long batch, KD, L, N, K, sms, smr, forced;
  in >> batch >> KD >> L >> N >> K >> sms >> smr >> forced;
  scan::BwdParams p;
  p.batch = batch; p.KD = KD; p.L = L; p.N = int(N); p.K = int(K); p.G = KD / K; p.lpr = scan::lanes_per_row(L);
  p.seq = scan::use_seq(int(N), batch * KD, smr);
  p.S = scan::bwd_splits_or(int(forced), batch, int(K), KD / K, int(N), L, int(sms), p.seq);
  const scan::BwdLaunch l = scan::plan_bwd(p);
  std::cout << "kernel=" << l.kernel;
  put("seq", p.seq); put("S", p.S); put("grid", l.grid); put("block", l.block); put("bc_elems", l.bc_elems);
  put("bc_grid", l.bc_grid); put("small_grid", l.small_grid);
  std::cout << "\n";
}

static std::string plane_str(const cross::PlaneArgs& a) {
  std::ostringstream o;
  o << a.C << "," << a.H << "," << a.W << "," << a.L << "," << a.P << "," << a.SW << "," << a.PS << "," << a.mode << ","
    << int(a.channels_last);
  put_div(o, a.divL); put_div(o, a.divW); put_div(o, a.divH); put_div(o, a.divG);
  return o.str();
}

static std::string tile_str(const cross::TileArgs& a) {
  std::ostringstream o;
  o << a.C << "," << a.H << "," << a.W << "," << a.L << "," << a.TH << "," << a.TW << "," << a.PC << "," << a.SW << ","
    << a.PS << "," << a.lq << "," << a.routes << "," << a.mode;
  put_div(o, a.divTW); put_div(o, a.divTH); put_div(o, a.divTilesW); put_div(o, a.divNT); put_div(o, a.divG);
  put_div(o, a.divNPG);
  return o.str();
}

static std::string direct_str(const cross::DirectArgs& a) {
  std::ostringstream o;
  o << a.B << "," << a.C << "," << a.H << "," << a.W << "," << a.L << "," << a.total << "," << a.mode << ","
    << int(a.channels_last);
  return o.str();
}

static void cross_query(std::istringstream& in) {
  std::string op;
  long long B, C, H, W, mode, cl, dtype, ain, aout, max_vec;
  in >> op >> B >> C >> H >> W >> mode >> cl >> dtype >> ain >> aout >> max_vec;
  static const char* names[9] = {"VMAMBA_SCAN_SEQ_MIN_ROWS", "VMAMBA_SCAN_BWD_SPLITS", "VMAMBA_SCAN_PACKED_ROWS",
                                 "VMAMBA_CROSS_MAX_VEC", "VMAMBA_CROSS_SMEM_KB", "VMAMBA_CROSS_PATH",
                                 "VMAMBA_CROSS_CL_TILED", "VMAMBA_CROSS_CL_BAND", "VMAMBA_CROSS_CL_TILE"};
  for (const char* n : names) {
    std::string v;
    in >> v;
    set_knob(n, v == "-" ? "" : v);
  }
  cross::Problem p;
  p.in = reinterpret_cast<const void*>(ain); p.out = reinterpret_cast<void*>(aout);
  p.B = B; p.C = C; p.H = H; p.W = W; p.mode = int(mode); p.channels_last = cl != 0; p.dtype = int(dtype);
  p.max_vec = int(max_vec);
  const bool merge = op == "merge";
  const cross::Launch l = cross::plan_cross(p, merge);
  std::cout << "tiled=" << l.tiled;
  put("band", l.band); put("vec", l.vec); put("elem", l.elem); put("total", l.total); put("g.fits", l.g.fits);
  if (l.total == 0) { std::cout << "\n"; return; }
  if (l.band) {
    cross::TileArgs ar = cross::make_tile_args(p, l.t), ac = cross::make_tile_args(p, l.t_cols);
    ar.routes = 1;
    ac.routes = 2;
    put("grid", 2 * cross::tile_blocks(l.t, B));
    put("smem", (long long)(l.t.smem > l.t_cols.smem ? l.t.smem : l.t_cols.smem));
    std::cout << " args=" << tile_str(ar) << ";" << tile_str(ac);
  } else if (l.tiled) {
    put("grid", cross::tile_blocks(l.t, B)); put("smem", (long long)l.t.smem); put("kvec", l.t.vec);
    std::cout << " args=" << tile_str(cross::make_tile_args(p, l.t));
  } else if (l.g.fits) {
    put("grid", int64_t(l.g.G) * B); put("smem", (long long)l.g.smem);
    std::cout << " args=" << plane_str(cross::make_args(p, l.g));
  } else {
    put("grid", cross::direct_blocks(l.total)); put("smem", 0);
    std::cout << " args=" << direct_str(cross::make_direct(p, l.total));
  }
  std::cout << "\n";
}

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    std::istringstream in(line);
    std::string q;
    in >> q;
    if (q == "layout") layout();
    else if (q == "fwd") fwd(in);
    else if (q == "bwd") bwd(in);
    else if (q == "cross") cross_query(in);
    else std::cout << "unknown query\n";
    std::cout.flush();
  }
  return 0;
}
