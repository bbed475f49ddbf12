"""`EvolveSearcher`: evolutionary search (mutation and crossover of the best candidates).

With its settings left unset the search adapts to the budget, and screens children before they
are scored: a child must be new and within the limits (constraints are cheap: closed-form
FLOPs and params), and of several drawn children a `ScorePredictor` fitted on the scored ones
picks the most promising. The score is what costs (a BatchNorm recalibration and a validation
pass), so every iteration goes to a candidate that counts; measured in
tools/bench/bench_search_quality.py.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

from . import _validate
from .hashing import frozen
from .iterative import IterativeSearcher
from .pareto import dominated_count, objectives, pareto_order
from .predictor import ScorePredictor

__all__ = ["EvolveSearcher"]

MAX_REDRAWS = 10
DEFAULT_REL_LOWER_BOUND = 0.85
REFERENCE_POPULATION = 100
PARENT_FRACTION = 0.25
MUTATIONS_PER_CHILD = 1.0
#: Adaptive settings: children the predictor ranks per generation, spread over its proposed children
#: (1 to 16 each), so small populations (small budgets) screen hardest and the overhead stays flat.
SCREENED_PER_GENERATION = 320
MAX_SCREENED_PER_CHILD = 16
#: Adaptive settings: draws per proposed child before the search for one within the limits gives up.
MAX_SCREEN_DRAWS = 100
#: Adaptive settings: the predictor learns from at most this many of the latest satisfied candidates.
PREDICTOR_WINDOW = 200


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
    three unset (`adaptive`):

    - parents are chosen among the population and the previous parents (elitism), and crossover
      children are mutated too;
    - every child is screened before it is proposed (`propose`): it must be new and satisfy the
      constraints (their functions run on children that are then discarded, once per config),
      and once there are parents it is the one of `screened_per_child` drawn children that
      `predictor()` ranks first. Random first-generation children are screened against the
      limits too, so the first generation is spread over the constraint band.

    With any of the three given, generations follow the reference scheme exactly.

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
    screened_per_child: int

    @property
    def default_search_config(self) -> dict[str, Any]:
        """Adds `population_size`, `candidate_size`, `mutation_prob` (None: adaptive), `rel_lower_bound` and `pareto`.

        Unset, the settings adapt to the budget and the space: `population_size` =
        sqrt(num_iters) within [8, 100], `candidate_size` = a quarter of it (at least 2),
        `mutation_prob` = 1 / number of configurable hparams. With all three unset the search
        also keeps the previous parents in the running and mutates crossover children. Given
        explicitly, the settings mean what the reference's do (its defaults: 100, 25, 0.1).

        `pareto=True` searches the Pareto front of the metric against the costs (`pareto_costs()`)
        rather than the best metric: parents are the best trade-offs (`pareto_order`), and
        `rel_lower_bound` applies only when given (unset: 0.85, or 0 with `pareto`).
        """
        return {
            **super().default_search_config,
            "population_size": None,
            "candidate_size": None,
            "mutation_prob": None,
            "rel_lower_bound": None,
            "pareto": False,
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
        _validate.check_fraction(config, "rel_lower_bound", allow_none=True)
        _validate.check_bool(config, "pareto")
        population_size, candidate_size = config["population_size"], config["candidate_size"]
        if population_size is not None and candidate_size is not None and candidate_size > population_size:
            raise ValueError(
                f"search config 'candidate_size' ({candidate_size}) must not exceed 'population_size' ({population_size})"
            )
        return config

    def before_search(self) -> None:
        """Also sets the relative lower bounds of the limits and the evolution settings."""
        super().before_search()
        config = self.config
        rel_lower_bound = config["rel_lower_bound"]
        if rel_lower_bound is None:
            rel_lower_bound = 0.0 if config["pareto"] else DEFAULT_REL_LOWER_BOUND
        self.constraints_func.set_rel_lower_bounds(rel_lower_bound, self.space)
        self.population_size = config["population_size"] or adaptive_population(config["num_iters"])
        self.candidate_size = min(
            self.population_size, config["candidate_size"] or max(2, round(self.population_size * PARENT_FRACTION))
        )
        self.adaptive = all(config[key] is None for key in ("population_size", "candidate_size", "mutation_prob"))
        self.mutation_prob = config["mutation_prob"]
        if self.mutation_prob is None:
            self.mutation_prob = min(1.0, MUTATIONS_PER_CHILD / max(1, len(self.hparam_choices)))
        per_child = round(SCREENED_PER_GENERATION / self.population_size)
        self.screened_per_child = max(1, min(MAX_SCREENED_PER_CHILD, per_child)) if self.adaptive else 1
        self._screened: dict[tuple[Any, ...], tuple[bool, dict[str, float]]] = {}
        self._known_identities: set[tuple[Any, ...]] = set()

    def before_step(self) -> None:
        """When the population is full, its best `candidate_size` become the parents and it empties.

        Best by metric, or by trade-off with `pareto` (`pareto_order`). With adaptive settings
        the previous parents compete too, so the best candidate so far stays a parent.
        """
        if len(self.population) >= self.population_size:
            pool = self.population + self.candidates if self.adaptive else self.population
            if self.config["pareto"]:
                ranked = pareto_order(pool, self.pareto_costs())
            else:
                ranked = sorted(pool, key=lambda c: c["metric"], reverse=True)
            self.candidates = ranked[: self.candidate_size]
            self.population = []
            self.pending = []

    def after_step(self) -> None:
        """A satisfied candidate joins the population."""
        if self.candidate["is_satisfied"]:
            self.population.append(self.candidate)

    def propose(self, limit: int) -> list[dict[str, Any]]:
        """The children that fill the population: random ones until there are parents.

        With adaptive settings each child is the first of its drawn children, best predicted
        first, that is new and within the limits; more are drawn (up to `MAX_SCREEN_DRAWS`) until
        one is. If none is, the child is the first new one drawn. With `pareto`, the children
        the fewest points of the current front dominate (at their predicted metric) come first.
        """
        population_size = self.population_size
        size = max(1, min(limit, population_size - len(self.population)))
        num_mutations = max(0, population_size // 2 - len(self.population))
        rank = self._child_ranking() if self.candidates and self.screened_per_child > 1 else None
        seen: set[Any] = set()
        children = []
        for index in range(size):
            if not self.candidates:
                make = self.random_config
            else:
                make = self.mutate if index < num_mutations else self.crossover
            if self.adaptive:
                children.append(self._screened_child(make, rank, seen))
            else:
                children.append(self._new_child(make, seen))
        return children

    def predictor(self) -> ScorePredictor:
        """A `ScorePredictor` fitted on the latest satisfied candidates (up to `PREDICTOR_WINDOW`).

        Called once per proposed batch, with adaptive settings, once there are parents. Override
        it to rank children with another model: anything with `predict(config) -> float`.
        """
        recent = []
        for candidate in reversed(self.samples.values()):
            if candidate["is_satisfied"]:
                recent.append(candidate)
                if len(recent) == PREDICTOR_WINDOW:
                    break
        predictor = ScorePredictor(self.hparam_choices)
        predictor.fit([c["config"] for c in recent], [c["metric"] for c in recent])
        return predictor

    def mutate(self) -> dict[str, Any]:
        """A random parent with each hparam re-drawn with probability `mutation_prob`."""
        return self._redraw(self.rng.choice(self.candidates)["config"])

    def crossover(self) -> dict[str, Any]:
        """Each hparam from one of two distinct random parents (then mutated, with adaptive settings)."""
        first, second = (c["config"] for c in self.rng.sample(self.candidates, 2))
        mask = self.rng.getrandbits(len(self.hparam_choices))
        child = {name: (first if mask >> i & 1 else second)[name] for i, name in enumerate(self.hparam_choices)}
        return self._redraw(child) if self.adaptive else child

    def _redraw(self, config: dict[str, Any]) -> dict[str, Any]:
        """`config` with each hparam re-drawn uniformly with probability `mutation_prob`.

        The gaps between re-drawn hparams are drawn (geometrically distributed) rather than one
        coin per hparam: the same distribution for a fraction of the random draws.
        """
        child = {name: config[name] for name in self.hparam_choices}
        prob = self.mutation_prob
        if prob == 0:
            return child
        draw, items = self.rng.random, list(self.hparam_choices.items())
        gap = (lambda: 0) if prob == 1 else (lambda: int(math.log(1.0 - draw()) / math.log1p(-prob)))
        position = gap()
        while position < len(items):
            name, choices = items[position]
            child[name] = choices[int(draw() * len(choices))]
            position += 1 + gap()
        return child

    def within_limits(self, config: dict[str, Any]) -> bool:
        """Whether `config` satisfies the constraints (see `constraint_values`)."""
        return self.constraint_values(config)[0]

    def constraint_values(self, config: dict[str, Any]) -> tuple[bool, dict[str, float]]:
        """`(is_satisfied, constraint values)` of `config`, evaluated once per config.

        The space selects `config` first, as for an evaluation, so a child's values computed
        while screening it are those of its evaluation: no constraint is computed twice.
        """
        identity = self._identity(config)
        if identity not in self._screened:
            self.space.select(config)
            self._screened[identity] = self.constraints_func(self.space.config())
        return self._screened[identity]

    def _child_ranking(self) -> Any:
        """The sort key that orders drawn children, most promising first, from this batch's predictor."""
        predict = self.predictor().predict
        if not self.config["pareto"]:
            return lambda child: -predict(child)
        names = self.pareto_costs()
        front = [objectives(c, names) for c in self.pareto_front()]

        def dominated(child: dict[str, Any]) -> int:
            values = self.constraint_values(child)[1]
            return dominated_count((-predict(child), *(values[name] for name in names)), front)

        return dominated

    def _identity(self, config: dict[str, Any]) -> tuple[Any, ...]:
        """The configurable values of `config` as a hashable tuple: the same config has the same identity."""
        values = tuple(config[name] for name in self.hparam_choices)
        try:
            hash(values)
        except TypeError:
            return frozen(values)
        return values

    def _known(self) -> set[tuple[Any, ...]]:
        """The identities of every evaluated config, updated with the samples added since the last call."""
        if len(self._known_identities) < len(self.samples):
            added = itertools.islice(self.samples.values(), len(self._known_identities), None)
            self._known_identities.update(self._identity(c["config"]) for c in added)
        return self._known_identities

    def _screened_child(self, make: Any, rank: Any, seen: set[tuple[Any, ...]]) -> dict[str, Any]:
        """The most promising new child within the limits; else the first new one, else the last drawn."""
        drawn = [make() for _ in range(self.screened_per_child if rank else 1)]
        if rank is not None:
            drawn.sort(key=rank)
        known = self._known()
        fallback = None
        for draw in range(MAX_SCREEN_DRAWS):
            child = drawn[draw] if draw < len(drawn) else make()
            identity = self._identity(child)
            if identity in known or identity in seen:
                continue
            if self.within_limits(child):
                fallback = identity, child
                break
            fallback = fallback or (identity, child)
        identity, child = fallback or (identity, child)
        seen.add(identity)
        return child

    def _new_child(self, make: Any, seen: set[str]) -> dict[str, Any]:
        """`make()`, re-drawn while it repeats an evaluated or already proposed config."""
        for _ in range(MAX_REDRAWS):
            child = make()
            key = self.config_key(child)
            if key not in self.samples and key not in seen:
                break
        seen.add(key)
        return child
