// Shared declarations of the block kernels (CPU in block_ops.cpp, CUDA in block_ops_cuda.cu).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace autonas_ext {

constexpr int64_t kMaxDims = 6;

// Where a block lies in a contiguous full tensor: its sizes, the full tensor's strides and the
// offset of its first element. Passed by value to CUDA kernels.
struct BlockGeometry {
  int64_t ndim;
  int64_t numel;
  int64_t base;
  int64_t sizes[kMaxDims];
  int64_t strides[kMaxDims];
};

BlockGeometry make_geometry(const at::Tensor& full, const std::vector<int64_t>& offsets,
                            const std::vector<int64_t>& sizes);

// The block (offsets, sizes) of `full` as a strided view, after checking that it lies inside `full`.
at::Tensor block_view(const at::Tensor& full, const std::vector<int64_t>& offsets, const std::vector<int64_t>& sizes);
// Write (or, with `accumulate`, add) the contiguous `block` into `full` at `offsets`.
void store_block(const at::Tensor& full, const at::Tensor& block, const std::vector<int64_t>& offsets, bool accumulate);
// Set the block (offsets, sizes) of `full` to zero.
void zero_block(const at::Tensor& full, const std::vector<int64_t>& offsets, const std::vector<int64_t>& sizes);
// Whether this build holds the CUDA kernels.
bool has_cuda();

#ifdef AUTONAS_WITH_CUDA
void store_cuda(const at::Tensor& full, const at::Tensor& block, const BlockGeometry& geometry, bool accumulate);
void zero_cuda(const at::Tensor& full, const BlockGeometry& geometry);
#endif

}  // namespace autonas_ext
