"""Tracing and coupling analysis: which layer sizes of a model can change, and together with which.

:func:`analyze` traces a model with torch.fx (modules that cannot be traced become leaves, their
children are traced on their own), walks every graph node with one handler per kind of node
(:mod:`.handlers`), and returns an :class:`Analysis`. It knows nothing of rules or dynamic layers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn

from ..calling import training_mode
from .analyzer import ModelState, analyze_graph
from .depth import skippable_blocks
from .examples import example_input_for, register_example_input_maker
from .grouping import (
    export_groups,
    fix_unvisited_layers,
    resolve_concats,
    resolve_grouped_heads,
    resolve_head_counts,
    tie_shared_parameters,
)
from .kept_state import module_state_kept
from .layers import is_layer, is_sealed, is_sequential, refusal
from .ops import register_shape_preserving
from .repeats import RepeatedBlock, repeated_blocks
from .result import Analysis, Group
from .symbols import Slot
from .tracer import register_leaf, trace_recursively, training_reads, unregister_leaf

__all__ = [
    "Analysis",
    "Group",
    "RepeatedBlock",
    "Slot",
    "analyze",
    "is_layer",
    "is_sequential",
    "register_example_input_maker",
    "register_leaf",
    "register_shape_preserving",
    "unregister_leaf",
]


def analyze(
    model: nn.Module, example_input: Any = None, resizable_output: Callable[[str], bool] | None = None
) -> Analysis:
    """Trace ``model`` and find every group of coupled layer hparams, and the skippable blocks.

    ``example_input`` (the ``dummy_input`` convention) gives the sizes with which shape-dependent
    Python in the forward is answered while tracing; by default one is made by a registered maker
    (see :mod:`.examples`; Hugging Face models get one from their config), else there is none.

    The model's outputs keep their sizes, except those whose path in the return value
    (``"last_hidden_state"``, ``"0"``, ``"0.features"``; ``""`` for a returned tensor)
    ``resizable_output`` accepts.

    The model is traced in its current mode and in the other one (train / eval), and both graphs
    are analysed together, so layers that run only in training (auxiliary heads) or only in eval
    follow the same sizes as their inputs. If the model traces in its current mode but not in the
    other, only the current mode is analysed and ``Analysis.other_mode_error`` says why.
    """
    if example_input is None:
        example_input = example_input_for(model)
    with module_state_kept(model):  # caches a forward fills while traced hold proxies
        with training_reads(model) as read:
            trace = trace_recursively(model, example_input)
        skippable = skippable_blocks(model, trace, example_input)
        repeats = repeated_blocks(model, trace, example_input)
        other_mode_error = None
        if read:  # otherwise both modes trace to the same graph
            with training_mode(model, not model.training):
                other = trace_recursively(model, example_input)
            other_mode_error = other.failed.get(model) if model not in trace.failed else None
            if other_mode_error is None:
                skippable = _in_both(skippable, skippable_blocks(model, other, example_input))
                repeats = _repeated_in_both(repeats, repeated_blocks(model, other, example_input))
                trace = trace.merged_with(other)
    state = ModelState(model, trace, resizable_output or _keeps_size)
    for traced in trace.graphs:
        analyze_graph(state, traced)
    unvisited = fix_unvisited_layers(state)
    tie_shared_parameters(state)
    resolve_head_counts(state)
    resolve_concats(state)
    resolve_grouped_heads(state)
    groups, group_of = export_groups(state)
    return Analysis(
        groups=groups,
        group_of=group_of,
        skippable=skippable,
        repeats=repeats,
        failed={state.name(m): reason for m, reason in trace.failed.items()},
        unvisited=unvisited,
        frozen={m: f"its parameter {target} is read outside its forward" for m, target in state.read_directly.items()},
        other_mode_error=other_mode_error,
        refused=_refused_classes(model, trace.called),
        holders={m: {name: dim for name, (_, dim) in held.items()} for m, held in state.holders.items()},
        heads=_head_groups(state, group_of),
        attribute_splits=[(module, group_of[sym.find().slots[0]]) for sym, module in state.attribute_splits],
        split_attributes=[
            (module, name, group_of[whole.find().slots[0]], group_of[part.find().slots[0]])
            for whole, part, module, name in state.split_attributes
            if whole.find().slots and part.find().slots
        ],
        scaled_groups=[
            (group_of[wide.find().slots[0]], group_of[narrow.find().slots[0]], ratio)
            for symbols in state.layers.values()
            if symbols.scaled is not None
            for wide, narrow, ratio in [symbols.scaled]
        ],
        sealed=[m for m in model.modules() if m in trace.called and is_sealed(m)],
        grouped_heads=[
            (group_of[q.find().slots[0]], group_of[kv.find().slots[0]], n) for q, kv, n in state.grouped_heads
        ],
        head_counts=[
            (group_of[heads.find().slots[0]], group_of[per_head.find().slots[0]], head_dim)
            for heads, per_head, head_dim in state.head_counts
            if heads.find().slots and per_head.find().slots
        ],
    )


def _keeps_size(path: str) -> bool:
    """Every output keeps its size."""
    return False


def _head_groups(state: ModelState, group_of: dict[Slot, Group]) -> dict[nn.Module, list[tuple[Group, int]]]:
    """Per attention module, each distinct group split into its heads, with the head width."""
    heads: dict[nn.Module, list[tuple[Group, int]]] = {}
    for sym, module, head_dim in state.head_splits:
        if not sym.find().slots:  # heads that reach no layer (their size is baked in downstream)
            continue
        entry = (group_of[sym.find().slots[0]], head_dim)
        entries = heads.setdefault(module, [])
        if all(group is not entry[0] for group, _ in entries):
            entries.append(entry)
    return heads


def _refused_classes(model: nn.Module, called: set[nn.Module]) -> dict[str, str]:
    """For each class of the called layers that cannot be converted, the first reason."""
    refused: dict[str, str] = {}
    for module in model.modules():
        reason = refusal(module) if module in called else None
        if reason is not None:
            refused.setdefault(type(module).__qualname__, reason)
    return refused


def _in_both(a: dict[nn.Module, list[bool]], b: dict[nn.Module, list[bool]]) -> dict[nn.Module, list[bool]]:
    """Blocks skippable in both modes."""
    both = {seq: [x and y for x, y in zip(flags, b[seq], strict=True)] for seq, flags in a.items() if seq in b}
    return {seq: flags for seq, flags in both.items() if any(flags)}


def _repeated_in_both(
    a: dict[nn.Module, RepeatedBlock], b: dict[nn.Module, RepeatedBlock]
) -> dict[nn.Module, RepeatedBlock]:
    """Repeated calls that may be left out in both modes."""
    both = {}
    for caller, repeat in a.items():
        other = b.get(caller)
        if other is None or (other.block, other.count) != (repeat.block, repeat.count):
            continue
        flags = tuple(x and y for x, y in zip(repeat.skippable, other.skippable, strict=True))
        if any(flags):
            both[caller] = RepeatedBlock(repeat.block, repeat.count, flags)
    return both
