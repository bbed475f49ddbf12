"""Matrix products and attention over an elastic batch axis (the heads of multi-head attention).

``q @ k.transpose(-1, -2)``, ``weights @ v`` and ``F.scaled_dot_product_attention(q, k, v)`` on
tensors of shape ``(batch, heads, length, head_dim)`` multiply one matrix per head: the heads axis
is a batch axis of the product, so the operands' heads must agree and the result keeps them. An
operand of fixed size that broadcasts along that axis (a mask of shape ``(batch, 1, n, n)``) does
not constrain it; a mask with one entry per head (a relative position bias) follows the head count. Sizes of the two matrix axes stay fixed: an elastic axis there is a boundary. With grouped queries
(``enable_gqa``: fewer key/value heads than query heads) keys and values share their heads, and the
queries are recorded as whole groups of them (:attr:`ModelState.grouped_heads`); so are they in
eager attention's two products with keys and values repeated per group (``repeat_kv``).
Needs the traced shapes (an example input).
"""

from __future__ import annotations

import operator
from dataclasses import replace

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
    axes, sizes = set(), []
    for arg, flow in elastic:
        value = ctx.concrete(arg)
        axis = elastic_axis(flow, value.dim()) if isinstance(value, torch.Tensor) and not flow.is_shape else None
        if axis is None or axis >= value.dim() - 2:  # not a batch axis of the product
            return None
        axes.add(axis - value.dim())
        sizes.append(value.shape[axis])
    if len(axes) != 1:
        return None
    from_end = axes.pop()
    groups = _query_groups(node, [flow for _, flow in elastic], sizes)
    if len(set(sizes)) != 1 and groups is None:
        return None
    others = [arg for arg, f in zip(operands, flows, strict=True) if not (isinstance(f, Flow) and f.sym is not None)]
    per_head = [mask for mask in broadcast if _per_head(ctx, mask, from_end)]
    broadcast = [mask for mask in broadcast if mask not in per_head]
    for arg in [*others, *broadcast]:
        value = ctx.concrete(arg)
        if isinstance(value, torch.Tensor) and value.dim() >= -from_end and value.shape[from_end] != 1:
            return None  # a fixed-size operand along the elastic axis: the boundary fixes everything
    ctx.fix([ctx.value(mask) for mask in broadcast], f"mask of {ctx.describe(node)}")
    reason = f"operands of {ctx.describe(node)} cannot share their heads"
    repeated = _repeated_operand(node, [flow for _, flow in elastic], sizes) if groups is None else None
    if groups is not None:  # grouped queries: keys and values share their heads, queries are groups of them
        (_, query), key_values = elastic[0], [flow for _, flow in elastic[1:]]
        shared = ctx.synchronize(key_values, reason)
        if shared.sym is None or query.sym is None or query.block != shared.block or query.repeat != 1:
            ctx.fix([query, shared], reason)
            return FIXED
        ctx.state.grouped_heads.append((query.sym, shared.sym, groups))
        coupled = query
    elif repeated is not None:  # one product of eager grouped-query attention: q @ k.T or weights @ v
        query, key_value = repeated
        if query.sym is None or key_value.sym is None or query.block != key_value.block:
            ctx.fix([query, key_value], reason)
            return FIXED
        _group_queries(ctx, query, key_value, reason)
        coupled = query
    else:
        coupled = ctx.synchronize([f for _, f in elastic], reason)
    if coupled.sym is None:
        return FIXED
    if per_head:  # a bias with one entry per head (T5's, Swin's relative position bias) in the mask
        masks = [value for mask in per_head if isinstance(value := ctx.value(mask), Flow)]
        ctx.count_heads(masks, coupled, f"mask of {ctx.describe(node)}")
    return Flow(coupled.sym, frozenset({from_end, out.dim() + from_end}), block=coupled.block)


def _per_head(ctx: GraphContext, mask: object, from_end: int) -> bool:
    """Whether an attention mask has one entry per head: a whole-channel tensor elastic on the heads axis."""
    flow, value = ctx.value(mask), ctx.concrete(mask)
    if not isinstance(flow, Flow) or flow.sym is None or flow.is_shape or not isinstance(value, torch.Tensor):
        return False
    return flow.block == 1 and value.dim() >= -from_end and elastic_axis(flow, value.dim()) == value.dim() + from_end


def _repeated_operand(node: fx.Node, flows: list[Flow], sizes: list[int]) -> tuple[Flow, Flow] | None:
    """``(queries, keys or values)`` of a matmul whose second operand's heads were repeated to the
    queries' count (``repeat_kv`` in eager attention), else None."""
    if node.target is F.scaled_dot_product_attention or len(flows) != 2 or sizes[0] != sizes[1]:
        return None
    first, second = flows
    if first.repeat == 1 and second.repeat > 1:
        return first, second
    if second.repeat == 1 and first.repeat > 1:
        return second, first
    return None


def _group_queries(ctx: GraphContext, query: Flow, key_value: Flow, reason: str) -> None:
    """Record the queries as whole groups of the repeated heads; the keys of those queries and their
    values (two products in eager attention) share their heads."""
    assert query.sym is not None and key_value.sym is not None
    for queries, shared, groups in ctx.state.grouped_heads:
        if queries.find() is query.sym.find() and groups == key_value.repeat:
            ctx.synchronize([key_value, replace(key_value, sym=shared)], reason)
            return
    ctx.state.grouped_heads.append((query.sym, key_value.sym, key_value.repeat))


def _query_groups(node: fx.Node, flows: list[Flow], sizes: list[int]) -> int | None:
    """Queries per key/value head of a grouped-query attention, else None.

    Either SDPA's ``enable_gqa`` with fewer key/value heads, or keys and values whose heads were
    repeated (``repeat_kv``) to the queries' count.
    """
    if node.target is not F.scaled_dot_product_attention or len(flows) != 3:
        return None
    (query, key, value), (_, key_flow, value_flow) = sizes, flows
    if key_flow.repeat > 1 and key_flow.repeat == value_flow.repeat and query == key == value:
        return key_flow.repeat
    if not node.kwargs.get("enable_gqa") or key != value or query % key or query == key:
        return None
    return query // key
