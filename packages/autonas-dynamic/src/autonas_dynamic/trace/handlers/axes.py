"""Ops that move the elastic axis, and per-channel tensors that modules other than layers hold.

Everything here is decided from the op's arguments and the known rank of its input, without the
traced values; it runs before :mod:`.reshape`, which decides the reshapes this leaves (a split
into attention heads, a merge of heads, a sequence turned into an image) from concrete shapes.

* ``permute``, ``transpose`` / ``swapaxes``, ``movedim`` and ``unsqueeze`` move the elastic axis of
  a tensor whose rank is known (``x.permute(0, 2, 3, 1)`` turns an ``NCHW`` tensor's channels into
  its last axis, as ConvNeXt and EdgeNeXt do around their channels-last MLPs).
  A flow split into heads (see :class:`~autonas_dynamic.trace.values.Flow`) keeps its head
  layout when its heads axis moves, and the axis its stacked parts lie on (a fused ``qkv``)
  moves with the same op.
* ``x.reshape(B, C, H * W)`` with ``C`` read from ``x``'s own shape keeps the width as one axis
  (for a flow whose axis is still whole channels).
* A parameter with one entry per channel that a traced-through module reads in its own forward
  (ConvNeXt's ``gamma``, ``x * self.gamma.reshape(1, -1, 1, 1)``) gets a width of its own, coupled
  by the elementwise op it meets; the module then becomes a tensor holder
  (:class:`~autonas_dynamic.generic.TensorHolder`) slicing it. Only reshapes that leave the width
  to ``-1`` and indexing with ``None`` place such a vector: a size written into the module's code
  would not follow a smaller width. A parameter of batch 1 and rank 3 or more with several wide
  dims (a vision transformer's position table, ``(1, n, C)``) is held along its last dim; where
  that dim is not the width of what it meets, the coupling fails and the width stays. A 2-d
  parameter whose rows an index tensor picks (a table of relative position biases, one column per
  head) is held along its last dim the same way.
"""

from __future__ import annotations

import operator
from dataclasses import replace

import torch
import torch.fx as fx
import torch.nn as nn

from ...generic import holder_hparam
from ..analyzer import GraphContext
from ..dims import is_elastic, rank_of
from ..layers import is_layer, refusal
from ..symbols import Slot, Symbol
from ..values import Flow, Neutral, Value

_MOVES = {"permute", "transpose", "swapaxes", "swapdims", "movedim", "moveaxis", "unsqueeze"}
_FUNCTIONS = {getattr(torch, name): name for name in _MOVES if hasattr(torch, name)}
_RESHAPES = {"reshape", "view"}


def handle(ctx: GraphContext, node: fx.Node) -> Value | None:
    """Per-channel parameters, and ops that move a known elastic axis; anything else is left to the others."""
    if node.op == "get_attr":
        return _per_channel_parameter(ctx, str(node.target))
    if node.op == "call_function" and node.target is operator.getitem and len(node.args) == 2:
        return _new_axes(ctx.value(node.args[0]), node.args[1]) or _table_lookup(ctx, node)
    name = (
        node.target if node.op == "call_method" else _FUNCTIONS.get(node.target) if node.op == "call_function" else None
    )
    if not isinstance(name, str) or not node.args:
        return None
    source = ctx.value(node.args[0])
    if not isinstance(source, Flow) or source.sym is None or source.is_shape:
        return None
    rank = rank_of(source.dims)
    if rank is None:
        return None
    axis = next(d for d in source.dims if d >= 0)
    args = [a for a in node.args[1:]]
    if name in _MOVES:
        moved = _moved_axis(name, axis, rank, args, node.kwargs)
    elif name in _RESHAPES and node.op == "call_method" and source.block == source.repeat == 1:
        moved = _vector_reshape(args) if rank == 1 else _reshape_keeping_width(ctx, source, args)
    else:
        return None
    if moved is None:
        return None
    position, new_rank = moved
    parts_axis = source.parts_axis
    if parts_axis:  # stacked parts (a fused qkv) move with the same op
        parts = (
            _moved_axis(name, next(d for d in parts_axis if d >= 0), rank, args, node.kwargs)
            if name in _MOVES
            else None
        )
        if parts is None:
            return None
        parts_axis = frozenset({parts[0], parts[0] - new_rank})
    dims = frozenset({position, position - new_rank})
    return replace(source, dims=dims, unit_tail=False, parts_axis=parts_axis)


