"""Coupling analysis: walk every traced graph and decide which layer sizes move together.

Each graph node is handed to the handlers in :mod:`~autonas_dynamic.trace.handlers` in a fixed
order (layer, pass-through, flatten, shape read, elementwise, concat); the first that understands it gives
the node's value, otherwise the node is a boundary, which fixes everything flowing into it. Groups
live in a union-find forest of :class:`~autonas_dynamic.trace.symbols.Symbol` objects, so the
result does not depend on the order in which couplings are discovered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn

from .concrete import Unknown
from .dims import Dims, rank_of
from .layers import LayerSymbols, is_layer, make_layer_symbols, refusal
from .ops import OpKind, function_kind, method_kind, module_kind
from .symbols import Symbol, full_size
from .tracer import TracedGraph, TraceResult, is_user_leaf
from .values import FIXED, NEUTRAL, Flow, Value


class ModelState:
    """What the analysis accumulates over every graph of one model."""

    def __init__(self, model: nn.Module, trace: TraceResult, resizable_output: Callable[[str], bool]) -> None:
        self.model = model
        self.trace = trace
        self.resizable_output = resizable_output  # by its path in the model's return value
        self.names = {m: n for n, m in model.named_modules(remove_duplicate=True)}
        self.layers: dict[nn.Module, LayerSymbols] = {}
        self.holders: dict[nn.Module, dict[str, tuple[Symbol, int]]] = {}  # module -> tensor -> (symbol, dim)
        self.visited: set[nn.Module] = set()
        self.read_directly: dict[nn.Module, str] = {}  # layer -> parameter read outside its forward
        self.concats: dict[tuple[int, ...], Symbol] = {}  # by the ids of their input roots
        self.chunks: list[tuple[Symbol, Symbol]] = []  # (the symbol of each part, the concatenation of the parts)
        self.live_concats: list[Symbol] = []  # after nested concats were flattened
        self.head_splits: list[tuple[Symbol, nn.Module, int]] = []  # (group, attention module, head_dim)
        self.grouped_heads: list[tuple[Symbol, Symbol, int]] = []  # (queries, keys/values, queries per key)
        self.head_counts: list[tuple[Symbol, Symbol, int]] = []  # (heads' width, one entry per head, head_dim)
        self.created_per_head: list[Symbol] = []  # tensors a module creates with its head count (no slot)
        self.attribute_splits: list[tuple[Symbol, nn.Module]] = []  # (the split tensor, the module sizing it)
        #: (the split tensor, each part, the module, its attribute holding the part width)
        self.split_attributes: list[tuple[Symbol, Symbol, nn.Module, str]] = []

    def layer_symbols(self, module: nn.Module) -> LayerSymbols:
        """The symbols of a layer, created on first use."""
        symbols = self.layers.get(module)
        if symbols is None:
            symbols = self.layers[module] = make_layer_symbols(module)
        return symbols

    def name(self, module: nn.Module) -> str:
        return self.names.get(module, type(module).__name__)


class GraphContext:
    """The handlers' view of one graph: node values and the operations that couple or fix them."""

    def __init__(self, state: ModelState, traced: TracedGraph) -> None:
        self.state = state
        self.root = traced.root
        self.values: dict[fx.Node, Value] = {}
        self._concrete = traced.values

    # --- reading ---------------------------------------------------------------------------
    def value(self, arg: Any) -> Value:
        """The value of a node argument (constants are neutral)."""
        return self.values.get(arg, NEUTRAL) if isinstance(arg, fx.Node) else NEUTRAL

    def concrete(self, arg: Any) -> Any:
        """The concrete (meta) value of a node argument as traced (an ``Unknown`` when not known)."""
        if not isinstance(arg, fx.Node):
            return arg
        if self._concrete is None:
            return Unknown("traced without an example input")
        return self._concrete.of(arg)

    def module(self, target: Any) -> nn.Module:
        """The module a ``call_module`` / ``get_attr`` target names."""
        if self._concrete is not None:  # the same root, and it remembers what it looked up
            return self._concrete.module(str(target))
        return self.root.get_submodule(str(target))

    @property
    def is_model_graph(self) -> bool:
        """Whether this is the graph of the model's own forward (not of a submodule traced on its own)."""
        return getattr(self.root, "module", None) is self.state.model

    def caller(self, node: fx.Node) -> nn.Module | None:
        """The innermost module whose forward created ``node`` (None at the top of the graph)."""
        stack = list(node.meta.get("nn_module_stack", ()))
        return self.module(stack[-1].partition("@")[0]) if stack else None

    def is_opaque(self, module: nn.Module) -> bool:
        """Whether a called module must be treated as a boundary (failed, a user leaf, or a layer that cannot convert)."""
        return module in self.state.trace.failed or is_user_leaf(module) or refusal(module) is not None

    def op_kind(self, node: fx.Node) -> tuple[OpKind, Dims | None] | None:
        """What the op of ``node`` does to the elastic axis (see :mod:`.ops`); None if unknown."""
        if node.op == "call_function":
            return function_kind(node.target)
        if node.op == "call_method":
            return method_kind(node.target)
        if node.op == "call_module":
            module = self.module(node.target)
            return None if self.is_opaque(module) else module_kind(module)
        return None

    def full_size(self, sym: Symbol) -> int | None:
        """The original size of a group (see :func:`.symbols.full_size`)."""
        return full_size(sym)

    def input_flows(self, node: fx.Node) -> list[Flow]:
        """The values of every node ``node`` reads that are tensors or shapes."""
        return [v for n in node.all_input_nodes if isinstance(v := self.value(n), Flow)]

    def describe(self, node: fx.Node) -> str:
        """A short description of a node for the reason a group was fixed."""
        target = node.target
        if node.op == "call_module":
            module = self.module(node.target)
            target = f"{self.state.name(module)} ({type(module).__name__})"
        elif callable(target):
            target = getattr(target, "__name__", repr(target))
        return f"{node.op} {target}"

    # --- coupling --------------------------------------------------------------------------
    def fix(self, flows: Iterable[Value], reason: str) -> None:
        """Fix the group of every flow given."""
        for flow in flows:
            if isinstance(flow, Flow) and flow.sym is not None:
                flow.sym.fix(reason)

    def boundary(self, node: fx.Node, reason: str | None = None) -> Flow:
        """Fix every input of ``node``; its output has fixed sizes."""
        self.fix(self.input_flows(node), reason or f"reaches {self.describe(node)}")
        return FIXED

    def synchronize(self, flows: list[Flow], reason: str) -> Flow:
        """Couple flows that must share their elastic size; fix all of them when that is not provable."""
        if not flows:
            return FIXED
        dims = flows[0].dims
        for flow in flows[1:]:
            dims = dims & flow.dims
        symbols = [flow.sym for flow in flows if flow.sym is not None]
        layouts = {(flow.block, flow.repeat, bool(flow.parts_axis)) for flow in flows}
        if len(symbols) < len(flows) or not dims or len(layouts) > 1:
            self.fix(flows, reason)
            return FIXED
        root = symbols[0]
        for sym in symbols[1:]:
            root = root.union(sym)
        if all(rank_of(flow.dims) is not None for flow in flows):  # broadcasting keeps the highest rank
            widest = max(flows, key=lambda flow: rank_of(flow.dims) or 0)
            dims = widest.dims if dims <= widest.dims else dims
        shape = all(flow.is_shape for flow in flows)
        return Flow(root.find(), dims, shape, block=flows[0].block, repeat=flows[0].repeat)

    def count_heads(self, per_head: list[Flow], heads: Flow, reason: str) -> None:
        """Couple tensors with one entry per head (``per_head``, whole-channel flows along the heads
        axis of ``heads``) with the width of those heads: their size is always ``1 / head_dim`` of it.

        A relative position bias of shape ``(1, heads, n, n)`` added to the scores, however it was
        computed. Fixes everything when the layouts do not fit.
        """
        coupled = self.synchronize(per_head, reason)
        plain = all(flow.block == flow.repeat == 1 and not flow.parts_axis for flow in per_head)
        if coupled.sym is None or heads.sym is None or heads.block == 1 or heads.repeat != 1 or not plain:
            self.fix([*per_head, heads], reason)
            return
        self.state.head_counts.append((heads.sym, coupled.sym, heads.block))

    def link(self, flow: Value, sym: Symbol, dims: frozenset[int], reason: str) -> Flow:
        """Couple a layer's incoming symbol with the flow it reads; returns the coupled flow."""
        if not isinstance(flow, Flow) or flow.is_shape or flow.block != 1 or flow.repeat != 1 or flow.parts_axis:
            sym.fix(reason)
            return FIXED
        coupled = self.synchronize([flow, Flow(sym, dims)], reason)
        return Flow(coupled.sym, flow.dims) if coupled.sym is not None else FIXED


