"""Matrix products and attention over an elastic batch axis (the heads of multi-head attention).

``q @ k.transpose(-1, -2)``, ``weights @ v`` and ``F.scaled_dot_product_attention(q, k, v)`` on
tensors of shape ``(batch, heads, length, head_dim)`` multiply one matrix per head: the heads axis
is a batch axis of the product, so the operands' heads must agree and the result keeps them. An
operand of fixed size that broadcasts along that axis (a mask of shape ``(batch, 1, n, n)``) does
not constrain it. Sizes of the two matrix axes stay fixed: an elastic axis there is a boundary.
Needs the traced shapes (an example input).
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx
import torch.nn.functional as F

from ..analyzer import GraphContext
from ..values import FIXED, Flow, Value
from .reshape import elastic_axis

_MATMULS = {torch.matmul, operator.matmul, "matmul"}


def handle(ctx: GraphContext, node: fx.Node) -> Value | None:
    """The product carries the operands' group on the same batch axis (counted from the end)."""
    if node.target is F.scaled_dot_product_attention:
        names = ("query", "key", "value")
        operands = [node.args[i] if i < len(node.args) else node.kwargs.get(name) for i, name in enumerate(names)]
        mask = node.args[3] if len(node.args) > 3 else node.kwargs.get("attn_mask")
        broadcast = [mask]
    elif node.target in _MATMULS and node.op in ("call_function", "call_method"):
        operands, broadcast = list(node.args[:2]), []
    else:
        return None
    flows = [ctx.value(arg) for arg in operands]
    elastic = [(arg, f) for arg, f in zip(operands, flows, strict=True) if isinstance(f, Flow) and f.sym is not None]
    out = ctx.concrete(node)
    if not elastic or not isinstance(out, torch.Tensor):
        return None
    axes, sizes = set(), set()
    for arg, flow in elastic:
        value = ctx.concrete(arg)
        axis = elastic_axis(flow, value.dim()) if isinstance(value, torch.Tensor) and not flow.is_shape else None
        if axis is None or axis >= value.dim() - 2:  # not a batch axis of the product
            return None
        axes.add(axis - value.dim())
        sizes.add(value.shape[axis])
    if len(axes) != 1 or len(sizes) != 1:  # fewer key/value heads than query heads (grouped queries)
        return None
    from_end = axes.pop()
    others = [arg for arg, f in zip(operands, flows, strict=True) if not (isinstance(f, Flow) and f.sym is not None)]
    for arg in [*others, *broadcast]:
        value = ctx.concrete(arg)
        if isinstance(value, torch.Tensor) and value.dim() >= -from_end and value.shape[from_end] != 1:
            return None  # a fixed-size operand along the elastic axis: the boundary fixes everything
    ctx.fix([ctx.value(mask) for mask in broadcast], f"mask of {ctx.describe(node)}")
    coupled = ctx.synchronize([f for _, f in elastic], f"operands of {ctx.describe(node)} cannot share their heads")
    if coupled.sym is None:
        return FIXED
    return Flow(coupled.sym, frozenset({from_end, out.dim() + from_end}), block=coupled.block)
