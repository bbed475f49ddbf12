// The active block of a full-size parameter as an autograd function with direct gradient delivery.
//
// A dynamic layer stores full-size parameters and uses a block of them (the active channels, a
// centre-cropped kernel). Slicing inside autograd gives the layer a strided view, which convolution,
// matmul and normalisation read in place; its backward, though, builds a full-size zero tensor per
// sliced parameter and step, copies the block gradient in and hands that to `.grad`. Here the
// forward returns the same view, and the backward writes the block gradient straight into the
// active block of the parameter's `.grad` (adding to it when `.grad` exists). When `.grad` is unset
// it becomes a full-size buffer kept per parameter and reused after `zero_grad(set_to_none=True)`:
// only the part of the block written the step before that the new block does not cover is zeroed.
//
// Direct delivery is used only where it cannot be told apart from autograd accumulating the full
// gradient: a leaf parameter without hooks, a backward that accumulates into `.grad` (no `inputs=`,
// not `torch.autograd.grad`), no graph of the backward itself. Otherwise the function returns the
// full-size gradient as the slicing would.

#include <torch/extension.h>

#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/graph_task.h>
#include <torch/csrc/autograd/variable.h>

#include <algorithm>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "block_ops.h"
#include "sliced_parameter.h"

namespace autonas_ext {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using WeakTensor = c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>;

// Whether nothing but the pool refers to `buffer` or its memory (no `.grad`, view or saved tensor).
bool unshared(const at::Tensor& buffer) {
  size_t references = buffer.use_count();
  // Once Python has seen the tensor (e.g. read it as `.grad`), its Python object holds one reference
  // for as long as C++ holds another; when nothing but that tensor refers to the Python object, it
  // does not count.
  if (references == 2 && buffer.unsafeGetTensorImpl()->pyobj_slot()->has_unique_reference()) references = 1;
  return references == 1 && buffer.storage().use_count() == 1;
}

struct GradBuffer {
  at::Tensor buffer;  // full size, zero outside `offsets`/`sizes`
  std::vector<int64_t> offsets;
  std::vector<int64_t> sizes;
  int64_t version = 0;  // the buffer's version after our last write: a higher one means a foreign write
};

// Gradient buffers kept per parameter, found by the parameter's TensorImpl and dropped when it is gone.
class GradBufferPool {
 public:
  // The entry of `param`, or nullptr; the entry of a dead parameter whose address was reused is removed.
  GradBuffer* find(const at::Tensor& param) {
    auto found = slots_.find(param.unsafeGetTensorImpl());
    if (found == slots_.end()) return nullptr;
    if (found->second.owner.lock().get() != param.unsafeGetTensorImpl()) {
      slots_.erase(found);
      return nullptr;
    }
    return &found->second.entry;
  }

  void insert(const at::Tensor& param, GradBuffer entry) {
    // Parameters come and go rarely: clearing out dead ones on each insertion keeps the pool small.
    for (auto it = slots_.begin(); it != slots_.end();) {
      it = it->second.owner.expired() ? slots_.erase(it) : std::next(it);
    }
    slots_.insert_or_assign(param.unsafeGetTensorImpl(), Slot{WeakTensor(param.getIntrusivePtr()), std::move(entry)});
  }

  void clear() { slots_.clear(); }
  size_t size() const { return slots_.size(); }

