"""Errors a search raises on purpose.

Each one derives from :class:`SearchError` and from the built-in a caller would catch anyway.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CheckpointError", "NoSatisfiedCandidateError", "SearchError"]


class SearchError(Exception):
    """Base class of every error autonas_search raises on purpose."""


class CheckpointError(SearchError, ValueError):
    """A search checkpoint cannot be read, or was written by a different search."""


class NoSatisfiedCandidateError(SearchError, RuntimeError):
    """No candidate met the constraints; carries the closest candidate and the limits.

    Attributes:
        closest: the evaluated candidate that violated the limits least (None if none was evaluated).
        limits: the effective limits, name -> (lower, upper).
    """

    def __init__(self, num_iters: int, closest: dict[str, Any] | None, limits: dict[str, tuple[float, float]]) -> None:
        self.closest = closest
        self.limits = limits
        bounds = ", ".join(f"{name} in [{lower:g}, {upper:g}]" for name, (lower, upper) in limits.items())
        message = f"no candidate satisfied the constraints ({bounds}) in {num_iters} iterations."
        if closest is not None:
            values = ", ".join(f"{name}={value:g}" for name, value in closest["constraints"].items())
            message += f" Closest candidate: {values} at config {closest['config']}."
        message += " Loosen the limits, or search longer (more num_iters)."
        super().__init__(message)
