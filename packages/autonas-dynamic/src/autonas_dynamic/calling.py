"""Calling a model: the ``dummy_input`` convention, the model's device, and its train/eval flags.

The one rule for ``dummy_input`` everywhere in autonas (cost model, latency, calibration, ONNX
export): a value that is not a tuple is the single positional argument; a tuple holds the
positional arguments, and a trailing ``Mapping`` in it (a dict, or a mapping such as a
transformers ``BatchEncoding``) holds the keyword arguments. Append an empty dict to pass a
mapping positionally: ``(inputs, {})``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

__all__ = ["model_device", "move_to", "run_model", "split_args", "tensor_leaves", "training_mode"]


def split_args(dummy_input: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Positional and keyword arguments of a forward call from ``dummy_input`` (see the module docstring)."""
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
    """``value`` with every tensor in it (nested in tuples, lists and mappings) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*(move_to(item, device) for item in value))
    if isinstance(value, tuple | list):
        return type(value)(move_to(item, device) for item in value)
    if isinstance(value, Mapping):
        return {key: move_to(item, device) for key, item in value.items()}
    return value


def tensor_leaves(value: Any) -> list[torch.Tensor]:
    """Every tensor in ``value`` (nested in tuples, lists and mappings), depth first in order."""
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


@contextmanager
def training_mode(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Context manager: every module of ``model`` in train (or eval) mode; each module's own flag returns on exit.

    The flags are set on each module directly, so no ``train()``/``eval()`` override or hook runs
    (a patch manager's, for instance), and they are restored even when the body raises.
    """
    flags = [(module, module.training) for module in model.modules()]
    try:
        for module, _ in flags:
            module.training = training
        yield model
    finally:
        for module, flag in flags:
            module.training = flag
