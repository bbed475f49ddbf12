"""Checkpoints: exact resume, cadence, atomic plain-JSON files, and clear errors."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import pytest
from search_problem import CHOICES, MAX_FLOPS, FailingScore, flops, params, score

from autonas_search import (
    CheckpointError,
    ChoiceSpace,
    EvolveSearcher,
    IterativeSearcher,
    RandomSearcher,
    checkpoint_path,
)
from autonas_search import checkpoint as checkpoint_module

SEARCHERS = [RandomSearcher, EvolveSearcher]
CONSTRAINTS = {"flops": (flops, 0.5 * MAX_FLOPS), "params": (params, None)}


def search(searcher_cls: type[IterativeSearcher], path: Path | None, score_func: Any = score, **config: Any):
    searcher = searcher_cls()
    best = searcher.search(
        ChoiceSpace(CHOICES),
        CONSTRAINTS,
        {"score_func": score_func, "num_iters": 700, "seed": 3, "checkpoint": path, **config},
    )
    return searcher, best


@pytest.mark.parametrize("searcher_cls", SEARCHERS)
@pytest.mark.parametrize("fail_at", [2, 30, 60])
def test_resume_after_a_crash_ends_exactly_like_an_uninterrupted_search(
    searcher_cls: type[IterativeSearcher], fail_at: int, tmp_path: Path
) -> None:
    uninterrupted, expected_best = search(searcher_cls, None)
    path = tmp_path / "search.json"
    failing = FailingScore(fail_at)
    with pytest.raises(RuntimeError, match="killed"):
        search(searcher_cls, path, failing)
    saved = json.loads(path.read_text())["state"]
    assert 0 < saved["iter_num"] < 700
    resumed_score = FailingScore(fail_at=-1)
    resumed, best = search(searcher_cls, path, resumed_score)
    assert best == expected_best
    assert resumed.state_dict() == uninterrupted.state_dict()
    assert resumed.rng.getstate() == uninterrupted.rng.getstate()
    unique_satisfied = sum(c["is_satisfied"] for c in uninterrupted.samples.values())
    assert resumed_score.calls < unique_satisfied  # it resumed rather than starting again
    tuples = [c["config"]["layer4.kernel"] for c in resumed.samples.values()]
    assert all(isinstance(kernel, tuple) for kernel in tuples)


@pytest.mark.parametrize("searcher_cls", SEARCHERS)
@pytest.mark.parametrize("num_iters", [700, 50])
def test_a_finished_search_resumes_to_the_same_result_without_scoring(
    searcher_cls: type[IterativeSearcher], num_iters: int, tmp_path: Path
) -> None:
    """Resumed with a smaller budget, it keeps the longer result and warns naming both numbers."""
    path = tmp_path / "search.json"
    first, best = search(searcher_cls, path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again, resumed_best = search(searcher_cls, path, FailingScore(fail_at=1), num_iters=num_iters)  # no scoring
    assert resumed_best == best and again.state_dict() == first.state_dict()
    expected = (
        f"the search checkpoint {path} already holds 700 iterations, more than num_iters=50: the result of all "
        "700 is returned. Use another checkpoint path to search 50 iterations afresh."
    )
    assert [str(w.message) for w in caught] == ([expected] if num_iters == 50 else [])


def test_checkpoints_are_written_every_100_iterations_at_each_new_best_and_at_the_end(tmp_path: Path) -> None:
    saved_at: list[tuple[int, bool]] = []

    class Recording(EvolveSearcher):
        def save_search_checkpoint(self) -> None:
            saved_at.append((self.iter_num - 1, self.candidate["is_best"]))
            super().save_search_checkpoint()

    searcher = Recording()
    searcher.search(
        ChoiceSpace(CHOICES), CONSTRAINTS, {"score_func": score, "num_iters": 450, "checkpoint": tmp_path / "s.json"}
    )
    best_iters = set(searcher.best_history["iter_num"])
    expected = {i for i in range(450) if i % 100 == 0 or i == 449 or i in best_iters}
    assert [i for i, _ in saved_at] == sorted(expected)
    assert len(best_iters) > 1


def test_checkpoint_is_plain_json_holding_the_state(tmp_path: Path) -> None:
    path = tmp_path / "ckpt" / "search.json"
    searcher, _ = search(EvolveSearcher, path, num_iters=120)
    data = json.loads(path.read_text())
    assert set(data) == {"format", "fingerprint", "state", "rng_state"}
    assert set(data["state"]) == set(searcher.default_state_dict)
    assert data["state"]["iter_num"] == 120 and data["state"]["best"]["metric"] == searcher.best["metric"]
    assert [p.name for p in path.parent.iterdir()] == ["search.json"]  # no temporary files left behind


def test_an_interrupted_write_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "search.json"
    search(RandomSearcher, path, num_iters=50)
    before = path.read_text()

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        search(RandomSearcher, path, num_iters=80)
    assert path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["search.json"]


def test_checkpoint_paths(tmp_path: Path) -> None:
    assert checkpoint_path(None) is None
    assert checkpoint_path(tmp_path) == tmp_path / "rank0.json"
    assert checkpoint_path(str(tmp_path / "new") + os.sep) == tmp_path / "new" / "rank0.json"
    assert checkpoint_path(tmp_path / "runs") == tmp_path / "runs" / "rank0.json"
    assert checkpoint_path(tmp_path / "runs", rank=3) == tmp_path / "runs" / "rank3.json"
    assert checkpoint_path(tmp_path / "search.pth") == tmp_path / "search.pth"
    assert checkpoint_path(tmp_path / "search.pth", rank=1) == tmp_path / "search1.pth"


def test_directory_checkpoint_resumes(tmp_path: Path) -> None:
    directory = tmp_path / "runs"
    _, best = search(RandomSearcher, directory, num_iters=60)
    assert (directory / "rank0.json").is_file()
    _, resumed = search(RandomSearcher, directory, FailingScore(fail_at=1), num_iters=60)
    assert resumed == best


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "is not valid JSON"),
        ('{"format": "autonas-search-checkpoint/1", "fingerprint": {}, "state": {}}', "lacks its state"),
        ("[1, 2]", "holds list, not a search state"),
        ('{"format": "something else"}', "is not an autonas-search checkpoint"),
    ],
)
def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path, content: str, match: str) -> None:
    path = tmp_path / "search.json"
    path.write_text(content)
    with pytest.raises(CheckpointError, match=match):
        search(RandomSearcher, path, num_iters=10)


def test_truncated_and_tampered_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "search.json"
    search(EvolveSearcher, path, num_iters=150)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(CheckpointError, match="is not valid JSON"):
        search(EvolveSearcher, path, num_iters=150)
    data = json.loads(text)
    data["state"]["iter_num"] = "ten"
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="search state 'iter_num' is a str, expected int"):
        search(EvolveSearcher, path, num_iters=150)
    data = json.loads(text)
    del data["state"]["population"]
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match=r"search state keys .* do not match EvolveSearcher's"):
        search(EvolveSearcher, path, num_iters=150)
    data = json.loads(text)
    data["rng_state"] = [1, 2]
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="is malformed"):
        search(EvolveSearcher, path, num_iters=150)


def test_checkpoint_of_another_search_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "search.json"
    search(EvolveSearcher, path, num_iters=30)
    with pytest.raises(CheckpointError, match="written by a different search: its searcher"):
        search(RandomSearcher, path, num_iters=30)
    with pytest.raises(CheckpointError, match="its seed differ"):
        search(EvolveSearcher, path, num_iters=30, seed=4)
    with pytest.raises(CheckpointError, match="its limits differ"):
        EvolveSearcher().search(
            ChoiceSpace(CHOICES),
            {"flops": (flops, 0.4 * MAX_FLOPS), "params": (params, None)},
            {"score_func": score, "num_iters": 30, "seed": 3, "checkpoint": path},
        )
    other_space = {**CHOICES, "layer0.width": [8, 16]}
    with pytest.raises(CheckpointError, match="its hparams differ"):
        EvolveSearcher().search(
            ChoiceSpace(other_space), CONSTRAINTS, {"score_func": score, "num_iters": 30, "seed": 3, "checkpoint": path}
        )


def test_a_bad_checkpoint_is_ignored_with_a_warning_when_asked(tmp_path: Path) -> None:
    path = tmp_path / "search.json"
    path.write_text("{not json")
    fresh, expected = search(EvolveSearcher, None, num_iters=100)
    with pytest.warns(UserWarning, match="ignoring search checkpoint .* not valid JSON"):
        searcher, best = search(EvolveSearcher, path, num_iters=100, strict_checkpoint=False)
    assert best == expected and searcher.state_dict() == fresh.state_dict()
    assert json.loads(path.read_text())["state"]["iter_num"] == 100  # overwritten by the new search
