"""The candidate plot (Pareto front) and the comparison table of the demo."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from autonas.demo.plot import pareto_front, plot_candidates
from autonas.demo.report import ModelReport, comparison_table, print_comparison


def test_pareto_front_keeps_only_undominated_points_by_increasing_cost() -> None:
    costs = [5, 1, 3, 3, 4, 2, 6, 1]
    scores = [0.9, 0.5, 0.8, 0.7, 0.6, 0.5, 0.95, 0.4]
    # index 5 (cost 2, 0.5) ties index 1 on score at a higher cost: dominated
    assert pareto_front(costs, scores) == [1, 2, 0, 6]


def test_pareto_front_of_equal_points_keeps_the_first() -> None:
    assert pareto_front([2, 2, 2], [0.5, 0.5, 0.5]) == [0]
    assert pareto_front([], []) == []


def test_pareto_front_matches_brute_force_domination() -> None:
    import random

    rng = random.Random(0)
    costs = [rng.randint(0, 20) for _ in range(200)]
    scores = [rng.randint(0, 20) / 20 for _ in range(200)]
    front = set(pareto_front(costs, scores))
    for i in range(200):
        dominated = any(
            costs[j] <= costs[i] and scores[j] >= scores[i] and (costs[j], scores[j]) != (costs[i], scores[i])
            for j in range(200)
        )
        duplicate_of_earlier = any((costs[j], scores[j]) == (costs[i], scores[i]) for j in range(i))
        assert (i in front) == (not dominated and not duplicate_of_earlier), i


def test_pareto_front_rejects_unequal_lengths() -> None:
    with pytest.raises(ValueError, match="3 != 2"):
        pareto_front([1, 2, 3], [0.1, 0.2])


def test_plot_writes_a_png(tmp_path) -> None:
    path = plot_candidates(
        [2e6, 3e6, 4e6],
        [0.8, 0.9, 0.85],
        tmp_path / "plots" / "candidates.png",
        flops_limit=4.5e6,
        chosen=(3e6, 0.9),
        original=(9e6, 0.95),
    )
    data = path.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (840, 540)  # 7 x 4.5 inches at 120 dpi


def _report(name: str, scale: float) -> ModelReport:
    return ModelReport(name, 0.97 * scale, 0.96 * scale, int(8e6 * scale), int(2e5 * scale), 0.4 * scale)


def test_table_shows_every_model_with_costs_relative_to_the_first() -> None:
    out = io.StringIO()
    print_comparison([_report("original", 1.0), _report("found", 0.5)], Console(file=out, width=200))
    text = out.getvalue()
    rows = {line.split()[1]: line for line in text.splitlines() if line.startswith("│")}
    original_row, found_row = rows["original"], rows["found"]
    assert "97.0%" in original_row and "8.00 (100%)" in original_row and "200.0K (100%)" in original_row
    assert "48.5%" in found_row and "4.00 (50%)" in found_row and "100.0K (50%)" in found_row
    assert "0.200 (50%)" in found_row


def test_table_needs_a_model() -> None:
    with pytest.raises(ValueError, match="at least one"):
        comparison_table([])
