"""Declare a third-party layer to the tracer as a linear layer over the last dimension.

The tracer (:mod:`autonas_dynamic.trace.layers`) knows its searchable layer classes from a fixed
list; it offers no registration function yet. :func:`declare_linear_layer` extends that list and
gives the class the symbols of ``nn.Linear``: an incoming ``in_features`` and an outgoing
``out_features``, both on the last dimension.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from ..trace import analyzer, layers
from ..trace.symbols import Slot, Symbol

__all__ = ["declare_linear_layer"]

_SymbolFactory = Callable[[nn.Module], layers.LayerSymbols]
_LAST_DIM = frozenset({-1})
_LINEAR_LIKE: list[type[nn.Module]] = []


def declare_linear_layer(cls: type[nn.Module]) -> None:
    """Make the tracer treat ``cls`` (and subclasses keeping its forward) as a searchable linear layer."""
    if cls in _LINEAR_LIKE:
        return
    if not _LINEAR_LIKE:  # rebind the tracer's symbol factory where it is defined and where it is used
        extended = _with_linear_like(layers.make_layer_symbols)
        layers.make_layer_symbols = extended  # type: ignore[assignment]
        analyzer.make_layer_symbols = extended  # type: ignore[assignment]
    _LINEAR_LIKE.append(cls)
    layers.LAYER_CLASSES = (*layers.LAYER_CLASSES, cls)
    layers._LAYER_CLASS_CACHE.clear()


def _with_linear_like(make_symbols: _SymbolFactory) -> _SymbolFactory:
    """``make_symbols`` extended with the symbols of the declared linear layers."""

    def make_layer_symbols(module: nn.Module) -> layers.LayerSymbols:
        if layers.base_class(module, tuple(_LINEAR_LIKE)) is None:
            return make_symbols(module)
        incoming, outgoing = Symbol(Slot(module, "in_features")), Symbol(Slot(module, "out_features"))
        return layers.LayerSymbols(incoming, _LAST_DIM, outgoing, _LAST_DIM)

    return make_layer_symbols
