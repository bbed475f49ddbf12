"""Elementwise operations on several tensors (``+``, ``*``, ``torch.where`` ...): their inputs share a size.

A fixed-size operand that broadcasts along the elastic axis (size 1 there, or fewer axes: an
attention mask of shape ``(batch, 1, n, n)`` added to per-head scores) does not constrain it; this
is read from the traced shapes, so it needs an example input. A tensor with one entry per head
meeting scores split into heads (a relative position bias) follows their head count.
"""

from __future__ import annotations

import torch
import torch.fx as fx

from ..analyzer import GraphContext
from ..ops import OpKind
from ..values import NEUTRAL, Flow, Value
from .reshape import elastic_axis


def handle(ctx: GraphContext, node: fx.Node) -> Value | None:
    """Synchronize every tensor input; a fixed operand (a parameter, a model input) fixes them all."""
    kind = ctx.op_kind(node)
    if kind is None or kind[0] is not OpKind.ELEMENTWISE:
        return None
    inputs = [(n, v) for n in node.all_input_nodes if isinstance(v := ctx.value(n), Flow)]
    if not inputs:
        return NEUTRAL  # arithmetic on sizes and constants
    reason = f"operands of {ctx.describe(node)} cannot share one size"
    flows = _per_head(ctx, [flow for n, flow in inputs if not _broadcasts(ctx, n, flow, inputs)], reason)
    result = ctx.synchronize(flows, reason)
    out = node.kwargs.get("out")
    if isinstance(out, fx.Node):  # torch.add(a, b, out=c): later uses of c read the result
        ctx.values[out] = result
    return result


def _per_head(ctx: GraphContext, flows: list[Flow], reason: str) -> list[Flow]:
    """``flows`` less the whole-channel ones that meet heads on their heads axis, coupled as one entry per head.

    ``scores + bias`` with scores split into heads (one index standing for ``head_dim`` channels)
    and a bias of one entry per head (an embedding's, a held table's) along the same axis.
    """
    heads = [flow for flow in flows if flow.sym is not None and flow.block > 1]
    per_head = [flow for flow in flows if flow.sym is not None and flow.block == 1 and not flow.is_shape]
    if not heads or not per_head or not all(flow.dims & heads[0].dims for flow in per_head):
        return flows
    ctx.count_heads(per_head, ctx.synchronize(heads, reason), reason)
    return [flow for flow in flows if not any(flow is other for other in per_head)]


def _broadcasts(ctx: GraphContext, node: fx.Node, flow: Flow, inputs: list[tuple[fx.Node, Flow]]) -> bool:
    """Whether a fixed tensor operand has size 1 (or no axis) where the searchable operands are elastic."""
    if flow.sym is not None or flow.is_shape:
        return False
    value = ctx.concrete(node)
    if not isinstance(value, torch.Tensor):
        return False
    from_end = set()
    for other, other_flow in inputs:
        other_value = ctx.concrete(other)
        if other_flow.sym is None or other_flow.is_shape or not isinstance(other_value, torch.Tensor):
            continue
        axis = elastic_axis(other_flow, other_value.dim())
        if axis is None:
            return False
        from_end.add(axis - other_value.dim())
    return len(from_end) == 1 and all(value.dim() < -end or value.shape[end] == 1 for end in from_end)
