"""Meta results of repeated calls, computed once per trace.

A model of identical blocks (twelve transformer layers) calls the same kinds of layers on inputs of
the same sizes again and again while the tracer computes concrete values. On meta tensors the result
of a torch function, or of a ``torch.nn`` module without submodules, depends only on the metadata of
its inputs (shapes, strides, dtypes) and on the module's plain attributes. :class:`MetaMemo` keeps one
result per such key and answers a repeated call with fresh meta tensors of the same metadata (an
output that was one of the inputs is that input again).

Anything else (a module or function of the user's, an attribute or argument that is not a plain
value, a result holding other objects) is computed every time.
"""

from __future__ import annotations

import collections
import contextlib
from collections.abc import Callable, Hashable
from typing import Any

import torch
import torch.nn as nn
from torch.fx.immutable_collections import immutable_dict, immutable_list

__all__ = ["MetaMemo", "function_key", "module_key"]

#: Python values that stand for themselves in a key (and may be returned as they are).
_PLAIN = (
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    type(None),
    torch.dtype,
    torch.device,
    torch.layout,
    torch.memory_format,
)


class _Uncacheable(Exception):
    """A value the memo cannot describe by its metadata."""


def module_key(module: nn.Module) -> Hashable | None:
    """What the result of ``module`` on meta tensors depends on besides its inputs (None: not memoised).

    Only ``torch.nn``'s own classes qualify (their forwards have no side effects): the class, the
    metadata of its parameters and buffers (it runs on meta stand-ins of them), and every other
    attribute, which must be a plain value.
    """
    if not type(module).__module__.startswith("torch.nn.") or module._modules:
        return None
    stores = module._parameters, module._buffers
    try:
        return (
            type(module),
            tuple(tuple((name, None if t is None else _metadata(t)) for name, t in store.items()) for store in stores),
            tuple((name, _key(value)) for name, value in vars(module).items() if name not in _STORES),
        )
    except _Uncacheable:
        return None


#: Attributes of every module that :func:`module_key` reads apart (or not at all: no submodules).
_STORES = frozenset({"_parameters", "_buffers", "_modules"})


def function_key(target: Any) -> Hashable | None:
    """The key of a torch function called in a graph (None: not memoised; a user's function may have side effects)."""
    module = getattr(target, "__module__", None) or ""
    if not (module == "torch" or module.startswith("torch.")):
        return None
    try:
        hash(target)
    except TypeError:
        return None
    return target


class MetaMemo:
    """Results of calls on meta tensors, by the key of the callee and the metadata of the arguments."""

    def __init__(self) -> None:
        self._results: dict[Hashable, Any] = {}

    def call(self, callee: Hashable | None, args: Any, kwargs: Any, compute: Callable[[], Any]) -> Any:
        """``compute()``, or a copy of its result for an earlier call of ``callee`` with arguments alike.

        ``callee`` is the key of :func:`module_key` or :func:`function_key` (None: always computed).
        """
        if callee is None:
            return compute()
        inputs: list[torch.Tensor] = []
        try:
            key = callee, _key(args, inputs), _key(kwargs, inputs)
        except _Uncacheable:
            return compute()
        template = self._results.get(key)
        if template is not None:
            return _rebuild(template, inputs)
        value = compute()
        with contextlib.suppress(_Uncacheable):  # a result holding other objects: computed every time
            self._results[key] = _template(value, {id(tensor): index for index, tensor in enumerate(inputs)})
        return value


def _key(value: Any, inputs: list[torch.Tensor] | None = None) -> Hashable:
    """A hashable description of ``value``: meta tensors by their metadata (collected into ``inputs``).

    Without ``inputs`` (a module's attributes) any tensor, and anywhere a tensor with data (an
    operator may read it), makes the value uncacheable.
    """
    cls = type(value)
    if cls in _PLAIN_TYPES:
        return cls, value
    if cls in _CONTAINERS:
        if not value:  # most module attributes of this kind: the empty hook dicts
            return cls, ()
        if issubclass(cls, (set, frozenset)):
            return cls, frozenset(_key(item, inputs) for item in value)
        if issubclass(cls, dict):
            return cls, tuple((_key(name), _key(item, inputs)) for name, item in value.items())
        return cls, tuple(_key(item, inputs) for item in value)
    if issubclass(cls, torch.Tensor):
        if inputs is None or not value.is_meta:
            raise _Uncacheable
        inputs.append(value)
        return "tensor", *_metadata(value)
    if isinstance(value, _PLAIN):  # an enum member, say
        return cls, value
    raise _Uncacheable


_PLAIN_TYPES = frozenset(_PLAIN)
#: Python's own containers, and fx's (it hands arguments on in immutable ones).
_CONTAINERS = frozenset(
    {tuple, list, dict, set, frozenset, collections.OrderedDict, torch.Size, immutable_dict, immutable_list}
)


def _metadata(tensor: torch.Tensor) -> tuple[Any, ...]:
    return (
        type(tensor),
        tensor.device,
        tensor.dtype,
        tuple(tensor.shape),
        tensor.stride(),
        tensor.storage_offset(),
        tensor.requires_grad,
    )


def _template(value: Any, inputs: dict[int, int]) -> Any:
    """``value`` with each tensor replaced by the input it is (an index) or the metadata of a new one."""
    if isinstance(value, torch.Tensor):
        if id(value) in inputs:
            return _Input(inputs[id(value)])
        kind, device, dtype, shape, stride, offset, requires_grad = _metadata(value)
        if kind is not torch.Tensor or device.type != "meta" or offset:
            raise _Uncacheable
        return _New(dtype, shape, stride, requires_grad)
    if isinstance(value, _PLAIN):
        return value
    if type(value) in (tuple, list, torch.Size):
        return type(value)(_template(item, inputs) for item in value)
    raise _Uncacheable


def _rebuild(template: Any, inputs: list[torch.Tensor]) -> Any:
    """A result like the one ``template`` was made of: new meta tensors, the inputs it held, plain values."""
    if isinstance(template, _Input):
        return inputs[template.index]
    if isinstance(template, _New):
        with torch._C._DisableTorchDispatch():  # an empty tensor needs no dispatch mode (it would cost 10x)
            return torch.empty_strided(
                template.shape,
                template.stride,
                dtype=template.dtype,
                device="meta",
                requires_grad=template.requires_grad,
            )
    if type(template) in (tuple, list, torch.Size):
        return type(template)(_rebuild(item, inputs) for item in template)
    return template


class _Input:
    """In a template: the call's input at ``index`` (in the order :func:`_key` met them)."""

    def __init__(self, index: int) -> None:
        self.index = index


class _New:
    """In a template: a new meta tensor with this metadata."""

    def __init__(
        self, dtype: torch.dtype, shape: tuple[int, ...], stride: tuple[int, ...], requires_grad: bool
    ) -> None:
        self.dtype = dtype
        self.shape = shape
        self.stride = stride
        self.requires_grad = requires_grad
