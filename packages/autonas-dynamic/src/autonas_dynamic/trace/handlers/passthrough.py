"""Operations that keep the elastic axis: activations, dropout, pools, pads, rolls, spatial reductions.

A pad keeps it when it adds nothing along it (``F.pad(x, (0, 0, 0, 1))`` on a channels-last
tensor); ``torch.roll`` and ``torch.flip`` when their ``dims`` leave it out.

A mean or variance over the elastic axis itself (the statistic of a norm written as module code)
has no width left: its result is neutral.

A global adaptive pool (output size 1 on every spatial axis) of a channel-first tensor also marks
its output as having a unit tail (see :class:`~autonas_dynamic.trace.values.Flow`); activations
and dropout keep that mark, every other op drops it.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.fx as fx
import torch.nn.functional as F

from ..analyzer import GraphContext
from ..dims import after_reduction, is_elastic, may_touch
from ..ops import ADAPTIVE_POOL_FUNCTIONS, ADAPTIVE_POOL_MODULES, OpKind
from ..values import NEUTRAL, Flow, Value

_DTYPE_ONLY_EXTRAS = {"to", "type_as", "type"}  # a second tensor here only gives a dtype/device
_STATISTICS = {"mean", "var", "std", "nanmean"}  # normalised by the width they reduce
_MOVES_ALONG = {torch.roll: "roll", torch.flip: "flip"}  # entries move along some axes, each channel whole


def handle(ctx: GraphContext, node: fx.Node) -> Value | None:
    """The output follows the primary input when the op provably leaves its elastic axis alone."""
    kind = ctx.op_kind(node)
    if kind is None or kind[0] not in (OpKind.SHAPE_PRESERVING, OpKind.PARTIAL, OpKind.REDUCTION):
        return None
    if not node.args or not isinstance(node.args[0], fx.Node):
        return None
    primary = ctx.value(node.args[0])
    if not isinstance(primary, Flow) or primary.is_shape or primary.sym is None:
        return None  # a fixed tensor stays fixed: the boundary handler says so
    extras = [n for n in node.all_input_nodes if n is not node.args[0]]
    if extras and node.target not in _DTYPE_ONLY_EXTRAS:
        ctx.fix((ctx.value(n) for n in extras), f"second tensor input of {ctx.describe(node)}")
    op, kept = kind
    if op is OpKind.SHAPE_PRESERVING:
        return primary
    if op is OpKind.PARTIAL:
        if _returns_indices(ctx, node) or not _keeps_elastic_axis(node, primary, kept):
            return None
        unit_tail = kept is not None and kept - {0} <= primary.dims and _pools_to_one(ctx, node)
        return replace(primary, unit_tail=unit_tail)
    axes = _reduced_axes(node)
    if axes is not None and _statistic_over_width(node, primary, axes):
        return NEUTRAL  # RMSNorm's mean of squares: computed over the active channels alike
    if axes is None or may_touch(primary.dims, axes):
        return None
    keepdim = bool(node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False))
    dims = after_reduction(primary.dims, axes, keepdim)
    return replace(primary, dims=dims, unit_tail=False) if dims else None


def _statistic_over_width(node: fx.Node, primary: Flow, axes: list[int]) -> bool:
    """A mean or variance over exactly the elastic axis (of whole channels): its result has no width.

    A subnet computes it over its active channels, as the exported smaller layer does (the norms of
    the residual stream written as module code: ``LlamaRMSNorm``, ``T5LayerNorm``).
    """
    name = node.target if node.op == "call_method" else getattr(node.target, "__name__", None)
    if name not in _STATISTICS or primary.block != 1 or primary.parts_axis or len(axes) != 1:
        return False
    return is_elastic(axes[0], primary.dims) is True


def _returns_indices(ctx: GraphContext, node: fx.Node) -> bool:
    if node.op == "call_module":
        return bool(getattr(ctx.module(node.target), "return_indices", False))
    return bool(node.kwargs.get("return_indices"))


def _pools_to_one(ctx: GraphContext, node: fx.Node) -> bool:
    """Whether ``node`` is an adaptive pool whose output size is statically 1 on every spatial axis."""
    size: object
    if node.op == "call_module":
        module = ctx.module(node.target)
        if not isinstance(module, ADAPTIVE_POOL_MODULES):
            return False
        size = module.output_size
    elif node.target in ADAPTIVE_POOL_FUNCTIONS:
        size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
    else:
        return False
    sizes = size if isinstance(size, (list, tuple)) else (size,)
    return all(s == 1 and not isinstance(s, bool) for s in sizes)


def _keeps_elastic_axis(node: fx.Node, primary: Flow, kept: frozenset[int] | None) -> bool:
    if node.target in _MOVES_ALONG or (node.op == "call_method" and node.target in _MOVES_ALONG.values()):
        axes = _moved_along(node)
        return axes is not None and not may_touch(primary.dims, axes)
    if node.target is F.pad:
        pad = node.args[1] if len(node.args) > 1 else node.kwargs.get("pad")
        if not isinstance(pad, (list, tuple)):
            return False
        padded = [-1 - i // 2 for i in range(0, len(pad) - 1, 2) if not _no_padding(pad[i : i + 2])]
        return not may_touch(primary.dims, padded)
    return bool(kept is not None and kept & primary.dims)


def _moved_along(node: fx.Node) -> list[int] | None:
    """The axes ``torch.roll`` / ``torch.flip`` move entries along (None when not constants, or all of them)."""
    name = node.target if node.op == "call_method" else _MOVES_ALONG[node.target]  # type: ignore[index]
    position = 2 if name == "roll" else 1
    dims = node.kwargs.get("dims", node.args[position] if len(node.args) > position else None)
    if name == "flip" and node.op == "call_method" and len(node.args) > 2:
        dims = node.args[1:]  # x.flip(1, 2)
    dims = [dims] if isinstance(dims, int) else dims
    if not isinstance(dims, (list, tuple)) or not all(isinstance(d, int) for d in dims):
        return None
    return list(dims)


def _no_padding(pair: object) -> bool:
    """Whether a pair of ``F.pad`` sizes (before, after one axis) is two literal zeros."""
    return all(isinstance(size, int) and size == 0 for size in pair)  # type: ignore[union-attr]


def _reduced_axes(node: fx.Node) -> list[int] | None:
    dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else None)
    if isinstance(dim, int):
        return [dim]
    if isinstance(dim, (list, tuple)) and dim and all(isinstance(d, int) for d in dim):
        return list(dim)
    return None
