"""The ``dummy_input`` convention shared by costs, latency and profiling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn as nn

__all__ = ["model_device", "move_to", "run_model", "split_args", "tensor_leaves"]


def split_args(dummy_input: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments of a forward call from ``dummy_input``.

    A non-tuple value is the single positional argument; a tuple holds the positional
    arguments, and a trailing dict in it holds the keyword arguments (append an empty dict to
    pass a dict positionally).
    """
    if not isinstance(dummy_input, tuple):
        return (dummy_input,), {}
    if dummy_input and isinstance(dummy_input[-1], Mapping):
        return tuple(dummy_input[:-1]), dict(dummy_input[-1])
    return tuple(dummy_input), {}


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without tensors)."""
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def move_to(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor in it (nested in tuples, lists and dicts) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple | list):
        return type(value)(move_to(item, device) for item in value)
    if isinstance(value, Mapping):
        return {key: move_to(item, device) for key, item in value.items()}
    return value


def tensor_leaves(value: Any) -> list[torch.Tensor]:
    """Every tensor in ``value`` (nested in tuples, lists and dicts), depth first in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, tuple | list):
        return [leaf for item in value for leaf in tensor_leaves(item)]
    if isinstance(value, Mapping):
        return [leaf for item in value.values() for leaf in tensor_leaves(item)]
    return []


def run_model(model: nn.Module, dummy_input: Any) -> Any:
    """Call ``model`` on ``dummy_input`` (moved to the model's device) following :func:`split_args`."""
    args, kwargs = split_args(move_to(dummy_input, model_device(model)))
    return model(*args, **kwargs)
