// Sliced convolution and linear layers as autograd functions (sliced_layers.cpp).
#pragma once

#include <ATen/ATen.h>

#include <cstdint>
#include <optional>
#include <vector>

namespace autonas_ext {

// Convolution (not transposed) of `input` with the block (offsets, sizes) of the full `weight` and
// the matching part of `bias`; gradients reach the full parameters.
at::Tensor sliced_conv(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       std::vector<int64_t> offsets, std::vector<int64_t> sizes, std::vector<int64_t> stride,
                       std::vector<int64_t> padding, std::vector<int64_t> dilation, int64_t groups);

// Linear map of `input` by the block (offsets, sizes) of the full `weight` and the matching part of `bias`.
at::Tensor sliced_linear(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         std::vector<int64_t> offsets, std::vector<int64_t> sizes);

// Drop the weight copies and gradient buffers kept per parameter.
void clear_buffers();

// How many buffers are kept (weight copies and gradient buffers together).
int64_t buffer_count();

}  // namespace autonas_ext
