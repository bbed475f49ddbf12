"""Reshapes decided by the traced shapes: the elastic axis kept whole, moved, or split into heads.

Transposes and permutes (and reshapes whose arguments alone show where the width goes) are
:mod:`.axes`'s, which runs first; this handler takes the reshapes left, comparing the concrete
shapes before and after. ``x.transpose(1, 2).view(b, c, h, w)`` (a sequence turned into an image,
as in Segformer's MLP) or ``x.flatten(2)`` before a transpose (an image turned into a sequence)
keep the channel axis intact and only move it. ``q.view(b, n, -1, d)`` splits the channels into attention heads: the heads axis is
then elastic, one index standing for ``d`` channels (the flow's block), and the group changes by
whole heads only; ``o.reshape(b, n, -1)`` merges heads back into channels. Where the axis goes is
read from the concrete shapes of the traced values (so only graphs traced with an example input
qualify). A reshape may not bake the channel count in: its size at the elastic axis must be ``-1``
or read from the same tensor group's shape; a size read from another searchable tensor's width
couples the two groups (the reshape runs only when they agree). Anything else (a merge with a preceding axis, a split
whose inner part is elastic) is left to the boundary handler.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.fx as fx

from ..analyzer import GraphContext
from ..heads import HEAD_COUNT_ATTRIBUTES, HEAD_WIDTH_ATTRIBUTES, holds
from ..ops import OpKind
from ..values import Flow, Value
from .concat import chunk_parts

_SIZED = {"view", "reshape", "expand"}  # the requested sizes must not bake the channel count in


def handle(ctx: GraphContext, node: fx.Node) -> Value | None:
    """The output carries the input's group on the axis the elastic axis moved to."""
    kind = ctx.op_kind(node)
    if kind is None or kind[0] not in (OpKind.MOVE_AXES, OpKind.FLATTEN) or not node.args:
        return None
    source = node.args[0]
    primary = ctx.value(source)
    if not isinstance(primary, Flow) or primary.sym is None or primary.is_shape or primary.parts_axis:
        return None
    before, after = ctx.concrete(source), ctx.concrete(node)
    if not isinstance(before, torch.Tensor) or not isinstance(after, torch.Tensor):
        return None
    axis = elastic_axis(primary, before.dim())
    if axis is None:
        return None
    name = _name(node)
    block = primary.block
    moved: int | None
    if name == "expand":  # new axes in front, sizes of unit axes grown
        moved = axis + after.dim() - before.dim()
    elif axis + 1 < before.dim() and before.stride(axis + 1) == 0 and before.shape[axis + 1] > 1:
        return _repeated(ctx, node, primary, before, after, axis)  # merged with an expanded axis
    else:
        stacked = _stacked_heads(ctx, node, primary, before.shape, after.shape, axis)
        if stacked is not None:
            return stacked
        moved, block = _reshaped_axis(before.shape, after.shape, axis, block)
    if moved is None or after.shape[moved] * block != before.shape[axis] * primary.block:
        return None
    heads = after.shape[moved] if block > primary.block else None
    merged = block == 1 < primary.block  # heads back into channels
    if name in _SIZED and not _size_follows(ctx, node, primary, moved, heads, merged):
        return None
    if block > primary.block:  # split into heads: the group changes by whole heads only
        primary.sym.require_step(block)
        stack = list(node.meta.get("nn_module_stack", ()))
        if stack and primary.block == 1:
            module = ctx.module(stack[-1].partition("@")[0])
            ctx.state.head_splits.append((primary.sym, module, block))
    return replace(primary, dims=frozenset({moved, moved - after.dim()}), block=block, unit_tail=False)


def _stacked_heads(
    ctx: GraphContext, node: fx.Node, primary: Flow, before: Sequence[int], after: Sequence[int], axis: int
) -> Value | None:
    """A fused projection split into ``(parts, heads, head_dim)`` at once (timm's ``qkv``).

    The whole becomes the concatenation of ``parts`` equal parts (as :func:`.concat.chunk_parts`),
    each split into heads; the flow carries one part's heads on the heads axis and the parts on
    ``parts_axis``, until ``unbind`` hands them out. The head count must follow (a head-count
    attribute of the module, or ``-1``).
    """
    if primary.block != 1 or _name(node) not in _SIZED:
        return None
    leading, size = math.prod(before[:axis]), before[axis]
    position = next((p for p in range(len(after) - 2) if math.prod(after[:p]) == leading), None)
    if position is None:
        return None
    parts, heads, head_dim = after[position : position + 3]
    if parts < 2 or heads < 1 or head_dim < 2 or parts * heads * head_dim != size:
        return None
    if math.prod(after[position + 3 :]) != math.prod(before[axis + 1 :]):
        return None
    if not _size_follows(ctx, node, primary, position + 1, heads):
        return None
    part = chunk_parts(ctx, primary.sym, parts)  # type: ignore[arg-type]
    part.require_step(head_dim)
    caller = ctx.caller(node)
    if caller is not None:
        ctx.state.head_splits.append((part, caller, head_dim))
    rank = len(after)
    return replace(
        primary,
        sym=part,
        dims=frozenset({position + 1, position + 1 - rank}),
        block=head_dim,
        unit_tail=False,
        parts_axis=frozenset({position, position - rank}),
    )


