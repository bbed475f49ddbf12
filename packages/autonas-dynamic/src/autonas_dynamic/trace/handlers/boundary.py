"""Everything the analysis cannot see through: the sizes flowing in and out stay fixed.

Model inputs and outputs (except the outputs the analysis was told may change width, by their
path in the return value), reshapes and flattens (except of a globally pooled tensor), matmuls, attention, parameters read as tensors,
calls of modules that could not be traced, sizes Python read as numbers (``int(x.size(-1))``,
``if x.shape[-1] != n``: the trace is specialised to them), and any op not in
:mod:`autonas_dynamic.trace.ops`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import torch
import torch.fx as fx

from ..analyzer import GraphContext
from ..concrete import python_value
from ..layers import is_layer
from ..values import FIXED, NEUTRAL, Flow, Value
from .shape import NEUTRAL_ATTRIBUTES

_SCALAR_MODULES = {"_operator", "operator", "math", "builtins"}  # arithmetic on sizes and constants


def handle(ctx: GraphContext, node: fx.Node) -> Value:
    """Fix every input; model inputs are fixed tensors, scalar arithmetic gives neutral values."""
    if node.op == "placeholder":
        return FIXED
    if node.op == "output" and ctx.is_model_graph:
        for path, leaf in _output_leaves(node.args[0]):
            value = ctx.value(leaf)
            if not ctx.state.resizable_output(path):
                ctx.fix([value], f"reaches the model's output {path!r}")
            elif isinstance(value, Flow) and value.sym is not None:
                value.sym.mark_unsortable()  # sorting would permute the channels the model returns
        return FIXED
    if node.op == "get_attr":
        if not all(_reads_no_size(user) for user in node.users):  # ``w.dtype``, ``w.device``: not used
            _record_direct_read(ctx, str(node.target))
        return FIXED
    scalar = getattr(node.target, "__module__", None) in _SCALAR_MODULES or node.target is torch._assert
    if node.op == "call_function" and scalar and not ctx.input_flows(node):
        return NEUTRAL
    if node.target is python_value:
        read, how = node.args[0], node.args[1]
        source = ctx.describe(read) if isinstance(read, fx.Node) else repr(read)
        return ctx.boundary(node, f"its size is read as a Python {how} while tracing ({source})")
    if node.op == "call_module":
        module = ctx.module(node.target)
        reason = ctx.state.trace.failed.get(module)
        if reason is not None:
            return ctx.boundary(node, f"reaches {ctx.state.name(module)}, which could not be traced ({reason})")
    return ctx.boundary(node)


def _output_leaves(value: Any, path: str = "") -> Iterator[tuple[str, fx.Node]]:
    """Each node in a returned structure with its path: dict keys and positions joined by ``.``."""
    if isinstance(value, fx.Node):
        yield path, value
        return
    if isinstance(value, Mapping):
        items: Iterable[tuple[Any, Any]] = value.items()
    elif isinstance(value, (tuple, list)):
        items = enumerate(value)
    else:
        return  # a constant
    for key, item in items:
        yield from _output_leaves(item, f"{path}.{key}" if path else str(key))


def _reads_no_size(node: fx.Node) -> bool:
    """Whether ``node`` only reads an attribute of a tensor that carries no size (``w.device``, ``w.dtype``)."""
    return node.op == "call_function" and node.target is getattr and node.args[1] in NEUTRAL_ATTRIBUTES


def _record_direct_read(ctx: GraphContext, target: str) -> None:
    """A layer whose parameter is read outside its own forward must keep all its sizes."""
    owner, _, attribute = target.rpartition(".")
    try:
        module = ctx.module(owner) if owner else ctx.root
    except AttributeError:
        return
    if is_layer(module):
        ctx.state.read_directly.setdefault(module, f"{ctx.state.name(module)}.{attribute}")
