"""Elementwise operations on several tensors (``+``, ``*``, ``torch.where`` ...): their inputs share a size."""

from __future__ import annotations

import torch.fx as fx

from ..analyzer import GraphContext
from ..ops import OpKind
from ..values import NEUTRAL, Value


def handle(ctx: GraphContext, node: fx.Node) -> Value | None:
    """Synchronize every tensor input; a fixed operand (a parameter, a model input) fixes them all."""
    kind = ctx.op_kind(node)
    if kind is None or kind[0] is not OpKind.ELEMENTWISE:
        return None
    flows = ctx.input_flows(node)
    if not flows:
        return NEUTRAL  # arithmetic on sizes and constants
    result = ctx.synchronize(flows, f"operands of {ctx.describe(node)} cannot share one size")
    out = node.kwargs.get("out")
    if isinstance(out, fx.Node):  # torch.add(a, b, out=c): later uses of c read the result
        ctx.values[out] = result
    return result
