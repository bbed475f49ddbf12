"""Elementwise operations on several tensors (``+``, ``*``, ``torch.where`` ...): their inputs share a size.

A fixed-size operand that broadcasts along the elastic axis (size 1 there, or fewer axes: an
attention mask of shape ``(batch, 1, n, n)`` added to per-head scores) does not constrain it; this
is read from the traced shapes, so it needs an example input.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.fx as fx
import torch.nn as nn

from ..analyzer import GraphContext
from ..ops import OpKind
from ..symbols import Symbol
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
    flows = _per_head_holders(ctx, [flow for n, flow in inputs if not _broadcasts(ctx, n, flow, inputs)])
    result = ctx.synchronize(flows, f"operands of {ctx.describe(node)} cannot share one size")
    out = node.kwargs.get("out")
    if isinstance(out, fx.Node):  # torch.add(a, b, out=c): later uses of c read the result
        ctx.values[out] = result
    return result


def _per_head_holders(ctx: GraphContext, flows: list[Flow]) -> list[Flow]:
    """``flows`` with each fresh per-channel held tensor made per-head where the others are split into heads."""
    blocks = {flow.block for flow in flows if flow.sym is not None and not _fresh_holder(ctx, flow)}
    if len(blocks) != 1 or (block := blocks.pop()) == 1:
        return flows
    result = []
    for flow in flows:
        held = _fresh_holder(ctx, flow)
        if held is not None:
            owner, name, (sym, dim, _) = held
            ctx.state.holders[owner][name] = (sym, dim, block)
            sym.mark_unsortable()
            flow = replace(flow, block=block)
        result.append(flow)
    return result


def _fresh_holder(ctx: GraphContext, flow: Flow) -> tuple[nn.Module, str, tuple[Symbol, int, int]] | None:
    """The held tensor ``flow`` reads, when it is per-channel and coupled with nothing yet."""
    if flow.sym is None or flow.block != 1:
        return None
    root = flow.sym.find()
    for owner, held in ctx.state.holders.items():
        for name, entry in held.items():
            if entry[0].find() is root and entry[2] == 1 and len(root.slots) == 1 and not root.concats:
                return owner, name, entry
    return None


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
