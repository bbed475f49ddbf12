"""Which blocks of an ``nn.Sequential`` may be skipped: trailing shape-preserving residual blocks.

Read from the traced graphs (each node records the module calls it was created in):

* a block is *residual* when it reads one outside value (its input), hands one value out, and
  every path from that output back to the input passes an addition and otherwise only
  shape-preserving ops (activations, norms, dropout ...): ``relu(x + f(x))`` qualifies, ``conv(x)``
  does not;
* skipping it must not change anything else: the block is called once, nothing outside its call
  reads its submodules or parameters, and (unless it is the last block) its output is read only by
  the next block.

Only a trailing run of such blocks can be dropped (the depth hparam keeps a prefix of blocks).

The blocks of an ``nn.ModuleList`` that a forward iterates (``for layer in self.layers``) qualify
the same way, except that a block may also read values from before the loop (attention masks,
position embeddings); the blocks must run in list order, each once. Whether the forward still runs
with fewer blocks (it may index per-layer state by a fixed layer count) is checked after conversion.
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.fx as fx
import torch.nn as nn

from .layers import LAYER_CLASSES, base_class, is_sequential
from .ops import OpKind, function_kind, method_kind, module_kind
from .tracer import TraceResult, trace_recursively

_ADDS = {operator.add, operator.iadd, torch.add}
_NORMS = tuple(cls for cls in LAYER_CLASSES if "Norm" in cls.__name__)


@dataclass
class _Call:
    """The nodes created inside the single call of one module, in one traced graph."""

    root: nn.Module  # resolves the graph's targets
    path: str  # the module's path from ``root``
    nodes: list[fx.Node] = field(default_factory=list)
    reached_from_outside: bool = False  # a submodule or parameter is used outside the call


def skippable_blocks(model: nn.Module, trace: TraceResult) -> dict[nn.Module, list[bool]]:
    """For each visited Sequential (or iterated ModuleList) with trailing skippable blocks: one flag per block."""
    calls = _block_calls(trace)
    found: dict[nn.Module, list[bool]] = {}
    containers: list[nn.Sequential | nn.ModuleList] = [*_sequentials(model, trace), *_module_lists(model, calls)]
    for seq in containers:
        flags = [False] * len(seq)
        following: _Call | None = None
        context = isinstance(seq, nn.ModuleList)
        for index in reversed(range(len(seq))):
            call = calls.get(seq[index])
            if call is None or not _is_skippable(call, following, last=index == len(seq) - 1, context=context):
                break
            flags[index] = True
            following = call
        if any(flags):
            found[seq] = flags
    return found


def is_residual_block(block: nn.Module) -> bool:
    """Whether ``block`` alone is a shape-preserving residual block (traced on its own)."""
    call = _block_calls(trace_recursively(nn.Sequential(block))).get(block)
    return call is not None and _is_skippable(call, None, last=True)


def _sequentials(model: nn.Module, trace: TraceResult) -> Iterator[nn.Sequential]:
    for module in model.modules():  # each module once
        if isinstance(module, nn.Sequential) and is_sequential(module) and module in trace.called:
            yield module


def _module_lists(model: nn.Module, calls: dict[nn.Module, _Call | None]) -> Iterator[nn.ModuleList]:
    """ModuleLists whose blocks were each called once, in list order, in one graph."""
    for module in model.modules():
        if not isinstance(module, nn.ModuleList) or not len(module):
            continue
        blocks = [calls.get(block) for block in module]
        if any(call is None for call in blocks):
            continue
        graphs = {id(call.nodes[0].graph) for call in blocks if call is not None and call.nodes}
        positions = [_position(call.nodes[0]) for call in blocks if call is not None and call.nodes]
        if len(graphs) == 1 and len(positions) == len(module) and positions == sorted(positions):
            yield module


def _position(node: fx.Node) -> int:
    """The index of ``node`` in its graph."""
    for index, other in enumerate(node.graph.nodes):
        if other is node:
            return index
    raise ValueError(f"{node} is not in its graph")


def _block_calls(trace: TraceResult) -> dict[nn.Module, _Call | None]:
    """Each module's single call (None for modules called several times or in several graphs)."""
    calls: dict[nn.Module, _Call | None] = {}
    for traced in trace.graphs:
        if traced.graph is None:
            continue
        modules = dict(traced.root.named_modules())
        here: dict[nn.Module, _Call] = {}
        references: list[tuple[str, set[str]]] = []  # (target, paths of the calls it was made in)
        for node in traced.graph.nodes:
            stack = set()
            for key in node.meta.get("nn_module_stack", ()):
                path, _, repeat = key.partition("@")
                stack.add(path)
                module = modules.get(path)
                if module is None:
                    continue
                if repeat or (module in calls and module not in here):
                    calls[module] = None
                    continue
                call = here.setdefault(module, _Call(traced.root, path))
                call.nodes.append(node)
                calls[module] = call
            if node.op in ("call_module", "get_attr"):
                references.append((str(node.target), stack))
        for call in here.values():
            prefix = call.path + "."
            call.reached_from_outside = any(
                (target == call.path or target.startswith(prefix)) and call.path not in stack
                for target, stack in references
            )
    return calls


def _is_skippable(call: _Call, following: _Call | None, last: bool, context: bool = False) -> bool:
    """Whether the block of ``call`` is residual and nothing but the next block depends on it.

    ``context``: the block may read further outside values (a ModuleList block's mask).
    """
    if not call.nodes or call.reached_from_outside:
        return False
    inside = set(call.nodes)
    inputs = {arg for node in call.nodes for arg in node.all_input_nodes if arg not in inside}
    outputs = [node for node in call.nodes if any(user not in inside for user in node.users)]
    if (len(inputs) != 1 and not context) or len(outputs) != 1:
        return False
    if not last:
        readers = set(following.nodes) if following is not None else set()
        if any(user not in inside and user not in readers for user in outputs[0].users):
            return False
    return any(_passes_an_addition(call.root, outputs[0], block_input) for block_input in inputs)


def _passes_an_addition(root: nn.Module, output: fx.Node, block_input: fx.Node) -> bool:
    """Every way back from ``output`` through shape-preserving ops reaches the input after an addition."""
    queue = deque([(output, False)])
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
