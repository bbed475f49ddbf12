"""Tracing and coupling analysis: which layer sizes of a model can change, and together with which.

:func:`analyze` traces a model with torch.fx (modules that cannot be traced become leaves, their
children are traced on their own), walks every graph node with one handler per kind of node
(:mod:`.handlers`), and returns an :class:`Analysis`. It knows nothing of rules or dynamic layers.
"""

from __future__ import annotations

import torch.nn as nn

from ..calling import training_mode
from .analyzer import ModelState, analyze_graph
from .depth import skippable_blocks
from .grouping import export_groups, fix_unvisited_layers, resolve_concats
from .layers import is_layer, is_sequential, refusal
from .ops import register_shape_preserving
from .result import Analysis, Group
from .symbols import Slot
from .tracer import reads_training_flag, register_leaf, trace_recursively, unregister_leaf

__all__ = [
    "Analysis",
    "Group",
    "Slot",
    "analyze",
    "is_layer",
    "is_sequential",
    "register_leaf",
    "register_shape_preserving",
    "unregister_leaf",
]


def analyze(model: nn.Module) -> Analysis:
    """Trace ``model`` and find every group of coupled layer hparams, and the skippable blocks.

    The model is traced in its current mode and in the other one (train / eval), and both graphs
    are analysed together, so layers that run only in training (auxiliary heads) or only in eval
    follow the same sizes as their inputs. If the model traces in its current mode but not in the
    other, only the current mode is analysed and ``Analysis.other_mode_error`` says why.
    """
    trace = trace_recursively(model)
    skippable = skippable_blocks(model, trace)
    other_mode_error = None
    if reads_training_flag(model):  # otherwise both modes trace to the same graph
        with training_mode(model, not model.training):
            other = trace_recursively(model)
        other_mode_error = other.failed.get(model) if model not in trace.failed else None
        if other_mode_error is None:
            skippable = _in_both(skippable, skippable_blocks(model, other))
            trace = trace.merged_with(other)
    state = ModelState(model, trace)
    for traced in trace.graphs:
        analyze_graph(state, traced)
    unvisited = fix_unvisited_layers(state)
    resolve_concats(state)
    groups, group_of = export_groups(state)
    return Analysis(
        groups=groups,
        group_of=group_of,
        skippable=skippable,
        failed={state.name(m): reason for m, reason in trace.failed.items()},
        unvisited=unvisited,
        frozen={m: f"its parameter {target} is read outside its forward" for m, target in state.read_directly.items()},
        other_mode_error=other_mode_error,
        refused=_refused_classes(model, trace.called),
        holders={m: {name: dim for name, (_, dim) in held.items()} for m, held in state.holders.items()},
    )


def _refused_classes(model: nn.Module, called: set[nn.Module]) -> dict[str, str]:
    """For each class of the called layers that cannot be converted, the first reason."""
    refused: dict[str, str] = {}
    for module in model.modules():
        reason = refusal(module) if module in called else None
        if reason is not None:
            refused.setdefault(type(module).__qualname__, reason)
    return refused


def _in_both(a: dict[nn.Sequential, list[bool]], b: dict[nn.Sequential, list[bool]]) -> dict[nn.Sequential, list[bool]]:
    """Blocks skippable in both modes."""
    both = {seq: [x and y for x, y in zip(flags, b[seq], strict=True)] for seq, flags in a.items() if seq in b}
    return {seq: flags for seq, flags in both.items() if any(flags)}