def _moved_axis(name: str, axis: int, rank: int, args: list, kwargs: dict) -> tuple[int, int] | None:
    """Where ``axis`` of a rank-``rank`` tensor goes, and the new rank; None when the arguments are not constants."""
    if name == "unsqueeze":
        dim = args[0] if args else kwargs.get("dim")
        if not isinstance(dim, int):
            return None
        dim %= rank + 1
        return (axis + 1 if dim <= axis else axis), rank + 1
    if name == "permute":
        order = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args or kwargs.get("dims")
        if not isinstance(order, (list, tuple)) or len(order) != rank or not all(isinstance(d, int) for d in order):
            return None
        return [d % rank for d in order].index(axis), rank
    if name == "movedim" or name == "moveaxis":
        source, target = ([*args, kwargs.get("source"), kwargs.get("destination")])[:2]
        if not (isinstance(source, int) and isinstance(target, int)):
            return None
        order = list(range(rank))
        order.insert(target % rank, order.pop(source % rank))
        return order.index(axis), rank
    first, second = ([*args, kwargs.get("dim0"), kwargs.get("dim1")])[:2]
    if not (isinstance(first, int) and isinstance(second, int)):
        return None
    first, second = first % rank, second % rank
    return (second if axis == first else first if axis == second else axis), rank


def _new_axes(source: object, index: object) -> Value | None:
    """``x[:, None, None]``: only whole slices and ``None`` (new axes), on a tensor of known rank."""
    entries = index if isinstance(index, tuple) else (index,)
    if not isinstance(source, Flow) or source.sym is None or source.is_shape or None not in entries:
        return None
    rank = rank_of(source.dims)
    if rank is None or any(e is not None and e != slice(None) for e in entries):
        return None
    kept = [e for e in entries if e is not None]
    if len(kept) > rank:
        return None
    positions: list[int | None] = []
    for entry in entries:
        positions.append(None if entry is None else len([p for p in positions if p is not None]))
    positions += list(range(len(kept), rank))
    axis = next(d for d in source.dims if d >= 0)
    new = positions.index(axis)
    return replace(source, dims=frozenset({new, new - len(positions)}), unit_tail=False)


def _reshape_keeping_width(ctx: GraphContext, source: Flow, args: list) -> tuple[int, int] | None:
    """``x.reshape(B, C, H * W)`` with ``C`` read from ``x``'s own shape at its elastic axis.

    The width stays an axis of its own where the read size is placed; every other size must be a
    constant or a size that does not depend on the width.
    """
    shape = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
    positions = [i for i, size in enumerate(shape) if _reads_width_of(ctx, size, source)]
    if len(positions) != 1:
        return None
    others = [size for i, size in enumerate(shape) if i != positions[0]]
    if not all(isinstance(size, int) or isinstance(ctx.value(size), Neutral) for size in others):
        return None
    return positions[0], len(shape)


