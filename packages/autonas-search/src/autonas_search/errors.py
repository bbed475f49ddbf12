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
    """No candidate met the constraints; carries the closest candidate, the limits and what the space reaches.

    Attributes:
        closest: the evaluated candidate that violated the limits least (None if none was evaluated).
        limits: the effective limits, name -> (lower, upper).
        ranges: name -> (lowest, highest) value over the space's smallest and largest configs
            (empty when not measured).
    """

    def __init__(
        self,
        num_iters: int,
        closest: dict[str, Any] | None,
        limits: dict[str, tuple[float, float]],
        ranges: dict[str, tuple[float, float]] | None = None,
    ) -> None:
        self.closest = closest
        self.limits = limits
        self.ranges = dict(ranges or {})
        bounds = ", ".join(f"{name} in [{lower:g}, {upper:g}]" for name, (lower, upper) in limits.items())
        message = f"no candidate satisfied the constraints ({bounds}) in {num_iters} iterations."
        reached = {name: self.ranges[name] for name in limits if name in self.ranges}
        if reached:
            spans = ", ".join(f"{name} from {low:g} to {high:g}" for name, (low, high) in reached.items())
            message += f" The space reaches {spans} (its smallest to its largest config)."
        if closest is not None:
            values = ", ".join(f"{name}={value:g}" for name, value in closest["constraints"].items())
            message += f" Closest candidate: {values} at config {closest['config']}."
        unreachable = [name for name, (low, high) in reached.items() if limits[name][1] < low or limits[name][0] > high]
        if unreachable:
            message += f" No config can meet the limits of {unreachable}: set them within the space's range."
        else:
            message += " Loosen the limits, or search longer (more num_iters)."
        super().__init__(message)
