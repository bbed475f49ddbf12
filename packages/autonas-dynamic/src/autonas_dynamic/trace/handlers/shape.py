"""Reading shapes, dtypes and devices, and indexing shapes or tensors.

A shape read carries the tensor's channel count to whatever uses it, unless the part that is used
provably excludes the elastic axis (``x.shape[2:]``, ``x.size(0)``): that part is neutral. Tensor
indexing is a pass-through when it only slices or picks along other axes. Picking the first or the
last channel (``x[:, :, -1]``, which Bart's encoder reads for its shape) gives a tensor of fixed
sizes; which channel is last depends on the subnet's width, so the channels are no longer sorted.
"""

from __future__ import annotations

from dataclasses import replace

import torch.fx as fx

from ..analyzer import GraphContext
from ..dims import after_reduction, is_elastic, rank_of
from ..ops import OpKind
from ..values import FIXED, NEUTRAL, Flow, Neutral, Value

#: Tensor attributes that carry no size.
NEUTRAL_ATTRIBUTES = frozenset({"dtype", "device", "ndim", "is_cuda", "layout", "requires_grad", "is_sparse"})
_FULL = slice(None, None, None)


def handle(ctx: GraphContext, node: fx.Node) -> Value | None:
    """Shape reads and ``getitem``; anything else is left to the other handlers."""
    kind = ctx.op_kind(node)
    if kind is None or kind[0] not in (OpKind.SHAPE_READ, OpKind.GETITEM):
        return None
    source = ctx.value(node.args[0]) if node.args else NEUTRAL
    if isinstance(source, Neutral):
        return NEUTRAL if not ctx.input_flows(node) else None
    if kind[0] is OpKind.GETITEM:
        return _getitem(ctx, source, node.args[1] if len(node.args) > 1 else None)
    return _shape_read(node, source)


def _shape_read(node: fx.Node, source: Flow) -> Value | None:
    if node.target is getattr:
        attribute = node.args[1]
        if attribute in NEUTRAL_ATTRIBUTES:
            return NEUTRAL
        return _shape_of(source) if attribute == "shape" else None
    if node.target == "dim":
        return NEUTRAL
    if node.target == "numel":
        return _shape_of(source)
    axis = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")  # x.size() / x.size(axis)
    if axis is None:
        return _shape_of(source)
    if isinstance(axis, int) and source.sym is not None and is_elastic(axis, source.dims) is False:
        return NEUTRAL
    return _shape_of(source)


def _shape_of(source: Flow) -> Value:
    return Flow(source.sym, source.dims, is_shape=True, block=source.block) if source.sym is not None else NEUTRAL


def _getitem(ctx: GraphContext, source: Flow, index: object) -> Value | None:
    if source.sym is None:
        return None
    if source.pieces:  # one part of a chunk
        return replace(source, pieces=False) if isinstance(index, int) else None
    if source.is_shape:
        return _shape_item(source, index)
    return _tensor_item(source, index, ctx.full_size(source.sym))


def _shape_item(source: Flow, index: object) -> Value:
    if isinstance(index, int):
        return NEUTRAL if is_elastic(index, source.dims) is False else source
    if isinstance(index, slice) and _slice_excludes(source.dims, index):
        return NEUTRAL
    return source


def _slice_excludes(dims: frozenset[int], index: slice) -> bool:
    """Whether a slice of a shape provably leaves out the elastic axis."""
    bounds = [b for b in (index.start, index.stop) if b is not None]
    if not all(isinstance(b, int) for b in bounds) or index.step not in (None, 1):
        return False
    rank = rank_of(dims)
    if rank is not None:
        elastic = next(d for d in dims if d >= 0)
        return elastic not in range(rank)[index]
    if all(b >= 0 for b in bounds):  # positions counted from the front
        start, stop = index.start or 0, index.stop
        return any(d >= 0 for d in dims) and all(d < start or (stop is not None and d >= stop) for d in dims if d >= 0)
    if all(b < 0 for b in bounds):  # positions counted from the back
        start, stop = index.start, index.stop or 0
        negative = [d for d in dims if d < 0]
        if not negative:
            return False
        return all((start is not None and d < start) or (stop != 0 and d >= stop) for d in negative)
    return False


def _keeps_all(entry: object, full_size: int | None) -> bool:
    """Whether ``entry`` is a slice ``[:n]`` (or ``[0:n]``) with ``n`` at least ``full_size``."""
    return (
        isinstance(entry, slice)
        and full_size is not None
        and entry.start in (None, 0)
        and entry.step in (None, 1)
        and isinstance(entry.stop, int)
        and entry.stop >= full_size
    )


def _tensor_item(source: Flow, index: object, full_size: int | None) -> Value | None:
    """Indexing that only touches other axes keeps the elastic axis (dropping picked axes).

    So does a prefix slice of the elastic axis that reaches at least its original size
    (GhostNet's ``cat([x1, x2])[:, :out_chs]``): it keeps every channel at every subnet.
    """
    entries = index if isinstance(index, tuple) else (index,)
    if None in entries and Ellipsis not in entries:
        return _with_new_axes(source, entries)
    if any(e is None or isinstance(e, (fx.Node, list)) for e in entries):
        return None  # new axes beside an ellipsis, tensor or list indices: unknown layout
    if entries.count(Ellipsis) > 1:
        return None
    split = entries.index(Ellipsis) if Ellipsis in entries else len(entries)
    positioned = [(i, e) for i, e in enumerate(entries[:split])]
    after = entries[split + 1 :] if Ellipsis in entries else ()
    positioned += [(i - len(after), e) for i, e in enumerate(after)]
    picked = []
    channel = False  # the first or last channel is picked
    for axis, entry in positioned:
        if entry == _FULL or (_keeps_all(entry, full_size) and is_elastic(axis, source.dims)):
            continue
        if _picks_end_channel(source, axis, entry):
            channel = True
            continue
        if not isinstance(entry, (int, slice)) or is_elastic(axis, source.dims) is not False:
            return None
        if isinstance(entry, int):
            picked.append(axis)
    if channel:
        source.sym.mark_unsortable()  # type: ignore[union-attr]  # _getitem checked it
        return FIXED
    dims = after_reduction(source.dims, picked, keepdim=False) if picked else source.dims
    return replace(source, dims=dims, unit_tail=False) if dims else None


def _picks_end_channel(source: Flow, axis: int, entry: object) -> bool:
    """Whether ``entry`` picks the first or the last channel (there at every width) of whole channels."""
    whole_channels = source.block == source.repeat == 1 and not source.parts_axis
    return whole_channels and entry in (0, -1) and type(entry) is int and is_elastic(axis, source.dims) is True


def _with_new_axes(source: Flow, entries: tuple) -> Value | None:
    """``x[:, :, None]``: new axes and full slices of a tensor of known rank move the elastic axis."""
    rank = rank_of(source.dims)
    if rank is None or sum(e is not None for e in entries) > rank:
        return None
    elastic = next(d for d in source.dims if d >= 0)
    position, axis = 0, 0  # output and input axis of the entry
    moved = None
    for entry in entries:
        if entry is None:
            position += 1
            continue
        if entry != _FULL:
            return None
        if axis == elastic:
            moved = position
        position, axis = position + 1, axis + 1
    if moved is None:
        moved = position + elastic - axis
    new_rank = position + rank - axis
    return replace(source, dims=frozenset({moved, moved - new_rank}), unit_tail=False)
