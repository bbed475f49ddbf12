"""Random and evolutionary search: results, determinism, dedup, constraints and config errors."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from search_problem import CHOICES, MAX_FLOPS, flops, params, score

from autonas_search import (
    ChoiceSpace,
    ConstraintsFunc,
    EvolveSearcher,
    IterativeSearcher,
    NoSatisfiedCandidateError,
    RandomSearcher,
    config_hash,
)

SEARCHERS = [RandomSearcher, EvolveSearcher]
LIMIT = 0.5 * MAX_FLOPS


def run(searcher_cls: type[IterativeSearcher], **config: Any) -> tuple[IterativeSearcher, dict[str, Any]]:
    searcher = searcher_cls()
    constraints = {"flops": (flops, LIMIT), "params": (params, None)}
    best = searcher.search(ChoiceSpace(CHOICES), constraints, {"score_func": score, "num_iters": 300, **config})
    return searcher, best


def best_feasible(lower: float = 0.0) -> float:
    """The best score within [lower, LIMIT] FLOPs, by enumerating the whole space."""
    import itertools

    names = list(ChoiceSpace(CHOICES).hparams())
    best = -math.inf
    for values in itertools.product(*(CHOICES[n] for n in names)):
        config = {**dict(zip(names, values, strict=True)), "act": "relu"}
        if lower <= flops(config) <= LIMIT:
            best = max(best, score(config))
    return best


@pytest.mark.parametrize("searcher_cls", SEARCHERS)
def test_best_is_satisfied_and_near_the_optimum(searcher_cls: type[IterativeSearcher]) -> None:
    searcher, best = run(searcher_cls, num_iters=600)
    lower = 0.85 * LIMIT if searcher_cls is EvolveSearcher else 0.0
    assert lower <= flops(best["config"]) <= LIMIT
    assert best["constraints"] == {"flops": flops(best["config"]), "params": params(best["config"])}
    assert best["metric"] == score(best["config"]) and best["is_satisfied"] and best["is_best"]
    assert best["metric"] == max(searcher.history["metric"])
    assert best_feasible(lower) - best["metric"] < 1.0  # 1 accuracy point on a 2.4k-config space
    for candidate in searcher.best_history["candidates"]:
        assert candidate["is_satisfied"] and lower <= candidate["constraints"]["flops"] <= LIMIT
    assert all(lower <= value <= LIMIT for value in searcher.history["constraints"]["flops"])
    assert searcher.iter_num == 600


@pytest.mark.parametrize("searcher_cls", SEARCHERS)
def test_the_space_is_left_at_the_best_config(searcher_cls: type[IterativeSearcher]) -> None:
    space = ChoiceSpace(CHOICES)
    best = searcher_cls().search(space, {"flops": (flops, LIMIT)}, {"score_func": score, "num_iters": 50})
    assert space.config() == best["config"]


@pytest.mark.parametrize("searcher_cls", SEARCHERS)
def test_same_seed_same_search_other_seed_other_search(searcher_cls: type[IterativeSearcher]) -> None:
    first, _ = run(searcher_cls, seed=0)
    again, _ = run(searcher_cls, seed=0)
    other, _ = run(searcher_cls, seed=1)
    assert json.dumps(first.state_dict()) == json.dumps(again.state_dict())
    assert list(first.samples) != list(other.samples)


@pytest.mark.parametrize("searcher_cls", SEARCHERS)
def test_unseeded_search_draws_fresh_seeds(searcher_cls: type[IterativeSearcher]) -> None:
    first, _ = run(searcher_cls, seed=None, num_iters=100)
    second, _ = run(searcher_cls, seed=None, num_iters=100)
    assert list(first.samples) != list(second.samples)


@pytest.mark.parametrize("searcher_cls", SEARCHERS)
def test_each_config_is_evaluated_once(searcher_cls: type[IterativeSearcher]) -> None:
    small = {"a": [1, 2, 3], "b": [1, 2], "c": [1, 2, 3, 4]}  # 24 configs, 200 iterations
    scored: list[dict[str, Any]] = []
    costed: list[dict[str, Any]] = []

    def cost(config: dict[str, Any]) -> float:
        costed.append(config)
        return config["a"] * config["b"] * config["c"]

    def small_score(config: dict[str, Any]) -> float:
        scored.append(config)
        return config["a"] + config["b"] + config["c"]

    searcher = searcher_cls()
    searcher.search(ChoiceSpace(small), {"cost": (cost, 12)}, {"score_func": small_score, "num_iters": 200})
    if searcher_cls is EvolveSearcher:  # the band is clamped to the costs of the smallest and largest configs
        assert costed[:2] == [{"a": 1, "b": 1, "c": 1}, {"a": 3, "b": 2, "c": 4}]
        costed = costed[2:]
    assert len(costed) == len({config_hash(c) for c in costed}) == len(searcher.samples) <= 24
    satisfied = [c for c in searcher.samples.values() if c["is_satisfied"]]
    assert len(scored) == len({config_hash(c) for c in scored}) == len(satisfied) > 0
    assert len(searcher.history["metric"]) == len(satisfied)
    assert searcher.iter_num == 200


def test_evolve_counts_only_candidates_within_the_relative_band() -> None:
    user_func = ConstraintsFunc({"flops": (flops, LIMIT)})
    searcher = EvolveSearcher()
    searcher.search(ChoiceSpace(CHOICES), user_func, {"score_func": score, "num_iters": 400})
    assert searcher.constraints_func.limits["flops"] == (pytest.approx(0.85 * LIMIT), LIMIT)
    assert user_func.limits["flops"] == (0.0, LIMIT)  # the caller's functor is left alone
    for candidate in searcher.samples.values():
        assert candidate["is_satisfied"] == (0.85 * LIMIT <= candidate["constraints"]["flops"] <= LIMIT)
    assert any(c["constraints"]["flops"] < 0.85 * LIMIT for c in searcher.samples.values())
    assert all(c["is_satisfied"] for c in searcher.population)


@pytest.mark.parametrize("limit", [18, 1e12, "150%"])
def test_evolve_under_a_limit_above_the_largest_config_finds_the_best_large_config(limit: object) -> None:
    space = ChoiceSpace({"a": [1, 2, 3, 4], "b": [1, 2, 3, 4], "c": [1, 2, 3, 4]})  # largest cost 12
    searcher = EvolveSearcher()
    best = searcher.search(
        space,
        {"cost": (lambda c: c["a"] + c["b"] + c["c"], limit)},
        {"score_func": lambda c: c["a"] * c["b"] * c["c"], "num_iters": 100},
    )
    assert searcher.constraints_func.limits["cost"][0] == pytest.approx(0.85 * 12)  # not 0.85 * the limit
    assert best["config"] == {"a": 4, "b": 4, "c": 4} and best["metric"] == 64
    assert {config_hash(c["config"]) for c in searcher.population} <= {
        config_hash(c["config"]) for c in searcher.samples.values() if c["constraints"]["cost"] >= 11
    }


def test_evolve_keeps_explicit_lower_bounds_and_rel_lower_bound_zero_disables_the_band() -> None:
    searcher = EvolveSearcher()
    searcher.search(ChoiceSpace(CHOICES), {"flops": (flops, (100.0, LIMIT))}, {"score_func": score, "num_iters": 20})
    assert searcher.constraints_func.limits["flops"] == (100.0, LIMIT)
    searcher.search(
        ChoiceSpace(CHOICES), {"flops": (flops, LIMIT)}, {"score_func": score, "num_iters": 20, "rel_lower_bound": 0}
    )
    assert searcher.constraints_func.limits["flops"] == (0.0, LIMIT)


def test_evolve_settings_adapt_when_unset_and_mean_the_reference_when_given() -> None:
    searcher, _ = run(EvolveSearcher, num_iters=400)
    assert (searcher.population_size, searcher.candidate_size, searcher.adaptive) == (20, 5, True)
    assert searcher.mutation_prob == pytest.approx(1 / 8)
    searcher, _ = run(EvolveSearcher, num_iters=400, population_size=30, candidate_size=6, mutation_prob=0.1)
    assert (searcher.population_size, searcher.candidate_size, searcher.mutation_prob) == (30, 6, 0.1)
    assert not searcher.adaptive
    # parents are the best `candidate_size` of a full population of satisfied candidates
    assert len(searcher.candidates) == 6
    metrics = [c["metric"] for c in searcher.candidates]
    assert metrics == sorted(metrics, reverse=True)


@pytest.mark.parametrize("settings", [{}, {"population_size": 12, "candidate_size": 3, "mutation_prob": 0.1}])
def test_parents_come_from_the_full_population(settings: dict[str, Any]) -> None:
    generations: list[tuple[list[float], list[float], list[float]]] = []

    class Recording(EvolveSearcher):
        def before_step(self) -> None:
            full = len(self.population) >= self.population_size
            population = [c["metric"] for c in self.population]
            previous = [c["metric"] for c in self.candidates]
            super().before_step()
            if full:
                generations.append((population, previous, [c["metric"] for c in self.candidates]))

    searcher = Recording()
    searcher.search(
        ChoiceSpace(CHOICES), {"flops": (flops, LIMIT)}, {"score_func": score, "num_iters": 1000, **settings}
    )
    assert len(generations) >= 3
    for population, previous, parents in generations:
        pool = population + previous if searcher.adaptive else population  # adaptive: elitist
        assert parents == sorted(pool, reverse=True)[: searcher.candidate_size]
    if searcher.adaptive:
        best_parent = [parents[0] for _, _, parents in generations]
        assert best_parent == sorted(best_parent)


def test_evolution_beats_random_search_on_average() -> None:
    regret = {}
    for searcher_cls in SEARCHERS:
        found = [run(searcher_cls, seed=seed, num_iters=300)[1]["metric"] for seed in range(8)]
        regret[searcher_cls] = best_feasible() - sum(found) / len(found)
    assert regret[EvolveSearcher] < regret[RandomSearcher]


@pytest.mark.parametrize("searcher_cls", SEARCHERS)
def test_no_satisfied_candidate_reports_the_closest_and_the_limits(searcher_cls: type[IterativeSearcher]) -> None:
    searcher = searcher_cls()
    with pytest.raises(NoSatisfiedCandidateError) as info:
        searcher.search(ChoiceSpace(CHOICES), {"flops": (flops, 1000)}, {"score_func": score, "num_iters": 50})
    error = info.value
    closest = min(searcher.samples.values(), key=lambda c: c["constraints"]["flops"])
    assert error.closest == closest
    assert error.limits == searcher.constraints_func.effective_limits
    assert "flops in [" in str(error) and f"flops={closest['constraints']['flops']:g}" in str(error)
    assert str(closest["config"]) in str(error)
    smallest = flops({name: values[0] for name, values in CHOICES.items()})
    assert smallest > 1000 and error.ranges == {"flops": (smallest, MAX_FLOPS)}
    assert f"The space reaches flops from {smallest:g} to {MAX_FLOPS:g}" in str(error)
    assert "No config can meet the limits of ['flops']: set them within the space's range." in str(error)
    assert "Loosen the limits" not in str(error)
    assert searcher.best == {"metric": -math.inf, "constraints": None}


def test_no_satisfied_candidate_within_reach_suggests_a_longer_search() -> None:
    band = (MAX_FLOPS - 1, MAX_FLOPS - 0.5)  # within the range, but no config lands in it
    with pytest.raises(NoSatisfiedCandidateError) as info:
        RandomSearcher().search(ChoiceSpace(CHOICES), {"flops": (flops, band)}, {"score_func": score, "num_iters": 20})
    assert "The space reaches flops from" in str(info.value)
    assert "Loosen the limits, or search longer" in str(info.value)


def test_a_space_without_choices_runs_one_iteration() -> None:
    searcher = RandomSearcher()
    with pytest.warns(UserWarning, match="no configurable hparam"):
        best = searcher.search(ChoiceSpace({"a": [1]}), {"cost": (lambda c: 1.0, 2)}, {"score_func": lambda c: 0.5})
    assert best["config"] == {"a": 1} and searcher.iter_num == 1


def test_constraints_and_score_see_the_selected_candidate() -> None:
    """A model-bound space: the functions read the space's state, not the config they are handed."""

    class StatefulSpace(ChoiceSpace):
        def current_flops(self) -> float:
            return flops(self._config)

    space = StatefulSpace(CHOICES)
    seen = []

    def state_score(config: dict[str, Any]) -> float:
        seen.append(space.config() == config)
        return score(space.config())

    searcher = EvolveSearcher()
    best = searcher.search(
        space, {"flops": (lambda config: space.current_flops(), LIMIT)}, {"score_func": state_score, "num_iters": 200}
    )
    assert all(seen) and seen
    assert best["constraints"]["flops"] == flops(best["config"])
    assert all(c["constraints"]["flops"] == flops(c["config"]) for c in searcher.samples.values())


