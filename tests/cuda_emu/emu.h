// A small CPU executor for the kernel bodies of csrc/ (see csrc/common/thread_ctx.cuh): every CUDA
// thread of a block runs as a fiber (ucontext) on one OS thread, switched round-robin at barriers, so
// __syncthreads and full-warp shuffles (xor, up, down, idx) behave as on the GPU and the bodies' own index maps, block
// cooperation and math are checked without a GPU. Deterministic; no data races are possible, but a
// missing barrier shows: a fiber runs until it blocks, so it reads what others have not written yet
// (shared memory is poisoned with 0xFF = NaN before every block). A barrier that not every thread
// reaches (divergence, early exit) is reported as a deadlock and aborts.
#pragma once

#include <ucontext.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <vector>

#include <cuda_runtime.h>

namespace emu {

class Block;

struct Ctx {
  Block* blk;
  uint32_t t;
  uint32_t tid() const { return t; }
  uint32_t nthreads() const;
  uint32_t block() const;
  uint32_t nblocks() const;
  uint32_t block_y() const;
  void sync() const;
  float shfl_xor(float v, int mask) const;
  float shfl_up(float v, int delta) const;
  float shfl_down(float v, int delta) const;
  float shfl_idx(float v, int lane) const;
};

class Block {
 public:
  uint32_t n = 0, bx = 0, nbx = 1, by = 0;
  uint64_t barriers = 0, shuffles = 0;  // counters for the tests' reports

  void run(uint32_t nthreads, const std::function<void(const Ctx&)>& body) {
    n = nthreads;
    body_ = &body;
    if (fibers_.size() < n) fibers_.resize(n);
    const uint32_t nwarps = (n + 31) / 32;
    warp_bar_.assign(nwarps, Barrier{});
    for (uint32_t w = 0; w < nwarps; ++w) warp_bar_[w].expected = (w + 1) * 32 <= n ? 32 : n - w * 32;
    warp_slots_.assign(size_t(nwarps) * 32, 0.f);
    block_bar_ = Barrier{};
    block_bar_.expected = n;
    for (uint32_t i = 0; i < n; ++i) {
      Fiber& f = fibers_[i];
      if (f.stack.empty()) f.stack.resize(kStack);
      f.done = false;
      getcontext(&f.ctx);
      f.ctx.uc_stack.ss_sp = f.stack.data();
      f.ctx.uc_stack.ss_size = f.stack.size();
      f.ctx.uc_link = &sched_;
      makecontext(&f.ctx, reinterpret_cast<void (*)()>(&Block::entry), 3, uint32_t(uintptr_t(this) >> 32),
                  uint32_t(uintptr_t(this) & 0xffffffffu), i);
    }
    live_ = n;
    while (live_ > 0) {
      const uint64_t before = epoch_;
      for (uint32_t i = 0; i < n; ++i) {
        if (fibers_[i].done) continue;
        cur_ = i;
        swapcontext(&sched_, &fibers_[i].ctx);
      }
      if (epoch_ == before && live_ > 0) {
        std::fprintf(stderr, "emu: deadlock in block (%u, %u): %u live threads wait at barriers that not every thread reaches "
                     "(block barrier %u/%u arrived)\n", bx, by, live_, block_bar_.count, block_bar_.expected);
        std::abort();
      }
    }
  }

  void block_sync(uint32_t) {
    ++barriers;
    wait(block_bar_);
  }

  float shfl_xor(uint32_t t, float v, int mask) { return shfl(t, v, (t % 32) ^ uint32_t(mask)); }

  // the value of lane `src` of t's warp (t's own value when src is outside the warp, as on the GPU)
  float shfl(uint32_t t, float v, uint32_t src) {
    ++shuffles;
    const uint32_t w = t / 32, lane = t % 32;
    if (warp_bar_[w].expected != 32) {
      std::fprintf(stderr, "emu: shuffle in a partial warp (%u threads)\n", warp_bar_[w].expected);
      std::abort();
    }
    warp_slots_[w * 32 + lane] = v;
    wait(warp_bar_[w]);
    const float r = warp_slots_[w * 32 + (src < 32 ? src : lane)];
    wait(warp_bar_[w]);
    return r;
  }

