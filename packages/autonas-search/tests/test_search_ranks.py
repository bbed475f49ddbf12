"""Searching on several ranks: split scoring, identical state everywhere, checkpoints by rank 0.

The ranks are threads here, each with its own searcher and space, exchanging objects through a
barrier: the protocol is the same as over torch.distributed (integration_tests cover that).
"""

from __future__ import annotations

import concurrent.futures
import json
import pickle
import threading
from pathlib import Path
from typing import Any

import pytest
from search_problem import CHOICES, MAX_FLOPS, flops, params, score

from autonas_search import CheckpointError, ChoiceSpace, EvolveSearcher, IterativeSearcher, RandomSearcher

CONSTRAINTS = {"flops": (flops, 0.5 * MAX_FLOPS), "params": (params, None)}


class ThreadRanks:
    """One rank of a group of threads; `all_gather` meets the other threads at a barrier.

    Each rank receives its own copy of what was gathered, as processes do.
    """

    def __init__(self, slots: list[Any], barrier: threading.Barrier, rank: int) -> None:
        self._slots, self._barrier, self._rank = slots, barrier, rank
        self.gathers = 0

    @property
    def rank(self) -> int:
        return self._rank

    @property
    def size(self) -> int:
        return len(self._slots)

    def all_gather(self, obj: Any) -> list[Any]:
        self.gathers += 1
        self._slots[self._rank] = obj
        self._barrier.wait()
        gathered = pickle.loads(pickle.dumps(self._slots))
        self._barrier.wait()
        return gathered


class RankScore:
    """The score, recording the rank that computed each call."""

    def __init__(self, rank: int, log: list[tuple[int, str]], fail_at: int = -1) -> None:
        self.rank, self.log, self.fail_at = rank, log, fail_at

    def __call__(self, config: dict[str, Any]) -> float:
        self.log.append((self.rank, json.dumps(config, sort_keys=True)))
        if len(self.log) == self.fail_at:
            raise RuntimeError("killed")
        return score(config)


def search(searcher_cls: type[IterativeSearcher], ranks: Any = None, **config: Any) -> IterativeSearcher:
    searcher = searcher_cls()
    searcher.search(
        ChoiceSpace(CHOICES), CONSTRAINTS, {"score_func": score, "num_iters": 300, "seed": 4, "ranks": ranks, **config}
    )
    return searcher


def on_ranks(size: int, run: Any) -> list[Any]:
    """`run(ranks)` on `size` threads at once; the results in rank order (the first error is raised)."""
    slots: list[Any] = [None] * size
    barrier = threading.Barrier(size, timeout=60)
    group = [ThreadRanks(slots, barrier, rank) for rank in range(size)]
    with concurrent.futures.ThreadPoolExecutor(size) as pool:
        futures = [pool.submit(run, ranks) for ranks in group]
        return [future.result() for future in futures]


@pytest.mark.parametrize("searcher_cls", [EvolveSearcher, RandomSearcher])
@pytest.mark.parametrize("size", [2, 3])
def test_ranks_split_the_scores_and_end_identical_to_one_process(searcher_cls: type, size: int) -> None:
    single = search(searcher_cls)
    log: list[tuple[int, str]] = []
    searchers = on_ranks(size, lambda ranks: search(searcher_cls, ranks, score_func=RankScore(ranks.rank, log)))
    for searcher in searchers:
        assert searcher.best == single.best
        assert json.dumps(searcher.state_dict()) == json.dumps(single.state_dict())
        assert searcher.rng.getstate() == single.rng.getstate()
    scored = [config for _, config in log]
    assert len(scored) == len(set(scored)) == sum(c["is_satisfied"] for c in single.samples.values())
    per_rank = [sum(rank == r for rank, _ in log) for r in range(size)]
    assert max(per_rank) - min(per_rank) <= 1, per_rank


