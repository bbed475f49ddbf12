"""From symbols to groups: fixing what cannot be searched, then the :class:`Group` objects.

Runs after every graph was analysed: layers never called are fixed, concatenations that cannot be
searched consistently are fixed (with their inputs), and every union-find tree becomes one group.
"""

from __future__ import annotations

from torch import nn

from ..registry import DYNAMIC_REGISTRY
from .analyzer import ModelState, iter_groups
from .layers import is_layer, is_sealed, refusal
from .result import Group
from .symbols import Slot, Symbol, full_size


def fix_unvisited_layers(state: ModelState) -> list[str]:
    """Fix every size of the layers never called, or whose parameters are read directly; their names.

    Layers inside a leaf layer (the convolutions of a mixed convolution, the output projection of
    an ``nn.MultiheadAttention``) belong to it and are skipped, and so is a layer never called
    whose parameters are all held by called layers too (Bart's ``shared`` embedding, whose weight
    its encoder's and decoder's embeddings hold): it follows them (:func:`tie_shared_parameters`).
    """
    unvisited = []
    called = {id(p) for m in state.visited for p in m.parameters()}
    inside = {
        id(sub)
        for m in state.model.modules()
        if is_layer(m) or is_sealed(m) or refusal(m)
        for sub in list(m.modules())[1:]
    }
    for name, module in state.model.named_modules():
        if not is_layer(module) or id(module) in inside:
            continue
        symbols = state.layer_symbols(module)
        reason = None
        tied = list(module.parameters())
        if module not in state.visited and tied and all(id(p) in called for p in tied):
            continue
        if module not in state.visited:
            reason = f"{name} is never called in the traced forward"
            unvisited.append(name)
        elif module in state.read_directly:
            reason = f"parameter {state.read_directly[module]} is read outside the layer's forward"
        if reason is not None:
            symbols.incoming.fix(reason)
            if symbols.outgoing is not None:
                symbols.outgoing.fix(reason)
    return unvisited


def tie_shared_parameters(state: ModelState) -> None:
    """Layers that hold one parameter (tied embeddings) slice it alike: the widths of each of its dims are one group.

    Bart's encoder and decoder embeddings and its ``lm_head`` hold one weight; where one holder's
    width is fixed (the encoder's stream is an output of the model), so are the others'.
    """
    holders: dict[int, list[tuple[nn.Module, str]]] = {}
    for module in state.model.modules():
        if is_layer(module):
            for name, parameter in module._parameters.items():
                if parameter is not None:
                    holders.setdefault(id(parameter), []).append((module, name))
    for found in holders.values():
        by_dim: dict[int, list[Symbol]] = {}
        for module, name in found if len(found) > 1 else ():
            layout = DYNAMIC_REGISTRY.match(module).layout
            assert layout is not None
            symbols = state.layer_symbols(module)
            rank = module._parameters[name].dim()  # type: ignore[union-attr]
            for dim, width in layout.tensors.get(name, {}).items():
                symbol = symbols.incoming if width == layout.incoming else symbols.outgoing or symbols.incoming
                by_dim.setdefault(dim % rank, []).append(symbol)
        for symbols_of_dim in by_dim.values():
            for other in symbols_of_dim[1:]:
                symbols_of_dim[0].union(other)


def resolve_grouped_heads(state: ModelState) -> None:
    """Widths that follow others as a fixed fraction (grouped keys and values; the parts of a fused
    projection chunked per head) keep their sizes together: a fixed side fixes the other. Entries
    of which a side reaches no layer are dropped (what they relate cannot change on its own)."""
    kept = []
    for whole, part, groups in state.grouped_heads:
        if whole.find().concat_inputs or part.find().concat_inputs:
            whole.fix("a concatenation cannot follow another width as a fraction")
        for fixed, other in ((whole, part), (part, whole)):
            if fixed.fixed and not other.fixed:
                other.fix(f"it is {groups} times a width that keeps its size ({fixed.find().fixed_reason})")
        if whole.find().slots and part.find().slots:
            kept.append((whole, part, groups))
    state.grouped_heads[:] = kept


def resolve_head_counts(state: ModelState) -> None:
    """Tensors with one entry per head follow one width of heads; their fixed sizes and order bind it.

    A per-head tensor that meets the heads of several modules makes their widths one group (T5's
    position bias, computed by the first layer, is added to the scores of every layer); one that
    meets heads of different widths, or its own heads, keeps its size and so do they. A fixed side
    fixes the other, and per-head entries that may not be reordered keep the heads in their order.
    A tensor created with the head count of its module (:mod:`.handlers.created`) has no slot: it
    couples the heads it meets and is then dropped; met by any other width, it keeps its size.
    Leaves one ``(heads, per-head, head_dim)`` entry per per-head group with slots in ``state.head_counts``.
    """
    for created in state.created_per_head:
        if created.find().slots:
            created.fix("a tensor created with its module's head count meets another width")
    first: dict[int, tuple[Symbol, Symbol, int]] = {}
    for heads, per_head, head_dim in state.head_counts:
        entry = first.setdefault(id(per_head.find()), (heads, per_head, head_dim))
        if entry[2] != head_dim:
            reason = f"one entry per head of widths split into heads of {entry[2]} and of {head_dim}"
            for sym in (heads, per_head, entry[0]):
                sym.fix(reason)
        else:
            entry[0].union(heads)
    for heads, per_head, _ in first.values():
        if heads.find() is per_head.find():
            per_head.fix("its size would be that of its heads and of one entry per head at once")
        if per_head.fixed:
            heads.fix(f"a tensor with one entry per head keeps its size ({per_head.find().fixed_reason})")
        if not per_head.find().sortable:
            heads.mark_unsortable()
    for heads, per_head, _ in first.values():
        if heads.fixed:
            per_head.fix(f"it has one entry per head of a width that keeps its size ({heads.find().fixed_reason})")
    state.head_counts = [entry for entry in first.values() if entry[1].find().slots]


