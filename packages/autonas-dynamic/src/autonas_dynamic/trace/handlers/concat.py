"""``torch.cat``: along the elastic axis the sizes add up; along any other axis they must agree."""

from __future__ import annotations

import torch.fx as fx

from ..analyzer import GraphContext
from ..dims import is_elastic
from ..ops import OpKind
from ..symbols import Symbol
from ..values import Flow, Value


def handle(ctx: GraphContext, node: fx.Node) -> Value | None:
    """A cat along the elastic axis is a concat source: the consumer's size is the sum of the inputs'."""
    if (ctx.op_kind(node) or (None,))[0] is not OpKind.CONCAT:
        return None
    tensors = node.args[0] if node.args else node.kwargs.get("tensors")
    axis = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", node.kwargs.get("axis", 0))
    if not isinstance(tensors, (list, tuple)) or not tensors or not isinstance(axis, int):
        return None
    values = [ctx.value(t) for t in tensors]
    flows = [f for f in values if isinstance(f, Flow) and f.sym is not None and not f.is_shape]
    if len(flows) != len(values):
        return None
    along_elastic = {is_elastic(axis, f.dims) for f in flows}
    if along_elastic == {False}:  # e.g. the halves of each head's features in rotary embeddings
        return ctx.synchronize(flows, f"inputs of {ctx.describe(node)} along axis {axis}")
    if along_elastic != {True} or any(f.block != 1 for f in flows):
        return None
    dims = flows[0].dims
    for flow in flows[1:]:
        dims &= flow.dims
    roots = [f.sym.find() for f in flows if f.sym is not None]
    key = tuple(id(r) for r in roots)
    sym = ctx.state.concats.get(key)
    if sym is None:
        sym = ctx.state.concats[key] = Symbol.concat_of(roots)
    return Flow(sym, dims)
