"""`IterativeSearcher`: sample, evaluate, keep the best, one iteration at a time."""

from __future__ import annotations

import concurrent.futures
import functools
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

from tqdm.auto import tqdm

from . import _validate
from .base import BaseSearcher
from .checkpoint import checkpoint_path
from .constraints import ConstraintsFunc
from .errors import NoSatisfiedCandidateError
from .hashing import config_hash
from .pareto import pareto_front
from .space import space_hparams

__all__ = ["IterativeSearcher", "evaluate_candidate"]

CHECKPOINT_EVERY = 100
#: With `ranks`: "one_rank" scores each candidate of a batch on one rank and gathers the scores;
#: "every_rank" scores every candidate on every rank (a score_func that all-reduces over its shard).
SCORE_ON = ("one_rank", "every_rank")


class IterativeSearcher(BaseSearcher):
    """Runs `num_iters` iterations of `before_step`, `run_step`, `after_step`.

    Each iteration takes the next proposed config (`sample`), selects it in the space, and, if
    its configurable part was never seen, evaluates the constraints and (only when they are
    satisfied) the score. A config seen before is not evaluated again and not added to
    `history` again. Unsatisfied candidates never become `best`; if none is satisfied the
    search ends with `NoSatisfiedCandidateError`.

    Subclasses implement `propose(limit)`: the configs of the coming iterations, decided before
    any of them is evaluated, so that an `executor` can evaluate them together.
    """

    iter_num: int
    num_satisfied: int
    candidate: dict[str, Any]
    samples: dict[str, dict[str, Any]]
    history: dict[str, Any]
    best_history: dict[str, list[Any]]
    pending: list[dict[str, Any]]
    hparam_choices: dict[str, tuple[Any, ...]]

    @property
    def default_search_config(self) -> dict[str, Any]:
        """Adds `num_iters` (5000), `executor` (None) and `score_on` ("one_rank", with `ranks`)."""
        return {**super().default_search_config, "num_iters": 5000, "executor": None, "score_on": "one_rank"}

    @property
    def default_state_dict(self) -> dict[str, Any]:
        """Counters, the current and best candidate, every evaluated candidate and the histories."""
        return {
            **super().default_state_dict,
            "iter_num": 0,
            "num_satisfied": 0,
            "candidate": {},
            "best": {"metric": -math.inf, "constraints": None},
            "samples": {},
            "history": {"metric": [], "constraints": {}},
            "best_history": {"iter_num": [], "candidates": []},
            "pending": [],
        }

    def sanitize_search_config(self, config: Mapping[str, Any] | None) -> dict[str, Any]:
        """Also requires `score_func` and checks `num_iters` and `executor`."""
        config = super().sanitize_search_config(config)
        if config["score_func"] is None:
            raise ValueError("Please provide `score_func`: a function of the candidate config returning a number")
        _validate.check_int(config, "num_iters", 1)
        executor = config["executor"]
        if executor is not None and not isinstance(executor, concurrent.futures.Executor):
            raise ValueError(
                f"search config 'executor' must be a concurrent.futures.Executor or None, got {executor!r}"
            )
        self._check_rank_scoring(config)
        return config

    @staticmethod
    def _check_rank_scoring(config: dict[str, Any]) -> None:
        if config["score_on"] not in SCORE_ON:
            raise ValueError(f"search config 'score_on' must be one of {list(SCORE_ON)}, got {config['score_on']!r}")
        if config["ranks"] is not None and config["executor"] is not None:
            raise ValueError("search config: give 'ranks' or 'executor', not both (the ranks evaluate the batches)")

    def before_search(self) -> None:
        """Also reads (and checks) the space's hparams; a space with none configurable gets one iteration."""
        super().before_search()
        self.hparam_choices = space_hparams(self.space)
        self._prefetched: dict[str, tuple[bool, dict[str, float], float]] = {}
        if not self.hparam_choices:
            warnings.warn("the search space has no configurable hparam: running a single iteration", stacklevel=3)
            self.config["num_iters"] = 1
        self.history["constraints"] = {name: [] for name in self.constraints_func.names}

    def run_search(self) -> None:
        """Run the iterations left, checkpointing every 100, at each new best and at the last.

        A checkpoint that holds more iterations than `num_iters` is not cut short: its result is
        kept, with a warning naming both numbers.
        """
        num_iters = self.config["num_iters"]
        verbose = self.config["verbose"]
        if self.iter_num > num_iters:
            path = checkpoint_path(self.config["checkpoint"], self.checkpoint_rank())
            warnings.warn(
                f"the search checkpoint {path} already holds {self.iter_num} iterations, more than "
                f"num_iters={num_iters}: the result of all {self.iter_num} is returned. Use another checkpoint "
                f"path to search {num_iters} iterations afresh.",
                stacklevel=3,
            )
        bar = tqdm(total=max(num_iters, self.iter_num), initial=self.iter_num, disable=not verbose, desc="search")
        self._prefetch()  # a resumed search may have proposed configs left
        try:
            while self.iter_num < num_iters:
                self.before_step()
                self.run_step()
                self.after_step()
                self.iter_num += 1
                is_best = self.candidate["is_best"]
                if is_best or (self.iter_num - 1) % CHECKPOINT_EVERY == 0 or self.iter_num == num_iters:
                    self.save_search_checkpoint()
                if verbose:
                    bar.set_postfix(satisfied=self.num_satisfied, best=f"{self.best['metric']:.6g}", refresh=False)
                    bar.update(1)
                if self.early_stop():
                    break
        finally:
            bar.close()

    def before_step(self) -> None:
        """Runs before each iteration's sample."""

    def after_step(self) -> None:
        """Runs after each iteration's evaluation (`candidate` holds the result)."""

    def early_stop(self) -> bool:
        """Whether to stop before `num_iters` iterations (never, here)."""
        return False

    def propose(self, limit: int) -> list[dict[str, Any]]:
        """Configs (every configurable hparam) for the next at most `limit` iterations, at least one."""
        raise NotImplementedError

    def sample(self) -> dict[str, Any]:
        """Select the next proposed config in the space and return `{"config": <full config>}`."""
        if not self.pending:
            self.pending = self.propose(self.config["num_iters"] - self.iter_num)
            self._prefetch()
        self.space.select(self.pending.pop(0))
        return {"config": self.space.config()}

    def config_key(self, config: Mapping[str, Any]) -> str:
        """The stable hash that identifies a config: `config_hash` of its configurable part."""
        return config_hash({name: config[name] for name in self.hparam_choices})

    def run_step(self) -> None:
        """Sample, evaluate unless seen before, update counters, histories and `best`."""
        config = self.sample()["config"]
        key = self.config_key(config)
        known = self.samples.get(key)
        is_new = known is None
        if known is None:
            result = self._prefetched.pop(key, None) or self.evaluate(config)
            known = {"config": config, "is_satisfied": result[0], "constraints": result[1], "metric": result[2]}
            self.samples[key] = known
        satisfied, metric = known["is_satisfied"], known["metric"]
        self.num_satisfied += satisfied
        is_best = satisfied and is_new and (metric > self.best["metric"] or "config" not in self.best)
        self.candidate = {**known, "is_best": is_best}
        if satisfied and is_new:
            self.history["metric"].append(metric)
            for name, value in known["constraints"].items():
                self.history["constraints"].setdefault(name, []).append(value)
        if is_best:
            self.best = self.candidate
            self.best_history["iter_num"].append(self.iter_num)
            self.best_history["candidates"].append(self.candidate)

    def evaluate(self, config: dict[str, Any]) -> tuple[bool, dict[str, float], float]:
        """`(is_satisfied, constraint values, metric)` of the selected candidate; metric -inf if unsatisfied."""
        satisfied, values = self.constraint_values(config)
        return satisfied, values, self.eval_score(config) if satisfied else -math.inf

    def constraint_values(self, config: dict[str, Any]) -> tuple[bool, dict[str, float]]:
        """`(is_satisfied, constraint values)` of the selected candidate."""
        return self.constraints_func(config)

    def eval_score(self, config: dict[str, Any]) -> float:
        """The score of the selected candidate (higher is better).

        With `ranks` and `score_on="every_rank"` every rank scores it and the scores must agree.
        """
        metric = as_metric(self.config["score_func"](config), config)
        ranks = self.config["ranks"]
        if ranks is not None and ranks.size > 1 and self.config["score_on"] == "every_rank":
            scores = ranks.all_gather(metric)
            if len(set(scores)) > 1:
                raise ValueError(
                    f"score_func gave different scores on the ranks ({scores}) with score_on='every_rank': "
                    "it must all-reduce its result over the ranks, or use score_on='one_rank' (each candidate "
                    "scored on one rank, on the same data everywhere)"
                )
        return metric

    def after_search(self) -> None:
        """Select the best candidate; if none was satisfied raise `NoSatisfiedCandidateError`."""
        if "config" not in self.best:
            raise NoSatisfiedCandidateError(
                self.iter_num,
                self.closest_candidate(),
                self.constraints_func.effective_limits,
                self.constraints_func.value_ranges(self.space),
            )
        self.space.select({name: self.best["config"][name] for name in self.hparam_choices})
        if self.config["verbose"]:
            values = ", ".join(f"{name}={value:.6g}" for name, value in self.best["constraints"].items())
            tqdm.write(f"best: metric={self.best['metric']:.6g} ({values}) after {self.iter_num} iterations")

    def closest_candidate(self) -> dict[str, Any] | None:
        """The evaluated candidate that violates the limits least."""
        violation = self.constraints_func.violation
        return min(self.samples.values(), key=lambda c: violation(c["constraints"]), default=None)

    def pareto_front(self) -> list[dict[str, Any]]:
        """The satisfied candidates not dominated in (metric, each constrained cost), best metric first.

        With no effective limit, the costs are every tracked constraint.
        """
        return pareto_front((c for c in self.samples.values() if c["is_satisfied"]), self.pareto_costs())

    def pareto_costs(self) -> list[str]:
        """The costs a Pareto front trades the metric against: the effectively limited ones, else every tracked one."""
        return list(self.constraints_func.effective_limits) or self.constraints_func.names

    def random_config(self) -> dict[str, Any]:
        """A uniformly random value for every configurable hparam, from the searcher's generator."""
        draw = self.rng.random
        return {name: choices[int(draw() * len(choices))] for name, choices in self.hparam_choices.items()}

    def _prefetch(self) -> None:
        """Evaluate the pending configs not seen yet together: through the executor, or over the ranks."""
        ranks = self.config["ranks"]
        split = ranks is not None and ranks.size > 1 and self.config["score_on"] == "one_rank"
        if self.config["executor"] is None and not split:
            return
        todo: dict[str, dict[str, Any]] = {}
        for proposed in self.pending:
            self.space.select(proposed)
            config = self.space.config()
            key = self.config_key(config)
            if key not in self.samples and key not in self._prefetched:
                todo.setdefault(key, config)
        if todo:
            results = self.evaluate_batch(list(todo.values()))
            self._prefetched.update(zip(todo, results, strict=True))

    def evaluate_batch(self, configs: list[dict[str, Any]]) -> list[tuple[bool, dict[str, float], float]]:
        """`(is_satisfied, constraint values, metric)` of each config, evaluated together.

        Through the executor (workers evaluate the functions on the config, without `select`), or,
        with `ranks`, over the ranks: every rank evaluates the constraints of every config (they are
        cheap, and so every rank sees the same values), the satisfied configs are dealt out to the
        ranks in turn, each rank selects and scores its share, and the scores are gathered.
        """
        if self.config["executor"] is not None:
            evaluate = functools.partial(evaluate_candidate, self.constraints_func, self.config["score_func"])
            return list(self.config["executor"].map(evaluate, configs))
        ranks = self.config["ranks"]
        checked = []
        for config in configs:
            self.space.select(config)
            checked.append(self.constraint_values(config))
        satisfied = [i for i, (ok, _) in enumerate(checked) if ok]
        start = len(self.history["metric"])  # who starts the deal rotates, so that the ranks' totals balance
        scores: dict[int, float] = {}
        failure = None
        for turn, i in enumerate(satisfied):
            if (start + turn) % ranks.size == ranks.rank:
                self.space.select(configs[i])
                try:
                    scores[i] = self.eval_score(configs[i])
                except Exception as error:  # the other ranks must hear of it, or they wait forever
                    failure = error
                    break
        gathered = ranks.all_gather((scores, None if failure is None else f"{type(failure).__name__}: {failure}"))
        for rank, (_, message) in enumerate(gathered):
            if message is not None:
                raise RuntimeError(f"scoring failed on rank {rank} of {ranks.size}: {message}") from failure
        merged = {i: metric for part, _ in gathered for i, metric in part.items()}
        return [(ok, values, merged[i] if ok else -math.inf) for i, (ok, values) in enumerate(checked)]


