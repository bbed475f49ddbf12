"""Which modules are searchable layers, and the symbols each one owns.

The tracer treats these layers as leaves. Each gets an *incoming* symbol (sized by its input's
elastic axis) and, unless its output simply follows its input, an *outgoing* symbol. The names of
the symbols are the names of the hparams the dynamic layers expose (``in_channels`` ...).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import torch.nn as nn

from .dims import Dims, ndim_dims
from .symbols import Slot, Symbol

_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)
_INSTANCE_NORMS = (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
LAYER_CLASSES: tuple[type[nn.Module], ...] = (
    *_CONVS, nn.Linear, *_BATCH_NORMS, *_INSTANCE_NORMS, nn.LayerNorm, nn.GroupNorm,
)  # fmt: skip
"""Searchable leaf layers (``nn.Sequential`` is searchable too, but traced through)."""


def spatial_ndim(cls: type) -> int | None:
    """The spatial rank written in a class name (``Conv2d`` -> 2), None when it has none."""
    tokens = re.findall(r"(\d)[dD]", cls.__name__)
    if len(tokens) > 1:
        raise ValueError(f"class name {cls.__name__!r} names more than one dimensionality")
    return int(tokens[0]) if tokens else None


def base_class(module: nn.Module, bases: tuple[type[nn.Module], ...]) -> type[nn.Module] | None:
    """The class of ``bases`` that ``module`` behaves as: an exact match, or a subclass that keeps its forward."""
    for base in type(module).__mro__:
        if base in bases:
            return base if type(module).forward is base.forward else None
    return None


def is_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a searchable leaf layer."""
    return _is_layer_class(type(module))


_LAYER_CLASS_CACHE: dict[type, bool] = {}


def _is_layer_class(cls: type[nn.Module]) -> bool:
    found = _LAYER_CLASS_CACHE.get(cls)
    if found is None:
        base = next((b for b in cls.__mro__ if b in LAYER_CLASSES), None)
        found = _LAYER_CLASS_CACHE[cls] = base is not None and cls.forward is base.forward
    return found


def is_sequential(module: nn.Module) -> bool:
    """Whether ``module`` is an ``nn.Sequential`` (or a subclass that keeps its forward)."""
    return base_class(module, (nn.Sequential,)) is not None


@dataclass
class LayerSymbols:
    """The symbols of one layer and how they size its input and output tensors."""

    incoming: Symbol
    in_dims: Dims
    outgoing: Symbol | None  # None: the output's elastic axis follows the input (norms, depthwise)
    out_dims: Dims


SymbolFactory = Callable[[nn.Module], LayerSymbols]
_REGISTERED_LAYERS: dict[type[nn.Module], SymbolFactory] = {}


def register_layer(cls: type[nn.Module], make_symbols: SymbolFactory) -> None:
    """Declare a further searchable leaf layer class and the function that creates its symbols.

    Subclasses of ``cls`` that keep its ``forward`` count as ``cls``. Used by plugins for layer
    types of other libraries (for example transformers' ``Conv1D``, see :func:`linear_symbols`).

    Raises:
        ValueError: ``cls`` is already a searchable layer class.
    """
    global LAYER_CLASSES
    if cls in LAYER_CLASSES:
        raise ValueError(f"{cls.__qualname__} is already a searchable layer class")
    _REGISTERED_LAYERS[cls] = make_symbols
    LAYER_CLASSES = (*LAYER_CLASSES, cls)
    _LAYER_CLASS_CACHE.clear()


def linear_symbols(module: nn.Module) -> LayerSymbols:
    """The symbols of a linear map over the last dimension: ``in_features`` in, ``out_features`` out."""
    dims = frozenset({-1})
    return LayerSymbols(_sym(module, "in_features"), dims, _sym(module, "out_features"), dims)


def make_layer_symbols(module: nn.Module) -> LayerSymbols:
    """Create the symbols of a layer; grouped convolutions are coupled or fixed here already."""
    cls = base_class(module, LAYER_CLASSES)
    if cls is None:
        raise TypeError(f"{type(module).__name__} is not a searchable layer")
    if cls in _REGISTERED_LAYERS:
        return _REGISTERED_LAYERS[cls](module)
    if cls is nn.Linear:
        return linear_symbols(module)
    if cls is nn.LayerNorm:
        return LayerSymbols(_sym(module, "num_features"), frozenset({-1}), None, frozenset({-1}))
    if cls is nn.GroupNorm:
        return LayerSymbols(_sym(module, "num_channels", sortable=False), frozenset({1}), None, frozenset({1}))
    dims = ndim_dims(spatial_ndim(cls)) if cls is not nn.SyncBatchNorm else frozenset({1})
    if cls in _CONVS:
        return _conv_symbols(module, dims)
    return LayerSymbols(_sym(module, "num_features"), dims, None, dims)


def _conv_symbols(conv: nn.Module, dims: Dims) -> LayerSymbols:
    incoming, outgoing = _sym(conv, "in_channels"), _sym(conv, "out_channels")
    if conv.groups == 1:
        return LayerSymbols(incoming, dims, outgoing, dims)
    if conv.in_channels != conv.out_channels:
        reason = f"grouped convolution (groups={conv.groups}) with in_channels != out_channels"
        incoming.fix(reason)
        outgoing.fix(reason)
        return LayerSymbols(incoming, dims, outgoing, dims)
    incoming.union(outgoing)
    if conv.groups != conv.in_channels:
        incoming.mark_unsortable()
    return LayerSymbols(incoming, dims, None, dims)


def _sym(module: nn.Module, name: str, *, sortable: bool = True) -> Symbol:
    return Symbol(Slot(module, name), sortable=sortable)
