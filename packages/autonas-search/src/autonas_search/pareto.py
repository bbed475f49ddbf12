"""Pareto fronts over (metric, costs): maximise the metric, minimise every cost."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["pareto_front"]


def pareto_front(candidates: Iterable[dict[str, Any]], cost_names: Sequence[str]) -> list[dict[str, Any]]:
    """The candidates no other candidate dominates, best metric first.

    A candidate dominates another if its `metric` is at least as high and each named value in its
    `constraints` at least as low, and it is strictly better in one of them. Candidates with equal
    objectives do not dominate each other, so all of them are kept.
    """
    candidates = list(candidates)
    points = [(-c["metric"], *(c["constraints"][name] for name in cost_names)) for c in candidates]
    ordered = sorted(zip(points, candidates, strict=True), key=lambda pair: pair[0])
    front: list[tuple[tuple[float, ...], dict[str, Any]]] = []
    for point, candidate in ordered:
        # Sorted lexicographically, a dominator always comes before the points it dominates.
        if not any(_dominates(kept, point) for kept, _ in front):
            front.append((point, candidate))
    return [candidate for _, candidate in front]


def _dominates(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a != b and all(x <= y for x, y in zip(a, b, strict=True))
