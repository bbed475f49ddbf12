"""A torch.fx tracer that survives modules it cannot trace, and answers shape questions.

Searchable layers, fx's own leaves (``torch.nn`` modules other than ``Sequential``) and classes
registered with :func:`register_leaf` are leaves. Python that needs a traced value (``int(x.size(-1))``,
``if x.shape[1] != n``, ``len(x)``, ``(*x.shape[:-1], h, d)``) gets the value computed on meta
tensors from an example input (see :mod:`.concrete`). When tracing into a module still raises, that
module becomes a leaf too (it is *failed*, with the reason) and the root is traced again, until the
trace succeeds. :func:`trace_recursively` then traces the children of every failed module as roots
of their own (with the inputs they received when the failed module ran on meta tensors), so the
layers inside them are still analysed.
"""

from __future__ import annotations

import contextlib
import dis
import functools
import inspect
import itertools
import operator
import types
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx.proxy import TraceError
from torch.utils._pytree import tree_any, tree_map_only

from ..calling import split_args
from ..meta import MetaStandIns, meta_like
from .concrete import Calls, MetaProxy, NodeValues, Unknown, python_value
from .kept_state import module_state_kept
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
    module around the traced module when there is a graph); ``values`` computes the concrete value
    of each node (see :mod:`.concrete`).
    """

    root: nn.Module
    name: str
    graph: fx.Graph | None
    values: NodeValues | None = None


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
    """fx tracer that marks a module failed (and restarts) when tracing into it raises.

    Its proxies are :class:`~.concrete.MetaProxy` objects whose values ``values`` computes. Buffers
    read in a forward are graph nodes too (``self.ids.expand(n, -1)`` with a traced ``n`` needs one).
    """

    proxy_buffer_attributes = True

    def __init__(self, failed: dict[nn.Module, str], called: set[nn.Module], values: NodeValues) -> None:
        # no autowrapping of math.*: patching it costs a fifth of every trace; math on a traced size
        # reads the size as a Python number (see :meth:`concrete`)
        super().__init__(autowrap_modules=(), autowrap_functions=())  # type: ignore[arg-type]
        self.failed = failed
        self.called = called
        self.values = values

    def trace(self, root: Any, concrete_args: dict[str, Any] | None = None) -> fx.Graph:
        self._tensor_names: dict[int, str] = {}
        self._installed: set[int] = set()
        if isinstance(root, nn.Module):
            for name, tensor in [*root.named_buffers(), *root.named_parameters()]:
                self._tensor_names[id(tensor)] = name  # parameters win, as in fx
            self._installed = {id(module) for module in root.modules()}
        with _sizes_as_tuples(), _random_draws_at_one():
            return super().trace(root, concrete_args)

    def getattr(self, attr: str, attr_val: Any, parameter_proxy_cache: dict[str, Any]) -> Any:
        """A module's parameter or buffer read in a forward is a ``get_attr`` node (found by identity).

        fx's own lookup walks every parameter of the model on each read.
        """
        name = self._tensor_names.get(id(attr_val)) if isinstance(attr_val, torch.Tensor) else None
        if name is None:
            return attr_val
        if name not in parameter_proxy_cache:
            parameter_proxy_cache[name] = self.create_proxy("get_attr", name, (), {})
        return parameter_proxy_cache[name]

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if m in self.failed or is_layer(m) or is_user_leaf(m) or refusal(m) is not None:
            return True
        return super().is_leaf_module(m, module_qualified_name)

    def call_module(self, m: nn.Module, forward: Any, args: tuple, kwargs: dict) -> Any:
        if self._installed and id(m) not in self._installed:  # a module held outside the tree (a shared activation)
            return forward(*args, **kwargs)  # has no name to call it by: its code is traced inline
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

    # --- concrete values --------------------------------------------------------------------
    def proxy(self, node: fx.Node) -> fx.Proxy:
        return MetaProxy(node, self)

    def create_proxy(self, kind: str, target: Any, args: Any, kwargs: Any, *rest: Any, **options: Any) -> fx.Proxy:
        proxy = super().create_proxy(kind, target, args, kwargs, *rest, **options)
        self.values.created(proxy.node)
        return proxy

    def create_arg(self, a: Any) -> Any:
        try:
            return super().create_arg(a)
        except NotImplementedError:  # an object fx has no node argument for (a cache): kept as a constant
            return a

    def value_of(self, proxy: fx.Proxy) -> Any:
        """The value ``proxy`` stands for (an :class:`~.concrete.Unknown` when it cannot be computed)."""
        return self.values.of(proxy.node)

    def concrete(self, proxy: fx.Proxy, convert: Callable[[Any], Any]) -> Any:
        """``convert(value)`` of ``proxy``, marked in the graph as read by Python (see :func:`python_value`)."""
        how = getattr(convert, "__name__", str(convert))
        value = self.value_of(proxy)
        if isinstance(value, Unknown):
            raise TraceError(f"{how}() of a traced value whose value is unknown: {value.reason}")
        try:
            result = convert(value)
        except Exception as error:  # a meta tensor has no data
            raise TraceError(
                f"{how}() of a traced value needs tensor data ({type(error).__name__}: {error})"
            ) from error
        self.create_proxy("call_function", python_value, (proxy, how), {})
        return result

    def to_bool(self, obj: fx.Proxy) -> bool:
        return bool(self.concrete(obj, bool))

    def iter(self, obj: fx.Proxy) -> Iterator:
        value = self.value_of(obj)
        if isinstance(value, Mapping):
            return iter(list(value))
        if isinstance(value, Unknown):
            raise TraceError(f"iterating over a traced value whose value is unknown: {value.reason}")
        if not hasattr(value, "__len__"):
            return super().iter(obj)
        return iter([obj[i] for i in range(self.length_of(obj))])  # type: ignore[index]

    def keys(self, obj: fx.Proxy) -> Any:
        value = self.value_of(obj)
        return list(value) if isinstance(value, Mapping) else super().keys(obj)

    def length_of(self, obj: fx.Proxy) -> int:
        """``len()`` of a traced value: a shape's rank, or the size of a tensor's first axis."""
        value = self.value_of(obj)
        if isinstance(value, torch.Tensor):
            return self.concrete(obj.size(0), operator.index)
        if isinstance(value, Unknown) or not hasattr(value, "__len__"):
            reason = value.reason if isinstance(value, Unknown) else f"a {type(value).__name__} has no length"
            raise TraceError(f"len() of a traced value whose length is unknown: {reason}")
        return len(value)


#: Functions taking sizes as varargs, which torch cannot dispatch to a proxy among the sizes
#: (``torch.ones(b, n)`` raises a TypeError); the same sizes as one tuple dispatch fine.
_SIZE_VARARGS = [(torch, name) for name in ("ones", "zeros", "empty", "rand", "randn")] + [
    (torch.Tensor, name) for name in ("expand", "view", "reshape", "repeat", "permute")
]


@contextlib.contextmanager
def _sizes_as_tuples() -> Iterator[None]:
    """While tracing: the functions of :data:`_SIZE_VARARGS` take traced sizes as varargs too."""
    originals = [(owner, name, getattr(owner, name)) for owner, name in _SIZE_VARARGS]
    try:
        for owner, name, function in originals:
            setattr(owner, name, _tupled_sizes(function, method=owner is torch.Tensor))
        yield
    finally:
        for owner, name, function in originals:
            setattr(owner, name, function)


@contextlib.contextmanager
def _random_draws_at_one() -> Iterator[None]:
    """While tracing: ``torch.rand`` of untraced sizes draws ones, so code that skips work at random traces all of it.

    LayerDrop (``if torch.rand([]) < p: skip the layer``, Wav2Vec2's encoder) would otherwise
    trace a random subset of the layers; at one every such test keeps the layer. Draws of traced
    sizes stay graph nodes.
    """
    rand = torch.rand

    @functools.wraps(rand)
    def draw(*args: Any, **kwargs: Any) -> Any:
        if tree_any(lambda a: isinstance(a, fx.Proxy), (args, kwargs)):
            return rand(*args, **kwargs)
        kwargs.pop("generator", None)
        return torch.ones(*args, **kwargs)

    torch.rand = draw
    try:
        yield
    finally:
        torch.rand = rand


def _tupled_sizes(function: Callable[..., Any], *, method: bool) -> Callable[..., Any]:
    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        head, sizes = (args[:1], args[1:]) if method else ((), args)
        if len(sizes) > 1 and any(isinstance(s, fx.Proxy) for s in sizes):
            return function(*head, tuple(sizes), **kwargs)
        return function(*args, **kwargs)

    return call


class _Entry(nn.Module):
    """Calls the traced module with its required arguments only, so every other one keeps its default.

    fx cannot create inputs for a ``forward`` hidden behind a decorator (``*args, **kwargs``); this
    wrapper has a plain signature. Python-flag branches are thereby specialised to their defaults.
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module
        self.constants: dict[str, Any] = {}  # keyword arguments the example gives as plain values


def _entry_point(module: nn.Module, example: Example | None) -> tuple[nn.Module, dict[str, Any]]:
    """A :class:`_Entry` subclass instance whose forward takes ``module``'s inputs, and their example values.

    The inputs are the required parameters of ``module.forward`` and those the example gives a
    tensor for; a forward whose parameters all have defaults (as in Hugging Face models) and that
    gets no example tensor takes its first parameter. Other values the example gives by keyword
    (``use_cache=False``) are passed as constants.
    """
    signature = inspect.signature(module.forward)
    parameters = [
        p
        for p in signature.parameters.values()
        if p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    bound = _bind(signature, example)
    chosen = [p for p in parameters if p.default is p.empty or _holds_tensor(bound.get(p.name))]
    if not chosen and parameters:
        chosen = parameters[:1]
    names = [p.name for p in chosen]
    # by keyword: the chosen inputs need not be the first parameters (input_ids and decoder_input_ids)
    passed = [p.name if p.kind is p.POSITIONAL_ONLY else f"{p.name}={p.name}" for p in chosen]
    keywords = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    constants = {
        p.name: bound[p.name] for p in parameters if p.name in bound and p not in chosen and p.kind in keywords
    }
    source = (
        f"def forward(self, {', '.join(names)}):\n    return self.module({', '.join([*passed, '**self.constants'])})\n"
    )
    namespace: dict[str, Any] = {}
    exec(source, namespace)  # a real signature fx can read
    entry_cls = type("Entry", (_Entry,), {"forward": namespace["forward"]})
    entry = entry_cls(module)
    entry.constants.update(constants)
    return entry, {name: bound[name] for name in names if name in bound}


Example = tuple[tuple[Any, ...], dict[str, Any]]
"""Example arguments of a module's forward (positional, keyword), as meta values."""


def _bind(signature: inspect.Signature, example: Example | None) -> dict[str, Any]:
    if example is None:
        return {}
    try:
        return dict(signature.bind(*example[0], **example[1]).arguments)
    except TypeError:  # the example does not fit the signature: trace without it
        return {}


def _holds_tensor(value: Any) -> bool:
    return tree_any(lambda v: isinstance(v, torch.Tensor), value)


def trace_root(
    root: nn.Module,
    name: str,
    failed: dict[nn.Module, str],
    called: set[nn.Module],
    example: Example | None = None,
    stand_ins: MetaStandIns | None = None,
    calls: Calls | None = None,
) -> TracedGraph:
    """Trace ``root`` (failing submodules become leaves); a root that cannot be traced has no graph.

    Args:
        root, name: The module to trace and its qualified name in the model.
        failed, called: Modules that failed (with reasons) and modules called, updated in place.
        example: Example arguments (meta values) that answer shape questions; None: unknown.
        stand_ins: Meta stand-ins of the model's tensors, shared by the traces of one model.
        calls: Where the arguments of the submodules of failed modules are recorded (they run on
            meta tensors after the trace, so that their children can be traced with inputs).
    """
    if is_layer(root) or is_user_leaf(root) or refusal(root) is not None:
        called.add(root)
        return TracedGraph(root, name, None)
    stand_ins = stand_ins or MetaStandIns()
    calls = {} if calls is None else calls
    entry, inputs = _entry_point(root, example)
    while True:
        values = NodeValues(entry, inputs, stand_ins, failed, calls)
        tracer = RobustTracer(failed, called, values)
        try:
            graph = tracer.trace(entry)
        except _Retrace:
            continue
        except Exception as error:
            failed[root] = f"{type(error).__name__}: {error}"
            if example is not None:
                with contextlib.suppress(Exception):  # data-dependent code: its children get no inputs
                    values.run(root, *example)  # records the inputs of its children
            return TracedGraph(root, name, None)
        for node in graph.nodes:
            if node.op == "call_module" and values.module(str(node.target)) in failed:
                values.of(node)  # runs the failed module on meta tensors, recording its children's inputs
        return TracedGraph(entry, name, graph, values)


def reads_training_flag(model: nn.Module) -> bool:
    """Whether the code of any traced-through module class may branch on ``.training`` (train/eval graphs).

    Handing the flag on as a call argument (``F.dropout(x, p, training=self.training)``, timm's
    ``drop_path(x, p, self.training)``) does not count: it changes no module call.
    """
    return any(_class_reads_training(type(m)) for m in model.modules() if not is_layer(m) and refusal(m) is None)


@contextlib.contextmanager
def training_reads(model: nn.Module) -> Iterator[set[type]]:
    """Context manager: the classes of :func:`reads_training_flag` whose ``.training`` was read in it.

    A forward that never reads the flag (Hugging Face layers read it only behind
    ``self.gradient_checkpointing and ...``) runs alike in both modes, so one trace is enough. The
    flag is read through a class attribute installed on those classes for the duration (instances
    keep it in their ``__dict__``, where it is written too).
    """
    classes = {type(m) for m in model.modules() if not is_layer(m) and refusal(m) is None}
    reading = [cls for cls in classes if _class_reads_training(cls)]
    read = {cls for cls in reading if "training" in vars(cls)}  # a class attribute of its own: counts as read
    flagged = [cls for cls in reading if cls not in read]
    for cls in flagged:
        cls.training = _RecordedFlag(read)  # type: ignore[assignment]
    try:
        yield read
    finally:
        for cls in flagged:
            del cls.training


class _RecordedFlag:
    """A data descriptor for ``training`` that records the classes it is read on."""

    def __init__(self, read: set[type]) -> None:
        self.read = read

    def __get__(self, instance: nn.Module | None, owner: type) -> Any:
        if instance is None:
            return self
        self.read.add(type(instance))
        return instance.__dict__["training"]

    def __set__(self, instance: nn.Module, value: bool) -> None:
        instance.__dict__["training"] = value


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


def trace_recursively(model: nn.Module, example_input: Any = None) -> TraceResult:
    """Trace ``model``, then (breadth first) every child of every failed module as its own root.

    ``example_input`` (the ``dummy_input`` convention, see
    :func:`~autonas_dynamic.calling.split_args`) answers shape questions while tracing; the
    children of failed modules get the inputs they received when their parent ran on meta tensors.
    Layers are checked first (some run probe forwards, see :mod:`autonas_dynamic.probe`), outside
    the trace, which would intercept their calls.
    """
    for module in model.modules():
        is_layer(module)
    result = TraceResult()
    names = {module: name for name, module in model.named_modules(remove_duplicate=True)}
    stand_ins = MetaStandIns()
    calls: Calls = {}
    if example_input is not None:
        calls[model] = tree_map_only(torch.Tensor, meta_like, split_args(example_input))
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
        name = names.get(root, "")
        with module_state_kept(root):  # each trace starts from the state the model had (no proxies of another)
            traced_graph = trace_root(root, name, result.failed, result.called, calls.get(root), stand_ins, calls)
        result.graphs.append(traced_graph)
        pending.extend(_children_of_failed(root, result.failed, traced))
    return result


def _children_of_failed(root: nn.Module, failed: dict[nn.Module, str], traced: set[nn.Module]) -> Iterator[nn.Module]:
    """Children of the failed modules inside ``root`` (including ``root`` itself) still to be traced."""
    for module in root.modules():
        if module in failed:
            yield from (child for child in module.children() if child not in traced)
