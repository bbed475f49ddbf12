"""`EvolveSearcher`: evolutionary search (mutation and crossover of the best candidates)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import _validate
from .hashing import config_hash
from .iterative import IterativeSearcher

__all__ = ["EvolveSearcher"]

MAX_REDRAWS = 10


class EvolveSearcher(IterativeSearcher):
    """Evolutionary search, the AutoNAS default.

    The first generation is random. Once `population_size` satisfied candidates are collected,
    the best `candidate_size` of them become the parents and the population empties; children
    then fill it again: mutations of one random parent (each hparam re-drawn with probability
    `mutation_prob`) while the population is less than half full, crossovers of two distinct
    parents (each hparam from either) after that. Each generation is proposed as a batch, so an
    executor can evaluate it in parallel; a child already evaluated is re-drawn (up to 10 times).

    Before searching, every effective limit without a lower bound gets the lower bound
    `rel_lower_bound * upper` (0.85 by default): only candidates that use most of each budget
    count as satisfied.
    """

    @property
    def default_search_config(self) -> dict[str, Any]:
        """Adds `population_size` (100), `candidate_size` (25), `mutation_prob` (0.1), `rel_lower_bound` (0.85)."""
        return {
            **super().default_search_config,
            "population_size": 100,
            "candidate_size": 25,
            "mutation_prob": 0.1,
            "rel_lower_bound": 0.85,
        }

    @property
    def default_state_dict(self) -> dict[str, Any]:
        """Adds the current `population` and the parents, `candidates`."""
        return {**super().default_state_dict, "population": [], "candidates": []}

    def sanitize_search_config(self, config: Mapping[str, Any] | None) -> dict[str, Any]:
        """Also checks the evolution settings."""
        config = super().sanitize_search_config(config)
        _validate.check_int(config, "population_size", 2)
        _validate.check_int(config, "candidate_size", 2)
        _validate.check_fraction(config, "mutation_prob")
        _validate.check_fraction(config, "rel_lower_bound")
        if config["candidate_size"] > config["population_size"]:
            raise ValueError(
                f"search config 'candidate_size' ({config['candidate_size']}) must not exceed "
                f"'population_size' ({config['population_size']})"
            )
        return config

    def before_search(self) -> None:
        """Also sets the relative lower bounds of the limits."""
        super().before_search()
        self.constraints_func.set_rel_lower_bounds(self.config["rel_lower_bound"])

    def before_step(self) -> None:
        """When the population is full, its best `candidate_size` become the parents and it empties."""
        if len(self.population) >= self.config["population_size"]:
            ranked = sorted(self.population, key=lambda c: c["metric"], reverse=True)
            self.candidates = ranked[: self.config["candidate_size"]]
            self.population = []
            self.pending = []

    def after_step(self) -> None:
        """A satisfied candidate joins the population."""
        if self.candidate["is_satisfied"]:
            self.population.append(self.candidate)

    def propose(self, limit: int) -> list[dict[str, Any]]:
        """The children that fill the population: random ones until there are parents."""
        population_size = self.config["population_size"]
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
        parent = self.rng.choice(self.candidates)["config"]
        fresh = self.random_config()
        keep = 1 - self.config["mutation_prob"]
        return {name: parent[name] if self.rng.random() < keep else fresh[name] for name in self.hparam_choices}

    def crossover(self) -> dict[str, Any]:
        """Each hparam from one of two distinct random parents."""
        first, second = (c["config"] for c in self.rng.sample(self.candidates, 2))
        return {name: (first if self.rng.random() < 0.5 else second)[name] for name in self.hparam_choices}

    def _new_child(self, make: Any, seen: set[str]) -> dict[str, Any]:
        """`make()`, re-drawn while it repeats an evaluated or already proposed config."""
        for _ in range(MAX_REDRAWS):
            child = make()
            key = config_hash(child)
            if key not in self.samples and key not in seen:
                break
        seen.add(key)
        return child
