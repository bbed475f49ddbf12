"""The tensors inside a model's inputs and outputs: nested tuples, lists and dicts of any class."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import torch

__all__ = ["iter_tensors", "map_tensors"]


def iter_tensors(obj: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside nested tuples, lists and dicts (namedtuples and a ``ModelOutput`` too), in order."""
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from iter_tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from iter_tensors(item)


def map_tensors(obj: Any, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
    """Apply ``fn`` to every tensor inside nested tuples, lists and dicts; other objects are kept as is.

    Containers keep their class: namedtuples, and dict subclasses such as ``OrderedDict`` or a
    Hugging Face ``ModelOutput`` (copied, then their items replaced, so attribute access still works).
    """
    if isinstance(obj, torch.Tensor):
        return fn(obj)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(map_tensors(item, fn) for item in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(map_tensors(item, fn) for item in obj)
    if isinstance(obj, dict):
        mapped = {key: map_tensors(value, fn) for key, value in obj.items()}
        if type(obj) is dict:
            return mapped
        rebuilt = copy.copy(obj)
        for key, value in mapped.items():
            rebuilt[key] = value
        return rebuilt
    return obj
