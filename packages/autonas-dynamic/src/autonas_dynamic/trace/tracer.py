"""A torch.fx tracer that survives modules it cannot trace.

Searchable layers, fx's own leaves (``torch.nn`` modules other than ``Sequential``) and classes
registered with :func:`register_leaf` are leaves. When tracing into any other module raises, that
module becomes a leaf too (it is *failed*, with the reason) and the root is traced again, until the
trace succeeds. :func:`trace_recursively` then traces the children of every failed module as roots
of their own, so the layers inside them are still analysed.
"""

from __future__ import annotations

import dis
import inspect
import itertools
import types
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch.fx as fx
import torch.nn as nn

from .layers import is_layer, refusal

_USER_LEAVES: set[type[nn.Module]] = set()


def register_leaf(cls: type[nn.Module]) -> type[nn.Module]:
    """Never trace into modules of class ``cls`` (or its subclasses); usable as a class decorator.

    A leaf is analysed as a boundary: the channels of its inputs and outputs stay fixed.
    """
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise TypeError(f"register_leaf expects an nn.Module subclass, got {cls!r}")
    _USER_LEAVES.add(cls)
    return cls


def unregister_leaf(cls: type[nn.Module]) -> None:
    """Undo :func:`register_leaf` (``KeyError`` if ``cls`` was not registered)."""
    try:
        _USER_LEAVES.remove(cls)
    except KeyError:
        raise KeyError(
            f"{cls.__name__} is not a registered leaf; registered: {sorted(c.__name__ for c in _USER_LEAVES)}"
        ) from None


def is_user_leaf(module: nn.Module) -> bool:
    """Whether ``module``'s class (or a base class) was registered with :func:`register_leaf`."""
    return any(isinstance(module, cls) for cls in _USER_LEAVES)


class _Retrace(Exception):
    """Raised out of a trace after a module was marked failed, to start the trace again."""


@dataclass
class TracedGraph:
    """One traced root: its graph (None when the root itself is a leaf or failed).

    ``root`` is the module whose ``get_submodule`` resolves the graph's targets (a thin entry
    module around the traced module when there is a graph).
    """

    root: nn.Module
    name: str
    graph: fx.Graph | None


@dataclass
class TraceResult:
    """Every graph traced for a model, the modules that failed (with reasons) and those called."""

    graphs: list[TracedGraph] = field(default_factory=list)
    failed: dict[nn.Module, str] = field(default_factory=dict)
    called: set[nn.Module] = field(default_factory=set)

    def merged_with(self, other: TraceResult) -> TraceResult:
        """The graphs, failures and calls of both traces (failures of this one win)."""
        return TraceResult([*self.graphs, *other.graphs], {**other.failed, **self.failed}, self.called | other.called)

    def failure_messages(self) -> list[str]:
        """Sorted failure reasons, to compare two traces of the same model."""
        return sorted(self.failed.values())


class RobustTracer(fx.Tracer):
    """fx tracer that marks a module failed (and restarts) when tracing into it raises."""

    def __init__(self, failed: dict[nn.Module, str], called: set[nn.Module]) -> None:
        # no autowrapping of math.*: patching it costs a fifth of every trace, and math on a traced
        # tensor makes the module calling it a leaf anyway
        super().__init__(autowrap_modules=(), autowrap_functions=())  # type: ignore[arg-type]
        self.failed = failed
        self.called = called

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if m in self.failed or is_layer(m) or is_user_leaf(m) or refusal(m) is not None:
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        self.called.add(m)
        try:
            return super().call_module(m, forward, args, kwargs)
        except _Retrace:
            raise
        except Exception as error:  # anything raised while tracing into m: m becomes a leaf
            if m in self.failed:  # failed as a leaf: nothing left to try
                raise
            self.failed[m] = f"{type(error).__name__}: {error}"
            raise _Retrace from error


