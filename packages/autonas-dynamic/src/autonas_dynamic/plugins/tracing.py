"""Declare a third-party layer to the tracer as a linear layer over the last dimension."""

from __future__ import annotations

import torch.nn as nn

from ..trace import layers

__all__ = ["declare_linear_layer"]


def declare_linear_layer(cls: type[nn.Module]) -> None:
    """Make the tracer treat ``cls`` (and subclasses keeping its forward) as a searchable linear layer.

    The layer gets the symbols of ``nn.Linear``: an incoming ``in_features`` and an outgoing
    ``out_features``, both on the last dimension. Declaring a class twice is a no-op.
    """
    if cls not in layers.LAYER_CLASSES:
        layers.register_layer(cls, layers.linear_symbols)
