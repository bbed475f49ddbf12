"""Tracing leaves each module's own Python state as it found it."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn

__all__ = ["module_state_kept"]

#: What ``nn.Module`` itself keeps in ``__dict__``: parameters, buffers and children are the model.
_MODULE_STATE = frozenset({"_parameters", "_buffers", "_modules"})
#: Attributes whose contents are kept (a tuple: ``isinstance`` checks one faster than a union).
_CONTAINERS = (dict, list, set)


@contextmanager
def module_state_kept(model: nn.Module) -> Iterator[None]:
    """Context manager: on exit every module of ``model`` has the plain attributes it had on entry.

    Forwards may cache values in their module while they run (timm's EfficientViT attention keeps
    its biases in a dict keyed by the device). Run by the tracer, such values are proxies, which must
    not outlive the trace: a model holding one no longer deep-copies or exports correctly. On exit
    attributes added are removed, attributes replaced come back, and dict, list and set attributes
    get their contents back in place (the same objects, so what modules share stays shared).
    """
    saved = []
    for module in model.modules():
        attributes = dict(vars(module))
        for key in _MODULE_STATE:
            attributes.pop(key, None)
        contents = {  # an empty one (most are: the hook dicts) is emptied again, without a copy
            key: copy.copy(value) if value else None
            for key, value in attributes.items()
            if isinstance(value, _CONTAINERS)
        }
        saved.append((module, attributes, contents))
    try:
        yield
    finally:
        for module, attributes, contents in saved:
            for key in [key for key in vars(module) if key not in _MODULE_STATE and key not in attributes]:
                del module.__dict__[key]
            module.__dict__.update(attributes)
            for key, content in contents.items():
                _refill(attributes[key], content)


def _refill(container: Any, content: Any) -> None:
    """Give ``container`` (a dict, list or set) the items of ``content`` again (``None``: none)."""
    if content is None:
        container.clear()
        return
    if isinstance(container, list):
        container[:] = content
        return
    container.clear()
    container.update(content)
