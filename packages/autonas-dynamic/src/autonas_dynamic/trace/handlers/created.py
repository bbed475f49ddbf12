"""Tensors an attention module creates with one entry per head, sized by its head-count attribute.

T5's attention without a relative bias makes a zero bias ``torch.zeros((1, self.n_heads, n, m))``
and adds it to the scores of every layer it is handed to (the decoder's cross-attention). Its
size is read from the attribute that follows the active heads (see :mod:`autonas_dynamic.attention`),
so it needs no slicing: it gets a symbol of its own with no slot, counted as one entry per head of
whatever heads it meets (which become one group, as with a shared position bias). Where it meets
anything else, its group keeps its size (:func:`~autonas_dynamic.trace.grouping.resolve_head_counts`).
"""

from __future__ import annotations

import torch
import torch.fx as fx

from ..analyzer import GraphContext
from ..heads import HEAD_COUNT_ATTRIBUTES, int_attribute
from ..symbols import Symbol
from ..values import Flow, Value

_FACTORIES = {torch.zeros, torch.ones, torch.empty}


def handle(ctx: GraphContext, node: fx.Node) -> Value | None:
    """``torch.zeros(size)`` whose one entry equal to its module's head count is that head count."""
    if node.op != "call_function" or node.target not in _FACTORIES or not node.args:
        return None
    size = node.args[0] if len(node.args) == 1 and isinstance(node.args[0], (list, tuple)) else node.args
    caller = ctx.caller(node) or getattr(ctx.root, "module", None)  # None: the traced root's own forward
    if caller is None or len(size) < 2:
        return None
    counts = {value for name in HEAD_COUNT_ATTRIBUTES if (value := int_attribute(caller, name)) is not None}
    if len(counts) != 1:
        return None
    heads = counts.pop()
    positions = [i for i, entry in enumerate(size) if isinstance(entry, int) and entry == heads]
    if heads < 2 or len(positions) != 1:
        return None
    sym = Symbol()
    ctx.state.created_per_head.append(sym)
    return Flow(sym, frozenset({positions[0], positions[0] - len(size)}))
