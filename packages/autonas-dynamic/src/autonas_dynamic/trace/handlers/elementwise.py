"""Elementwise operations on several tensors (``+``, ``*``, ``torch.where`` ...): their inputs share a size.

A fixed-size operand that broadcasts along the elastic axis (size 1 there, or fewer axes: an
attention mask of shape ``(batch, 1, n, n)`` added to per-head scores) does not constrain it; this
is read from the traced shapes, so it needs an example input. A tensor with one entry per head
meeting scores split into heads (a relative position bias) follows their head count. A per-channel
operand that meets split heads on an axis inside each head (a norm weight of ``head_dim`` entries)
keeps its size.
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
    inside = _inside_heads(ctx, inputs)
    if inside:
        ctx.fix(inside, f"it meets the inside of attention heads at {ctx.describe(node)} (a head keeps its width)")
    kept = [(n, flow) for n, flow in inputs if not any(flow is other for other in inside)]
    flows = _per_head(ctx, [flow for n, flow in kept if not _broadcasts(ctx, n, flow, kept)], reason)
    result = ctx.synchronize(flows, reason)
    out = node.kwargs.get("out")
    if isinstance(out, fx.Node):  # torch.add(a, b, out=c): later uses of c read the result
        ctx.values[out] = result
    return result


def _inside_heads(ctx: GraphContext, inputs: list[tuple[fx.Node, Flow]]) -> list[Flow]:
    """The whole-channel operands whose elastic axis lies inside the heads of another operand.

    Qwen3 normalises each head of its queries, ``(..., heads, head_dim)``, with an RMSNorm weight of
    ``head_dim`` entries on the last axis. That weight is sized by the width of one head, which stays.
    """
    heads_from_end = set()
    for node, flow in inputs:
        if flow.sym is not None and flow.block > 1:
            axis = _axis_from_end(ctx, node, flow)
            if axis is None:
                return []
            heads_from_end.add(axis)
    if len(heads_from_end) != 1:
        return []
    (heads_axis,) = heads_from_end
    inside = []
    for node, flow in inputs:
        if flow.sym is None or flow.block != 1 or flow.is_shape:
            continue
        axis = _axis_from_end(ctx, node, flow)
        if axis is not None and axis > heads_axis:
            inside.append(flow)
    return inside


def _axis_from_end(ctx: GraphContext, node: fx.Node, flow: Flow) -> int | None:
    """The elastic axis of ``node``'s tensor counted from its end (-1: the last), if it can be told."""
    value = ctx.concrete(node)
    if not isinstance(value, torch.Tensor):
        return None
    axis = elastic_axis(flow, value.dim())
    return None if axis is None else axis - value.dim()


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
