"""Which blocks of an ``nn.Sequential`` may be skipped: trailing shape-preserving residual blocks.

A block is skippable when every path from its output back to its input passes an addition and
otherwise only shape-preserving ops (activations, norms, dropout ...): ``relu(x + f(x))`` qualifies,
``conv(x)`` does not. Skipping must also leave the rest of the model traceable exactly as before: the
whole model is traced again with the skippable blocks replaced by ``nn.Identity``, and blocks whose
absence changes the tracing failures (for instance a block read directly from elsewhere) are kept.
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.fx as fx
import torch.nn as nn

from .layers import LAYER_CLASSES, base_class, is_sequential
from .ops import OpKind, function_kind, method_kind, module_kind
from .tracer import TraceResult, trace_recursively

_ADDS = {operator.add, operator.iadd, torch.add}
_NORMS = tuple(cls for cls in LAYER_CLASSES if "Norm" in cls.__name__)


def skippable_blocks(model: nn.Module, trace: TraceResult) -> dict[nn.Sequential, list[bool]]:
    """For each visited Sequential with trailing skippable blocks: the per-block flags."""
    return validated(model, trace, residual_blocks(model, trace))


def residual_blocks(model: nn.Module, trace: TraceResult) -> dict[nn.Sequential, list[bool]]:
    """Like :func:`skippable_blocks`, from the graphs alone (without the re-tracing check)."""
    calls = _block_calls(trace)
    found: dict[nn.Sequential, list[bool]] = {}
    for seq in _sequentials(model, trace):
        flags = [False] * len(seq)
        for index in reversed(range(len(seq))):  # only a trailing run of skippable blocks matters
            if not _is_residual_call(calls.get(seq[index])):
                break
            flags[index] = True
        if any(flags):
            found[seq] = flags
    return found


def _sequentials(model: nn.Module, trace: TraceResult) -> Iterator[nn.Sequential]:
    seen: set[nn.Module] = set()
    for module in model.modules():
        if (
            isinstance(module, nn.Sequential)
            and is_sequential(module)
            and module not in seen
            and module in trace.called
        ):
            seen.add(module)
            yield module


_Call = tuple[nn.Module, list[fx.Node]]  # the traced root and the nodes created inside one module call


def _block_calls(trace: TraceResult) -> dict[nn.Module, _Call | None]:
    """The graph nodes created inside each module's (single) call; None for modules called more than once."""
    calls: dict[nn.Module, _Call | None] = {}
    for traced in trace.graphs:
        if traced.graph is None:
            continue
        modules = dict(traced.root.named_modules())
        seen_here: dict[nn.Module, list[fx.Node]] = {}
        for node in traced.graph.nodes:
            for key in node.meta.get("nn_module_stack", ()):
                path, _, repeat = key.partition("@")
                module = modules.get(path)
                if module is None:
                    continue
                if repeat or (module in calls and module not in seen_here):
                    calls[module] = None  # called several times (or in several graphs)
                    continue
                nodes = seen_here.setdefault(module, [])
                nodes.append(node)
                calls[module] = (traced.root, nodes)
    return calls


def is_residual_block(block: nn.Module) -> bool:
    """Whether ``block`` alone is a shape-preserving residual block (traced on its own)."""
    wrapper = nn.Sequential(block)
    return _is_residual_call(_block_calls(trace_recursively(wrapper)).get(block))


def _is_residual_call(call: _Call | None) -> bool:
    """Whether a block's nodes compute ``input + f(input)`` followed by shape-preserving ops only.

    The block must read exactly one outside value (its input) and hand exactly one value out.
    """
    if call is None or not call[1]:
        return False
    root, nodes = call
    inside = set(nodes)
    inputs = {arg for node in nodes for arg in node.all_input_nodes if arg not in inside}
    outputs = [node for node in nodes if any(user not in inside for user in node.users)]
    if len(inputs) != 1 or len(outputs) != 1:
        return False
    (block_input,) = inputs
    queue = deque([(outputs[0], False)])
    seen = set()
    while queue:
        node, passed_add = queue.popleft()
        if (node, passed_add) in seen:
            continue
        seen.add((node, passed_add))
        if node is block_input:
            if passed_add:
                return True
            continue
        if _is_add(node):
            queue.extend((n, True) for n in node.all_input_nodes)
        elif _is_shape_preserving(root, node):
            queue.extend((n, passed_add) for n in node.all_input_nodes)
    return False


def _is_add(node: fx.Node) -> bool:
    if node.op == "call_function":
        return node.target in _ADDS
    return node.op == "call_method" and node.target in ("add", "add_")


def _is_shape_preserving(root: nn.Module, node: fx.Node) -> bool:
    if node.op == "call_function":
        kind = function_kind(node.target)
    elif node.op == "call_method":
        kind = method_kind(node.target)
    elif node.op == "call_module":
        module = root.get_submodule(str(node.target))
        if base_class(module, _NORMS) is not None:
            return True
        kind = module_kind(module)
    else:
        return False
    return kind is not None and kind[0] is OpKind.SHAPE_PRESERVING


def validated(
    model: nn.Module, trace: TraceResult, found: dict[nn.Sequential, list[bool]]
) -> dict[nn.Sequential, list[bool]]:
    """Keep only the blocks whose absence leaves the model's tracing failures unchanged (re-traces ``model``)."""
    if not found:
        return found
    expected = trace.failure_messages()
    with _skipped(found):
        if trace_recursively(model).failure_messages() == expected:
            return found
    validated = {}
    for seq, flags in found.items():
        kept = list(flags)
        for index in (i for i, flag in enumerate(flags) if flag):
            with _skipped({seq: [i == index for i in range(len(seq))]}):
                if trace_recursively(model).failure_messages() != expected:
                    kept[: index + 1] = [False] * (index + 1)
        if any(kept):
            validated[seq] = kept
    with _skipped(validated):
        if trace_recursively(model).failure_messages() != expected:
            return {}
    return validated


@contextmanager
def _skipped(blocks: dict[nn.Sequential, list[bool]]) -> Iterator[None]:
    """Temporarily replace the flagged blocks by ``nn.Identity``."""
    saved = []
    try:
        for seq, flags in blocks.items():
            keys = list(seq._modules)
            for key, flag in zip(keys, flags, strict=True):
                if flag:
                    saved.append((seq, key, seq._modules[key]))
                    seq._modules[key] = nn.Identity()
        yield
    finally:
        for seq, key, block in reversed(saved):
            seq._modules[key] = block
