"""Profiling a search space: costs of its smallest, typical and largest subnets, and whether limits fit."""

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

__all__ = ["num2hrb", "profile"]

_PRINTED_POINTS = ("min", "centroid", "max", "full")
_RANDOM_CENTROID_SAMPLES = 30
_RANDOM_CENTROID_SEED = 1024


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
        samples.append(functor.evaluate())
    return {key: statistics.median(sample[key] for sample in samples) for key in functor.keys}


def _measure(functor: ModelConstraints, use_centroid: bool) -> tuple[dict[str, Any], bool]:
    """The stats of every sample point; the model's active subnet is restored afterwards."""
    from autonas_dynamic import is_dynamic

    model = functor.model
    if not (is_dynamic(model) and model_space(model).is_configurable()):
        return {"full": functor.evaluate(exact=True)}, False
    space = model_space(model)
    hparams = [hp for _, hp in space.named_hparams(configurable=True)]
    previous = [hp.active for hp in hparams]
    has_depth = any(name.endswith("depth") for name, _ in space.named_hparams(configurable=True))
    stats: dict[str, Any] = {}
    try:
        for name, func in _sample_points(has_depth).items():
            space.sample(func)
            stats[name] = functor.evaluate(exact=True)
        if not use_centroid:
            stats["centroid"] = _random_centroid(functor)
    finally:
        for hp, value in zip(hparams, previous, strict=True):
            hp.active = value
    stats["max/min ratio"] = {
        key: stats["max"][key] / stats["min"][key] if stats["min"][key] else math.inf for key in functor.keys
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
    results = Table(title="Profiling Results")
    for column in ("Constraint", *points, *(["max/min ratio"] if "max/min ratio" in stats else [])):
        results.add_column(column)
    for key in functor.keys:
        row = [num2hrb(stats[point][key]) for point in points]
        if "max/min ratio" in stats:
            row.append(f"{stats['max/min ratio'][key]:.2f}")
        results.add_row(key, *row)
    console.print(results)
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


def profile_constraints(
    functor: ModelConstraints, strict: bool = False, verbose: bool = True, use_centroid: bool = False
) -> tuple[bool, dict[str, Any]]:
    """Profile ``functor.model`` against the limits of ``functor``; see :func:`profile`.

    Returns:
        ``(all limits satisfiable, stats)``.
    """
    functor.collect_mode = True
    try:
        with torch.no_grad():
            stats, converted = _measure(functor, use_centroid)
    finally:
        functor.collect_mode = False
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
    strict: bool = False,
    verbose: bool = True,
    use_centroid: bool = False,
    latency_func: Callable[[nn.Module, Any], float] | None = None,
) -> dict[str, Any]:
    """Measure FLOPs, params (and latency, if constrained) of the min / centroid / max subnets.

    Args:
        model: A converted model (or a plain one: then only the ``"full"`` model is measured).
        dummy_input: Input for the recorded forward (not needed when ``constraints`` is a
            :class:`ModelConstraints`, which has its own).
        constraints: Limits to check (see :class:`ModelConstraints`), or a built functor.
        strict: Raise ``ValueError`` when a limit cannot be met by any profiled subnet (else warn).
        verbose: Print the "Profiling Results" and "Constraints Evaluation" tables.
        use_centroid: Report the centroid subnet; by default "centroid" is the median of each cost
            over 30 random subnets (seed 1024).
        latency_func: Latency measurement override, as in :class:`ModelConstraints`.

    Returns:
        ``{point: {constraint: value}}`` for each profiled subnet (``min``, ``centroid``, ``max``,
        plus the mixed depth points for depth-searchable models; ``full`` for a plain model), and
        for converted models ``"max/min ratio"``, ``"number of configurable hparams"`` and
        ``"search space size"``.
    """
    model = unwrap_model(model)
    if isinstance(constraints, ModelConstraints):
        if dummy_input is not None or latency_func is not None:
            raise ValueError("Pass dummy_input/latency_func when building the ModelConstraints, not to profile().")
        if constraints.model is not model:
            raise ValueError("The given ModelConstraints belong to another model.")
        functor = constraints
    else:
        functor = ModelConstraints(model, constraints or {}, dummy_input, latency_func=latency_func)
    return profile_constraints(functor, strict=strict, verbose=verbose, use_centroid=use_centroid)[1]
