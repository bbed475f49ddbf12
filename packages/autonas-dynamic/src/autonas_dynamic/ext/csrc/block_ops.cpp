// Block kernels of the dynamic layers: copy the active block of a full-size tensor out, and write or
// accumulate a block into a full-size tensor (the weight gradient of a sliced layer).
//
// A block is given per dimension by an offset and a size; the full tensor is contiguous. On the CPU
// each row of the block (its last dimension) is one contiguous run in the full tensor, so the
// kernels walk the rows in parallel and copy or add whole runs. CUDA tensors go to block_ops_cuda.cu
// when the library is built with it.

#include <torch/extension.h>

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <cstring>
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

// Offset in the full tensor of the first element of block row `row` (rows enumerate every dim but the last).
inline int64_t row_offset(const BlockGeometry& g, int64_t row) {
  int64_t offset = g.base;
  for (int64_t dim = g.ndim - 2; dim >= 0; --dim) {
    offset += (row % g.sizes[dim]) * g.strides[dim];
    row /= g.sizes[dim];
  }
  return offset;
}

inline int64_t row_count(const BlockGeometry& g) {
  int64_t rows = 1;
  for (int64_t dim = 0; dim + 1 < g.ndim; ++dim) rows *= g.sizes[dim];
  return rows;
}

// Grain: enough rows per task that a task moves at least ~32k elements.
inline int64_t grain(const BlockGeometry& g) {
  const int64_t width = std::max<int64_t>(g.sizes[g.ndim - 1], 1);
  return std::max<int64_t>(1, 32768 / width);
}

void gather_cpu(const at::Tensor& full, at::Tensor& out, const BlockGeometry& g) {
  const int64_t width = g.sizes[g.ndim - 1];
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, full.scalar_type(), "autonas_gather_block", [&] {
    const scalar_t* src = full.const_data_ptr<scalar_t>();
    scalar_t* dst = out.data_ptr<scalar_t>();
    at::parallel_for(0, row_count(g), grain(g), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        std::memcpy(dst + row * width, src + row_offset(g, row), width * sizeof(scalar_t));
      }
    });
  });
}

void store_cpu(at::Tensor& full, const at::Tensor& block, const BlockGeometry& g, bool accumulate) {
  const int64_t width = g.sizes[g.ndim - 1];
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, full.scalar_type(), "autonas_store_block", [&] {
    scalar_t* dst = full.data_ptr<scalar_t>();
    const scalar_t* src = block.const_data_ptr<scalar_t>();
    at::parallel_for(0, row_count(g), grain(g), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        scalar_t* target = dst + row_offset(g, row);
        const scalar_t* source = src + row * width;
        if (accumulate) {
          for (int64_t i = 0; i < width; ++i) target[i] += source[i];
        } else {
          std::memcpy(target, source, width * sizeof(scalar_t));
        }
      }
    });
  });
}

void zero_cpu(at::Tensor& full, const BlockGeometry& g) {
  const int64_t width = g.sizes[g.ndim - 1];
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, full.scalar_type(), "autonas_zero_block", [&] {
    scalar_t* dst = full.data_ptr<scalar_t>();
    at::parallel_for(0, row_count(g), grain(g), [&](int64_t begin, int64_t end) {
      for (int64_t row = begin; row < end; ++row) {
        std::memset(static_cast<void*>(dst + row_offset(g, row)), 0, width * sizeof(scalar_t));
      }
    });
  });
}

void check_cuda_built(const at::Tensor& tensor) {
#ifndef AUTONAS_WITH_CUDA
  TORCH_CHECK(!tensor.is_cuda(), "this build of the autonas block kernels has no CUDA code; rebuild with CUDA");
#endif
}

}  // namespace

at::Tensor gather_block(const at::Tensor& full, const std::vector<int64_t>& offsets, const std::vector<int64_t>& sizes) {
  const BlockGeometry geometry = make_geometry(full, offsets, sizes);
  at::Tensor out = at::empty(sizes, full.options());
  if (geometry.numel == 0) return out;
  check_cuda_built(full);
#ifdef AUTONAS_WITH_CUDA
  if (full.is_cuda()) {
    gather_cuda(full, out, geometry);
    return out;
  }
#endif
  gather_cpu(full, out, geometry);
  return out;
}

void store_block(at::Tensor full, const at::Tensor& block, const std::vector<int64_t>& offsets, bool accumulate) {
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
  store_cpu(full, block, geometry, accumulate);
}

void zero_block(at::Tensor full, const std::vector<int64_t>& offsets, const std::vector<int64_t>& sizes) {
  const BlockGeometry geometry = make_geometry(full, offsets, sizes);
  if (geometry.numel == 0) return;
  check_cuda_built(full);
#ifdef AUTONAS_WITH_CUDA
  if (full.is_cuda()) {
    zero_cuda(full, geometry);
    return;
  }
#endif
  zero_cpu(full, geometry);
}

bool has_cuda() {
#ifdef AUTONAS_WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace autonas_ext

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "autonas block kernels: gather, store/accumulate and zero the active block of a full-size tensor";
  m.def("gather_block", &autonas_ext::gather_block, "Contiguous copy of the block (offsets, sizes) of a tensor");
  m.def("store_block", &autonas_ext::store_block, "Write or add a contiguous block into a tensor at offsets");
  m.def("zero_block", &autonas_ext::zero_block, "Zero the block (offsets, sizes) of a tensor");
  m.def("has_cuda", &autonas_ext::has_cuda, "Whether this build holds the CUDA kernels");
}
