"""Search quality and overhead of autonas_search's searchers on problems with a known optimum.

Quality: mean regret (best feasible score minus the best score a searcher found, in accuracy
points; 0 is perfect) over many seeds, each seed a different instance of the NAS-like problem of
`search_problems.py` (20/30/40 hparams, FLOPs budget 40/50/60 %), at budgets of 50, 100, 200, 500
and 2000 evaluations, for RandomSearcher, EvolveSearcher (default settings) and Optuna's TPE and
NSGA-II samplers given the same problems and the same FLOPs constraint. A searcher that finds no
feasible candidate scores 0 (regret = the optimum). Our searchers run once per budget (they adapt
to it); Optuna's studies are read at each budget on the way (anytime).
Targets: EvolveSearcher beats random search at every budget, is at least as good as TPE at 100
evaluations and has at most half of TPE's regret at 500 and 2000.

Overhead: iterations per second of the searchers with a trivial score and a cheap cost on a
40-hparam space (target >= 5000 it/s), against Optuna's RandomSampler measured in the same run.

TPE's own cost grows with the square of the trials (about 2 minutes for 2000 trials), so TPE at
2000 evaluations runs only with --full (about 40 CPU-minutes; spread it with --jobs).

Run: ``python tools/bench/bench_search_quality.py [--quick | --full] [--seeds N] [--jobs J]``
(``nox -s bench -- tools/bench/bench_search_quality.py``).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import functools
import math
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

from search_problems import Problem, problem_for_seed

from autonas_search import ChoiceSpace, EvolveSearcher, NoSatisfiedCandidateError, RandomSearcher, hypervolume

#: The searchers whose (FLOPs, score) fronts are compared: class and search config (None: Optuna's NSGA-II).
FRONT_SEARCHERS: dict[str, tuple[type | None, dict[str, Any]]] = {
    "Random": (RandomSearcher, {}),
    "Evolve": (EvolveSearcher, {}),
    "Evolve pareto": (EvolveSearcher, {"pareto": True}),
    "NSGA-II": (None, {}),
}
#: The largest Evolve/TPE regret ratio allowed, by budget.
EVOLVE_TO_TPE_TARGET = {100: 1.0, 500: 0.5, 2000: 0.5}
OVERHEAD_TARGET = 5000.0


def search_ours(searcher_cls: type, problem: Problem, budget: int, seed: int, **config: Any) -> Any:
    """One of our searchers after a search of `budget` iterations (None if nothing was feasible)."""
    searcher = searcher_cls()
    config = {"score_func": problem.score, "num_iters": budget, "seed": seed, **config}
    try:
        searcher.search(ChoiceSpace(problem.choices), {"flops": (problem.flops, problem.budget)}, config)
    except NoSatisfiedCandidateError:
        return None
    return searcher


def run_ours(searcher_cls: type, problem: Problem, budget: int, seed: int) -> float:
    """Best score found by one of our searchers within `budget` iterations (0 if nothing feasible)."""
    searcher = search_ours(searcher_cls, problem, budget, seed)
    return 0.0 if searcher is None else searcher.best["metric"]


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning, module="optuna")
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def _optuna_trials(
    problem: Problem, sampler_name: str, seed: int, trials: int, directions: list[str], objective: Any
) -> list[Any]:
    """The trials of a study of `problem`, each reporting its FLOPs violation as Optuna's constraint.

    `objective(config, feasible)` gives the trial's value(s).
    """
    optuna = _optuna()
    use_set_constraint = hasattr(optuna.trial.Trial, "set_constraint")
    constraints = None if use_set_constraint else (lambda trial: [trial.user_attrs["violation"]])
    if sampler_name == "tpe":
        sampler = optuna.samplers.TPESampler(seed=seed, constraints_func=constraints)
    else:
        sampler = optuna.samplers.NSGAIISampler(seed=seed, constraints_func=constraints)
    choices = problem.choices

    def constrained(trial: Any) -> Any:
        config = {name: trial.suggest_categorical(name, values) for name, values in choices.items()}
        violation = problem.flops(config) - problem.budget
        if use_set_constraint:
            trial.set_constraint("flops", violation)
        else:
            trial.set_user_attr("violation", violation)
        return objective(config, violation <= 0)

    study = optuna.create_study(directions=directions, sampler=sampler)
    study.optimize(constrained, n_trials=trials)
    return study.trials


def run_optuna(sampler_name: str, problem: Problem, trials: int, seed: int, budgets: list[int]) -> dict[int, float]:
    """Best feasible score after each budget (anytime reading of one study of `trials` trials)."""

    def objective(config: dict[str, Any], feasible: bool) -> float:
        return problem.score(config) if feasible else 0.0  # the score is only computed when feasible

    best, found = 0.0, {}
    for index, trial in enumerate(_optuna_trials(problem, sampler_name, seed, trials, ["maximize"], objective), 1):
        if problem.flops(trial.params) <= problem.budget:
            best = max(best, trial.value)
        if index in budgets:
            found[index] = best
    return found


def run_seed(seed: int, budgets: list[int], tpe_trials: int, nsga_trials: int) -> dict[str, dict[int, float]]:
    """Regret of every searcher at every budget on the instance of `seed`."""
    problem = problem_for_seed(seed)
    optimum = problem.optimum()
    regret: dict[str, dict[int, float]] = {"Random": {}, "Evolve": {}, "TPE": {}, "NSGA-II": {}}
    for budget in budgets:
        regret["Random"][budget] = optimum - run_ours(RandomSearcher, problem, budget, seed)
        regret["Evolve"][budget] = optimum - run_ours(EvolveSearcher, problem, budget, seed)
    for name, trials in (("TPE", tpe_trials), ("NSGA-II", nsga_trials)):
        found = run_optuna(name.lower().replace("-", ""), problem, trials, seed, budgets)
        regret[name] = {budget: optimum - score for budget, score in found.items()}
    return regret


def check_optimum() -> None:
    """The dynamic program's Pareto front (and so its optimum) equals exhaustive enumeration on small instances."""
    from search_problems import make_problem

    for seed in range(3):
        problem = make_problem(1000 + seed, num_hparams=10, budget_fraction=0.5)
        exact, enumerated = problem.pareto_front(), problem.brute_force_front()
        assert len(exact) == len(enumerated), (seed, len(exact), len(enumerated))
        for (flops, score), (flops_b, score_b) in zip(exact, enumerated, strict=True):
            assert flops == flops_b and math.isclose(score, score_b, rel_tol=1e-12), (seed, flops, score, score_b)


