// Sliced convolution and linear layers as C++ autograd functions.
//
// A dynamic layer stores full-size parameters and uses a block of them (the active channels, a
// centre-cropped kernel). Slicing inside autograd costs, per parameter and step, a fresh copy of the
// active weight in forward and a full-size zero-filled gradient in backward. Here instead:
//
// * forward copies the active weight into a buffer kept per parameter and reused once the previous
//   step's graph has released it (convolution libraries run faster on a weight whose memory they
//   saw before than on a fresh allocation);
// * backward writes the block gradient straight into the active block of the parameter's `.grad`.
//   When `.grad` is unset it becomes a full-size buffer kept per parameter and reused after
//   `zero_grad(set_to_none=True)`: only the block written the step before is zeroed again.
//
// Direct delivery is used only where it cannot be told apart from autograd accumulating the full
// gradient: a leaf parameter without hooks, a backward that accumulates into `.grad` (no `inputs=`,
// not `torch.autograd.grad`), no graph of the backward itself. Otherwise the function returns the
// full-size gradient as the slicing would.

#include <torch/extension.h>

#include <torch/csrc/autograd/custom_function.h>
#include <torch/csrc/autograd/graph_task.h>
#include <torch/csrc/autograd/variable.h>

#include <mutex>
#include <unordered_map>
#include <vector>

#include "block_ops.h"
#include "sliced_layers.h"

namespace autonas_ext {

namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
using WeakTensor = c10::weak_intrusive_ptr<c10::TensorImpl, c10::UndefinedTensorImpl>;

int64_t product(const std::vector<int64_t>& sizes) {
  int64_t total = 1;
  for (const int64_t size : sizes) total *= size;
  return total;
}

// Whether nothing but the pool refers to `buffer` or its memory (no `.grad`, view or saved tensor).
bool unshared(const at::Tensor& buffer) {
  size_t references = buffer.use_count();
  // Once Python has seen the tensor (e.g. read it as `.grad`), its Python object holds one reference
  // for as long as C++ holds another; when nothing but that tensor refers to the Python object, it
  // does not count.
  if (references == 2 && buffer.unsafeGetTensorImpl()->pyobj_slot()->has_unique_reference()) references = 1;
  return references == 1 && buffer.storage().use_count() == 1;
}

// Buffers kept per parameter, found by the parameter's TensorImpl and dropped when it is gone.
template <typename Entry>
class BufferPool {
 public:
  // The entry of `param`, or nullptr; the entry of a dead parameter whose address was reused is removed.
  Entry* find(const at::Tensor& param) {
    auto found = slots_.find(param.unsafeGetTensorImpl());
    if (found == slots_.end()) return nullptr;
    if (found->second.owner.lock().get() != param.unsafeGetTensorImpl()) {
      slots_.erase(found);
      return nullptr;
    }
    return &found->second.entry;
  }

