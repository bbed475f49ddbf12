"""A stable identity for configurations, the same in every process and Python version."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

__all__ = ["config_hash", "frozen"]

_ENCODER = json.JSONEncoder(sort_keys=True)


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 hex digest of `{"config": config}` as sorted-key JSON (tuples count as lists).

    Raises:
        TypeError: a value cannot be written as JSON (configs must be, to be checkpointed).
    """
    try:
        text = _ENCODER.encode({"config": config})
    except TypeError:
        bad = [name for name, value in config.items() if not _is_json(value)]
        raise TypeError(
            f"config values must be JSON-serialisable (numbers, strings, bools, None, lists, tuples, dicts); "
            f"not so for {', '.join(f'{n!r}={config[n]!r}' for n in bad)}"
        ) from None
    return hashlib.sha256(text.encode()).hexdigest()


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def frozen(value: Any) -> Any:
    """`value` as a hashable object: lists as tuples, dicts as sorted item tuples (nested too).

    Equal for a value and its JSON round trip (tuples read back as lists), like `config_hash`.
    """
    if isinstance(value, list | tuple):
        return tuple(frozen(item) for item in value)
    if isinstance(value, dict):
        return tuple(sorted((key, frozen(item)) for key, item in value.items()))
    return value
