// The active block of a full-size parameter with direct gradient delivery (sliced_parameter.cpp).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <vector>

namespace autonas_ext {

// The block (offsets, sizes) of the contiguous `param` as a view whose gradient goes straight into
// the block of `param.grad` where autograd's own accumulation could not be told apart.
at::Tensor slice_parameter(const at::Tensor& param, std::vector<int64_t> offsets, std::vector<int64_t> sizes);

// Drop the gradient buffers kept per parameter.
void clear_buffers();

// How many gradient buffers are kept.
int64_t buffer_count();

}  // namespace autonas_ext