def _reads_width_of(ctx: GraphContext, size: object, source: Flow) -> bool:
    """Whether ``size`` is ``t.shape[i]`` / ``t.size(i)`` of a tensor ``t`` whose axis ``i`` is ``source``'s width."""
    if not isinstance(size, fx.Node):
        return False
    tensor: object
    axis: object
    if size.op == "call_method" and size.target == "size" and len(size.args) == 2:
        tensor, axis = size.args
    elif size.op == "call_function" and size.target is operator.getitem:
        read, axis = size.args[0], size.args[1]
        if not isinstance(read, fx.Node):
            return False
        shape_attribute = read.op == "call_function" and read.target is getattr and read.args[1] == "shape"
        if not (shape_attribute or (read.op == "call_method" and read.target == "size" and len(read.args) == 1)):
            return False
        tensor = read.args[0]
    else:
        return False
    flow = ctx.value(tensor)
    return (
        isinstance(axis, int)
        and isinstance(flow, Flow)
        and flow.sym is not None
        and flow.sym.find() is source.sym.find()  # type: ignore[union-attr]
        and is_elastic(axis, flow.dims) is True
    )


def _vector_reshape(args: list) -> tuple[int, int] | None:
    """A vector reshaped to ones and one ``-1`` (``(1, -1, 1, 1)``): the position of the ``-1``."""
    shape = args[0] if len(args) == 1 and isinstance(args[0], (list, tuple)) else args
    if not all(isinstance(s, int) for s in shape) or sorted(shape, key=lambda s: s != 1)[-1:] != [-1]:
        return None
    if [s for s in shape if s != 1] != [-1]:
        return None
    return list(shape).index(-1), len(shape)


def _own_parameter(ctx: GraphContext, target: str) -> tuple[nn.Module, str, torch.Tensor] | None:
    """The module, name and value of the parameter ``target`` names, when that module may hold it
    dynamically (any module but a layer, the root included: timm's ViT holds its position table)."""
    owner_path, _, name = target.rpartition(".")
    if not owner_path:
        return None
    try:
        owner = ctx.module(owner_path)
    except AttributeError:
        return None
    parameter = owner._parameters.get(name)
    if parameter is None or is_layer(owner) or refusal(owner):
        return None
    return owner, name, parameter


def _per_channel_parameter(ctx: GraphContext, target: str) -> Value | None:
    """A module's own parameter with one entry per channel (all other dims 1), read in its forward;
    or a table of batch 1 (a position table ``(1, n, C)``), held along its last dim."""
    found = _own_parameter(ctx, target)
    if found is None:
        return None
    owner, name, parameter = found
    wide = [dim for dim, size in enumerate(parameter.shape) if size != 1]
    if len(wide) > 1 and parameter.dim() >= 3 and parameter.shape[0] == 1:
        wide = wide[-1:]  # a table of tokens (a position table, batch 1): one row of channels per token
    if len(wide) != 1 or parameter.shape[wide[0]] < 2:
        return None
    sym = _held(ctx, owner, name, wide[0])
    return Flow(sym, frozenset({wide[0], wide[0] - parameter.dim()}))


def _held(ctx: GraphContext, owner: nn.Module, name: str, dim: int) -> Symbol:
    """The symbol of ``owner``'s tensor ``name`` along ``dim``, which the module then holds dynamically."""
    holders = ctx.state.holders.setdefault(owner, {})
    if name not in holders:
        holders[name] = (Symbol(Slot(owner, holder_hparam(name))), dim)
    return holders[name][0]


def _table_lookup(ctx: GraphContext, node: fx.Node) -> Value | None:
    """``table[index]``: rows of a module's own 2-d parameter picked by an index tensor (Swin's
    ``relative_position_bias_table[relative_position_index]``) keep the table's last dim, whose
    width the table's module then holds (one entry per head, where the rows meet attention scores).
    """
    table, index = node.args
    if not (isinstance(table, fx.Node) and table.op == "get_attr" and isinstance(index, fx.Node)):
        return None
    found = _own_parameter(ctx, str(table.target))
    looked_up, indices = ctx.concrete(node), ctx.concrete(index)
    if found is None or found[2].dim() != 2 or not isinstance(looked_up, torch.Tensor):
        return None
    if not isinstance(indices, torch.Tensor) or indices.dtype not in (torch.long, torch.int):
        return None
    owner, name, _ = found
    return Flow(_held(ctx, owner, name, 1), frozenset({looked_up.dim() - 1, -1}))
