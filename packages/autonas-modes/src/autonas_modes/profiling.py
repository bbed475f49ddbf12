"""Profiling a search space: costs of its smallest, typical and largest subnets, and whether limits fit.

With latency tracked, the profile also measures a few random subnets beside the sample points and
reports how far the interpolated latency was from the measured one, so users see how much the
FLOPs-based interpolation can be trusted for their model and runtime.
"""

from __future__ import annotations

import math
import random
import statistics
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn as nn

from .apply import unwrap_model
from .constraints import ModelConstraints
from .modelspace import model_space
from .sampling import centroid

__all__ = ["INTERPOLATION_CHECK", "check_interpolation", "num2hrb", "profile"]

_PRINTED_POINTS = ("min", "centroid", "max", "full")
_RANDOM_CENTROID_SAMPLES = 30
_RANDOM_CENTROID_SEED = 1024
_CHECK_POINTS_SEED = 2048
#: Key of the interpolation check in the stats of :func:`profile`.
INTERPOLATION_CHECK = "latency interpolation"


def num2hrb(num: float, suffix: str = "") -> str:
    """A number in human-readable form with two decimals: ``153761280`` -> ``"153.76M"``.

    Units step by 1000: "", K, M, B, T, P, E.
    """
    for unit in ("", "K", "M", "B", "T", "P"):
        if abs(num) < 1000.0:
            return f"{num:3.2f}{unit}{suffix}"
        num /= 1000.0
    return f"{num:3.2f}E{suffix}"


def _sample_points(has_depth: bool) -> dict[str, Any]:
    """The named subnets that profiling measures exactly (SPEC 8.6); mixed points need a depth hparam."""
    funcs: dict[str, Callable[[list[Any]], Any]] = {"min": min, "centroid": centroid, "max": max}
    if not has_depth:
        return dict(funcs)
    points: dict[str, Any] = {}
    for regular, regular_func in funcs.items():
        for depth, depth_func in funcs.items():
            name = regular if regular == depth else f"{regular}_regular_{depth}_depth"
            points[name] = {"*": regular_func, "*.depth": depth_func}
    return points


def _random_centroid(functor: ModelConstraints) -> dict[str, float]:
    """Median of each cost over random subnets drawn from a fixed seed (latency interpolated)."""
    space = model_space(functor.model)
    rng = random.Random(_RANDOM_CENTROID_SEED)
    samples = []
    for _ in range(_RANDOM_CENTROID_SAMPLES):
        space.sample(rng.choice)
        samples.append(functor.costs.evaluate())
    return {key: statistics.median(sample[key] for sample in samples) for key in functor.names}


def check_interpolation(functor: ModelConstraints, count: int, seed: int = _CHECK_POINTS_SEED) -> dict[str, Any]:
    """Interpolated against measured latency at ``count`` random subnets of ``functor.model``.

    Every subnet's latency is first interpolated from the points measured so far (as a search
    would), then all are measured (and become new points). The model is left at the last subnet.

    Returns:
        ``{"points": [{"flops", "interpolated", "measured", "relative error"}, ...],
        "median abs error", "max abs error"}``; errors are relative to the measured latency (NaN
        where a subnet lay outside the measured range).
    """
    space = model_space(functor.model)
    rng = random.Random(seed)
    drawn = []
    for _ in range(count):
        config = space.sample(rng.choice)
        drawn.append((config, functor.costs.interpolated_latency()))
    points = []
    for config, interpolated in drawn:
        space.select(config)
        values = functor.costs.evaluate(keys=["flops", "latency"], measure_latency=True)
        measured = values["latency"]
        points.append(
            {
                "flops": values["flops"],
                "interpolated": interpolated,
                "measured": measured,
                "relative error": (interpolated - measured) / measured if measured else math.nan,
            }
        )
    errors = [abs(point["relative error"]) for point in points if not math.isnan(point["relative error"])]
    return {
        "points": points,
        "median abs error": statistics.median(errors) if errors else math.nan,
        "max abs error": max(errors) if errors else math.nan,
    }