 private:
  static constexpr size_t kStack = 256 * 1024;
  struct Fiber {
    ucontext_t ctx;
    std::vector<char> stack;
    bool done = false;
  };
  struct Barrier {
    uint32_t expected = 0, count = 0;
    uint64_t gen = 0;
  };

  static void entry(uint32_t hi, uint32_t lo, uint32_t me) {
    Block* self = reinterpret_cast<Block*>((uintptr_t(hi) << 32) | uintptr_t(lo));
    Ctx ctx{self, me};
    (*self->body_)(ctx);
    self->fibers_[me].done = true;
    --self->live_;
    ++self->epoch_;
  }

  void yield() { swapcontext(&fibers_[cur_].ctx, &sched_); }

  void wait(Barrier& b) {
    const uint64_t gen = b.gen;
    ++epoch_;
    if (++b.count == b.expected) {
      b.count = 0;
      ++b.gen;
      return;
    }
    while (b.gen == gen) yield();
  }

  std::vector<Fiber> fibers_;
  ucontext_t sched_;
  const std::function<void(const Ctx&)>* body_ = nullptr;
  std::vector<Barrier> warp_bar_;
  std::vector<float> warp_slots_;
  Barrier block_bar_;
  uint32_t live_ = 0, cur_ = 0;
  uint64_t epoch_ = 0;
};

inline uint32_t Ctx::nthreads() const { return blk->n; }
inline uint32_t Ctx::block() const { return blk->bx; }
inline uint32_t Ctx::nblocks() const { return blk->nbx; }
inline uint32_t Ctx::block_y() const { return blk->by; }
inline void Ctx::sync() const { blk->block_sync(t); }
inline float Ctx::shfl_xor(float v, int mask) const { return blk->shfl_xor(t, v, mask); }
inline float Ctx::shfl_up(float v, int delta) const {
  const int src = int(t % 32) - delta;
  return blk->shfl(t, v, src >= 0 ? uint32_t(src) : 32u);
}
inline float Ctx::shfl_down(float v, int delta) const { return blk->shfl(t, v, t % 32 + uint32_t(delta)); }
inline float Ctx::shfl_idx(float v, int lane) const { return blk->shfl(t, v, uint32_t(lane) & 31u); }

// Same launch() as vmamba::DeviceExec: runs every block of the grid in order, shared memory poisoned.
struct EmuExec {
  mutable Block block;
  mutable std::vector<unsigned char> smem;
  mutable uint64_t launches = 0;
  mutable size_t max_smem = 0;

  template <class K>
  cudaError_t launch(dim3 grid, unsigned threads, size_t smem_bytes, const typename K::Args& a) const {
    if (threads == 0 || threads > 1024 || threads > unsigned(K::kMaxThreads)) return cudaErrorInvalidConfiguration;
    if (smem_bytes > 227 * 1024) return cudaErrorInvalidValue;
    if (grid.y > 65535 || grid.z > 65535) return cudaErrorInvalidValue;  // the GPU's grid limits
    ++launches;
    if (smem_bytes > max_smem) max_smem = smem_bytes;
    smem.assign(smem_bytes + 16, 0xFF);
    block.nbx = grid.x;
    for (uint32_t y = 0; y < grid.y; ++y) {
      for (uint32_t x = 0; x < grid.x; ++x) {
        block.bx = x;
        block.by = y;
        std::memset(smem.data(), 0xFF, smem.size());
        unsigned char* sm = smem.data();
        block.run(threads, [&](const Ctx& ctx) { K::run(ctx, a, sm); });
      }
    }
    return cudaSuccess;
  }
};

}  // namespace emu
