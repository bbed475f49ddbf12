"""Concrete values while tracing: every proxy can tell the meta tensor (or Python value) it stands for.

Shape-dependent Python -- ``b, n, c = x.shape``, ``int(x.size(-1))``, ``if x.shape[1] != n: raise``,
``if w.dtype in (...)``, ``(*x.shape[:-1], h, d)``, ``math.ceil(h / s)`` -- needs the sizes of the
tensors it reads. The search space is specialised to one input's shapes anyway, so the tracer
answers such questions with the sizes of an example input: each graph node's value is computed on
meta tensors (no arithmetic) when a question first needs it, from the values of the nodes it reads
(model inputs from the example input, parameters and buffers as meta stand-ins, leaf modules run on
meta tensors).

When Python takes a size out of the graph (``int()``, ``bool()``, ``float()``, ``len()`` of a
tensor), the graph gets a :func:`python_value` node reading it, so the coupling analysis can fix the
sizes that were baked into the trace; unpacking and iterating a shape stay graph reads
(``getitem``), which the analysis follows as before.
"""

from __future__ import annotations

import bisect
import dis
import inspect
import operator
import types
from collections.abc import Container, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.fx as fx
import torch.nn as nn
from torch.fx._symbolic_trace import _maybe_revert_all_patches
from torch.fx.proxy import Attribute

from ..meta import MetaStandIns, meta_like, meta_run
from .memo import MetaMemo, function_key, module_key

__all__ = ["Calls", "MetaAttribute", "MetaProxy", "NodeValues", "Unknown", "python_value"]

#: Attributes read from the value directly: none of them carries a tensor size.
CONCRETE_ATTRIBUTES = frozenset({"dtype", "ndim", "is_cuda", "is_meta", "layout", "is_sparse", "is_quantized"})

Calls = dict[nn.Module, tuple[tuple[Any, ...], dict[str, Any]]]
"""The arguments (meta values) of the first call of each module."""


def python_value(value: Any, how: str) -> Any:
    """Graph marker: Python read ``value`` as a plain ``how`` (``"int"``, ``"bool"`` ...) while tracing."""
    return value


class Unknown:
    """The value of a node that could not be computed, with the reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Unknown({self.reason})"


class NodeValues:
    """Computes (once) the value of each node of one graph being traced.

    Args:
        root: The traced root module (resolves ``get_attr`` and ``call_module`` targets).
        inputs: Value of each placeholder, by name (absent: unknown).
        stand_ins: Meta stand-ins of parameters and buffers, shared across traces of one model.
        recorded: Modules whose submodule calls are recorded into ``calls`` when they run on meta tensors.
        calls: Where those calls are recorded (first call of each submodule).
    """

    def __init__(
        self,
        root: nn.Module,
        inputs: dict[str, Any],
        stand_ins: MetaStandIns,
        recorded: Container[nn.Module] = (),
        calls: Calls | None = None,
    ) -> None:
        self.root = root
        self.inputs = inputs
        self.stand_ins = stand_ins
        self.recorded = recorded
        self.calls: Calls = {} if calls is None else calls
        self.memo = MetaMemo()
        self._modules: dict[str, nn.Module] = {}
        self._order = 0

    def created(self, node: fx.Node) -> None:
        """Note the creation order of ``node`` (values are computed in that order)."""
        node.meta["order"] = self._order
        self._order += 1

    def module(self, target: str) -> nn.Module:
        """The submodule of the root that a ``call_module`` target names (looked up once per target)."""
        found = self._modules.get(target)
        if found is None:
            found = self._modules[target] = self.root.get_submodule(target)
        return found

    def of(self, node: fx.Node) -> Any:
        """The value of ``node`` (an :class:`Unknown` when it cannot be computed)."""
        if "value" not in node.meta:
            pending, stack, seen = [], [node], set()
            while stack:
                current = stack.pop()
                if current in seen or "value" in current.meta:
                    continue
                seen.add(current)
                pending.append(current)
                stack.extend(current.all_input_nodes)
            with meta_run():
                for current in sorted(pending, key=lambda n: n.meta.get("order", -1)):
                    current.meta["value"] = self._compute(current)
        return node.meta["value"]

    def _compute(self, node: fx.Node) -> Any:
        if node.op == "placeholder":
            if node.target not in self.inputs:
                return Unknown(f"no example value for the input {node.target!r}")
            return self.inputs[node.target]
        if node.op == "get_attr":
            value = _resolve(self.root, str(node.target))
            return self.stand_ins.of(value) if isinstance(value, torch.Tensor) else value
        args = fx.node.map_aggregate(node.args, self._arg)
        kwargs = fx.node.map_aggregate(node.kwargs, self._arg)
        unknown = _first_unknown((args, kwargs))
        if unknown is not None:
            return unknown
        try:
            if node.op == "call_function":
                target: Any = node.target
                value = self.memo.call(function_key(target), args, kwargs, lambda: target(*args, **kwargs))
            elif node.op == "call_method":
                value = getattr(args[0], str(node.target))(*args[1:], **kwargs)
            elif node.op == "call_module":
                value = self.run(self.module(str(node.target)), args, kwargs)
            else:
                return Unknown(f"{node.op} nodes have no value")
        except Exception as error:  # an op that needs values, or has no meta kernel
            return Unknown(f"{type(error).__name__}: {error}")
        return _on_meta(value)  # tensors a factory function made for real

    def run(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """Call ``module`` on meta values (its tensors swapped for stand-ins), recording submodule calls.

        A module without submodules or hooks runs its ``forward`` directly (once per kind of call,
        see :mod:`.memo`); any other runs with fx's patches of ``nn.Module`` undone (they would trace
        its submodule calls).
        """
        if not module._modules and not _has_hooks(module):

            def forward() -> Any:
                with self.stand_ins.swapped((module,)):
                    return module.forward(*args, **kwargs)

            return self.memo.call(module_key(module), args, kwargs, forward)
        with (
            _maybe_revert_all_patches(),
            self.stand_ins.swapped(module.modules()),
            _recording(module, self.recorded, self.calls),
        ):
            return module(*args, **kwargs)

    def _arg(self, arg: Any) -> Any:
        return self.of(arg) if isinstance(arg, fx.Node) else arg


def _unpacked_count(frame: types.FrameType) -> int | None:
    """How many names the instruction ``frame`` is at unpacks into (``a, b = proxy``), as fx reads it."""
    instructions = list(dis.get_instructions(frame.f_code))
    at = bisect.bisect_left(instructions, frame.f_lasti, key=lambda instruction: instruction.offset)
    if at < len(instructions) and instructions[at].opname == "UNPACK_SEQUENCE":
        return int(instructions[at].argval)
    return None


def _has_hooks(module: nn.Module) -> bool:
    global_hooks = (nn.modules.module._global_forward_hooks, nn.modules.module._global_forward_pre_hooks)
    return bool(module._forward_hooks or module._forward_pre_hooks or any(global_hooks))


def _on_meta(value: Any) -> Any:
    """``value`` with every tensor in it (a tensor, or a plain tuple or list of them) on the meta device."""
    if isinstance(value, torch.Tensor):
        return value if value.is_meta else meta_like(value)
    if type(value) in (tuple, list) and any(isinstance(v, torch.Tensor) for v in value):
        return type(value)(_on_meta(v) for v in value)
    return value


def _resolve(root: nn.Module, target: str) -> Any:
    """The attribute ``target`` of ``root``, read past fx's patched ``nn.Module.__getattr__``."""
    value: Any = root
    for part in target.split("."):
        if isinstance(value, nn.Module):
            stores = (value._parameters, value._buffers, value._modules, value.__dict__)
            store = next((store for store in stores if part in store), None)
            value = store[part] if store is not None else getattr(value, part)
        else:
            value = getattr(value, part)
    return value