class _Entry(nn.Module):
    """Calls the traced module with its required arguments only, so every other one keeps its default.

    fx cannot create inputs for a ``forward`` hidden behind a decorator (``*args, **kwargs``); this
    wrapper has a plain signature. Python-flag branches are thereby specialised to their defaults.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module


def _entry_point(module: nn.Module) -> nn.Module:
    """A :class:`_Entry` subclass instance whose forward takes ``module``'s required inputs.

    A forward whose parameters all have defaults (as in Hugging Face models) gets its first
    parameter as the input.
    """
    parameters = [
        p
        for p in inspect.signature(module.forward).parameters.values()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    required = [p for p in parameters if p.default is p.empty]
    if not required and parameters:
        required = parameters[:1]
    names = [p.name for p in required]
    passed = [p.name if p.kind is not p.KEYWORD_ONLY else f"{p.name}={p.name}" for p in required]
    source = f"def forward(self, {', '.join(names)}):\n    return self.module({', '.join(passed)})\n"
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # a real signature fx can read
    entry_cls = type("Entry", (_Entry,), {"forward": namespace["forward"]})
    return entry_cls(module)


def trace_root(root: nn.Module, name: str, failed: dict[nn.Module, str], called: set[nn.Module]) -> TracedGraph:
    """Trace ``root`` (failing submodules become leaves); a root that cannot be traced has no graph."""
    if is_layer(root) or is_user_leaf(root) or refusal(root) is not None:
        called.add(root)
        return TracedGraph(root, name, None)
    entry = _entry_point(root)
    while True:
        tracer = RobustTracer(failed, called)
        try:
            graph = tracer.trace(entry)
        except _Retrace:
            continue
        except Exception as error:
            failed[root] = f"{type(error).__name__}: {error}"
            return TracedGraph(root, name, None)
        return TracedGraph(entry, name, graph)


def reads_training_flag(model: nn.Module) -> bool:
    """Whether the code of any traced-through module class may branch on ``.training`` (train/eval graphs).

    Handing the flag on as a call argument (``F.dropout(x, p, training=self.training)``, timm's
    ``drop_path(x, p, self.training)``) does not count: it changes no module call.
    """
    return any(_class_reads_training(type(m)) for m in model.modules() if not is_layer(m) and refusal(m) is None)


_READS_TRAINING: dict[type, bool] = {}


def _class_reads_training(cls: type) -> bool:
    found = _READS_TRAINING.get(cls)
    if found is None:
        own = [c for c in cls.__mro__ if c is not nn.Module and not c.__module__.startswith("torch.nn")]
        codes = [f.__code__ for c in own for f in vars(c).values() if isinstance(f, types.FunctionType)]
        found = _READS_TRAINING[cls] = any(_code_reads_training(code) for code in codes)
    return found


_ARGUMENT_OPS = {"KW_NAMES", "PRECALL", "CALL", "CALL_KW", "CALL_FUNCTION", "CALL_FUNCTION_KW", "CALL_METHOD"}


def _code_reads_training(code: types.CodeType) -> bool:
    if "training" in code.co_names:
        for read, after in itertools.pairwise(dis.get_instructions(code)):
            handed_on = after.opname in _ARGUMENT_OPS or after.opname.startswith("LOAD_")
            if read.argval == "training" and read.opname.startswith("LOAD_") and not handed_on:
                return True
    return any(_code_reads_training(const) for const in code.co_consts if isinstance(const, types.CodeType))


def trace_recursively(model: nn.Module) -> TraceResult:
    """Trace ``model``, then (breadth first) every child of every failed module as its own root.

    Layers are checked first (some run probe forwards, see :mod:`autonas_dynamic.probe`), outside
    the trace, which would intercept their calls.
    """
    for module in model.modules():
        is_layer(module)
    result = TraceResult()
    names = {module: name for name, module in model.named_modules(remove_duplicate=True)}
    pending: list[nn.Module] = [model]
    traced: set[nn.Module] = set()
    while pending:
        root = pending.pop(0)
        if root in traced:
            continue
        traced.add(root)
        if type(root).forward is nn.Module.forward:  # a ModuleList / ModuleDict: only its children run
            pending.extend(child for child in root.children() if child not in traced)
            continue
        traced_graph = trace_root(root, names.get(root, ""), result.failed, result.called)
        result.graphs.append(traced_graph)
        pending.extend(_children_of_failed(root, result.failed, traced))
    return result


def _children_of_failed(root: nn.Module, failed: dict[nn.Module, str], traced: set[nn.Module]) -> Iterator[nn.Module]:
    """Children of the failed modules inside ``root`` (including ``root`` itself) still to be traced."""
    for module in root.modules():
        if module in failed:
            yield from (child for child in module.children() if child not in traced)
