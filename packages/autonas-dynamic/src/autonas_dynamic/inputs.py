"""The ``dummy_input`` convention: how one value stands for the arguments of a model's ``forward``."""

from __future__ import annotations

from typing import Any

__all__ = ["standardize_inputs"]


def standardize_inputs(dummy_input: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Split ``dummy_input`` into positional and keyword arguments of ``forward``.

    A single non-tuple value is the only positional argument; a tuple holds the positional
    arguments, and a dict as its last element holds the keyword arguments (append an empty dict
    to pass a dict positionally).
    """
    if not isinstance(dummy_input, tuple):
        return (dummy_input,), {}
    if dummy_input and isinstance(dummy_input[-1], dict):
        return dummy_input[:-1], dict(dummy_input[-1])
    return dummy_input, {}
