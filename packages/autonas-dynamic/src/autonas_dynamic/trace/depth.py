"""Which blocks of an ``nn.Sequential`` may be skipped: trailing shape-preserving residual blocks.

Read from the traced graphs (each node records the module calls it was created in):

* a block is *residual* when it reads one outside value (its input), hands one value out, and
  every path from that output back to the input passes an addition and otherwise only
  shape-preserving ops (activations, norms, dropout ...): ``relu(x + f(x))`` qualifies, ``conv(x)``
  does not;
* skipping it must not change anything else: the block runs only inside its Sequential (one
  module may fill several positions, ``nn.Sequential(*[block] * 4)``: each position is one call),
  nothing outside its calls reads its submodules or parameters, (unless it is the last block)
  its output is read only by the next block, and no module around the Sequential failed to trace
  (what such a module does with the blocks cannot be seen).

The graphs cannot tell a read of the Sequential's result from a read of its last block's output
kept aside (``cache[block] = out``, read after the Sequential returned). So each shorter depth is
confirmed by tracing the model again with the Sequential running only its first blocks: the
trace must fail nowhere it did not fail before (a lookup of a skipped block's output raises) and
must not use a value of an earlier trace (a stale cache).

Only a trailing run of such blocks can be dropped (the depth hparam keeps a prefix of blocks).

The blocks of an ``nn.ModuleList`` that a forward iterates (``for layer in self.layers``) qualify
the same way, except that a block may also read values from before the loop (attention masks,
position embeddings); the blocks must run in list order, each once. Whether the forward still runs
with fewer blocks (it may index per-layer state by a fixed layer count) is checked after conversion.
"""

from __future__ import annotations

import operator
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from .concrete import NodeValues
from .layers import is_iterated, is_sequential, preserves_shape
from .ops import OpKind, function_kind, method_kind, module_kind
from .tracer import TraceResult, trace_recursively

_ADDS = {operator.add, operator.iadd, torch.add}


@dataclass
class ModuleCall:
    """The nodes created inside one call of one module, in one traced graph."""

    root: nn.Module  # resolves the graph's targets
    module: nn.Module
    path: str  # the module's path from ``root``
    parent: str | None  # the key of the call this one was made in (None: at the top of the graph)
    nodes: list[fx.Node] = field(default_factory=list)
    reached_from_outside: bool = False  # a submodule or parameter is used outside every call of the module
    values: NodeValues | None = None  # computes the value of each node of the graph


@dataclass
class ModuleCalls:
    """Every module call of every traced graph, in call order."""

    by_key: dict[tuple[int, str], ModuleCall] = field(default_factory=dict)  # (graph index, call key) -> call
    of_module: dict[nn.Module, list[tuple[int, str]]] = field(default_factory=dict)

    def children(self, key: tuple[int, str]) -> list[ModuleCall]:
        """The calls made directly inside the call ``key``."""
        graph, name = key
        return [call for (g, _), call in self.by_key.items() if g == graph and call.parent == name]


def skippable_blocks(model: nn.Module, trace: TraceResult, example_input: Any = None) -> dict[nn.Module, list[bool]]:
    """For each visited Sequential (or iterated ModuleList) with trailing skippable blocks: one flag per block.

    The flags of :func:`trailing_residual_blocks`; each depth of a Sequential is confirmed by
    tracing the model again (with ``example_input``) with the Sequential shortened.
    """
    found = trailing_residual_blocks(model, trace)
    sequentials = {seq: flags for seq, flags in found.items() if isinstance(seq, nn.Sequential) and is_sequential(seq)}
    skippable: dict[nn.Module, list[bool]] = {}
    skippable.update(_confirmed_by_tracing(model, trace, sequentials, example_input).items())
    skippable.update((blocks, flags) for blocks, flags in found.items() if not is_sequential(blocks))
    return skippable