def _measure(functor: ModelConstraints, use_centroid: bool, check_points: int) -> tuple[dict[str, Any], bool]:
    """The stats of every sample point (and the interpolation check); the model's active subnet is restored afterwards."""
    from autonas_dynamic import DepthHparam, is_dynamic

    model = functor.model
    if not (is_dynamic(model) and model_space(model).is_configurable()):
        return {"full": functor.costs.evaluate(measure_latency=True)}, False
    space = model_space(model)
    hparams = [hp for _, hp in space.named_hparams(configurable=True)]
    previous = [hp.active for hp in hparams]
    has_depth = any(isinstance(hp, DepthHparam) for hp in hparams)
    stats: dict[str, Any] = {}
    try:
        for name, func in _sample_points(has_depth).items():
            space.sample(func)
            stats[name] = functor.costs.evaluate(measure_latency=True)
        if check_points and "latency" in functor.names:
            stats[INTERPOLATION_CHECK] = check_interpolation(functor, check_points)
        if not use_centroid:
            stats["centroid"] = _random_centroid(functor)
    finally:
        for hp, value in zip(hparams, previous, strict=True):
            hp.active = value
    stats["max/min ratio"] = {
        key: stats["max"][key] / stats["min"][key] if stats["min"][key] else math.inf for key in functor.names
    }
    stats["number of configurable hparams"] = len(hparams)
    stats["search space size"] = space.size()
    return stats, True


def _satisfiability(functor: ModelConstraints, stats: Mapping[str, Any]) -> dict[str, bool]:
    """Per effective limit: some printed subnet reaches the lower bound and some stays under the upper."""
    printed = [stats[name] for name in _PRINTED_POINTS if name in stats]
    return {
        key: any(point[key] >= lower for point in printed) and any(point[key] <= upper for point in printed)
        for key, (lower, upper) in functor.effective_limits.items()
    }