def run_front_seed(seed: int, budgets: list[int], nsga_trials: int) -> dict[str, dict[int, float]]:
    """Hypervolume of each searcher's (FLOPs, score) front relative to the exact front's, at every budget.

    The reference point is (the FLOPs budget, the score of the cheapest configuration on the exact
    front); 1.0 is the exact front.
    """
    problem = problem_for_seed(seed)
    exact = problem.pareto_front()
    reference = (problem.budget, exact[0][1])
    exact_volume = hypervolume(exact, reference)
    ratio: dict[str, dict[int, float]] = {name: {} for name in FRONT_SEARCHERS}
    for budget in budgets:
        for name, (searcher_cls, config) in FRONT_SEARCHERS.items():
            if searcher_cls is None:
                continue
            searcher = search_ours(searcher_cls, problem, budget, seed, **config)
            front = [] if searcher is None else searcher.pareto_front()
            points = [(c["constraints"]["flops"], c["metric"]) for c in front]
            ratio[name][budget] = hypervolume(points, reference) / exact_volume

    def objective(config: dict[str, Any], feasible: bool) -> tuple[float, float]:
        return (problem.score(config) if feasible else 0.0), problem.flops(config)

    trials = _optuna_trials(problem, "nsgaii", seed, nsga_trials, ["maximize", "minimize"], objective)
    points: list[tuple[float, float]] = []
    for index, trial in enumerate(trials, start=1):
        if trial.values[1] <= problem.budget:
            points.append((trial.values[1], trial.values[0]))
        if index in budgets:
            ratio["NSGA-II"][index] = hypervolume(points, reference) / exact_volume
    return ratio


def quality(seeds: int, budgets: list[int], tpe_trials: int, jobs: int) -> None:
    nsga_trials = max(budgets)
    start = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(jobs) as pool:
        run = functools.partial(run_seed, budgets=budgets, tpe_trials=tpe_trials, nsga_trials=nsga_trials)
        results = list(pool.map(run, range(seeds)))
    elapsed = time.perf_counter() - start
    print(f"\nSearch quality: mean regret (accuracy points, lower is better) over {seeds} seeds [{elapsed:.0f} s]")
    names = ["Random", "Evolve", "TPE", "NSGA-II"]
    print(f"{'budget':>7} " + " ".join(f"{name:>15}" for name in names) + f" {'Evolve/Random':>14} {'Evolve/TPE':>11}")
    for budget in budgets:
        means = {}
        cells = []
        for name in names:
            values = [r[name][budget] for r in results if budget in r[name]]
            if len(values) < seeds:
                cells.append(f"{'(--full)':>15}")
                continue
            means[name] = statistics.fmean(values)
            sem = statistics.stdev(values) / math.sqrt(len(values))
            cells.append(f"{means[name]:8.3f} ±{sem:5.3f}")
        vs_random = _ratio(means, "Evolve", "Random")
        vs_tpe = _ratio(means, "Evolve", "TPE")
        target = EVOLVE_TO_TPE_TARGET.get(budget)
        verdict = ""
        if target is not None and vs_tpe not in ("-", "inf"):
            verdict = " ok" if float(vs_tpe) <= target else " MISSED"
        print(f"{budget:>7} " + " ".join(cells) + f" {vs_random:>14} {vs_tpe:>11}{verdict}")
    targets = ", ".join(f"<= {ratio:.2f} at {budget}" for budget, ratio in EVOLVE_TO_TPE_TARGET.items())
    print(f"targets: Evolve/Random < 1 at every budget; Evolve/TPE {targets}")


