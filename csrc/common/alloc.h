// Allocation helpers of the cuda entry points. at::empty on a CUDA device was the largest part of a small call's C++
// host work (reports/logs/2026-12-07_gpu_call78.md), so the entries
//   - allocate through empty_on, which skips the dispatcher's two hops (BackendSelect, then CUDA) and calls
//     what at::native::empty_cuda calls; the deterministic fill that at::empty adds under
//     torch.use_deterministic_algorithms (fill_uninitialized_memory) is kept by taking at::empty then;
//   - make tensors that live and die together (a forward's saved statistics, a backward's scratch) with
//     empty_shared: one allocation, carved into plain tensors (not views) that share its storage. The storage
//     lives while any of them does, so only tensors of one lifetime belong in one call.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Context.h>
#include <ATen/cuda/EmptyTensor.h>
#include <c10/core/TensorImpl.h>

#include <array>
#include <initializer_list>

namespace vmamba {

// An uninitialised contiguous tensor of `sizes` and `dtype` on `like`'s device.
inline at::Tensor empty_on(at::IntArrayRef sizes, at::ScalarType dtype, const at::Tensor& like) {
  const at::Context& ctx = at::globalContext();
  if (like.is_cuda() && !(ctx.deterministicAlgorithms() && ctx.deterministicFillUninitializedMemory()))
    return at::detail::empty_cuda(sizes, dtype, like.device(), std::nullopt);
  return at::empty(sizes, at::TensorOptions().device(like.device()).dtype(dtype));
}

struct Piece {
  at::IntArrayRef sizes;
  at::ScalarType dtype;
};

// Start of every piece in the shared allocation, in bytes: the caching allocator's own granularity, so each
// piece is as aligned as a tensor of its own would be (the kernels' vector loads need 16 bytes).
constexpr int64_t kPieceAlign = 512;

// N uninitialised contiguous tensors on `like`'s device, made from one allocation (see above).
template <size_t N>
std::array<at::Tensor, N> empty_shared(const at::Tensor& like, const Piece (&pieces)[N]) {
  std::array<int64_t, N> offset{};
  int64_t total = 0;
  for (size_t i = 0; i < N; ++i) {
    offset[i] = total;
    const int64_t bytes = c10::multiply_integers(pieces[i].sizes) * int64_t(c10::elementSize(pieces[i].dtype));
    total += (bytes + kPieceAlign - 1) / kPieceAlign * kPieceAlign;
  }
  const at::Tensor buf = empty_on({total}, at::kByte, like);
  std::array<at::Tensor, N> out;
  for (size_t i = 0; i < N; ++i) {
    auto impl = c10::make_intrusive<c10::TensorImpl>(c10::Storage(buf.storage()), buf.key_set(),
                                                     c10::scalarTypeToTypeMeta(pieces[i].dtype));
    impl->set_sizes_contiguous(pieces[i].sizes);
    impl->set_storage_offset(offset[i] / int64_t(c10::elementSize(pieces[i].dtype)));
    out[i] = at::Tensor(std::move(impl));
  }
  return out;
}

}  // namespace vmamba
