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
from .tracer import TraceResult, trace_recursively, trace_root

_ADDS = {operator.add, operator.iadd, torch.add}
_NORMS = tuple(cls for cls in LAYER_CLASSES if "Norm" in cls.__name__)


def skippable_blocks(model: nn.Module, trace: TraceResult) -> dict[nn.Module, list[bool]]:
    """For each visited Sequential with trailing skippable blocks: the per-block flags."""
    found: dict[nn.Module, list[bool]] = {}
    for seq in _sequentials(model, trace):
        flags = [False] * len(seq)
        for index in reversed(range(len(seq))):  # only a trailing run of skippable blocks matters
            if not is_residual_block(seq[index]):
                break
            flags[index] = True
        if any(flags):
            found[seq] = flags
    return _validated(model, trace, found)


def _sequentials(model: nn.Module, trace: TraceResult) -> Iterator[nn.Module]:
    seen: set[nn.Module] = set()
    for module in model.modules():
        if module not in seen and is_sequential(module) and module in trace.called and len(module) > 0:
            seen.add(module)
            yield module


def is_residual_block(block: nn.Module) -> bool:
    """Whether ``block``'s output is its input plus something, through shape-preserving ops only."""
    traced = trace_root(block, "block", {}, set())
    if traced.graph is None:
        return False
    output = next(n for n in reversed(traced.graph.nodes) if n.op == "output")
    start = output.args[0]
    if not isinstance(start, fx.Node):
        return False
    queue = deque([(start, False)])
    seen = set()
    while queue:
        node, passed_add = queue.popleft()
        if (node, passed_add) in seen:
            continue
        seen.add((node, passed_add))
        if node.op == "placeholder":
            if passed_add:
                return True
            continue
        if _is_add(node):
            queue.extend((n, True) for n in node.all_input_nodes)
        elif _is_shape_preserving(traced.root, node):
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
        module = root.get_submodule(node.target)
        if base_class(module, _NORMS) is not None:
            return True
        kind = module_kind(module)
    else:
        return False
    return kind is not None and kind[0] is OpKind.SHAPE_PRESERVING


def _validated(model: nn.Module, trace: TraceResult, found: dict[nn.Module, list[bool]]) -> dict[nn.Module, list[bool]]:
    """Keep only the blocks whose absence leaves the model's tracing failures unchanged."""
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
def _skipped(blocks: dict[nn.Module, list[bool]]) -> Iterator[None]:
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