def trailing_residual_blocks(model: nn.Module, trace: TraceResult) -> dict[nn.Module, list[bool]]:
    """What the graphs of ``trace`` allow to skip: per Sequential (or iterated ModuleList), a flag on each
    block of its trailing run of residual blocks that nothing but the next block depends on (containers
    without such blocks are left out)."""
    calls = collect_calls(trace)
    found: dict[nn.Module, list[bool]] = {}
    containers: list[tuple[nn.Sequential | nn.ModuleList, list[ModuleCall | None]]] = [
        *((seq, _block_calls(seq, calls)) for seq in _sequentials(model, trace)),
        *_module_lists(model, trace, calls),
    ]
    for seq, blocks in containers:
        flags = [False] * len(seq)
        following: ModuleCall | None = None
        context = not is_sequential(seq)
        for index in reversed(range(len(seq))):
            call = blocks[index]
            if call is None or not is_skippable(call, following, last=index == len(seq) - 1, context=context):
                break
            flags[index] = True
            following = call
        if any(flags):
            found[seq] = flags
    return found


def _sequentials(model: nn.Module, trace: TraceResult) -> Iterator[nn.Sequential]:
    """The Sequentials that were called and whose callers all traced (each module once)."""
    inside_failed = {inner for failed in trace.failed for inner in failed.modules() if inner is not failed}
    for module in model.modules():
        if (
            isinstance(module, nn.Sequential)
            and is_sequential(module)
            and module in trace.called
            and module not in inside_failed
        ):
            yield module


def _module_lists(
    model: nn.Module, trace: TraceResult, calls: ModuleCalls
) -> Iterator[tuple[nn.Sequential | nn.ModuleList, list[ModuleCall | None]]]:
    """Iterated containers (see :func:`.layers.is_iterated`) whose blocks were each called once, in
    list order, by one call of one graph; with those calls."""
    inside_failed = {inner for failed in trace.failed for inner in failed.modules() if inner is not failed}
    for module in model.modules():
        if not isinstance(module, (nn.ModuleList, nn.Sequential)) or not is_iterated(module):
            continue
        if not len(module) or module in inside_failed:
            continue
        keys = [calls.of_module.get(block, []) for block in module]
        if any(len(block_keys) != 1 for block_keys in keys):
            continue
        blocks = [calls.by_key[block_keys[0]] for block_keys in keys]
        graphs = {key[0][0] for key in keys}
        parents = {call.parent for call in blocks}
        positions = [node_position(call.nodes[0]) for call in blocks if call.nodes]
        if len(graphs) == 1 and len(parents) == 1 and len(positions) == len(module) and positions == sorted(positions):
            yield module, list(blocks)


def node_position(node: fx.Node) -> int:
    """The index of ``node`` in its graph."""
    for index, other in enumerate(node.graph.nodes):
        if other is node:
            return index
    raise ValueError(f"{node} is not in its graph")


def collect_calls(trace: TraceResult) -> ModuleCalls:
    """Every call of every module in the traced graphs, with the nodes created inside it."""
    calls = ModuleCalls()
    for index, traced in enumerate(trace.graphs):
        if traced.graph is None:
            continue
        modules = dict(traced.root.named_modules())
        here: list[ModuleCall] = []
        references: list[tuple[str, set[str]]] = []  # (target, paths of the calls it was made in)
        for node in traced.graph.nodes:
            stack = set()
            parent = None
            for key in node.meta.get("nn_module_stack", ()):
                path = key.partition("@")[0]
                stack.add(path)
                module = modules.get(path)
                if module is not None:
                    call = calls.by_key.get((index, key))
                    if call is None:
                        call = ModuleCall(traced.root, module, path, parent, values=traced.values)
                        calls.by_key[(index, key)] = call
                        calls.of_module.setdefault(module, []).append((index, key))
                        here.append(call)
                    call.nodes.append(node)
                parent = key
            if node.op in ("call_module", "get_attr"):
                references.append((str(node.target), stack))
        reached: set[str] = set()  # the module paths a reference made outside their calls reaches into
        for target, stack in references:
            parts = target.split(".")
            reached.update(p for p in (".".join(parts[:end]) for end in range(1, len(parts) + 1)) if p not in stack)
        for call in here:
            call.reached_from_outside = call.path in reached
    return calls


