"""Pareto fronts of (metric up, costs down)."""

from __future__ import annotations

import functools
import itertools

import pytest
from search_problem import CHOICES, MAX_FLOPS, flops, params, score

from autonas_search import ChoiceSpace, EvolveSearcher, RandomSearcher, hypervolume, pareto_front, pareto_order

LIMIT = 0.6 * MAX_FLOPS


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


def test_pareto_order_ranks_by_front_then_by_crowding() -> None:
    candidates = [
        candidate("a", 90, 200, 0),  # front 1: a, b, c, d (a and d are its extremes)
        candidate("b", 85, 150, 0),
        candidate("c", 62, 60, 0),  # more crowded than b: close to d
        candidate("d", 60, 50, 0),
        candidate("e", 84, 160, 0),  # front 2: e (dominated by b only), f
        candidate("f", 59, 55, 0),
        candidate("g", 58, 60, 0),  # front 3
    ]
    assert names(pareto_order(candidates, ["flops"])) == ["a", "d", "b", "c", "e", "f", "g"]
    assert names(pareto_order(candidates, [])) == ["a", "b", "e", "c", "d", "f", "g"]  # by metric alone


def test_hypervolume_of_a_hand_made_front() -> None:
    # (cost, metric) points with reference (10, 0): rectangles [1, 10] x 3 and [4, 10] x (5 - 3)
    assert hypervolume([(1, 3), (4, 5), (6, 4), (12, 9)], (10, 0)) == 9 * 3 + 6 * 2
    assert hypervolume([], (10, 0)) == 0.0
    assert hypervolume([(1, -1)], (10, 0)) == 0.0  # below the reference metric


@functools.cache
def exact_front() -> tuple[tuple[float, float], ...]:
    """(flops, score) of every config within LIMIT that no other beats, by enumerating the space."""
    hparams = ChoiceSpace(CHOICES).hparams()
    feasible = []
    for values in itertools.product(*hparams.values()):
        config = {**dict(zip(hparams, values, strict=True)), "act": "relu"}
        if flops(config) <= LIMIT:
            feasible.append({"metric": score(config), "constraints": {"flops": flops(config)}})
    return tuple((c["constraints"]["flops"], c["metric"]) for c in pareto_front(feasible, ["flops"]))


def front_quality(searcher: RandomSearcher | EvolveSearcher) -> float:
    """Hypervolume of the searcher's front relative to the exact front's (1 is exact)."""
    exact = exact_front()
    reference = (LIMIT, min(metric for _, metric in exact))
    found = [(c["constraints"]["flops"], c["metric"]) for c in searcher.pareto_front()]
    return hypervolume(found, reference) / hypervolume(exact, reference)


def search_front(searcher_cls: type, num_iters: int, seed: int, **config: object) -> RandomSearcher | EvolveSearcher:
    searcher = searcher_cls()
    searcher.search(
        ChoiceSpace(CHOICES),
        {"flops": (flops, LIMIT)},
        {"score_func": score, "num_iters": num_iters, "seed": seed, **config},
    )
    return searcher


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pareto_search_finds_the_front_that_single_objective_search_leaves(seed: int) -> None:
    pareto = search_front(EvolveSearcher, 300, seed, pareto=True)
    assert pareto.constraints_func.limits["flops"] == (0.0, LIMIT)  # no relative lower bound unless given
    assert front_quality(pareto) > 0.98
    assert front_quality(pareto) > front_quality(search_front(RandomSearcher, 300, seed))
    single = search_front(EvolveSearcher, 300, seed)  # looks only within 85-100 % of the limit
    assert front_quality(single) < 0.5
    assert pareto.best["metric"] == pareto.pareto_front()[0]["metric"] == max(pareto.history["metric"])


def test_pareto_parents_are_the_best_trade_offs_and_an_explicit_band_still_applies() -> None:
    picks: list[tuple[list[dict], list[dict]]] = []

    class Recording(EvolveSearcher):
        def before_step(self) -> None:
            full = len(self.population) >= self.population_size
            pool = self.population + self.candidates
            super().before_step()
            if full:
                picks.append((pool, self.candidates))

    searcher = search_front(Recording, 300, 0, pareto=True, rel_lower_bound=0.5)
    assert searcher.constraints_func.limits["flops"] == (0.5 * LIMIT, LIMIT)
    assert len(picks) >= 5
    for pool, parents in picks:
        assert parents == pareto_order(pool, ["flops"])[: searcher.candidate_size]