def analyze_graph(state: ModelState, traced: TracedGraph) -> None:
    """Run the handlers over one graph (or record a leaf root as called with fixed sizes)."""
    from .handlers import HANDLERS, boundary

    if traced.graph is None:
        if is_layer(traced.root):
            symbols = state.layer_symbols(traced.root)
            state.visited.add(traced.root)
            reason = f"{state.name(traced.root)} is traced on its own: its inputs and outputs are unknown"
            symbols.incoming.fix(reason)
            if symbols.outgoing is not None:
                symbols.outgoing.fix(reason)
        return
    ctx = GraphContext(state, traced)
    for node in traced.graph.nodes:
        for handler in HANDLERS:
            value = handler(ctx, node)
            if value is not None:
                break
        else:
            value = boundary.handle(ctx, node)
        ctx.values[node] = _with_rank(ctx, node, value)


def _with_rank(ctx: GraphContext, node: fx.Node, value: Value) -> Value:
    """A tensor flow with both notations of its elastic axis, when the traced tensor's rank is known.

    ``{-1}`` (a Linear's features) becomes ``{2, -1}`` on a rank-3 tensor, so reading ``x.shape[0]``
    is known not to read the features.
    """
    if not isinstance(value, Flow) or value.is_shape or value.sym is None or rank_of(value.dims) is not None:
        return value
    traced = ctx.concrete(node)
    if not isinstance(traced, torch.Tensor):
        return value
    rank = traced.dim()
    axes = {d % rank for d in value.dims if -rank <= d < rank}
    if len(axes) != 1:
        return value
    axis = axes.pop()
    return replace(value, dims=frozenset({axis, axis - rank}))


def iter_groups(state: ModelState) -> Iterator[Symbol]:
    """Every group root over all layer and held-tensor symbols, in first-appearance order."""
    seen: set[int] = set()
    held = [sym for tensors in state.holders.values() for sym, _ in tensors.values()]
    for sym in [s for symbols in state.layers.values() for s in (symbols.incoming, symbols.outgoing)] + held:
        if sym is not None:
            root = sym.find()
            if id(root) not in seen:
                seen.add(id(root))
                yield root