def test_every_rank_scoring_calls_the_score_on_every_rank_and_checks_agreement() -> None:
    single = search(EvolveSearcher, num_iters=100)
    log: list[tuple[int, str]] = []
    searchers = on_ranks(
        2,
        lambda ranks: search(
            EvolveSearcher, ranks, num_iters=100, score_on="every_rank", score_func=RankScore(ranks.rank, log)
        ),
    )
    assert all(json.dumps(s.state_dict()) == json.dumps(single.state_dict()) for s in searchers)
    calls = [sum(rank == r for rank, _ in log) for r in range(2)]
    assert calls[0] == calls[1] == sum(c["is_satisfied"] for c in single.samples.values())

    def rank_dependent(ranks: Any) -> Any:
        return search(EvolveSearcher, ranks, num_iters=20, score_on="every_rank", score_func=lambda c: ranks.rank)

    with pytest.raises(ValueError, match=r"different scores on the ranks \(\[0.0, 1.0\]\).*must all-reduce"):
        on_ranks(2, rank_dependent)


def test_a_failing_score_stops_every_rank_with_the_rank_and_the_error() -> None:
    def run(ranks: Any) -> Any:
        try:
            search(EvolveSearcher, ranks, score_func=RankScore(ranks.rank, [], fail_at=25 if ranks.rank == 1 else -1))
        except RuntimeError as error:
            return str(error)
        return None

    messages = on_ranks(2, run)
    assert messages == ["scoring failed on rank 1 of 2: RuntimeError: killed"] * 2


@pytest.mark.parametrize(("killed_on", "resumed_on"), [(2, 3), (3, 1), (1, 2)])
def test_rank_0_checkpoints_and_a_killed_search_resumes_on_any_number_of_ranks(
    killed_on: int, resumed_on: int, tmp_path: Path
) -> None:
    single = search(EvolveSearcher, num_iters=400)
    path = tmp_path / "search.json"

    def killed(ranks: Any) -> Any:
        fail_at = 60 if ranks is None or ranks.rank == 0 else -1
        try:
            search(EvolveSearcher, ranks, num_iters=400, checkpoint=path, score_func=RankScore(0, [], fail_at))
        except RuntimeError:
            return None
        raise AssertionError("the search was not stopped")

    def run_on(size: int, run: Any) -> list[Any]:
        return [run(None)] if size == 1 else on_ranks(size, run)

    run_on(killed_on, killed)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["search.json"]  # rank 0 alone writes
    saved = json.loads(path.read_text())["state"]["iter_num"]
    assert 0 < saved < 400
    resumed = run_on(resumed_on, lambda ranks: search(EvolveSearcher, ranks, num_iters=400, checkpoint=path))
    for searcher in resumed:
        assert json.dumps(searcher.state_dict()) == json.dumps(single.state_dict())


def test_the_ranks_share_rank_0s_reading_of_the_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "search.json"
    path.write_text("{not json")
    errors = on_ranks(2, lambda ranks: _error_of(lambda: search(EvolveSearcher, ranks, checkpoint=path)))
    assert errors[0] == errors[1] and "is not valid JSON" in errors[0]


def _error_of(run: Any) -> str:
    try:
        run()
    except CheckpointError as error:
        return str(error)
    raise AssertionError("no CheckpointError")


def test_an_unseeded_search_draws_one_seed_for_every_rank() -> None:
    searchers = on_ranks(3, lambda ranks: search(EvolveSearcher, ranks, seed=None, num_iters=60))
    assert len({json.dumps(s.state_dict()) for s in searchers}) == 1


def test_only_rank_0_shows_progress(capsys: pytest.CaptureFixture[str]) -> None:
    searchers = on_ranks(2, lambda ranks: search(RandomSearcher, ranks, num_iters=50, verbose=True))
    assert [s.config["verbose"] for s in searchers] == [True, False]
    assert capsys.readouterr().err.count("search: 100%") == 1


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"ranks": object()}, "'ranks' must have rank, size and all_gather"),
        ({"score_on": "all"}, r"'score_on' must be one of \['one_rank', 'every_rank'\], got 'all'"),
    ],
)
def test_bad_rank_config_is_named(config: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        search(RandomSearcher, **config)


def test_ranks_and_an_executor_exclude_each_other() -> None:
    with concurrent.futures.ThreadPoolExecutor(1) as pool:

        def run(ranks: Any) -> str:
            try:
                search(RandomSearcher, ranks, executor=pool)
            except ValueError as error:
                return str(error)
            return ""

        assert "give 'ranks' or 'executor', not both" in on_ranks(2, run)[0]
    with pytest.raises(ValueError, match="rank 2 of size 2"):
        search(RandomSearcher, ThreadRanks([None, None], threading.Barrier(2), 2))
