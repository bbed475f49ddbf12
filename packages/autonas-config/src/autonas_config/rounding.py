"""The one rounding rule that turns width ratios into layer sizes."""

from __future__ import annotations

import math

__all__ = ["make_divisible"]


def make_divisible(value: float, divisor: int | None, min_value: int | None = None) -> int | float:
    """Round ``value`` to the nearest multiple of ``divisor``, never far below it.

    Halves round up; the result is at least ``min_value`` (default: ``divisor``) and, should
    rounding go down by more than 10 %, one more ``divisor`` is added.

    Args:
        value: The size to round, e.g. ``0.67 * 96``.
        divisor: The multiple to round to; ``None`` returns ``value`` unchanged.
        min_value: Lower bound of the result; defaults to ``divisor``.

    Returns:
        The rounded size as an ``int`` (``value`` itself when ``divisor`` is ``None``).

    Examples:
        >>> [make_divisible(r * 96, 32) for r in (0.5, 0.67, 1.0)]
        [64, 64, 96]
    """
    if divisor is None:
        return value
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, math.floor(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return int(rounded)
