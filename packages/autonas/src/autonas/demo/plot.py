"""The plot of searched candidates: score against FLOPs, with the Pareto front marked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt


def pareto_front(costs: Sequence[float], scores: Sequence[float]) -> list[int]:
    """Indices of the points no other point dominates (cost as low, score as high, one strictly better).

    Sorted by increasing cost. Among points with equal cost and score only the first is kept.
    """
    if len(costs) != len(scores):
        raise ValueError(f"costs and scores differ in length: {len(costs)} != {len(scores)}")
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -scores[i], i))
    front: list[int] = []
    best_score = float("-inf")
    for i in order:
        if scores[i] > best_score:
            front.append(i)
            best_score = scores[i]
    return front


def plot_candidates(
    flops: Sequence[float],
    scores: Sequence[float],
    path: str | Path,
    *,
    flops_limit: float | None = None,
    chosen: tuple[float, float] | None = None,
    original: tuple[float, float] | None = None,
) -> Path:
    """Write a PNG scatter plot of the candidates (MFLOPs on x, validation accuracy on y).

    Args:
        flops: FLOPs of each scored candidate.
        scores: score of each candidate.
        path: the PNG file to write.
        flops_limit: drawn as a vertical line when given.
        chosen: ``(flops, score)`` of the subnet the search returned, highlighted.
        original: ``(flops, score)`` of the full model, for reference.
    """
    path = Path(path)
    mega = [f / 1e6 for f in flops]
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter(mega, scores, s=14, alpha=0.45, color="tab:blue", label=f"candidates ({len(mega)})")
    front = pareto_front(mega, scores)
    ax.plot(
        [mega[i] for i in front],
        [scores[i] for i in front],
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
    ax.set_xlabel("MFLOPs per image")
    ax.set_ylabel("validation accuracy")
    ax.set_title("Searched subnets")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
