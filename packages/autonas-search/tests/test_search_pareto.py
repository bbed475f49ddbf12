"""Pareto fronts of (metric up, costs down)."""

from __future__ import annotations

import pytest
from search_problem import CHOICES, MAX_FLOPS, flops, params, score

from autonas_search import ChoiceSpace, RandomSearcher, pareto_front


def candidate(name: str, metric: float, flops_value: float, params_value: float) -> dict:
    return {"config": {"name": name}, "metric": metric, "constraints": {"flops": flops_value, "params": params_value}}


def names(front: list[dict]) -> list[str]:
    return [c["config"]["name"] for c in front]


def test_hand_made_front_over_one_cost() -> None:
    candidates = [
        candidate("a", 70, 100, 9),  # dominated by b (cheaper, better)
        candidate("b", 75, 90, 9),
        candidate("c", 80, 120, 9),
        candidate("d", 80, 130, 9),  # dominated by c (same metric, dearer)
        candidate("e", 60, 50, 9),
        candidate("f", 60, 50, 9),  # equal to e: neither dominates, both kept
        candidate("g", 90, 200, 9),
        candidate("h", 55, 60, 9),  # dominated by e
    ]
    assert names(pareto_front(candidates, ["flops"])) == ["g", "c", "b", "e", "f"]


def test_hand_made_front_over_two_costs() -> None:
    candidates = [
        candidate("a", 80, 100, 10),
        candidate("b", 80, 90, 20),  # trades flops for params: kept
        candidate("c", 80, 100, 20),  # dominated by a and b
        candidate("d", 70, 50, 30),
        candidate("e", 70, 60, 30),  # dominated by d
        candidate("f", 85, 150, 40),
    ]
    assert names(pareto_front(candidates, ["flops", "params"])) == ["f", "b", "a", "d"]
    assert names(pareto_front(candidates, [])) == ["f"]


def dominates(a: dict, b: dict, costs: list[str]) -> bool:
    no_worse = a["metric"] >= b["metric"] and all(a["constraints"][n] <= b["constraints"][n] for n in costs)
    better = a["metric"] > b["metric"] or any(a["constraints"][n] < b["constraints"][n] for n in costs)
    return no_worse and better


@pytest.mark.parametrize("limits", [{"flops": 0.6 * MAX_FLOPS}, {"flops": 0.6 * MAX_FLOPS, "params": 30000}])
def test_searcher_front_is_exactly_the_non_dominated_satisfied_candidates(limits: dict) -> None:
    searcher = RandomSearcher()
    constraints = {"flops": (flops, limits["flops"]), "params": (params, limits.get("params"))}
    searcher.search(ChoiceSpace(CHOICES), constraints, {"score_func": score, "num_iters": 400})
    costs = list(limits)
    satisfied = [c for c in searcher.samples.values() if c["is_satisfied"]]
    front = searcher.pareto_front()
    expected = [c for c in satisfied if not any(dominates(o, c, costs) for o in satisfied)]
    assert sorted(map(id, front)) == sorted(map(id, expected))
    assert front[0]["metric"] == searcher.best["metric"]
    assert [c["metric"] for c in front] == sorted((c["metric"] for c in front), reverse=True)
    assert 1 < len(front) < len(satisfied)