def _block_calls(seq: nn.Sequential, calls: ModuleCalls) -> list[ModuleCall | None]:
    """The call of the block at each position of ``seq`` (None: it cannot be told or runs elsewhere too)."""
    unknown: list[ModuleCall | None] = [None] * len(seq)
    keys = calls.of_module.get(seq, [])
    if len(keys) != 1:
        return unknown
    children = calls.children(keys[0])
    if [call.module for call in children] != list(seq._modules.values()):
        return unknown
    inside = {id(call) for call in children}
    return [
        call if all(id(calls.by_key[key]) in inside for key in calls.of_module[call.module]) else None
        for call in children
    ]


def is_skippable(call: ModuleCall, following: ModuleCall | None, last: bool, context: bool = False) -> bool:
    """Whether the block of ``call`` is residual and nothing but the next block depends on it.

    ``context``: the block of an iterated container may read further outside values (a ModuleList
    block's mask) and hand out several values (a list of streams, as HRNet's modules do), each of
    them residual over an input of its own.
    """
    if not call.nodes or call.reached_from_outside:
        return False
    inside = set(call.nodes)
    inputs = {arg for node in call.nodes for arg in node.all_input_nodes if arg not in inside}
    outputs = [node for node in call.nodes if any(user not in inside for user in node.users)]
    if not outputs or (not context and (len(inputs) != 1 or len(outputs) != 1)):
        return False
    if not last:
        readers = set(following.nodes) if following is not None else set()
        if any(user not in inside and user not in readers for output in outputs for user in output.users):
            return False
    residual_over = [{i for i in inputs if _passes_an_addition(call, output, i)} for output in outputs]
    if len(outputs) == 1:
        return bool(residual_over[0])
    return all(len(over) == 1 for over in residual_over) and len(set.union(*residual_over)) == len(outputs)


def _passes_an_addition(call: ModuleCall, output: fx.Node, block_input: fx.Node) -> bool:
    """Every way back from ``output`` through shape-preserving ops reaches the input after an addition.

    Reshapes that keep the last dim pass too (OPT flattens the tokens around its MLP:
    ``reshape(-1, C)``, then ``view`` back), when the output has the input's shape.
    """
    queue = deque([(output, False)])
    seen = set()
    reshaped = False
    while queue:
        node, passed_add = queue.popleft()
        if (node, passed_add) in seen:
            continue
        seen.add((node, passed_add))
        if node is block_input:
            if passed_add:
                return not reshaped or _same_shape(call, output, block_input)
            continue
        if _is_add(node):
            queue.extend((n, True) for n in node.all_input_nodes)
        elif _is_shape_preserving(call.root, node):
            queue.extend((n, passed_add) for n in node.all_input_nodes)
        elif _keeps_last_dim(call, node):
            reshaped = True
            queue.append((node.args[0], passed_add))
    return False


_RESHAPES = {"reshape", "view"}


def _keeps_last_dim(call: ModuleCall, node: fx.Node) -> bool:
    """Whether ``node`` reshapes a tensor (``x.reshape(...)``, ``x.view(...)``) keeping its last dim."""
    if node.op != "call_method" or node.target not in _RESHAPES or not isinstance(node.args[0], fx.Node):
        return False
    if call.values is None:
        return False
    before, after = call.values.of(node.args[0]), call.values.of(node)
    return (
        isinstance(before, torch.Tensor)
        and isinstance(after, torch.Tensor)
        and before.dim() > 0
        and after.dim() > 0
        and before.shape[-1] == after.shape[-1]
    )