def evaluate_candidate(
    constraints_func: ConstraintsFunc, score_func: Callable[[dict[str, Any]], Any], config: dict[str, Any]
) -> tuple[bool, dict[str, float], float]:
    """`(is_satisfied, constraint values, metric)` of `config` from pure functions (runs in executor workers)."""
    satisfied, values = constraints_func(config)
    return satisfied, values, as_metric(score_func(config), config) if satisfied else -math.inf


def as_metric(value: Any, config: Mapping[str, Any]) -> float:
    """What `score_func` returned for candidate `config`, as a float; the one check of every score.

    A number, or anything `float()` reads without parsing text (numpy scalars, one-element
    tensors), is accepted; infinities are allowed.

    Raises:
        TypeError: `value` is None, a bool, a string or another non-number.
        ValueError: `value` is NaN, which cannot be ranked.
    """
    where = f"score_func returned {value!r} for candidate {dict(config)}"
    if isinstance(value, bool | str | bytes) or not hasattr(type(value), "__float__"):
        raise TypeError(f"{where}; it must return a number (higher is better)")
    try:
        metric = float(value)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{where}, which is not a number: {error}") from None
    if math.isnan(metric):
        raise ValueError(f"{where}; NaN cannot be ranked: return a number (e.g. -inf for a candidate that failed)")
    return metric
