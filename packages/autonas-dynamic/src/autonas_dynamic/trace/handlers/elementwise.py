"""Elementwise operations on several tensors (``+``, ``*``, ``torch.where`` ...): their inputs share a size."""

from __future__ import annotations

import torch.fx as fx
import torch.nn.functional as F

from ..analyzer import GraphContext
from ..ops import OpKind, function_kind, method_kind
from ..values import NEUTRAL, Value


def handle(ctx: GraphContext, node: fx.Node) -> Value | None:
    """Synchronize every tensor input; a fixed operand (a parameter, a model input) fixes them all."""
    if node.op == "call_function":
        kind = (OpKind.ELEMENTWISE, None) if node.target is F.prelu else function_kind(node.target)
    elif node.op == "call_method":
        kind = method_kind(node.target)
    else:
        return None
    if kind is None or kind[0] is not OpKind.ELEMENTWISE:
        return None
    flows = ctx.input_flows(node)
    if not flows:
        return NEUTRAL  # arithmetic on sizes and constants
    result = ctx.synchronize(flows, f"operands of {ctx.describe(node)} cannot share one size")
    _follow_out_argument(ctx, node, result)
    return result


def _follow_out_argument(ctx: GraphContext, node: fx.Node, result: Value) -> None:
    """``torch.add(a, b, out=c)`` writes into ``c``: later uses of ``c`` see the result's size."""
    out = node.kwargs.get("out")
    if isinstance(out, fx.Node):
        ctx.values[out] = result
