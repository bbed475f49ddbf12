"""Elementwise operations on several tensors (``+``, ``*``, ``torch.where`` ...): their inputs share a size.

A fixed-size operand that broadcasts along the elastic axis (size 1 there, or fewer axes: an
attention mask of shape ``(batch, 1, n, n)`` added to per-head scores) does not constrain it; this
is read from the traced shapes, so it needs an example input.
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
    flows = [flow for n, flow in inputs if not _broadcasts(ctx, n, flow, inputs)]
    result = ctx.synchronize(flows, f"operands of {ctx.describe(node)} cannot share one size")
    out = node.kwargs.get("out")
    if isinstance(out, fx.Node):  # torch.add(a, b, out=c): later uses of c read the result
        ctx.values[out] = result
    return result


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