  void insert(const at::Tensor& param, Entry entry) {
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
    Entry entry;
  };
  std::unordered_map<const c10::TensorImpl*, Slot> slots_;
};

struct WeightCopy {
  at::Tensor buffer;  // flat, as long as the full weight
};

struct GradBuffer {
  at::Tensor buffer;  // full size, zero outside `offsets`/`sizes`
  std::vector<int64_t> offsets;
  std::vector<int64_t> sizes;
  int64_t version = 0;  // the buffer's version after our last write: a higher one means a foreign write
};

std::mutex pool_mutex;
BufferPool<WeightCopy>& weight_copies() {
  static BufferPool<WeightCopy> pool;
  return pool;
}
BufferPool<GradBuffer>& grad_buffers() {
  static BufferPool<GradBuffer> pool;
  return pool;
}

// The block (offsets, sizes) of `full` as a contiguous tensor, in memory reused across steps.
at::Tensor active_block(const at::Tensor& full, const std::vector<int64_t>& offsets,
                        const std::vector<int64_t>& sizes) {
  if (sizes == full.sizes().vec()) return full;
  const int64_t numel = product(sizes);
  at::Tensor flat;
  {
    std::lock_guard<std::mutex> lock(pool_mutex);
    WeightCopy* entry = weight_copies().find(full);
    if (entry != nullptr && unshared(entry->buffer) && entry->buffer.numel() == full.numel()) {
      flat = entry->buffer;
    } else {
      // None yet, or busy (an earlier call's graph still holds it): a new one, kept unless busy.
      flat = at::empty({full.numel()}, full.options());
      if (entry == nullptr || unshared(entry->buffer)) weight_copies().insert(full, WeightCopy{flat});
    }
  }
  at::Tensor out = flat.narrow(0, 0, numel).view(sizes);
  gather_block_into(full, out, offsets);
  return out;
}

// Whether `param` may receive its block gradient in `.grad` directly during the running backward.
bool delivers_directly(const at::Tensor& param) {
  if (at::GradMode::is_enabled() || !param.is_leaf() || !param.requires_grad()) return false;
  if (!torch::autograd::impl::hooks(param).empty() || torch::autograd::impl::post_acc_grad_hooks(param)) return false;
  // An empty map: the engine runs every node and accumulates into every leaf (`backward()`).
  const auto* exec_info = torch::autograd::get_current_graph_task_exec_info();
  return exec_info != nullptr && exec_info->empty();
}

// A full-size tensor, zero but for `values` at `offsets`: the pooled buffer of `param` when free.
at::Tensor fresh_grad(const at::Tensor& param, const at::Tensor& values, const std::vector<int64_t>& offsets) {
  std::lock_guard<std::mutex> lock(pool_mutex);
  GradBuffer* entry = grad_buffers().find(param);
  at::Tensor buffer;
  if (entry != nullptr && unshared(entry->buffer)) {
    buffer = entry->buffer;
    if (buffer._version() == entry->version) {
      zero_block(buffer, entry->offsets, entry->sizes);  // the rest is still zero
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

std::vector<int64_t> bias_offsets(const std::vector<int64_t>& weight_offsets) { return {weight_offsets[0]}; }

class SlicedConv : public torch::autograd::Function<SlicedConv> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, std::vector<int64_t> offsets,
                            std::vector<int64_t> sizes, std::vector<int64_t> stride, std::vector<int64_t> padding, std::vector<int64_t> dilation,
                            int64_t groups) {
    const at::Tensor active_weight = active_block(weight, offsets, sizes);
    const at::Tensor full_bias = bias.value_or(at::Tensor());
    const at::Tensor active_bias = full_bias.defined() ? full_bias.narrow(0, offsets[0], sizes[0]) : at::Tensor();
    const std::vector<int64_t> output_padding(stride.size(), 0);
    at::Tensor output = at::convolution(input, active_weight, active_bias, stride, padding, dilation,
                                        /*transposed=*/false, output_padding, groups);
    ctx->save_for_backward({input, active_weight, weight, full_bias});
    ctx->saved_data["offsets"] = offsets;
    ctx->saved_data["stride"] = stride;
    ctx->saved_data["padding"] = padding;
    ctx->saved_data["dilation"] = dilation;
    ctx->saved_data["groups"] = groups;
    return output;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &input = saved[0], &active_weight = saved[1], &weight = saved[2], &bias = saved[3];
    const auto offsets = ctx->saved_data["offsets"].toIntVector();
    const auto stride = ctx->saved_data["stride"].toIntVector();
    const std::vector<int64_t> output_padding(stride.size(), 0);
    const bool wants_bias = bias.defined() && ctx->needs_input_grad(2);
    const std::vector<int64_t> bias_sizes = {active_weight.size(0)};
    auto [grad_input, grad_weight, grad_bias] = at::convolution_backward(
        grad_outputs[0], input, active_weight, wants_bias ? c10::OptionalIntArrayRef(bias_sizes) : c10::nullopt,
        stride, ctx->saved_data["padding"].toIntVector(), ctx->saved_data["dilation"].toIntVector(),
        /*transposed=*/false, output_padding, ctx->saved_data["groups"].toInt(),
        {ctx->needs_input_grad(0), ctx->needs_input_grad(1), wants_bias});
    at::Tensor weight_out = ctx->needs_input_grad(1) ? deliver(weight, grad_weight, offsets) : at::Tensor();
    at::Tensor bias_out = wants_bias ? deliver(bias, grad_bias, bias_offsets(offsets)) : at::Tensor();
    return {grad_input, weight_out, bias_out, at::Tensor(), at::Tensor(), at::Tensor(),
            at::Tensor(), at::Tensor(), at::Tensor()};
  }
};

class SlicedLinear : public torch::autograd::Function<SlicedLinear> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& input, const at::Tensor& weight,
                            const std::optional<at::Tensor>& bias, std::vector<int64_t> offsets,
                            std::vector<int64_t> sizes) {
    const at::Tensor active_weight = active_block(weight, offsets, sizes);
    const at::Tensor full_bias = bias.value_or(at::Tensor());
    const at::Tensor active_bias = full_bias.defined() ? full_bias.narrow(0, offsets[0], sizes[0]) : at::Tensor();
    ctx->save_for_backward({input, active_weight, weight, full_bias});
    ctx->saved_data["offsets"] = offsets;
    return at::linear(input, active_weight, active_bias);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &input = saved[0], &active_weight = saved[1], &weight = saved[2], &bias = saved[3];
    const auto offsets = ctx->saved_data["offsets"].toIntVector();
    const at::Tensor& grad_output = grad_outputs[0];
    const at::Tensor flat_grad = grad_output.reshape({-1, grad_output.size(-1)});
    at::Tensor grad_input, weight_out, bias_out;
    if (ctx->needs_input_grad(0)) grad_input = grad_output.matmul(active_weight);
    if (ctx->needs_input_grad(1)) {
      const at::Tensor block = flat_grad.t().mm(input.reshape({-1, input.size(-1)}));
      weight_out = deliver(weight, block, offsets);
    }
    if (bias.defined() && ctx->needs_input_grad(2)) bias_out = deliver(bias, flat_grad.sum(0), bias_offsets(offsets));
    return {grad_input, weight_out, bias_out, at::Tensor(), at::Tensor()};
  }
};

}  // namespace

