"""Flattening a globally pooled tensor: ``(N, C, 1, 1) -> (N, C)`` carries the channel count to the features.

``torch.flatten(x, 1)``, ``x.flatten(1)``, ``nn.Flatten()``, ``x.view(x.size(0), -1)`` and
``x.reshape(n, -1)`` (``n`` read from dim 0 of ``x`` or of a tensor ``x`` derives from through
batch-keeping layers and ops) couple a global pool's channels with the last axis of the result, so
a following Linear follows the last conv. Only a tensor marked with a unit tail qualifies; any
other flatten, view or reshape is left to the boundary handler.
"""

from __future__ import annotations

import operator

import torch
import torch.fx as fx

from ..analyzer import GraphContext
from ..layers import is_layer
from ..ops import OpKind
from ..values import Flow, Value

_FEATURES = frozenset({1, -1})  # the elastic axis of the (N, C) result


def handle(ctx: GraphContext, node: fx.Node) -> Value | None:
    """The flattened tensor keeps the pooled tensor's group, now on its last axis."""
    if (ctx.op_kind(node) or (None,))[0] is not OpKind.FLATTEN or not node.args:
        return None
    source = node.args[0]
    primary = ctx.value(source)
    if not isinstance(primary, Flow) or primary.sym is None or not primary.unit_tail:
        return None
    if not isinstance(source, fx.Node) or not _flattens_from_axis_1(ctx, node, source):
        return None
    return Flow(primary.sym, _FEATURES, unit_tail=True)


def _flattens_from_axis_1(ctx: GraphContext, node: fx.Node, source: fx.Node) -> bool:
    """Whether the node merges axes 1.. of ``source`` into one, keeping axis 0."""
    if node.op == "call_module":
        module = ctx.module(node.target)
        return (module.start_dim, module.end_dim) == (1, -1)
    if node.target == "flatten" or node.target is torch.flatten:
        start = node.kwargs.get("start_dim", node.args[1] if len(node.args) > 1 else 0)
        end = node.kwargs.get("end_dim", node.args[2] if len(node.args) > 2 else -1)
        return (start, end) == (1, -1)
    shape = _requested_shape(node)
    return shape is not None and len(shape) == 2 and shape[1] == -1 and _is_batch_size(ctx, shape[0], source)


def _requested_shape(node: fx.Node) -> tuple | None:
    """The target shape of ``x.view(*shape)``, ``x.reshape(shape)`` or ``torch.reshape(x, shape)``."""
    rest = node.args[1:] or (node.kwargs.get("shape", node.kwargs.get("size")),)
    if len(rest) == 1 and isinstance(rest[0], (list, tuple)):
        return tuple(rest[0])
    return tuple(rest) if None not in rest else None


def _is_batch_size(ctx: GraphContext, arg: object, source: fx.Node) -> bool:
    """Whether ``arg`` reads dim 0 of ``source`` or of a tensor it derives from with the same dim 0."""
    tensor = _dim0_read_of(arg)
    if tensor is None:
        return False
    node: fx.Node | None = source
    while node is not None:
        if node is tensor:
            return True
        node = _batch_keeping_input(ctx, node)
    return False


def _dim0_read_of(arg: object) -> fx.Node | None:
    """The tensor whose dim 0 ``arg`` reads (``t.size(0)``, ``t.shape[0]``, ``t.size()[0]``), else None."""
    if not isinstance(arg, fx.Node):
        return None
    if arg.op == "call_method" and arg.target == "size":
        dim = arg.args[1] if len(arg.args) > 1 else arg.kwargs.get("dim")
        return arg.args[0] if dim == 0 and isinstance(arg.args[0], fx.Node) else None
    if arg.op != "call_function" or arg.target is not operator.getitem or arg.args[1] != 0:
        return None
    shape = arg.args[0]
    if not isinstance(shape, fx.Node):
        return None
    is_shape_attr = shape.op == "call_function" and shape.target is getattr and shape.args[1] == "shape"
    is_full_size = shape.op == "call_method" and shape.target == "size" and len(shape.args) == 1 and not shape.kwargs
    tensor = shape.args[0]
    return tensor if (is_shape_attr or is_full_size) and isinstance(tensor, fx.Node) else None


def _batch_keeping_input(ctx: GraphContext, node: fx.Node) -> fx.Node | None:
    """The tensor input of a layer or single-tensor pass-through op (same dim 0 as its output), else None."""
    if not node.args or not isinstance(node.args[0], fx.Node):
        return None
    if node.op == "call_module" and is_layer(module := ctx.module(node.target)) and not ctx.is_opaque(module):
        return node.args[0]
    kind = ctx.op_kind(node)
    if kind is None or len(node.all_input_nodes) != 1:
        return None
    op, kept = kind
    keeps_batch = op is OpKind.SHAPE_PRESERVING or (op is OpKind.PARTIAL and kept is not None and 0 in kept)
    return node.args[0] if keeps_batch else None
