"""``torch.cat``: along the elastic axis the sizes add up; along any other axis they must agree.

``x.chunk(n, dim)`` along the elastic axis is its inverse: ``x``'s size becomes the concatenation
of ``n`` equal parts of one new size, and a later ``torch.cat`` of ``n`` tensors of that size (the
parts, or what layers made of them) is that same concatenation again (EdgeNeXt, Res2Net-style
blocks). The full size must divide by ``n``. A fused projection reshaped into stacked parts
(``qkv(x).reshape(b, n, 3, heads, head_dim)``, see :mod:`.reshape`) is the same chunk, and
``unbind`` along the stacked axis hands out its parts. ``x.split(size, dim)`` into equal parts is the same
chunk when the size follows the parts: it is an attention module's head-width attribute
(GPT-2's ``c_attn(x).split(self.split_size, dim=2)`` into queries, keys and values), which
follows the active heads. A split by a size some other int attribute of the module holds (Res2Net's
``torch.split(x, self.width, 1)``, the only attribute of that value) is the same chunk too: the
attribute then follows the width of the parts. A chunk of each head along the last axis (GPT-NeoX's
``(heads, 3 * head_dim)`` into queries, keys and values) leaves the heads whole: each part is a
fixed fraction of the fused width.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.fx as fx
import torch.nn as nn

from ..analyzer import GraphContext
from ..dims import is_elastic
from ..heads import HEAD_WIDTH_ATTRIBUTES, holds, int_attribute
from ..ops import OpKind
from ..symbols import Symbol
from ..values import Flow, Value


def handle(ctx: GraphContext, node: fx.Node) -> Value | None:
    """A cat along the elastic axis is a concat source: the consumer's size is the sum of the inputs'."""
    if _is_chunk(node):
        return _chunk(ctx, node)
    if getattr(node.target, "__name__", node.target) == "unbind" and node.op in ("call_method", "call_function"):
        return _unbind(ctx, node)
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
    for parts, concat in ctx.state.chunks:
        if len(roots) == len(concat.concat_inputs) and _rejoins(ctx, roots, parts):
            return Flow(concat, dims)  # the parts of a chunk put back together
    sym = ctx.state.concats.get(key)
    if sym is None:
        sym = ctx.state.concats[key] = Symbol.concat_of(roots)
    return Flow(sym, dims)


def _rejoins(ctx: GraphContext, roots: list[Symbol], parts: Symbol) -> bool:
    """Whether a cat of ``roots`` puts the parts of a chunk back together.

    Each input is a part, or (while most are parts) a free layer output of a part's size, which then
    joins the parts: Res2Net's last split conv, ``cat([sp_1, ..., conv(sp_n), spx[-1]])``.
    """
    part = parts.find()
    others = [root for root in roots if root is not part]
    if len(others) * 2 >= len(roots):
        return not others
    size = ctx.full_size(part)
    if size is None or any(r.concat_inputs or r.fixed_reason or ctx.full_size(r) != size for r in others):
        return False
    for root in others:
        part.union(root)
    return True


def _is_chunk(node: fx.Node) -> bool:
    return (node.op == "call_method" and node.target in ("chunk", "split")) or (
        node.op == "call_function" and node.target in (torch.chunk, torch.split)
    )


def _chunk(ctx: GraphContext, node: fx.Node) -> Value | None:
    """``n`` equal parts along the elastic axis: the whole is the concatenation of ``n`` parts of one size."""
    args = list(node.args[1:])
    split = getattr(node.target, "__name__", node.target) == "split"
    names = ("split_size_or_sections", "split_size") if split else ("chunks",)
    count = args[0] if args else next((node.kwargs[name] for name in names if name in node.kwargs), None)
    axis = args[1] if len(args) > 1 else node.kwargs.get("dim", 0)
    source = ctx.value(node.args[0]) if node.args else None
    if not (isinstance(count, int) and isinstance(axis, int) and isinstance(source, Flow)) or count < 1:
        return None
    if source.sym is None or source.is_shape:
        return None
    if source.block > 1 and not split and is_elastic(axis, source.dims) is False:
        return _chunk_inside_heads(ctx, node, source, count, axis)
    if is_elastic(axis, source.dims) is not True:
        return None
    traced = ctx.concrete(node.args[0])
    full = traced.shape[axis] if isinstance(traced, torch.Tensor) else ctx.full_size(source.sym)
    caller = ctx.caller(node)
    attribute = None
    if split and full is not None and caller is not None and holds(caller, HEAD_WIDTH_ATTRIBUTES, count):
        full, count = (full, full // count) if full % count == 0 else (None, count)
    elif split and full is not None and full % count == 0 and (attribute := _split_attribute(caller, count)):
        count = full // count
    elif split:
        return None
    if full is None or full % count:
        return None
    parts = chunk_parts(ctx, source.sym, count)
    if attribute is not None:
        ctx.state.split_attributes.append((source.sym, parts, caller, attribute))  # type: ignore[arg-type]
    elif split and caller is not None:  # the parts must be split into heads, for the attribute to follow them
        ctx.state.attribute_splits.append((source.sym, caller))
    return Flow(parts, source.dims, pieces=True)


def _chunk_inside_heads(ctx: GraphContext, node: fx.Node, source: Flow, count: int, axis: int) -> Value | None:
    """``count`` equal parts of every head along the last axis, which holds a head's channels.

    GPT-NeoX views its fused ``query_key_value`` as ``(heads, 3 * head_dim)`` and chunks queries,
    keys and values out of each head. The fused width keeps whole heads of all three (a prefix),
    and each part is ``1 / count`` of it: the parts' symbol follows the whole as a group of
    ``count`` (recorded as grouped heads), split into heads of ``block / count`` channels.
    """
    traced = ctx.concrete(node.args[0])
    if not isinstance(traced, torch.Tensor) or axis % traced.dim() != traced.dim() - 1:
        return None
    if traced.shape[-1] != source.block or source.block % count or count < 2:
        return None
    assert source.sym is not None
    if source.sym.find().concat_inputs:  # a concatenation is sliced per input, not as a prefix of heads
        return None
    block = source.block // count
    part = next(
        (
            shared
            for whole, shared, groups in ctx.state.grouped_heads
            if whole.find() is source.sym.find() and groups == count
        ),
        None,
    )
    if part is None:  # not yet seen (in the graph of the other mode)
        part = Symbol()
        part.require_step(block)
        ctx.state.grouped_heads.append((source.sym, part, count))
    caller = ctx.caller(node)
    if caller is not None:
        ctx.state.head_splits.append((part, caller, block))
    return replace(source, sym=part, block=block, pieces=True)


def _split_attribute(module: nn.Module | None, size: int) -> str | None:
    """The one plain int attribute of ``module`` (not a head width) holding the split size ``size``, else None."""
    if module is None or size < 2:
        return None
    names = [name for name in vars(module) if not name.startswith("_") and int_attribute(module, name) == size]
    return names[0] if len(names) == 1 and names[0] not in HEAD_WIDTH_ATTRIBUTES else None


def chunk_parts(ctx: GraphContext, whole: Symbol, count: int) -> Symbol:
    """The symbol of each of ``count`` equal parts of ``whole`` (which becomes their concatenation)."""
    for parts, concat in ctx.state.chunks:  # the same chunk in the graph of the other mode
        if concat.find() is whole.find() and len(concat.concat_inputs) == count:
            return parts
    parts = Symbol()
    concat = Symbol.concat_of([parts] * count)
    ctx.state.concats[(id(concat),)] = concat
    ctx.state.chunks.append((parts, concat))
    whole.union(concat)
    return parts


def _unbind(ctx: GraphContext, node: fx.Node) -> Value | None:
    """``x.unbind(dim)`` along the axis stacked parts lie on (a fused ``qkv``): the tuple of the parts."""
    source = ctx.value(node.args[0]) if node.args else None
    traced = ctx.concrete(node.args[0]) if node.args else None
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
    if not (isinstance(source, Flow) and source.parts_axis and isinstance(traced, torch.Tensor)):
        return None
    rank = traced.dim()
    if not isinstance(dim, int) or dim % rank not in {d % rank for d in source.parts_axis}:
        return None
    axis = next(d for d in source.dims if d >= 0)
    axis -= axis > dim % rank
    return replace(source, dims=frozenset({axis, axis - rank + 1}), parts_axis=frozenset(), pieces=True)
