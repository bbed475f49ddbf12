"""Latency measured on this machine, and its interpolation over FLOPs.

Measuring a forward pass costs milliseconds, so a search measures only some subnets and
interpolates the rest over their FLOPs (and, for depth-searchable models, their FLOPs at the
minimal depth), as the reference does. A query outside the measured range returns NaN, which
tells the caller to measure that subnet and add it as a new point.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from autonas_dynamic.calling import model_device, run_model

__all__ = ["LatencyInterpolator", "measure_latency", "median_time_ms"]


def measure_latency(model: nn.Module, dummy_input: Any, warmup: int = 3, repeats: int = 10) -> float:
    """Median wall time of a forward pass in milliseconds (after ``warmup`` untimed passes).

    The model runs as it is (its current subnet and train/eval flag) under ``torch.no_grad``;
    on CUDA every timed pass is synchronised.
    """
    sync = torch.cuda.synchronize if model_device(model).type == "cuda" else None
    with torch.no_grad():
        return median_time_ms(lambda: run_model(model, dummy_input), warmup, repeats, sync)


def median_time_ms(
    call: Callable[[], Any], warmup: int = 3, repeats: int = 10, sync: Callable[[], Any] | None = None
) -> float:
    """Median wall time of ``call()`` in milliseconds over ``repeats`` timed calls after ``warmup`` untimed ones.

    ``sync`` (e.g. ``torch.cuda.synchronize``) runs before and after every call, so that
    asynchronous work is timed in full. The median shrugs off the odd call slowed by other load.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}.")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}.")
    sync = sync or (lambda: None)
    times = []
    for i in range(warmup + repeats):
        sync()
        start = time.perf_counter()
        call()
        sync()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


class LatencyInterpolator:
    """Piecewise-linear interpolation of latency over one or more cost coordinates.

    * One coordinate: linear interpolation between the two measured neighbours (points with the
      same coordinate are averaged); needs two distinct points.
    * Several coordinates: an affine function fitted by weighted least squares to the nearest
      measured points (the ``2 * (d + 1)`` nearest in range-normalised coordinates, weight
      ``1 / distance``); a query equal to a measured point returns that point's latency. Needs
      ``d + 1`` points.

    Queries outside the bounding range of the measured points give NaN.

    Args:
        dims: Number of coordinates (e.g. 1 for ``(flops,)``, 2 for ``(flops, flops_min_depth)``).
    """

    def __init__(self, dims: int) -> None:
        if dims < 1:
            raise ValueError(f"dims must be >= 1, got {dims}.")
        self.dims = dims
        self._points: list[tuple[float, ...]] = []
        self._values: list[float] = []

    def __len__(self) -> int:
        return len(self._points)

    def add_point(self, coords: Sequence[float], latency: float) -> None:
        """Record a measured latency at ``coords``."""
        coords = tuple(float(c) for c in coords)
        if len(coords) != self.dims:
            raise ValueError(f"Expected {self.dims} coordinates, got {len(coords)}.")
        self._points.append(coords)
        self._values.append(float(latency))

    def __call__(self, coords: Sequence[float]) -> float:
        """The interpolated latency at ``coords`` (NaN when it cannot be interpolated)."""
        if not self._points:
            return math.nan
        points = np.asarray(self._points)
        values = np.asarray(self._values)
        query = np.asarray(coords, dtype=float)
        if np.any(query < points.min(axis=0)) or np.any(query > points.max(axis=0)):
            return math.nan
        if self.dims == 1:
            return self._interp_1d(points[:, 0], values, float(query[0]))
        return self._interp_nd(points, values, query)

    @staticmethod
    def _interp_1d(xs: np.ndarray, values: np.ndarray, x: float) -> float:
        unique, inverse = np.unique(xs, return_inverse=True)
        if len(unique) < 2:
            return float(values[inverse == 0].mean()) if x == unique[0] else math.nan
        means = np.bincount(inverse, weights=values) / np.bincount(inverse)
        return float(np.interp(x, unique, means))

    def _interp_nd(self, points: np.ndarray, values: np.ndarray, query: np.ndarray) -> float:
        if len(points) < self.dims + 1:
            return math.nan
        span = points.max(axis=0) - points.min(axis=0)
        span[span == 0] = 1.0
        distances = np.linalg.norm((points - query) / span, axis=1)
        exact = distances == 0
        if exact.any():
            return float(values[exact].mean())
        nearest = np.argsort(distances, kind="stable")[: 2 * (self.dims + 1)]
        design = np.hstack([points[nearest] / span, np.ones((len(nearest), 1))])
        weights = 1.0 / distances[nearest]
        coef, *_ = np.linalg.lstsq(design * weights[:, None], values[nearest] * weights, rcond=None)
        return float(np.append(query / span, 1.0) @ coef)
