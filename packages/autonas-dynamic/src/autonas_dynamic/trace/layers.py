"""Which modules are searchable layers, and the symbols each one owns.

The tracer treats these layers as leaves. Each gets an *incoming* symbol (sized by its input's
elastic axis) and, unless its output simply follows its input, an *outgoing* symbol. Both come
from the layer's declared :class:`~autonas_dynamic.layout.LayerLayout` (see
:func:`autonas_dynamic.register_layer`); the names of the symbols are the names of the hparams
the dynamic layers expose (``in_channels`` ...). A module of a declared type that cannot be
converted (see :meth:`~autonas_dynamic.registry.DMRegistry.match`) is a leaf too, with fixed sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

from ..layout import LayerLayout, spatial_ndim
from ..registry import DYNAMIC_REGISTRY
from .dims import Dims, ndim_dims
from .symbols import Slot, Symbol

__all__ = [
    "LayerSymbols",
    "is_iterated",
    "is_layer",
    "is_sealed",
    "is_sequential",
    "make_layer_symbols",
    "preserves_shape",
    "refusal",
    "spatial_ndim",
]


def is_layer(module: nn.Module) -> bool:
    """Whether ``module`` is a searchable leaf layer."""
    return _layout(module) is not None


def refusal(module: nn.Module) -> str | None:
    """Why ``module``, of a declared layer type, cannot be converted; None when it can or is no layer."""
    return DYNAMIC_REGISTRY.match(module).refusal


def preserves_shape(module: nn.Module) -> bool:
    """Whether a searchable layer's output has its input's shape (norms, per-channel scales)."""
    layout = _layout(module)
    return layout is not None and layout.outgoing is None and layout.groups is None


def is_iterated(module: nn.Module) -> bool:
    """Whether ``module``'s own forward loops over its blocks: an ``nn.ModuleList``, or an
    ``nn.Sequential`` subclass with a forward of its own (HRNet's ``SequentialList``)."""
    layer = DYNAMIC_REGISTRY.layer_of(module)
    return layer is not None and layer.cls is nn.ModuleList


def is_sealed(module: nn.Module) -> bool:
    """Whether ``module`` converts with hparams of its own only, its sizes fixed (``nn.MultiheadAttention``)."""
    layer = DYNAMIC_REGISTRY.layer_of(module)
    return (
        layer is not None
        and layer.layout is None
        and not isinstance(module, (nn.Sequential, nn.ModuleList))
        and DYNAMIC_REGISTRY.match(module).searchable
    )


def is_sequential(module: nn.Module) -> bool:
    """Whether ``module`` is an ``nn.Sequential`` (or a subclass that keeps its forward)."""
    layer = DYNAMIC_REGISTRY.layer_of(module)
    return layer is not None and layer.layout is None and type(module).forward is nn.Sequential.forward


def _layout(module: nn.Module) -> LayerLayout | None:
    found = DYNAMIC_REGISTRY.match(module)
    return found.layout if found.searchable else None


@dataclass
class LayerSymbols:
    """The symbols of one layer and how they size its input and output tensors."""

    incoming: Symbol
    in_dims: Dims
    outgoing: Symbol | None  # None: the output's elastic axis follows the input (norms, depthwise)
    out_dims: Dims
    #: A grouped layer with unequal widths whose group sizes divide one another: (the wider side,
    #: the narrower side, how many times wider), which move together by whole groups.
    scaled: tuple[Symbol, Symbol, int] | None = None


def make_layer_symbols(module: nn.Module) -> LayerSymbols:
    """Create the symbols of a layer from its layout; grouped layers are coupled or fixed here already."""
    layout = _layout(module)
    if layout is None:
        raise TypeError(f"{type(module).__name__} is not a searchable layer")
    if layout.axis == "last":
        dims: Dims = frozenset({-1})
    else:
        dims = ndim_dims(spatial_ndim(type(module)))
    incoming = Symbol(Slot(module, layout.incoming), sortable=layout.sortable)
    if layout.outgoing is None:
        return LayerSymbols(incoming, dims, None, dims)
    outgoing = Symbol(Slot(module, layout.outgoing), sortable=layout.sortable)
    groups = getattr(module, layout.groups, 1) if layout.groups else 1
    if groups == 1:
        return LayerSymbols(incoming, dims, outgoing, dims)
    in_size, out_size = getattr(module, layout.incoming), getattr(module, layout.outgoing)
    if in_size != out_size:
        wide, narrow = (outgoing, incoming) if out_size > in_size else (incoming, outgoing)
        ratio, rest = divmod(max(in_size, out_size), min(in_size, out_size))
        if rest:
            reason = f"grouped layer (groups={groups}) with {layout.incoming} != {layout.outgoing}"
            incoming.fix(reason)
            outgoing.fix(reason)
            return LayerSymbols(incoming, dims, outgoing, dims)
        incoming.mark_unsortable()
        outgoing.mark_unsortable()
        return LayerSymbols(incoming, dims, outgoing, dims, scaled=(wide, narrow, ratio))
    incoming.union(outgoing)
    if groups != in_size:
        incoming.mark_unsortable()
    return LayerSymbols(incoming, dims, None, dims)