def _same_shape(call: ModuleCall, a: fx.Node, b: fx.Node) -> bool:
    assert call.values is not None
    first, second = call.values.of(a), call.values.of(b)
    return isinstance(first, torch.Tensor) and isinstance(second, torch.Tensor) and first.shape == second.shape


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
        if preserves_shape(module):
            return True
        kind = module_kind(module)
    else:
        return False
    return kind is not None and kind[0] is OpKind.SHAPE_PRESERVING


def _confirmed_by_tracing(
    model: nn.Module, trace: TraceResult, found: dict[nn.Sequential, list[bool]], example_input: Any
) -> dict[nn.Sequential, list[bool]]:
    """The flags of ``found`` whose depths trace like the full model (see the module docstring).

    All Sequentials at their smallest depth are tried first (one trace for a model where every
    depth is fine); otherwise each Sequential's depths are tried one by one from the top.
    """
    if not found:
        return found
    smallest = {seq: flags.index(True) for seq, flags in found.items()}
    if _traces_alike(model, trace, smallest, example_input):
        return found
    confirmed: dict[nn.Sequential, list[bool]] = {}
    for seq, lowest in smallest.items():
        depth = len(seq)
        while depth > lowest and _traces_alike(model, trace, {seq: depth - 1}, example_input):
            depth -= 1
        if depth < len(seq):
            confirmed[seq] = [index >= depth for index in range(len(seq))]
    if confirmed and not _traces_alike(
        model, trace, {seq: flags.index(True) for seq, flags in confirmed.items()}, example_input
    ):
        return {}
    return confirmed


def _traces_alike(model: nn.Module, full: TraceResult, depths: Mapping[nn.Sequential, int], example_input: Any) -> bool:
    """Whether ``model`` with each Sequential running only its first ``depths[seq]`` blocks traces as ``full``."""
    kept = {m for seq, depth in depths.items() for block in list(seq)[:depth] for m in block.modules()}
    dropped = {m for seq, depth in depths.items() for block in list(seq)[depth:] for m in block.modules()} - kept
    with _shortened(depths):
        return retraces_alike(model, full, example_input, dropped) is not None


def retraces_alike(
    model: nn.Module, full: TraceResult, example_input: Any, dropped: set[nn.Module] | None = None
) -> TraceResult | None:
    """Trace ``model`` again (as changed by the caller); the new trace when it is like ``full``, else None.

    The same modules must fail, for the same reasons (except those in ``dropped``, which no longer
    run), and every graph must hold only its own nodes.
    """
    short = trace_recursively(model, example_input)
    expected = {module: reason for module, reason in full.failed.items() if module not in (dropped or set())}
    if short.failed != expected:
        return None
    for traced in short.graphs:
        if traced.graph is not None:
            try:
                traced.graph.lint()
            except RuntimeError:  # a node of an earlier trace, kept across forwards
                return None
    return short


def _shortened(depths: Mapping[nn.Sequential, int]) -> AbstractContextManager[None]:
    """Let each Sequential run only its first ``depth`` blocks, as a dynamic depth does."""
    return forwards_replaced({seq: _forward_through(list(seq)[:depth]) for seq, depth in depths.items()})


@contextmanager
def forwards_replaced(forwards: Mapping[nn.Module, Callable[..., Any]]) -> Iterator[None]:
    """While the body runs, each module's forward is the one given (set on the instance, then restored)."""
    previous = {module: module.__dict__.get("forward") for module in forwards}
    for module, forward in forwards.items():
        module.__dict__["forward"] = forward
    try:
        yield
    finally:
        for module, forward in previous.items():
            if forward is None:
                del module.__dict__["forward"]
            else:
                module.__dict__["forward"] = forward


def _forward_through(blocks: list[nn.Module]) -> Any:
    def forward(input: Any) -> Any:
        for block in blocks:
            input = block(input)
        return input

    return forward
