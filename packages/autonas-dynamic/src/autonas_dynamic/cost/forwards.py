"""The cost model's probe forwards: on meta tensors where the model allows, else real ones.

A cost depends only on the shapes each costed call sees, so the probe forwards need no
arithmetic. :class:`ProbeForwards` runs them with every parameter and buffer of the model replaced,
for the duration of the forward, by a meta tensor of the same shape, strides and dtype (the module
objects with their hparams and hooks stay; a tensor registered in several places stays shared),
and with the input tensors on the meta device: torch then only propagates shapes, which costs the
same at any input size. The stored tensors and the dynamic layers' memoised active tensors are put
back afterwards, so the model's state (values, BatchNorm statistics, training flags) is untouched.

A forward that needs values -- data-dependent control flow, ``.item()``, a tensor created on the
CPU and mixed in, an operator without a meta kernel -- fails on meta tensors; the forward then runs
for real, and so do the rest of the build's forwards, with a warning that gives the reason. A
forward may also run differently on meta tensors: ``nn.MultiheadAttention`` calls
``F.scaled_dot_product_attention`` internally, which runs its unfused fallback (separate scalings
and products) on meta tensors but one fused attention kernel on real ones. The cost model's real
check forward catches such differences and also falls back to real forwards.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_map_only

from .recorder import OpRecord, record_ops

__all__ = ["ProbeForwards"]

#: Attribute under which a dynamic module memoises its active tensors (see ``DynamicModule._memoized``).
_MEMO = "_memo"


def _meta_like(tensor: torch.Tensor) -> torch.Tensor:
    """A meta tensor with ``tensor``'s shape, strides and dtype (a parameter stays a parameter)."""
    meta = torch.empty_strided(tensor.shape, tensor.stride(), dtype=tensor.dtype, device="meta")
    if isinstance(tensor, nn.Parameter):
        return nn.Parameter(meta, requires_grad=tensor.requires_grad)
    return meta


def _inference_batch_norm(args: Any) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x = args[0]
    return torch.empty_like(x), x.new_empty(0), x.new_empty(0)


def _activations(names: str) -> list[Any]:
    aten = torch.ops.aten
    return [getattr(aten, name).default for name in names.split() if hasattr(aten, name)]


_UNARY = "relu hardtanh hardswish hardsigmoid silu gelu sigmoid tanh leaky_relu"

#: Operators whose outputs are cheap to state but slow to derive on meta tensors (torch runs Python
#: meta functions or decompositions, a dozen elementwise steps for batch norm): aten overload ->
#: outputs from the positional arguments. Activations keep their input's shape and layout; in place
#: they return the input.
_SHORTCUTS: dict[Any, Callable[[Any], Any]] = {
    torch.ops.aten._native_batch_norm_legit_no_training.default: _inference_batch_norm,
    **dict.fromkeys(_activations(_UNARY), lambda args: torch.empty_like(args[0])),
    **dict.fromkeys(_activations(" ".join(f"{name}_" for name in _UNARY.split())), lambda args: args[0]),
}


class _MetaShortcuts(TorchDispatchMode):
    """Answers :data:`_SHORTCUTS` (and inference ``native_batch_norm``) directly on meta tensors."""

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        shortcut = _SHORTCUTS.get(func)
        if func is torch.ops.aten.native_batch_norm.default and not args[5]:
            shortcut = _inference_batch_norm
        if shortcut is None or args[0].device.type != "meta":
            return func(*args, **(kwargs or {}))
        return shortcut(args)


class ProbeForwards:
    """Records inference forwards of ``model`` on ``dummy_input``, on meta tensors while that works.

    Args:
        model: The model (dynamic modules run their active subnet).
        dummy_input: The forward's input, as for :func:`~autonas_dynamic.cost.recorder.record_ops`.
        meta: Whether to try meta tensors at all (``False``: every forward is real).

    Attributes:
        on_meta: Whether forwards still run on meta tensors (``False`` after a fallback).
    """

    def __init__(self, model: nn.Module, dummy_input: Any, *, meta: bool = True) -> None:
        self.model, self.dummy_input = model, dummy_input
        self.on_meta = meta
        self._stand_ins: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def record(self, *, real: bool = False) -> list[OpRecord]:
        """The costed calls of one forward of the active subnet (``real=True``: a real forward in any case)."""
        if self.on_meta and not real:
            try:
                with self._on_meta(), _MetaShortcuts():
                    meta_input = tree_map_only(torch.Tensor, lambda t: t.to("meta"), self.dummy_input)
                    return record_ops(self.model, meta_input)
            except Exception as error:
                self.fall_back(f"its forward fails on meta tensors ({type(error).__name__}: {error})")
        return record_ops(self.model, self.dummy_input)

    def fall_back(self, reason: str) -> None:
        """Run every later forward for real, warning once with ``reason``."""
        if self.on_meta:
            self.on_meta = False
            warnings.warn(
                f"CostModel: the probe forwards of {type(self.model).__name__} run on real tensors, which is "
                f"slower, because {reason}",
                RuntimeWarning,
                stacklevel=3,
            )

    @contextmanager
    def _on_meta(self) -> Iterator[None]:
        """Every parameter and buffer replaced by its meta stand-in; stored tensors and memos restored on exit."""
        swapped: list[tuple[dict[str, Any], str, torch.Tensor]] = []
        memos: list[tuple[nn.Module, Any]] = []
        try:
            for module in self.model.modules():
                memos.append((module, module.__dict__.get(_MEMO)))
                stores: tuple[dict[str, Any], ...] = (module._parameters, module._buffers)
                for store in stores:
                    for name, tensor in store.items():
                        if tensor is None:
                            continue
                        known = self._stand_ins.get(id(tensor))
                        if known is None or known[0] is not tensor:
                            known = self._stand_ins[id(tensor)] = tensor, _meta_like(tensor)
                        swapped.append((store, name, tensor))
                        store[name] = known[1]
            yield
        finally:
            for store, name, tensor in swapped:
                store[name] = tensor
            for module, memo in memos:
                if memo is None:
                    module.__dict__.pop(_MEMO, None)
                else:
                    module.__dict__[_MEMO] = memo
