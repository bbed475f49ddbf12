"""Latency measurement and interpolation, human-readable numbers, the centroid sample function."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import torch.nn as nn

from autonas_modes import LatencyInterpolator, centroid, measure_latency, num2hrb


class Sleeper(nn.Module):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.calls = 0

    def forward(self, x: torch.Tensor, *, extra: float = 0.0) -> torch.Tensor:
        self.calls += 1
        time.sleep(self.seconds)
        return x + extra


def test_measure_latency_runs_warmup_plus_repeats_and_reports_the_median_in_ms() -> None:
    model = Sleeper(0.004)
    latency = measure_latency(model, (torch.zeros(1), {"extra": 1.0}), warmup=2, repeats=5)
    assert model.calls == 7
    assert 4.0 <= latency < 40.0


def test_measure_latency_rejects_zero_repeats() -> None:
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        measure_latency(Sleeper(0.0), torch.zeros(1), repeats=0)


def test_1d_interpolation_is_linear_between_points_and_nan_outside() -> None:
    interp = LatencyInterpolator(1)
    assert math.isnan(interp((5.0,)))
    interp.add_point((0.0,), 3.0)
    assert math.isnan(interp((5.0,)))  # one point: nothing to interpolate between
    assert interp((0.0,)) == 3.0
    interp.add_point((10.0,), 23.0)
    assert interp((5.0,)) == pytest.approx(13.0)
    assert interp((2.5,)) == pytest.approx(8.0)
    assert math.isnan(interp((10.5,))) and math.isnan(interp((-1.0,)))


def test_1d_interpolation_averages_points_with_the_same_coordinate() -> None:
    interp = LatencyInterpolator(1)
    for x, y in [(0.0, 1.0), (0.0, 3.0), (4.0, 6.0)]:
        interp.add_point((x,), y)
    assert interp((0.0,)) == pytest.approx(2.0)
    assert interp((2.0,)) == pytest.approx(4.0)


def test_1d_interpolation_of_flops_latency_is_within_half_a_percent() -> None:
    """Latency linear in FLOPs (as for the reference's test): min/centroid/max points suffice."""
    rng = np.random.default_rng(0)
    truth = lambda flops: 1.8 * flops / 1e6 + 0.7  # noqa: E731
    interp = LatencyInterpolator(1)
    for flops in (30e6, 55e6, 150e6):
        interp.add_point((flops,), truth(flops))
    for flops in rng.uniform(30e6, 150e6, size=20):
        assert interp((flops,)) == pytest.approx(truth(flops), rel=5e-3)


def test_nd_interpolation_recovers_an_affine_function_and_returns_measured_points() -> None:
    truth = lambda x, y: 2.0 * x - 0.5 * y + 4.0  # noqa: E731
    interp = LatencyInterpolator(2)
    interp.add_point((0.0, 0.0), truth(0, 0))
    interp.add_point((10.0, 0.0), truth(10, 0))
    assert math.isnan(interp((5.0, 0.0)))  # two points cannot span a plane
    for point in [(0.0, 10.0), (10.0, 10.0), (5.0, 5.0)]:
        interp.add_point(point, truth(*point))
    for query in [(1.0, 2.0), (7.5, 9.0), (3.3, 0.1)]:
        assert interp(query) == pytest.approx(truth(*query), rel=1e-9)
    interp.add_point((2.0, 2.0), 100.0)  # a measured point is returned as measured
    assert interp((2.0, 2.0)) == 100.0
    assert math.isnan(interp((11.0, 5.0)))


def test_interpolator_checks_its_dimensions() -> None:
    with pytest.raises(ValueError, match="dims must be >= 1"):
        LatencyInterpolator(0)
    with pytest.raises(ValueError, match="Expected 2 coordinates, got 1"):
        LatencyInterpolator(2).add_point((1.0,), 1.0)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0.00"), (999.0, "999.00"), (1000, "1.00K"), (153_761_280, "153.76M"), (4.98e9, "4.98B"), (2.5e12, "2.50T")],
)
def test_num2hrb(value: float, text: str) -> None:
    assert num2hrb(value) == text


@pytest.mark.parametrize(
    ("choices", "expected"),
    [([32, 64], 32), ([1, 2, 3, 4], 2), ([(3, 3), (5, 5), (7, 7)], (5, 5)), ([0, 1, 2], 1), ([7], 7)],
)
def test_centroid(choices: list, expected: object) -> None:
    assert centroid(choices) == expected


def test_centroid_needs_choices() -> None:
    with pytest.raises(ValueError, match="at least one choice"):
        centroid([])