def _print_tables(functor: ModelConstraints, stats: Mapping[str, Any], satisfiable: Mapping[str, bool]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    points = [name for name in _PRINTED_POINTS if name in stats]
    title = "Profiling Results"
    if "latency" in functor.names:
        runtime = functor.costs.deployment.describe() if functor.costs.deployment else "latency_func"
        title += f" (latency in ms, {runtime})"
    results = Table(title=title)
    for column in ("Constraint", *points, *(["max/min ratio"] if "max/min ratio" in stats else [])):
        results.add_column(column)
    for key in functor.names:
        row = [num2hrb(stats[point][key]) for point in points]
        if "max/min ratio" in stats:
            row.append(f"{stats['max/min ratio'][key]:.2f}")
        results.add_row(key, *row)
    console.print(results)
    if INTERPOLATION_CHECK in stats:
        _print_interpolation_check(console, stats[INTERPOLATION_CHECK])
    if satisfiable:
        evaluation = Table(title="Constraints Evaluation")
        for column in ("Constraint", "Upper Bound", "Satisfiable Upper Bound"):
            evaluation.add_column(column)
        for key, ok in satisfiable.items():
            evaluation.add_row(key, num2hrb(functor.effective_limits[key][1]), str(ok))
        console.print(evaluation)
    if "search space size" in stats:
        console.print(f"Number of configurable hparams: {stats['number of configurable hparams']}")
        console.print(f"Total size of the search space: {stats['search space size']:.2e}")


def _print_interpolation_check(console: Any, check: Mapping[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="Latency interpolation check (random subnets)")
    for column in ("subnet", "flops", "interpolated (ms)", "measured (ms)", "error"):
        table.add_column(column)
    for index, point in enumerate(check["points"]):
        error = point["relative error"]
        table.add_row(
            str(index),
            num2hrb(point["flops"]),
            f"{point['interpolated']:.3f}",
            f"{point['measured']:.3f}",
            "outside measured range" if math.isnan(error) else f"{100 * error:+.1f}%",
        )
    console.print(table)
    console.print(
        f"Latency interpolation error: median {100 * check['median abs error']:.1f}%, "
        f"max {100 * check['max abs error']:.1f}% (relative to the measured latency)"
    )


def profile_constraints(
    functor: ModelConstraints,
    strict: bool = False,
    verbose: bool = True,
    use_centroid: bool = False,
    check_points: int = 0,
) -> tuple[bool, dict[str, Any]]:
    """Profile ``functor.model`` against the limits of ``functor``; see :func:`profile`.

    The sample points are measured exactly; the random subnets of the default centroid are
    interpolated, as any later candidate is.

    Returns:
        ``(all limits satisfiable, stats)``.
    """
    with torch.no_grad():
        stats, converted = _measure(functor, use_centroid, check_points)
    satisfiable = _satisfiability(functor, stats)
    if verbose:
        _print_tables(functor, stats, satisfiable)
    failed = sorted(key for key, ok in satisfiable.items() if not ok)
    if failed:
        details = "; ".join(
            f"{key}: limit {functor.effective_limits[key]}, subnets range "
            f"{num2hrb(min(stats[p][key] for p in stats if p in _PRINTED_POINTS))}"
            f"-{num2hrb(max(stats[p][key] for p in stats if p in _PRINTED_POINTS))}"
            for key in failed
        )
        message = f"No subnet of the search space can satisfy these constraints: {details}."
        if converted and strict:
            raise ValueError(message)
        warnings.warn(message, stacklevel=3)
    elif satisfiable and verbose:
        print("Note: all constraints can be satisfied within the search space!")
    return not failed, stats


def profile(
    model: nn.Module,
    dummy_input: Any = None,
    constraints: Mapping[str, Any] | ModelConstraints | None = None,
    deployment: Mapping[str, Any] | None = None,
    strict: bool = False,
    verbose: bool = True,
    use_centroid: bool = False,
    latency_func: Callable[[nn.Module, Any], float] | None = None,
    check_points: int = 3,
) -> dict[str, Any]:
    """Measure FLOPs, params (and latency) of the min / centroid / max subnets.

    Latency is profiled when it is constrained, or when a ``deployment`` or ``latency_func`` says
    how to measure it: then the sample subnets are timed in that runtime, and ``check_points``
    random subnets more, each compared with the latency interpolated before it was measured (the
    "Latency interpolation check" table), so the table shows how far the interpolation that a
    search relies on can be trusted for this model and runtime.

    Args:
        model: A converted model (or a plain one: then only the ``"full"`` model is measured).
        dummy_input: Input for the recorded forward (not needed when ``constraints`` is a
            :class:`ModelConstraints`, which has its own).
        constraints: Limits to check (see :class:`ModelConstraints`), or a built functor.
        deployment: The runtime in which latency is measured, as in :class:`ModelConstraints`,
            e.g. ``{"runtime": "onnxruntime", "threads": 2}``.
        strict: Raise ``ValueError`` when a limit cannot be met by any profiled subnet (else warn).
        verbose: Print the "Profiling Results" and "Constraints Evaluation" tables.
        use_centroid: Report the centroid subnet; by default "centroid" is the median of each cost
            over 30 random subnets (seed 1024).
        latency_func: Latency measurement override, as in :class:`ModelConstraints`.
        check_points: Random subnets (seed 2048) at which to check the latency interpolation.

    Returns:
        ``{point: {constraint: value}}`` for each profiled subnet (``min``, ``centroid``, ``max``,
        plus the mixed depth points for depth-searchable models; ``full`` for a plain model), and
        for converted models ``"max/min ratio"``, ``"number of configurable hparams"`` and
        ``"search space size"``; with latency, ``"latency interpolation"`` (see
        :func:`check_interpolation`).
    """
    model = unwrap_model(model)
    if check_points < 0:
        raise ValueError(f"check_points must be >= 0, got {check_points}.")
    if isinstance(constraints, ModelConstraints):
        if dummy_input is not None or latency_func is not None or deployment is not None:
            raise ValueError(
                "Pass dummy_input/latency_func/deployment when building the ModelConstraints, not to profile()."
            )
        if constraints.model is not model:
            raise ValueError("The given ModelConstraints belong to another model.")
        functor = constraints
    else:
        constraints = dict(constraints or {})
        if deployment is not None or latency_func is not None:
            constraints.setdefault("latency", None)
        functor = ModelConstraints(model, constraints, dummy_input, latency_func=latency_func, deployment=deployment)
    return profile_constraints(
        functor, strict=strict, verbose=verbose, use_centroid=use_centroid, check_points=check_points
    )[1]
