"""Tracing and coupling analysis: which layer sizes of a model can change, and together with which.

:func:`analyze` traces a model with torch.fx (modules that cannot be traced become leaves, their
children are traced on their own), walks every graph node with one handler per kind of node
(:mod:`.handlers`), and returns an :class:`Analysis`. It knows nothing of rules or dynamic layers.
"""

from __future__ import annotations

import torch.nn as nn

from .analyzer import ModelState, analyze_graph
from .depth import skippable_blocks
from .grouping import export_groups, fix_unvisited_layers, resolve_concats
from .layers import is_layer, is_sequential
from .ops import register_shape_preserving
from .result import Analysis, Group
from .symbols import Slot
from .tracer import register_leaf, trace_recursively, unregister_leaf

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
    """Trace ``model`` and find every group of coupled layer hparams, and the skippable blocks."""
    trace = trace_recursively(model)
    state = ModelState(model, trace)
    for traced in trace.graphs:
        analyze_graph(state, traced)
    unvisited = fix_unvisited_layers(state)
    resolve_concats(state)
    groups, group_of = export_groups(state)
    return Analysis(
        groups=groups,
        group_of=group_of,
        skippable=skippable_blocks(model, trace),
        failed={state.name(m): reason for m, reason in trace.failed.items()},
        unvisited=unvisited,
        frozen={m: f"its parameter {target} is read outside its forward" for m, target in state.read_directly.items()},
    )
