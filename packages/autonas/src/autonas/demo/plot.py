"""The plot of searched candidates: score against FLOPs, with the Pareto front marked."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import matplotlib

from autonas_search import pareto_front
from autonas_search.files import atomic_write

matplotlib.use("Agg")

import matplotlib.pyplot as plt


def plot_candidates(
    candidates: Iterable[Mapping[str, Any]],
    path: str | Path,
    *,
    flops_limit: float | None = None,
    chosen: tuple[float, float] | None = None,
    original: tuple[float, float] | None = None,
) -> Path:
    """Write a PNG scatter plot of scored candidates (MFLOPs on x, score on y), Pareto front in red.

    Args:
        candidates: search candidates, each with a ``"metric"`` (the score) and ``"constraints"``
            holding its ``"flops"``; the front is the candidates no other has at least the score for
            at most the FLOPs (``autonas_search.pareto_front``).
        path: the PNG file to write, atomically (parent folders are created).
        flops_limit: drawn as a vertical line when given.
        chosen: ``(flops, score)`` of the subnet the search returned, highlighted.
        original: ``(flops, score)`` of the full model, for reference.
    """
    points = [dict(c) for c in candidates]
    front = sorted(pareto_front(points, ["flops"]), key=lambda c: c["constraints"]["flops"])
    path = Path(path)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter(
        [c["constraints"]["flops"] / 1e6 for c in points],
        [c["metric"] for c in points],
        s=14,
        alpha=0.45,
        color="tab:blue",
        label=f"candidates ({len(points)})",
    )
    ax.plot(
        [c["constraints"]["flops"] / 1e6 for c in front],
        [c["metric"] for c in front],
        "-o",
        color="tab:red",
        markersize=5,
        label=f"Pareto front ({len(front)})",
    )
    if flops_limit is not None:
        ax.axvline(flops_limit / 1e6, color="grey", linestyle="--", label="FLOPs limit")
    if original is not None:
        ax.scatter([original[0] / 1e6], [original[1]], marker="s", s=60, color="black", label="original", zorder=3)
    if chosen is not None:
        ax.scatter(
            [chosen[0] / 1e6],
            [chosen[1]],
            marker="*",
            s=180,
            color="gold",
            edgecolors="black",
            zorder=4,
            label="found subnet",
        )
    ax.set_xlabel("MFLOPs per signal")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Searched subnets")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_write(path, create_folder=True) as temporary:
        fig.savefig(temporary, format="png")
    plt.close(fig)
    return path