def resolve_concats(state: ModelState) -> None:
    """Fix concatenations that cannot be searched, until nothing changes.

    Concats that produce one group from inputs of the same sizes (GhostNet's blocks added by their
    residuals) are one concat: their inputs are coupled pairwise. A group may hold one concat source; a group may feed one concat; a concat cannot feed
    itself or another concat, except as every part of a concat of equal parts (its size then moves
    in multiples of the inner one's); a fixed concat fixes its inputs; a concat of fixed inputs is fixed.
    """
    concats = _flatten_nested_concats(list(dict.fromkeys(state.concats.values())))
    concats = state.live_concats = _merge_parallel_concats(concats)
    changed = True
    while changed:
        before = sum(c.fixed for c in concats) + sum(i.fixed for c in concats for i in c.concat_inputs)
        users: dict[int, set[int]] = {}
        for concat in concats:
            for inp in concat.concat_inputs:
                users.setdefault(id(inp.find()), set()).add(id(concat))
        for concat in concats:
            root = concat.find()
            if len(root.concats) > 1:
                root.fix("more than one concatenation produces this size")
            inputs = [inp.find() for inp in concat.concat_inputs]
            if any(inp is root for inp in inputs) or (any(inp.concats for inp in inputs) and not _equal_parts(inputs)):
                root.fix("a concatenation feeds a concatenation")
            for inp in inputs:
                if len(users[id(inp)]) > 1:
                    inp.fix("feeds more than one concatenation")
            if root.fixed_reason is not None:
                for inp in inputs:
                    inp.fix(f"input of a concatenation whose size is fixed ({root.fixed_reason})")
            elif all(inp.fixed_reason is not None for inp in inputs):
                root.fix("every input of its concatenation is fixed")
        after = sum(c.fixed for c in concats) + sum(i.fixed for c in concats for i in c.concat_inputs)
        changed = after != before


def _merge_parallel_concats(concats: list[Symbol]) -> list[Symbol]:
    """``cat([a, b]) + cat([c, d])`` with ``a``, ``c`` and ``b``, ``d`` of one size: ``a ~ c``, ``b ~ d``, one concat."""
    kept: list[Symbol] = []
    for concat in concats:
        root = concat.find()
        first = next((other for other in kept if other.find() is root), None)
        pairs = list(zip(first.concat_inputs, concat.concat_inputs, strict=False)) if first is not None else []
        if (
            first is None
            or len(first.concat_inputs) != len(concat.concat_inputs)
            or not all(full_size(a) is not None and full_size(a) == full_size(b) for a, b in pairs)
        ):
            kept.append(concat)
            continue
        for a, b in pairs:
            a.union(b)
        root = concat.find()
        root.concats = [other for other in root.concats if other is not concat]
    return kept


def _equal_parts(inputs: list[Symbol]) -> bool:
    """Whether a concatenation stacks copies of one size (a fused ``qkv`` of a stream that is itself chunked)."""
    return len({id(inp) for inp in inputs}) == 1


def _flatten_nested_concats(concats: list[Symbol]) -> list[Symbol]:
    """``cat([cat([a, b]), c])`` is ``cat([a, b, c])`` when the inner result feeds nothing else."""
    consumers: dict[int, int] = {}
    for concat in concats:
        for inp in concat.concat_inputs:
            consumers[id(inp.find())] = consumers.get(id(inp.find()), 0) + 1
    inner = set()
    for concat in concats:
        flat: list[Symbol] = []
        for inp in concat.concat_inputs:
            root = inp.find()
            nested = root.concats[0] if len(root.concats) == 1 else None
            if nested is not None and nested is not concat and not root.slots and consumers[id(root)] == 1:
                flat.extend(nested.concat_inputs)
                inner.add(nested)
            else:
                flat.append(inp)
        concat.concat_inputs = flat
    return [concat for concat in concats if concat not in inner]


def export_groups(state: ModelState) -> tuple[list[Group], dict[Slot, Group]]:
    by_root: dict[int, Group] = {}
    for root in iter_groups(state):
        by_root[id(root)] = Group(list(root.slots), root.fixed_reason, root.sortable, step=root.step)
    for concat in state.live_concats:
        root = concat.find()
        group = by_root.get(id(root))
        if group is None or group.fixed:
            continue
        group.concat_inputs = [by_root[id(inp.find())] for inp in concat.concat_inputs]
        group.sortable = group.sortable and any(i.sortable for i in group.concat_inputs)
    group_of = {slot: group for group in by_root.values() for slot in group.slots}
    return list(by_root.values()), group_of
