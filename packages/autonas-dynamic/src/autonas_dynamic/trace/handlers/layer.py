"""Calls of searchable layers: couple the layer's incoming size with the tensor it reads."""

from __future__ import annotations

import torch.fx as fx

from ..analyzer import GraphContext
from ..layers import is_layer
from ..values import Flow, Value


def handle(ctx: GraphContext, node: fx.Node) -> Value | None:
    """A layer's output is its own outgoing size, or (norms, depthwise convs) its input's size."""
    if node.op != "call_module":
        return None
    module = ctx.module(node.target)
    if not is_layer(module) or ctx.is_opaque(module):
        return None
    state = ctx.state
    symbols = state.layer_symbols(module)
    state.visited.add(module)
    primary = node.args[0] if node.args else next(iter(node.kwargs.values()), None)
    extra = [n for n in node.all_input_nodes if n is not primary]
    ctx.fix((ctx.value(n) for n in extra), f"extra input of {state.name(module)}")
    reason = f"input of {state.name(module)} ({type(module).__name__}) cannot follow its producer"
    value = ctx.value(primary)
    coupled = ctx.link(value, symbols.incoming, symbols.in_dims, reason)
    if symbols.outgoing is not None:
        if isinstance(value, Flow) and symbols.in_dims == symbols.out_dims and symbols.in_dims <= value.dims:
            return Flow(symbols.outgoing, value.dims)  # a layer keeps its input's rank
        return Flow(symbols.outgoing, symbols.out_dims)
    return coupled
