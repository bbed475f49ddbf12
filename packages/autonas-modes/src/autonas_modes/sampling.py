"""Sample functions beyond ``min``, ``max`` and ``random.choice``."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

__all__ = ["centroid"]


def _magnitude(choice: Any) -> float:
    """A number for a choice: the choice itself, or the product of a tuple's elements."""
    return math.prod(choice) if isinstance(choice, tuple | list) else choice


def centroid(choices: Sequence[Any]) -> Any:
    """The choice closest to the median of the choices (first one on ties).

    Tuples (kernel sizes) count as the product of their elements. Examples: ``[32, 64]`` -> 32,
    ``[1, 2, 3, 4]`` -> 2, ``[(3, 3), (5, 5), (7, 7)]`` -> ``(5, 5)``, ``[0, 1, 2]`` -> 1.
    """
    if not choices:
        raise ValueError("centroid() needs at least one choice.")
    values = [_magnitude(choice) for choice in choices]
    middle = statistics.median(values)
    best = min(range(len(values)), key=lambda i: abs(values[i] - middle))
    return choices[best]