def test_verbose_shows_progress_and_leaves_history_alone(capsys: pytest.CaptureFixture[str]) -> None:
    quiet, _ = run(EvolveSearcher, num_iters=250)
    assert capsys.readouterr().err == ""
    loud, _ = run(EvolveSearcher, num_iters=250, verbose=True)
    captured = capsys.readouterr()
    assert "search: 100%" in captured.err and "250/250" in captured.err and "satisfied=" in captured.err
    assert "best: metric=" in captured.out
    assert loud.history == quiet.history and loud.best == quiet.best


@pytest.mark.parametrize("num_iters", [249, 251])
def test_progress_bar_ends_with_the_true_counts(num_iters: int, capsys: pytest.CaptureFixture[str]) -> None:
    searcher, best = run(EvolveSearcher, num_iters=num_iters, verbose=True)
    final = capsys.readouterr().err.split("\r")[-1]
    assert f"{num_iters}/{num_iters}" in final
    assert f"satisfied={searcher.num_satisfied}" in final and searcher.num_satisfied > 0
    assert f"best={best['metric']:.6g}" in final


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"num_iter": 5}, r"unknown search config key\(s\) \['num_iter'\] for RandomSearcher; accepted keys: \["),
        ({"score_func": None}, "Please provide `score_func`"),
        ({"num_iters": 0}, "'num_iters' must be an integer >= 1, got 0"),
        ({"num_iters": True}, "'num_iters' must be an integer >= 1, got True"),
        ({"num_iters": "10"}, "'num_iters' must be an integer >= 1, got '10'"),
        ({"seed": -1}, "'seed' must be an integer >= 0 or None, got -1"),
        ({"seed": 1.5}, "'seed' must be an integer >= 0 or None"),
        ({"verbose": "yes"}, "'verbose' must be True or False"),
        ({"strict_checkpoint": 1}, "'strict_checkpoint' must be True or False"),
        ({"executor": object()}, "'executor' must be a concurrent.futures.Executor"),
        ({"score_func": 3}, "'score_func' must be a function"),
        ({"checkpoint": 5}, "'checkpoint' must be a file or directory path"),
    ],
)
def test_bad_search_config_is_named(config: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        RandomSearcher().search(ChoiceSpace(CHOICES), {"flops": (flops, LIMIT)}, {"score_func": score, **config})


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"population_size": 1}, "'population_size' must be an integer >= 2 or None, got 1"),
        ({"candidate_size": 1}, "'candidate_size' must be an integer >= 2 or None, got 1"),
        (
            {"population_size": 10, "candidate_size": 11},
            r"'candidate_size' \(11\) must not exceed 'population_size' \(10\)",
        ),
        ({"mutation_prob": 1.5}, r"'mutation_prob' must be a number in \[0, 1\] or None, got 1.5"),
        ({"rel_lower_bound": -0.1}, r"'rel_lower_bound' must be a number in \[0, 1\] or None, got -0.1"),
        ({"pareto": "yes"}, "'pareto' must be True or False, got 'yes'"),
    ],
)
def test_bad_evolve_config_is_named(config: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        EvolveSearcher().search(ChoiceSpace(CHOICES), {"flops": (flops, LIMIT)}, {"score_func": score, **config})


def test_unknown_key_error_lists_every_accepted_key() -> None:
    with pytest.raises(ValueError) as info:
        EvolveSearcher().search(
            ChoiceSpace(CHOICES), {"flops": (flops, LIMIT)}, {"score_func": score, "data_loader": []}
        )
    for key in EvolveSearcher().default_search_config:
        assert repr(key) in str(info.value)


@pytest.mark.parametrize(
    ("returned", "error", "match"),
    [
        (None, TypeError, "score_func returned None for candidate {config}; it must return a number"),
        ("0.9", TypeError, "score_func returned '0.9' for candidate {config}; it must return a number"),
        ([0.9], TypeError, r"score_func returned \[0.9\] for candidate {config}; it must return a number"),
        (math.nan, ValueError, "score_func returned nan for candidate {config}; NaN cannot be ranked"),
    ],
)
def test_bad_scores_name_score_func_the_candidate_and_the_value(returned: Any, error: type, match: str) -> None:
    seen: list[dict[str, Any]] = []

    def bad_score(config: dict[str, Any]) -> Any:
        seen.append(config)
        return returned

    with pytest.raises(error) as info:
        RandomSearcher().search(ChoiceSpace(CHOICES), {"flops": (flops, None)}, {"score_func": bad_score})
    assert len(seen) == 1
    assert re.match(match.format(config=re.escape(str(seen[0]))), str(info.value))


def test_scores_that_float_reads_without_parsing_text_are_accepted() -> None:
    class Accuracy:  # e.g. a numpy scalar or a one-element tensor
        def __init__(self, value: float) -> None:
            self.value = value

        def __float__(self) -> float:
            return self.value

    best = RandomSearcher().search(
        ChoiceSpace(CHOICES), {"flops": (flops, LIMIT)}, {"score_func": lambda c: Accuracy(score(c)), "num_iters": 50}
    )
    assert best["metric"] == score(best["config"]) and isinstance(best["metric"], float)


def test_other_bad_input_is_named() -> None:
    with pytest.raises(TypeError, match="search config must be a dict"):
        RandomSearcher().search(ChoiceSpace(CHOICES), {"flops": (flops, LIMIT)}, [("score_func", score)])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"dict is not a search space: it lacks hparams\(\), config\(\), select\(\)"):
        RandomSearcher().search({"a": [1, 2]}, {"flops": (flops, LIMIT)}, {"score_func": score})  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"config values must be JSON-serialisable.*'a'=<object object"):
        RandomSearcher().search(
            ChoiceSpace({"a": [object(), object()]}), {"c": (lambda c: 0, None)}, {"score_func": lambda c: 1}
        )
    with pytest.raises(TypeError, match=r"constraint 'flops' must be a \(cost_function, limit\) tuple"):
        RandomSearcher().search(ChoiceSpace(CHOICES), {"flops": LIMIT}, {"score_func": score})  # type: ignore[dict-item]


