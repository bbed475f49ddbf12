// Block kernels of the sliced parameters: write or accumulate a block into a full-size tensor (the
// block gradient of a sliced parameter into its `.grad`), and zero a block.
//
// A block is given per dimension by an offset and a size; the full tensor is contiguous. CPU tensors
// go through ATen's kernels on a strided view of the block; CUDA tensors go to block_ops_cuda.cu
// when the library is built with it.

#include <torch/extension.h>

#include <vector>

#include "block_ops.h"

namespace autonas_ext {

BlockGeometry make_geometry(const at::Tensor& full, const std::vector<int64_t>& offsets,
                            const std::vector<int64_t>& sizes) {
  const int64_t ndim = full.dim();
  TORCH_CHECK(ndim >= 1 && ndim <= kMaxDims, "block kernels take tensors of 1 to ", kMaxDims, " dims, got ", ndim);
  TORCH_CHECK(static_cast<int64_t>(offsets.size()) == ndim && static_cast<int64_t>(sizes.size()) == ndim,
              "block kernels need one offset and one size per dim (", ndim, "), got ", offsets.size(), " and ",
              sizes.size());
  TORCH_CHECK(full.is_contiguous(), "block kernels need a contiguous full-size tensor");
  BlockGeometry geometry;
  geometry.numel = 1;
  geometry.base = 0;
  for (int64_t dim = 0; dim < ndim; ++dim) {
    TORCH_CHECK(offsets[dim] >= 0 && sizes[dim] >= 0 && offsets[dim] + sizes[dim] <= full.size(dim), "block dim ",
                dim, " (offset ", offsets[dim], ", size ", sizes[dim], ") lies outside the tensor size ",
                full.size(dim));
    geometry.base += offsets[dim] * full.stride(dim);
    geometry.numel *= sizes[dim];
  }
  // Collapse dims into the longest contiguous runs: an outer dim merges into the inner ones when
  // those are covered whole (e.g. a block of whole 3x3 kernels is one run per (out, in) pair).
  int64_t collapsed_sizes[kMaxDims];
  int64_t collapsed_strides[kMaxDims];
  int64_t count = 0;
  bool inner_whole = false;
  for (int64_t dim = ndim - 1; dim >= 0; --dim) {
    const bool whole = offsets[dim] == 0 && sizes[dim] == full.size(dim);
    if (count > 0 && inner_whole) {
      collapsed_sizes[count - 1] *= sizes[dim];
    } else {
      collapsed_sizes[count] = sizes[dim];
      collapsed_strides[count] = full.stride(dim);
      ++count;
    }
    inner_whole = whole;  // the chain is whole when its outermost dim is (the inner ones were)
  }
  geometry.ndim = count;
  for (int64_t i = 0; i < count; ++i) {
    geometry.sizes[i] = collapsed_sizes[count - 1 - i];
    geometry.strides[i] = collapsed_strides[count - 1 - i];
  }
  return geometry;
}

namespace {

// The block as a strided view of `full`. On the CPU ATen's own copy, add and fill kernels on this
// view (vectorised, parallel) beat a hand-written row loop by 2-5x (measured on 0.1-5 MB blocks).
at::Tensor view_of(const at::Tensor& full, const BlockGeometry& g, at::IntArrayRef sizes) {
  return full.as_strided(sizes, full.strides(), full.storage_offset() + g.base);
}

void check_cuda_built(const at::Tensor& tensor) {
#ifndef AUTONAS_WITH_CUDA
  TORCH_CHECK(!tensor.is_cuda(), "this build of the autonas block kernels has no CUDA code; rebuild with CUDA");
#endif
}

}  // namespace

at::Tensor block_view(const at::Tensor& full, const std::vector<int64_t>& offsets, const std::vector<int64_t>& sizes) {
  return view_of(full, make_geometry(full, offsets, sizes), sizes);
}

void store_block(const at::Tensor& full, const at::Tensor& block, const std::vector<int64_t>& offsets, bool accumulate) {
  const BlockGeometry geometry = make_geometry(full, offsets, block.sizes().vec());
  TORCH_CHECK(block.is_contiguous(), "store_block needs a contiguous block");
  TORCH_CHECK(block.scalar_type() == full.scalar_type() && block.device() == full.device(),
              "store_block needs the block on the full tensor's device and dtype");
  if (geometry.numel == 0) return;
  check_cuda_built(full);
#ifdef AUTONAS_WITH_CUDA
  if (full.is_cuda()) {
    store_cuda(full, block, geometry, accumulate);
    return;
  }
#endif
  at::Tensor target = view_of(full, geometry, block.sizes());
  if (accumulate) {
    target.add_(block);
  } else {
    target.copy_(block);
  }
}

void zero_block(const at::Tensor& full, const std::vector<int64_t>& offsets, const std::vector<int64_t>& sizes) {
  const BlockGeometry geometry = make_geometry(full, offsets, sizes);
  if (geometry.numel == 0) return;
  check_cuda_built(full);
#ifdef AUTONAS_WITH_CUDA
  if (full.is_cuda()) {
    zero_cuda(full, geometry);
    return;
  }
#endif
  view_of(full, geometry, sizes).zero_();
}

bool has_cuda() {
#ifdef AUTONAS_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace autonas_ext