at::Tensor sliced_conv(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                       std::vector<int64_t> offsets, std::vector<int64_t> sizes, std::vector<int64_t> stride,
                       std::vector<int64_t> padding, std::vector<int64_t> dilation, int64_t groups) {
  TORCH_CHECK(offsets.size() == static_cast<size_t>(weight.dim()) && sizes.size() == offsets.size(),
              "sliced_conv needs one offset and one size per weight dim");
  return SlicedConv::apply(input, weight, bias, std::move(offsets), std::move(sizes),
                           std::move(stride), std::move(padding), std::move(dilation), groups);
}

at::Tensor sliced_linear(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                         std::vector<int64_t> offsets, std::vector<int64_t> sizes) {
  TORCH_CHECK(weight.dim() == 2 && offsets.size() == 2 && sizes.size() == 2,
              "sliced_linear needs a 2-d weight and one offset and one size per weight dim");
  return SlicedLinear::apply(input, weight, bias, std::move(offsets), std::move(sizes));
}

void clear_buffers() {
  std::lock_guard<std::mutex> lock(pool_mutex);
  weight_copies().clear();
  grad_buffers().clear();
}

int64_t buffer_count() {
  std::lock_guard<std::mutex> lock(pool_mutex);
  return static_cast<int64_t>(weight_copies().size() + grad_buffers().size());
}

}  // namespace autonas_ext