def test_adaptive_evolution_spends_its_iterations_within_the_limits() -> None:
    """Children are screened against the limits; the reference scheme spends iterations outside them."""
    adaptive, _ = run(EvolveSearcher, num_iters=300)
    assert all(c["is_satisfied"] for c in list(adaptive.samples.values())[: adaptive.population_size])
    reference, _ = run(EvolveSearcher, num_iters=300, population_size=20, candidate_size=5)
    first = list(reference.samples.values())[:20]
    assert sum(c["is_satisfied"] for c in first) < 5  # 8 % of the space lies within the band
    assert adaptive.num_satisfied > 2 * reference.num_satisfied


def test_screening_computes_constraints_once_per_config_and_scores_only_evaluated_ones() -> None:
    searcher = EvolveSearcher()
    costed: list[str] = []
    scored: list[str] = []

    def counting_flops(config: dict[str, Any]) -> float:
        costed.append(searcher.config_key(config))
        return flops(config)

    def counting_score(config: dict[str, Any]) -> float:
        scored.append(searcher.config_key(config))
        return score(config)

    searcher.search(ChoiceSpace(CHOICES), {"flops": (counting_flops, LIMIT)}, {"score_func": counting_score})
    extremes, costed = costed[:2], costed[2:]  # the band of the limit first measures the smallest and largest configs
    assert extremes == [
        searcher.config_key({name: pick(options) for name, options in CHOICES.items()}) for pick in (min, max)
    ]
    assert len(costed) == len(set(costed)) > len(searcher.samples)  # screened-out children were costed too
    assert set(searcher.samples) <= set(costed)
    assert sorted(scored) == sorted(key for key, c in searcher.samples.items() if c["is_satisfied"])


