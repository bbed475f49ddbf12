"""Pareto fronts over (metric, costs): maximise the metric, minimise every cost."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["dominated_count", "hypervolume", "objectives", "pareto_front", "pareto_order"]

Point = tuple[float, ...]


def pareto_front(candidates: Iterable[dict[str, Any]], cost_names: Sequence[str]) -> list[dict[str, Any]]:
    """The candidates no other candidate dominates, best metric first.

    A candidate dominates another if its `metric` is at least as high and each named value in its
    `constraints` at least as low, and it is strictly better in one of them. Candidates with equal
    objectives do not dominate each other, so all of them are kept.
    """
    candidates = list(candidates)
    return [candidates[i] for i in _fronts([objectives(c, cost_names) for c in candidates], first_only=True)[0]]


def pareto_order(candidates: Iterable[dict[str, Any]], cost_names: Sequence[str]) -> list[dict[str, Any]]:
    """The candidates from the best to the worst trade-off, as NSGA-II ranks them.

    First the Pareto front, then the front of the rest, and so on; within a front the most
    isolated candidates first (largest crowding distance: the extremes of every objective, then
    those with the widest gap between their neighbours), ties best metric first.
    """
    candidates = list(candidates)
    points = [objectives(c, cost_names) for c in candidates]
    ordered: list[dict[str, Any]] = []
    for front in _fronts(points, first_only=False):
        distance = _crowding_distance([points[i] for i in front])
        ranked = sorted(range(len(front)), key=lambda k: -distance[k])
        ordered.extend(candidates[front[k]] for k in ranked)
    return ordered


def hypervolume(points: Iterable[tuple[float, float]], reference: tuple[float, float]) -> float:
    """The area of (cost, metric) that `points` dominate, bounded by `reference` = (highest cost, lowest metric).

    The standard measure of a front of one cost against the metric: it grows as the front moves
    to lower costs and higher metrics, and as it covers more of the range. Points costlier than
    the reference add nothing, nor do metrics below it.
    """
    cost_ref, metric_ref = reference
    ordered = sorted(point for point in points if point[0] <= cost_ref)
    area, best = 0.0, metric_ref
    for (cost, metric), following in zip(ordered, [p[0] for p in ordered[1:]] + [cost_ref], strict=False):
        best = max(best, metric)
        area += (following - cost) * (best - metric_ref)
    return area


def dominated_count(point: Point, front: Sequence[Point]) -> int:
    """How many points of `front` dominate `point` (all as `(-metric, *costs)`, every objective minimised)."""
    return sum(_dominates(other, point) for other in front)


def objectives(candidate: dict[str, Any], cost_names: Sequence[str]) -> Point:
    """`(-metric, *costs)`: the objectives of a candidate, every one minimised."""
    return (-candidate["metric"], *(candidate["constraints"][name] for name in cost_names))


def _fronts(points: list[Point], first_only: bool) -> list[list[int]]:
    """Indices of the points by non-dominated front, each front in lexicographic order (best metric first)."""
    remaining = sorted(range(len(points)), key=lambda i: points[i])
    fronts = []
    while remaining:
        front: list[int] = []
        rest = []
        for i in remaining:
            # Sorted lexicographically, a dominator always comes before the points it dominates.
            if any(_dominates(points[j], points[i]) for j in front):
                rest.append(i)
            else:
                front.append(i)
        fronts.append(front)
        if first_only:
            break
        remaining = rest
    return fronts or [[]]


def _crowding_distance(points: list[Point]) -> list[float]:
    """Per point, the sum over objectives of the normalised gap between its two neighbours (inf at the extremes)."""
    distance = [0.0] * len(points)
    for axis in range(len(points[0]) if points else 0):
        order = sorted(range(len(points)), key=lambda i: points[i][axis])
        low, high = points[order[0]][axis], points[order[-1]][axis]
        distance[order[0]] = distance[order[-1]] = math.inf
        if high == low:
            continue
        for before, i, after in zip(order, order[1:], order[2:], strict=False):
            distance[i] += (points[after][axis] - points[before][axis]) / (high - low)
    return distance


def _dominates(a: Point, b: Point) -> bool:
    return a != b and all(x <= y for x, y in zip(a, b, strict=True))