 private:
  struct Slot {
    WeakTensor owner;
    GradBuffer entry;
  };
  std::unordered_map<const c10::TensorImpl*, Slot> slots_;
};

std::mutex pool_mutex;
GradBufferPool& grad_buffers() {
  static GradBufferPool pool;
  return pool;
}

// Whether `param` may receive its block gradient in `.grad` directly during the running backward.
bool delivers_directly(const at::Tensor& param) {
  if (at::GradMode::is_enabled() || !param.is_leaf() || !param.requires_grad()) return false;
  if (!torch::autograd::impl::hooks(param).empty() || torch::autograd::impl::post_acc_grad_hooks(param)) return false;
  // An empty map: the engine runs every node and accumulates into every leaf (`backward()`).
  const auto* exec_info = torch::autograd::get_current_graph_task_exec_info();
  return exec_info != nullptr && exec_info->empty();
}

// Zero the part of the block (old_offsets, old_sizes) of `buffer` that lies outside the block
// (new_offsets, new_sizes), which is about to be overwritten anyway. The difference of two boxes is
// at most two boxes per dim: cut off what lies below and above the new block in each dim in turn,
// then narrow the old block to the overlap and go on with the next dim.
void zero_stale(const at::Tensor& buffer, std::vector<int64_t> old_offsets, std::vector<int64_t> old_sizes,
                const std::vector<int64_t>& new_offsets, const std::vector<int64_t>& new_sizes) {
  for (size_t dim = 0; dim < old_offsets.size(); ++dim) {
    const int64_t low = old_offsets[dim], high = low + old_sizes[dim];
    const int64_t keep_low = std::max(low, new_offsets[dim]);
    const int64_t keep_high = std::min(high, new_offsets[dim] + new_sizes[dim]);
    if (keep_low >= keep_high) {  // no overlap left: what remains of the old block goes whole
      zero_block(buffer, old_offsets, old_sizes);
      return;
    }
    if (keep_low > low) {
      old_sizes[dim] = keep_low - low;
      zero_block(buffer, old_offsets, old_sizes);
    }
    if (keep_high < high) {
      old_offsets[dim] = keep_high;
      old_sizes[dim] = high - keep_high;
      zero_block(buffer, old_offsets, old_sizes);
    }
    old_offsets[dim] = keep_low;
    old_sizes[dim] = keep_high - keep_low;
  }
}

// A full-size tensor, zero but for `values` at `offsets`: the pooled buffer of `param` when free.
at::Tensor fresh_grad(const at::Tensor& param, const at::Tensor& values, const std::vector<int64_t>& offsets) {
  std::lock_guard<std::mutex> lock(pool_mutex);
  GradBuffer* entry = grad_buffers().find(param);
  at::Tensor buffer;
  if (entry != nullptr && unshared(entry->buffer)) {
    buffer = entry->buffer;
    if (buffer._version() == entry->version) {
      // The rest is still zero, and the new block is overwritten below.
      zero_stale(buffer, entry->offsets, entry->sizes, offsets, values.sizes().vec());
    } else {
      buffer.zero_();  // written by someone else since (e.g. a gradient clip or unscale in place)
    }
  } else {
    buffer = at::zeros_like(param, at::MemoryFormat::Contiguous);
  }
  store_block(buffer, values, offsets, /*accumulate=*/false);
  GradBuffer record{buffer, offsets, values.sizes().vec(), buffer._version()};
  if (entry != nullptr) {
    *entry = std::move(record);
  } else {
    grad_buffers().insert(param, std::move(record));
  }
  return buffer;
}

// Give `param` the gradient `values` of its block at `offsets`. Returns an undefined tensor when the
// gradient went into `.grad` directly, else the full-size gradient for autograd to accumulate.
at::Tensor deliver(const at::Tensor& param, const at::Tensor& values, const std::vector<int64_t>& offsets) {
  const at::Tensor block = values.contiguous();
  if (delivers_directly(param)) {
    at::Tensor& grad = param.mutable_grad();
    if (!grad.defined()) {
      grad = fresh_grad(param, block, offsets);
      return at::Tensor();
    }
    if (grad.layout() == at::kStrided && grad.is_contiguous() && !grad.requires_grad() &&
        grad.sizes() == param.sizes() && grad.scalar_type() == block.scalar_type()) {
      store_block(grad, block, offsets, /*accumulate=*/true);
      return at::Tensor();
    }
  }
  at::Tensor full = at::zeros_like(param, at::MemoryFormat::Contiguous);
  store_block(full, block, offsets, /*accumulate=*/false);
  return full;
}

class SliceParameter : public torch::autograd::Function<SliceParameter> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& param, std::vector<int64_t> offsets,
                            std::vector<int64_t> sizes) {
    ctx->save_for_backward({param});
    ctx->saved_data["offsets"] = offsets;
    return block_view(param, offsets, sizes);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const at::Tensor param = ctx->get_saved_variables()[0];
    const auto offsets = ctx->saved_data["offsets"].toIntVector();
    return {deliver(param, grad_outputs[0], offsets), at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor slice_parameter(const at::Tensor& param, std::vector<int64_t> offsets, std::vector<int64_t> sizes) {
  return SliceParameter::apply(param, std::move(offsets), std::move(sizes));
}

void clear_buffers() {
  std::lock_guard<std::mutex> lock(pool_mutex);
  grad_buffers().clear();
}

int64_t buffer_count() {
  std::lock_guard<std::mutex> lock(pool_mutex);
  return static_cast<int64_t>(grad_buffers().size());
}

}  // namespace autonas_ext
