// Python bindings of the compiled autonas kernels.

#include <torch/extension.h>

#include "block_ops.h"
#include "sliced_parameter.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "autonas compiled extension: block copies of full-size tensors and sliced parameters";
  m.def("store_block", &autonas_ext::store_block, "Write or add a contiguous block into a tensor at offsets");
  m.def("zero_block", &autonas_ext::zero_block, "Zero the block (offsets, sizes) of a tensor");
  m.def("has_cuda", &autonas_ext::has_cuda, "Whether this build holds the CUDA kernels");
  m.def("slice_parameter", &autonas_ext::slice_parameter,
        "The block (offsets, sizes) of a parameter as a view whose gradient goes straight into the parameter's .grad");
  m.def("clear_buffers", &autonas_ext::clear_buffers, "Drop the per-parameter gradient buffers");
  m.def("buffer_count", &autonas_ext::buffer_count, "How many per-parameter gradient buffers are kept");
}
