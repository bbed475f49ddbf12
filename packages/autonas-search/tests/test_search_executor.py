"""Evaluating through an executor gives exactly the serial results."""

from __future__ import annotations

import concurrent.futures
import json
from pathlib import Path

import pytest
from search_problem import CHOICES, MAX_FLOPS, FailingScore, flops, params, score

from autonas_search import ChoiceSpace, EvolveSearcher, IterativeSearcher, RandomSearcher

CONSTRAINTS = {"flops": (flops, 0.5 * MAX_FLOPS), "params": (params, None)}


def run(searcher_cls: type[IterativeSearcher], executor=None, **config) -> IterativeSearcher:
    searcher = searcher_cls()
    searcher.search(
        ChoiceSpace(CHOICES), CONSTRAINTS, {"score_func": score, "num_iters": 400, "executor": executor, **config}
    )
    return searcher


@pytest.mark.parametrize("searcher_cls", [RandomSearcher, EvolveSearcher])
@pytest.mark.parametrize("pool_cls", [concurrent.futures.ThreadPoolExecutor, concurrent.futures.ProcessPoolExecutor])
def test_executor_results_equal_serial_results(searcher_cls: type[IterativeSearcher], pool_cls: type) -> None:
    serial = run(searcher_cls)
    with pool_cls(max_workers=2) as pool:
        parallel = run(searcher_cls, pool)
    assert json.dumps(parallel.state_dict()) == json.dumps(serial.state_dict())
    assert parallel.best == serial.best


def test_executor_evaluates_a_whole_generation_at_once() -> None:
    batches: list[int] = []

    class CountingPool(concurrent.futures.ThreadPoolExecutor):
        def map(self, fn, *iterables, **kwargs):  # type: ignore[override]
            items = list(iterables[0])
            batches.append(len(items))
            return super().map(fn, items, **kwargs)

    with CountingPool(max_workers=2) as pool:
        searcher = run(EvolveSearcher, pool, population_size=20, candidate_size=5)
    assert max(batches) == 20
    assert sum(batches) == len(searcher.samples)  # nothing evaluated twice


def test_resume_with_an_executor_equals_the_serial_run(tmp_path: Path) -> None:
    serial = run(EvolveSearcher, seed=5)
    path = tmp_path / "search.json"
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
        with pytest.raises(RuntimeError, match="killed"):
            run(EvolveSearcher, pool, seed=5, checkpoint=path, score_func=FailingScore(40))
        resumed = run(EvolveSearcher, pool, seed=5, checkpoint=path)
    assert json.dumps(resumed.state_dict()) == json.dumps(serial.state_dict())
