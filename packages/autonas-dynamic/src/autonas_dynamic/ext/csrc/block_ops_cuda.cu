// CUDA block kernels: one thread per block element (grid-stride), the element's place in the full
// tensor found by splitting its block index over the block sizes.

// Only c10's CUDA headers (not ATen/cuda/CUDAContext.h, which pulls in cuBLAS/cuSPARSE headers that
// a minimal toolkit lacks).
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <cuda_runtime.h>

#include <algorithm>

#include "block_ops.h"

namespace autonas_ext {

namespace {

constexpr int kThreads = 256;

__device__ __forceinline__ int64_t full_offset(const BlockGeometry& g, int64_t index) {
  int64_t offset = g.base;
  for (int64_t dim = g.ndim - 1; dim >= 0; --dim) {
    offset += (index % g.sizes[dim]) * g.strides[dim];
    index /= g.sizes[dim];
  }
  return offset;
}

template <typename scalar_t>
__global__ void store_kernel(scalar_t* __restrict__ full, const scalar_t* __restrict__ block, BlockGeometry g,
                             bool accumulate) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < g.numel;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t at = full_offset(g, i);
    full[at] = accumulate ? static_cast<scalar_t>(full[at] + block[i]) : block[i];
  }
}

template <typename scalar_t>
__global__ void zero_kernel(scalar_t* __restrict__ full, BlockGeometry g) {
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < g.numel;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    full[full_offset(g, i)] = static_cast<scalar_t>(0);
  }
}

inline unsigned int blocks_for(int64_t numel, c10::DeviceIndex device) {
  int processors = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&processors, cudaDevAttrMultiProcessorCount, device));
  const int64_t wanted = (numel + kThreads - 1) / kThreads;
  const int64_t limit = static_cast<int64_t>(processors) * 32;
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min(wanted, limit)));
}

}  // namespace

void store_cuda(const at::Tensor& full, const at::Tensor& block, const BlockGeometry& geometry, bool accumulate) {
  const c10::cuda::CUDAGuard guard(full.device());
  auto stream = c10::cuda::getCurrentCUDAStream(full.device().index());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, full.scalar_type(), "autonas_store_block_cuda", [&] {
    store_kernel<scalar_t><<<blocks_for(geometry.numel, full.device().index()), kThreads, 0, stream>>>(
        full.data_ptr<scalar_t>(), block.const_data_ptr<scalar_t>(), geometry, accumulate);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

void zero_cuda(const at::Tensor& full, const BlockGeometry& geometry) {
  const c10::cuda::CUDAGuard guard(full.device());
  auto stream = c10::cuda::getCurrentCUDAStream(full.device().index());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, full.scalar_type(), "autonas_zero_block_cuda", [&] {
    zero_kernel<scalar_t><<<blocks_for(geometry.numel, full.device().index()), kThreads, 0, stream>>>(full.data_ptr<scalar_t>(), geometry);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

}  // namespace autonas_ext