def _first_unknown(values: Any) -> Unknown | None:
    found: list[Unknown] = []
    fx.node.map_aggregate(values, lambda v: found.append(v) if isinstance(v, Unknown) else None)
    return found[0] if found else None


@contextmanager
def _recording(module: nn.Module, recorded: Container[nn.Module], calls: Calls) -> Iterator[None]:
    """While ``module`` runs: when it is recorded, store the first call of each of its submodules."""

    def record(sub: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        calls.setdefault(sub, (args, dict(kwargs)))

    handles = []
    if module in recorded:
        subs = [sub for sub in module.modules() if sub is not module]
        handles = [sub.register_forward_pre_hook(record, with_kwargs=True) for sub in subs]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class MetaProxy(fx.Proxy):
    """An fx proxy whose concrete value its tracer can compute (see :class:`NodeValues`).

    ``len()``, ``int()``, ``float()``, ``operator.index``, numpy's array interface (``np.arange(n)``
    on a traced size) and the attributes in :data:`CONCRETE_ATTRIBUTES` answer with the value; ``bool()`` and iteration go through the
    tracer's ``to_bool`` and ``iter`` (without a value, fx's own unpacking still works).
    """

    def __getattr__(self, name: str) -> Any:
        if name in CONCRETE_ATTRIBUTES:
            value = self.tracer.value_of(self)  # type: ignore[attr-defined]
            if not isinstance(value, Unknown):
                return getattr(value, name)
        if name == "__array_interface__":
            return self._as_array().__array_interface__
        if name.startswith("__array"):  # numpy's other protocols: it falls back to ``__array_interface__``
            raise AttributeError(name)
        return MetaAttribute(self, name)

    def _as_array(self) -> Any:
        """The value as a numpy array (numpy code on sizes: ``np.arange(n - k)``); the proxy keeps it alive."""
        import numpy as np

        array = self.tracer.concrete(self, np.asarray)  # type: ignore[attr-defined]
        if array.dtype == object:
            raise TypeError(f"numpy cannot read the traced value {self.node.name} (not a number or a shape)")
        self.__dict__["_numpy_value"] = array
        return array

    def __len__(self) -> int:
        return self.tracer.length_of(self)  # type: ignore[attr-defined]

    def __iter__(self) -> Iterator[Any]:
        # with a value, the tracer iterates it (unpacking included) without reading the caller's bytecode
        if not isinstance(self.tracer.value_of(self), Unknown):  # type: ignore[attr-defined]
            return self.tracer.iter(self)
        caller = inspect.currentframe().f_back  # type: ignore[union-attr]
        count = _unpacked_count(caller) if caller is not None else None
        return (self[i] for i in range(count)) if count is not None else self.tracer.iter(self)  # type: ignore[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        self.tracer.create_proxy("call_function", operator.setitem, (self, index, value), {})

    def __int__(self) -> int:
        return self.tracer.concrete(self, int)  # type: ignore[attr-defined]

    def __index__(self) -> int:
        return self.tracer.concrete(self, operator.index)  # type: ignore[attr-defined]

    def __float__(self) -> float:
        return self.tracer.concrete(self, float)  # type: ignore[attr-defined]


class MetaAttribute(MetaProxy, Attribute):
    """An attribute read from a :class:`MetaProxy` (its graph node is created on first use)."""
