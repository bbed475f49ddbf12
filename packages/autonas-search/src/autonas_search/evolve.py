"""`EvolveSearcher`: evolutionary search (mutation and crossover of the best candidates)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import _validate
from .iterative import IterativeSearcher

__all__ = ["EvolveSearcher"]

MAX_REDRAWS = 10
REFERENCE_POPULATION = 100
PARENT_FRACTION = 0.25
MUTATIONS_PER_CHILD = 1.0


def adaptive_population(num_iters: int) -> int:
    """The population size when the user sets none: sqrt(num_iters) within [8, 100].

    The reference's fixed 100 spends a small budget on a random first generation and on too few
    generations; measured in tools/bench/bench_search_quality.py.
    """
    return max(8, min(REFERENCE_POPULATION, round(num_iters**0.5)))


class EvolveSearcher(IterativeSearcher):
    """Evolutionary search, the AutoNAS default.

    The first generation is random. Once `population_size` satisfied candidates are collected,
    the best `candidate_size` of them become the parents and the population empties; children
    then fill it again: mutations of one random parent (each hparam re-drawn with probability
    `mutation_prob`) while the population is less than half full, crossovers of two distinct
    parents (each hparam from either) after that. Each generation is proposed as a batch, so an
    executor can evaluate it in parallel; a child already evaluated is re-drawn (up to 10 times).

    Settings left unset (None) adapt to the budget (see `default_search_config`); the effective
    values are the attributes `population_size`, `candidate_size` and `mutation_prob`. With all
    three unset (`adaptive`), parents are chosen among the population and the previous parents
    (elitism) and crossover children are mutated too; with any of them given, generations follow
    the reference scheme exactly.

    Before searching, every effective limit without a lower bound gets the lower bound
    `rel_lower_bound * min(upper, largest)` (0.85 by default; `largest` is the highest value the
    space reaches): only candidates that use most of each budget count as satisfied.
    """

    population: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    population_size: int
    candidate_size: int
    mutation_prob: float
    adaptive: bool

    @property
    def default_search_config(self) -> dict[str, Any]:
        """Adds `population_size`, `candidate_size`, `mutation_prob` (None: adaptive) and `rel_lower_bound` (0.85).

        Unset, the settings adapt to the budget and the space: `population_size` =
        sqrt(num_iters) within [8, 100], `candidate_size` = a quarter of it (at least 2),
        `mutation_prob` = 1 / number of configurable hparams. With all three unset the search
        also keeps the previous parents in the running and mutates crossover children. Given
        explicitly, the settings mean what the reference's do (its defaults: 100, 25, 0.1).
        """
        return {
            **super().default_search_config,
            "population_size": None,
            "candidate_size": None,
            "mutation_prob": None,
            "rel_lower_bound": 0.85,
        }

    @property
    def default_state_dict(self) -> dict[str, Any]:
        """Adds the current `population` and the parents, `candidates`."""
        return {**super().default_state_dict, "population": [], "candidates": []}

    def sanitize_search_config(self, config: Mapping[str, Any] | None) -> dict[str, Any]:
        """Also checks the evolution settings."""
        config = super().sanitize_search_config(config)
        _validate.check_int(config, "population_size", 2, allow_none=True)
        _validate.check_int(config, "candidate_size", 2, allow_none=True)
        _validate.check_fraction(config, "mutation_prob", allow_none=True)
        _validate.check_fraction(config, "rel_lower_bound")
        population_size, candidate_size = config["population_size"], config["candidate_size"]
        if population_size is not None and candidate_size is not None and candidate_size > population_size:
            raise ValueError(
                f"search config 'candidate_size' ({candidate_size}) must not exceed 'population_size' ({population_size})"
            )
        return config

    def before_search(self) -> None:
        """Also sets the relative lower bounds of the limits and the evolution settings."""
        super().before_search()
        self.constraints_func.set_rel_lower_bounds(self.config["rel_lower_bound"], self.space)
        config = self.config
        self.population_size = config["population_size"] or adaptive_population(config["num_iters"])
        self.candidate_size = min(
            self.population_size, config["candidate_size"] or max(2, round(self.population_size * PARENT_FRACTION))
        )
        self.adaptive = all(config[key] is None for key in ("population_size", "candidate_size", "mutation_prob"))
        self.mutation_prob = config["mutation_prob"]
        if self.mutation_prob is None:
            self.mutation_prob = min(1.0, MUTATIONS_PER_CHILD / max(1, len(self.hparam_choices)))

    def before_step(self) -> None:
        """When the population is full, its best `candidate_size` become the parents and it empties.

        With adaptive settings the previous parents compete too, so the best candidate so far
        stays a parent.
        """
        if len(self.population) >= self.population_size:
            pool = self.population + self.candidates if self.adaptive else self.population
            ranked = sorted(pool, key=lambda c: c["metric"], reverse=True)
            self.candidates = ranked[: self.candidate_size]
            self.population = []
            self.pending = []

    def after_step(self) -> None:
        """A satisfied candidate joins the population."""
        if self.candidate["is_satisfied"]:
            self.population.append(self.candidate)

    def propose(self, limit: int) -> list[dict[str, Any]]:
        """The children that fill the population: random ones until there are parents."""
        population_size = self.population_size
        size = max(1, min(limit, population_size - len(self.population)))
        num_mutations = max(0, population_size // 2 - len(self.population))
        seen: set[str] = set()
        children = []
        for index in range(size):
            if not self.candidates:
                make = self.random_config
            else:
                make = self.mutate if index < num_mutations else self.crossover
            children.append(self._new_child(make, seen))
        return children

    def mutate(self) -> dict[str, Any]:
        """A random parent with each hparam re-drawn with probability `mutation_prob`."""
        return self._redraw(self.rng.choice(self.candidates)["config"])

    def crossover(self) -> dict[str, Any]:
        """Each hparam from one of two distinct random parents (then mutated, with adaptive settings)."""
        first, second = (c["config"] for c in self.rng.sample(self.candidates, 2))
        child = {name: (first if self.rng.random() < 0.5 else second)[name] for name in self.hparam_choices}
        return self._redraw(child) if self.adaptive else child

    def _redraw(self, config: dict[str, Any]) -> dict[str, Any]:
        """`config` with each hparam re-drawn uniformly with probability `mutation_prob`."""
        draw, prob = self.rng.random, self.mutation_prob
        return {
            name: choices[int(draw() * len(choices))] if draw() < prob else config[name]
            for name, choices in self.hparam_choices.items()
        }

    def _new_child(self, make: Any, seen: set[str]) -> dict[str, Any]:
        """`make()`, re-drawn while it repeats an evaluated or already proposed config."""
        for _ in range(MAX_REDRAWS):
            child = make()
            key = self.config_key(child)
            if key not in self.samples and key not in seen:
                break
        seen.add(key)
        return child
