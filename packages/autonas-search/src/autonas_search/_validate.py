"""Checks of search-config values, each naming the key at fault and what it accepts."""

from __future__ import annotations

import os
from typing import Any


def check_int(config: dict[str, Any], key: str, minimum: int, allow_none: bool = False) -> None:
    value = config[key]
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        extra = " or None" if allow_none else ""
        raise ValueError(f"search config {key!r} must be an integer >= {minimum}{extra}, got {value!r}")


def check_fraction(config: dict[str, Any], key: str, allow_none: bool = False) -> None:
    value = config[key]
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        extra = " or None" if allow_none else ""
        raise ValueError(f"search config {key!r} must be a number in [0, 1]{extra}, got {value!r}")


def check_bool(config: dict[str, Any], key: str) -> None:
    if not isinstance(config[key], bool):
        raise ValueError(f"search config {key!r} must be True or False, got {config[key]!r}")


def check_callable(config: dict[str, Any], key: str, allow_none: bool = False) -> None:
    value = config[key]
    if value is None and allow_none:
        return
    if not callable(value):
        raise ValueError(f"search config {key!r} must be a function, got {value!r}")


def check_path(config: dict[str, Any], key: str) -> None:
    value = config[key]
    if value is not None and not isinstance(value, str | os.PathLike):
        raise ValueError(f"search config {key!r} must be a file or directory path or None, got {value!r}")