def fronts(seeds: int, budgets: list[int], jobs: int) -> None:
    start = time.perf_counter()
    with concurrent.futures.ProcessPoolExecutor(jobs) as pool:
        results = list(
            pool.map(functools.partial(run_front_seed, budgets=budgets, nsga_trials=max(budgets)), range(seeds))
        )
    elapsed = time.perf_counter() - start
    print(
        f"\nMulti-objective: hypervolume of the (FLOPs, score) front found, relative to the exact front's "
        f"(1 is exact, higher is better), mean over {seeds} seeds [{elapsed:.0f} s]"
    )
    names = list(FRONT_SEARCHERS)
    print(f"{'budget':>7} " + " ".join(f"{name:>15}" for name in names) + f" {'pareto/NSGA-II':>15}")
    for budget in budgets:
        means = {}
        cells = []
        for name in names:
            values = [r[name][budget] for r in results]
            means[name] = statistics.fmean(values)
            cells.append(f"{means[name]:8.3f} ±{statistics.stdev(values) / math.sqrt(len(values)):5.3f}")
        print(f"{budget:>7} " + " ".join(cells) + f" {means['Evolve pareto'] / means['NSGA-II']:>15.3f}")


def _ratio(means: dict[str, float], a: str, b: str) -> str:
    if a not in means or b not in means:
        return "-"
    return f"{means[a] / means[b]:.2f}" if means[b] > 0 else ("1.00" if means[a] == 0 else "inf")


def overhead(num_iters: int) -> None:
    """Iterations per second with a trivial score on a 40-hparam space, vs Optuna's RandomSampler."""
    choices = {f"block{i}.width": [16, 32, 48, 64] for i in range(40)}

    def cost(config: dict[str, Any]) -> float:
        return sum(config.values())

    def trivial_score(config: dict[str, Any]) -> float:
        return 0.0

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: Any) -> float:
        config = {name: trial.suggest_categorical(name, values) for name, values in choices.items()}
        return trivial_score(config) if cost(config) <= 2000 else 0.0

    optuna_iters = max(200, num_iters // 20)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    wall, cpu = time.perf_counter(), time.process_time()
    study.optimize(objective, n_trials=optuna_iters)
    baseline = optuna_iters / (time.process_time() - cpu)
    baseline_wall = optuna_iters / (time.perf_counter() - wall)
    print(f"\nSearcher overhead: trivial score, 40 hparams x 4 choices, {num_iters} iterations")
    print(
        "(it/s per CPU-second of this process, so that other load on the machine does not count; wall-clock in brackets)"
    )
    print(f"{'searcher':>16} {'it/s':>18} {'baseline it/s':>14} {'ratio':>7} {'target':>8}")
    print(f"{'Optuna random':>16} {baseline:8.0f} ({baseline_wall:6.0f}) {'(baseline)':>14}")
    for searcher_cls in (RandomSearcher, EvolveSearcher):
        config = {"score_func": trivial_score, "num_iters": num_iters, "seed": 0}
        wall, cpu = time.perf_counter(), time.process_time()
        searcher_cls().search(ChoiceSpace(choices), {"cost": (cost, 2000)}, config)
        rate = num_iters / (time.process_time() - cpu)
        rate_wall = num_iters / (time.perf_counter() - wall)
        verdict = "ok" if rate >= OVERHEAD_TARGET else "MISSED"
        print(
            f"{searcher_cls.__name__:>16} {rate:8.0f} ({rate_wall:6.0f}) {baseline:14.0f} {rate / baseline:7.1f} {verdict:>8}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="5 seeds, budgets 100 and 500")
    mode.add_argument("--full", action="store_true", help="also TPE at 2000 evaluations (slow)")
    parser.add_argument("--seeds", type=int, help="number of seeds (default 20, --quick 5)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    args = parser.parse_args()
    budgets = [100, 500] if args.quick else [50, 100, 200, 500, 2000]
    seeds = args.seeds or (5 if args.quick else 20)
    check_optimum()
    overhead(5000 if args.quick else 20000)
    quality(seeds, budgets, tpe_trials=2000 if args.full else 500, jobs=args.jobs)
    fronts(seeds, budgets, jobs=args.jobs)


if __name__ == "__main__":
    main()
