"""Example inputs for tracing: the sizes with which shape-dependent Python is answered.

The tracer computes the value of a node (on meta tensors) when Python code needs it, starting from
the model's example input: the one given to :func:`~autonas_dynamic.trace.analyze`, else one made
by a registered maker (the transformers integration makes one for every Hugging Face model from
its config). Without an example input, shape-dependent Python makes the module running it a leaf.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch.nn as nn

__all__ = ["ExampleInputMaker", "example_input_for", "register_example_input_maker"]

ExampleInputMaker = Callable[[nn.Module], Any]
"""``maker(model)`` -> an example input (the ``dummy_input`` convention) for ``model``, or None."""

_MAKERS: list[ExampleInputMaker] = []


def register_example_input_maker(maker: ExampleInputMaker) -> ExampleInputMaker:
    """Add a maker of example inputs (asked in registration order; the first answer is used)."""
    if maker not in _MAKERS:
        _MAKERS.append(maker)
    return maker


def example_input_for(model: nn.Module) -> Any:
    """The first example input a registered maker gives for ``model``, or None."""
    for maker in _MAKERS:
        found = maker(model)
        if found is not None:
            return found
    return None