def _repeated(
    ctx: GraphContext, node: fx.Node, primary: Flow, before: torch.Tensor, after: torch.Tensor, axis: int
) -> Value | None:
    """Heads merged with an expanded axis after them (``repeat_kv``): each head appears that many times."""
    if primary.block == 1:
        return None
    times = before.shape[axis + 1]
    leading = math.prod(before.shape[:axis])
    moved = next((p for p in range(after.dim()) if math.prod(after.shape[:p]) == leading), None)
    if moved is None or after.shape[moved] != before.shape[axis] * times:
        return None
    if _name(node) in _SIZED and not _size_follows(ctx, node, primary, moved):
        return None
    dims = frozenset({moved, moved - after.dim()})
    return replace(primary, dims=dims, repeat=primary.repeat * times, unit_tail=False)


def elastic_axis(flow: Flow, rank: int) -> int | None:
    """The (non-negative) axis of a rank-``rank`` tensor that ``flow``'s notations name, if exactly one."""
    axes = {d % rank for d in flow.dims if -rank <= d < rank}
    return axes.pop() if len(axes) == 1 else None


def whole_axis_after_reshape(before: Sequence[int], after: Sequence[int], axis: int) -> int | None:
    """Where axis ``axis`` of shape ``before`` is, whole, in the reshaped ``after`` (None: split or merged)."""
    leading = math.prod(before[:axis])
    for position, size in enumerate(after):
        if size == before[axis] and math.prod(after[:position]) == leading:
            return position
    return None


