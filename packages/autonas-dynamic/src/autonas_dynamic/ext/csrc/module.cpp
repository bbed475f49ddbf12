// Python bindings of the compiled autonas kernels.

#include <torch/extension.h>

#include "block_ops.h"
#include "sliced_layers.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "autonas compiled kernels: block copies of full-size tensors and the sliced conv/linear layers";
  m.def("gather_block", &autonas_ext::gather_block, "Contiguous copy of the block (offsets, sizes) of a tensor");
  m.def("store_block", &autonas_ext::store_block, "Write or add a contiguous block into a tensor at offsets");
  m.def("zero_block", &autonas_ext::zero_block, "Zero the block (offsets, sizes) of a tensor");
  m.def("has_cuda", &autonas_ext::has_cuda, "Whether this build holds the CUDA kernels");
  m.def("sliced_conv", &autonas_ext::sliced_conv,
        "Convolution with the block (offsets, sizes) of a full weight and bias, gradients to the full tensors");
  m.def("sliced_linear", &autonas_ext::sliced_linear,
        "Linear map by the block (offsets, sizes) of a full weight and bias, gradients to the full tensors");
  m.def("clear_buffers", &autonas_ext::clear_buffers, "Drop the per-parameter weight copies and gradient buffers");
  m.def("buffer_count", &autonas_ext::buffer_count, "How many per-parameter buffers are kept");
}
