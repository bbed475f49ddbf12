"""The plain-torch form of an ``nn.MultiheadAttention`` at fewer heads: a ``torch.fx.GraphModule``.

Plain torch: nothing of autonas is needed to run it or to unpickle it. The graph is
:func:`~.multihead_ops.attend` traced for one :class:`~.multihead_ops.AttentionCall` (the way the
model called the module: batched or not, ``need_weights``, ``average_attn_weights``, ``is_causal``,
whether query, key and value were one tensor, which masks and of which kind), under the signature
of ``nn.MultiheadAttention.forward``, with checks (``torch._assert``) that a later call is made the
same way; a mask the call did not pass is not read (fx cannot test for ``None`` in a way it can
trace again, as it does when a ``GraphModule`` is unpickled). It attends as in evaluation (no
attention dropout). The tensors keep their names (``in_proj_weight``, ``out_proj.weight``, ...).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.fx as fx
from torch import nn
from torch.nn.modules.linear import NonDynamicallyQuantizableLinear

from .multihead_ops import INPUT_KINDS, AttentionCall, AttentionTensors, attend

__all__ = ["export_graph"]

#: The tensors held by the module itself (the output projection holds its own).
_OWN_TENSORS = ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight", "in_proj_bias", "bias_k", "bias_v")


class _Holder(nn.Module):
    """The exported tensors, and the forward fx traces into the graph."""

    def __init__(self, tensors: AttentionTensors, call: AttentionCall, settings: dict[str, Any]) -> None:
        super().__init__()
        for name in _OWN_TENSORS:
            tensor = getattr(tensors, name)
            if tensor is not None:
                self.register_parameter(name, nn.Parameter(tensor.detach().clone()))
        out_features, in_features = tensors.out_weight.shape
        self.out_proj = NonDynamicallyQuantizableLinear(in_features, out_features, bias=tensors.out_bias is not None)
        self.out_proj.weight = nn.Parameter(tensors.out_weight.detach().clone())
        if tensors.out_bias is not None:
            self.out_proj.bias = nn.Parameter(tensors.out_bias.detach().clone())
        self.call, self.settings = call, settings

    def forward(
        self,
        query: Any,
        key: Any,
        value: Any,
        key_padding_mask: Any = None,
        need_weights: Any = True,
        attn_mask: Any = None,
        average_attn_weights: Any = True,
        is_causal: Any = False,
    ) -> Any:
        call = self.call
        flags = {"need_weights": need_weights, "average_attn_weights": average_attn_weights, "is_causal": is_causal}
        for name, given in flags.items():
            expected = getattr(call, name)
            torch._assert(given == expected, f"this exported attention was specialised to {name}={expected}")
        torch._assert(
            query.dim() == (3 if call.batched else 2), f"this exported attention takes batched={call.batched} inputs"
        )
        if call.inputs != "separate":  # one tensor: compared by storage (fx cannot trace an identity check again)
            message = f"this exported attention was specialised to {INPUT_KINDS[call.inputs]}"
            torch._assert(value.data_ptr() == key.data_ptr(), message)
            if call.inputs == "self":
                torch._assert(key.data_ptr() == query.data_ptr(), message)
        _check_mask("key_padding_mask", key_padding_mask, call.key_padding_mask, dims=None)
        _check_mask("attn_mask", attn_mask, call.attn_mask, dims=2)
        own = {name: getattr(self, name, None) for name in _OWN_TENSORS}
        tensors = AttentionTensors(**own, out_weight=self.out_proj.weight, out_bias=self.out_proj.bias)
        masks = (
            None if call.key_padding_mask is None else key_padding_mask,
            None if call.attn_mask is None else attn_mask,
        )
        return attend(tensors, call, (query, key, value), masks, dropout_p=0.0, **self.settings)


def _check_mask(name: str, mask: Any, kind: str | None, dims: int | None) -> None:
    """A mask the call passed must be of its kind (one it did not pass is not read: fx cannot test for None)."""
    if kind is None:
        return
    torch._assert((mask.dtype == torch.bool) == (kind == "bool"), f"this exported attention takes a {kind} {name}")
    if dims is not None:
        torch._assert(mask.dim() == dims, f"this exported attention takes a {dims}-D {name}")


def export_graph(
    tensors: AttentionTensors, call: AttentionCall, *, training: bool, requires_grad: bool, **settings: Any
) -> fx.GraphModule:
    """The plain-torch module computing :func:`attend` on copies of ``tensors``, specialised to ``call``.

    Args:
        settings: The keyword arguments of :func:`attend` that describe the module (``heads``,
            ``head_dim``, ``batch_first``, ``add_zero_attn``).
    """
    holder = _Holder(tensors, call, settings)
    graph = fx.Tracer().trace(holder)
    for node in graph.nodes:
        # the forward's annotations are strings here; some torch versions cannot pickle a graph whose
        # code names them, and the types say nothing the code does not
        node.type = None
    exported = fx.GraphModule(holder, graph, class_name="MultiheadAttention")
    exported.requires_grad_(requires_grad)
    return exported.train(training)