def _reshaped_axis(before: Sequence[int], after: Sequence[int], axis: int, block: int) -> tuple[int | None, int]:
    """Where the elastic axis goes in a reshape, and the channels one index of it then stands for.

    Kept whole: the same block. Split into ``(heads, head_dim)`` (the outer part elastic): the block
    grows by ``head_dim``. Merged with the axes after it (``(heads, head_dim)`` back into channels):
    the block shrinks by their size, which must divide it. Anything else: ``(None, block)``.
    """
    whole = whole_axis_after_reshape(before, after, axis)
    if whole is not None:
        return whole, block
    leading, size = math.prod(before[:axis]), before[axis]
    for position in range(len(after)):
        if math.prod(after[:position]) != leading:
            continue
        if position + 1 < len(after) and after[position] * after[position + 1] == size and after[position + 1] > 1:
            return position, block * after[position + 1]
        for end in range(axis + 2, len(before) + 1):
            inner = math.prod(before[axis + 1 : end])
            if size * inner == after[position]:
                return (position, block // inner) if block % inner == 0 else (None, block)
    return None, block


def _name(node: fx.Node) -> str:
    return str(node.target) if node.op == "call_method" else getattr(node.target, "__name__", "")


def _size_follows(
    ctx: GraphContext, node: fx.Node, primary: Flow, moved: int, heads: int | None = None, merged: bool = False
) -> bool:
    """Whether the size requested for the elastic axis is ``-1`` or read from the group's own shape.

    For a split into ``heads`` heads, the head-count attribute of the module the reshape runs in
    (``self.num_heads``, which then follows the active heads) counts as following too, and for
    heads ``merged`` back into channels its head-width attribute (``self.attn_dim``). Sizes read
    from the shapes of other searchable tensors bake their sizes in: those are fixed.
    """
    sizes: Any = node.args[1:] or (node.kwargs.get("size", node.kwargs.get("shape")),)
    if len(sizes) == 1 and isinstance(sizes[0], (list, tuple, fx.Node)):
        sizes = sizes[0]
    sizes = _unpacked_shape(sizes)
    if isinstance(sizes, fx.Node):  # a whole shape read from a tensor, or its leading part and more sizes
        extended = _own_shape_extended(ctx, node, sizes)
        if extended is None:
            return _reads_shape_of(ctx, sizes, primary)
        sizes = extended
    if not isinstance(sizes, (list, tuple)):
        return False
    follows = False
    for position, size in enumerate(sizes):
        if position == moved:
            width = merged and isinstance(size, int) and _followed_head_width(ctx, node, size, primary.block)
            follows = (
                width
                or (isinstance(size, int) and size in (-1, _followed_head_count(ctx, node, heads)))
                or _reads_shape_of(ctx, size, primary)
                or (heads is None and (merged or primary.block == 1) and _couples_with_width(ctx, size, primary))
            )
        elif size is _OWN_SIZE:
            continue
        elif isinstance(size, fx.Node):
            ctx.fix([ctx.value(size)], f"its size is baked into {ctx.describe(node)}")
    return follows


def _unpacked_shape(sizes: Any) -> Any:
    """The built shape that ``sizes`` are the entries of, in order (``x.view(*shape)`` unpacks a shape
    ``x.size()[:-2] + (n,)`` into ``shape[0], shape[1], ...``, as MPNet's ``c.view(*new_c_shape)``
    does), else ``sizes``. Sizes unpacked from a tensor's own shape (``B, N, C = x.shape``) stay apart."""
    if not isinstance(sizes, (list, tuple)) or not sizes:
        return sizes
    shapes = {size.args[0] for size in sizes if isinstance(size, fx.Node) and size.target is operator.getitem}
    if len(shapes) != 1:
        return sizes
    (shape,) = shapes
    if not (isinstance(shape, fx.Node) and shape.op == "call_function" and shape.target is operator.add):
        return sizes
    unpacked = all(
        isinstance(size, fx.Node) and size.target is operator.getitem and size.args == (shape, index)
        for index, size in enumerate(sizes)
    )
    return shape if unpacked else sizes


#: A size the reshape reads from its own input's shape (``x.size()[:-1] + (heads, head_dim)``).
_OWN_SIZE = object()


def _own_shape_extended(ctx: GraphContext, node: fx.Node, sizes: fx.Node) -> list[Any] | None:
    """``x.size()[:k] + (n, ...)`` (GPT-Neo's ``_split_heads``) as sizes: ``k`` of ``x``'s own, then the ints."""
    if sizes.op != "call_function" or sizes.target is not operator.add or len(sizes.args) != 2:
        return None
    prefix, extra = sizes.args
    if not isinstance(prefix, fx.Node) or not isinstance(extra, tuple) or not all(isinstance(e, int) for e in extra):
        return None
    shape = prefix.args[0] if prefix.target is operator.getitem and prefix.args else None
    if not (isinstance(shape, fx.Node) and shape.op == "call_method" and shape.target == "size"):
        return None
    if shape.args[1:] or shape.kwargs or shape.args[0] is not node.args[0]:
        return None
    leading = ctx.concrete(prefix)
    if not isinstance(leading, tuple):
        return None
    return [_OWN_SIZE] * len(leading) + list(extra)


def _followed_head_width(ctx: GraphContext, node: fx.Node, size: int, block: int) -> bool:
    """Whether heads merged into ``size`` channels follow: a head-width attribute, or ``count x head_dim``.

    ``self.attn_dim``, or the product of a head-count attribute and the head width
    (``num_heads * head_dim`` computed in Python, as GPT-Neo's ``_merge_heads`` does).
    """
    caller = ctx.caller(node)
    if holds(caller, HEAD_WIDTH_ATTRIBUTES, size):
        return True
    return block > 1 and size % block == 0 and holds(caller, HEAD_COUNT_ATTRIBUTES, size // block)


def _followed_head_count(ctx: GraphContext, node: fx.Node, heads: int | None) -> int | None:
    """``heads`` when the module the reshape runs in keeps it in a head-count attribute, else None."""
    return heads if heads is not None and holds(ctx.caller(node), HEAD_COUNT_ATTRIBUTES, heads) else None


def _couples_with_width(ctx: GraphContext, size: object, primary: Flow) -> bool:
    """Whether ``size`` is the width of another searchable tensor, which the reshaped axis then shares.

    ``o.permute(0, 3, 1, 2).reshape(B, N, C)`` with ``C`` read from the block's input (EdgeNeXt's
    channel attention) only runs when the merged heads are exactly as wide as that input, at any
    subnet: the two groups are coupled (and fixed together when either is).
    """
    value = ctx.value(size) if isinstance(size, fx.Node) else None
    if not (isinstance(value, Flow) and value.is_shape and value.sym is not None and primary.sym is not None):
        return False
    if value.block != 1 or value.repeat != 1 or primary.repeat != 1 or value.parts_axis:
        return False
    primary.sym.union(value.sym)
    return True


def _reads_shape_of(ctx: GraphContext, size: object, primary: Flow) -> bool:
    value = ctx.value(size) if isinstance(size, fx.Node) else None
    return (
        isinstance(value, Flow)
        and value.is_shape
        and value.sym is not None
        and primary.sym is not None
        and value.sym.find() is primary.sym.find()
    )