class FixedPredictor(EvolveSearcher):
    """Ranks children with `score * sign` instead of a fitted predictor, counting the calls."""

    sign = 1.0
    calls = 0

    def predictor(self) -> Any:
        type(self).calls += 1
        sign = self.sign

        class Ranking:
            def predict(self, config: dict[str, Any]) -> float:
                return sign * score(config)

        return Ranking()


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_the_predictor_chooses_the_children(sign: float) -> None:
    FixedPredictor.sign, FixedPredictor.calls = sign, 0
    regret = {}
    for searcher_cls in (FixedPredictor, EvolveSearcher):
        found = [run(searcher_cls, seed=seed, num_iters=60)[1]["metric"] for seed in range(6)]
        regret[searcher_cls] = best_feasible(0.85 * LIMIT) - sum(found) / len(found)
    if sign > 0:  # an oracle beats the fitted predictor, which beats an adversary
        assert regret[FixedPredictor] < regret[EvolveSearcher]
    else:
        assert regret[FixedPredictor] > regret[EvolveSearcher]
    assert FixedPredictor.calls >= 6 * 5  # once per batch from the second generation on (60 // 8 generations)


def test_the_reference_scheme_uses_no_predictor() -> None:
    FixedPredictor.calls = 0
    searcher, _ = run(FixedPredictor, num_iters=200, mutation_prob=0.1)
    assert FixedPredictor.calls == 0 and searcher.screened_per_child == 1 and not searcher.adaptive


@pytest.mark.parametrize("prob", [0.0, 0.3, 1.0])
def test_mutation_redraws_each_hparam_with_mutation_prob(prob: float) -> None:
    searcher, best = run(EvolveSearcher, num_iters=30)
    searcher.candidates, searcher.mutation_prob = [best], prob
    children = [searcher.mutate() for _ in range(3000)]
    for name, choices in searcher.hparam_choices.items():
        changed = sum(child[name] != best["config"][name] for child in children) / len(children)
        assert changed == pytest.approx(prob * (1 - 1 / len(choices)), abs=0.03), name
        if prob == 1.0:  # a re-drawn value is uniform over the choices
            for value in choices:
                share = sum(child[name] == value for child in children) / len(children)
                assert share == pytest.approx(1 / len(choices), abs=0.03), (name, value)
