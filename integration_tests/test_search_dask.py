"""Standalone search with a dask.distributed executor: worker processes score, results equal a serial search.

A ``Client(processes=True)`` on localhost starts a scheduler and two worker processes, exactly as
a cluster would (the same code with ``Client("tcp://scheduler:8786")``). The score records which
process computed it, so the test sees that the workers, not this process, did the work.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest

from autonas_search import ChoiceSpace, EvolveSearcher, RandomSearcher

distributed = pytest.importorskip("distributed")

CHOICES = {f"layer{i}.width": [8, 16, 24, 32] for i in range(8)}
CHOICES["layer3.kernel"] = [1, 3, 5]


def flops(config: dict[str, Any]) -> int:
    total, width_in = 0, 3
    for i in range(8):
        kernel = config.get(f"layer{i}.kernel", 3)
        total += width_in * config[f"layer{i}.width"] * kernel * kernel
        width_in = config[f"layer{i}.width"]
    return total


LIMIT = 0.5 * flops({name: values[-1] for name, values in CHOICES.items()})


class RecordingScore:
    """The score of a config; each call appends the calling process's id to a file in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def __call__(self, config: dict[str, Any]) -> float:
        with open(self.directory / "pids", "a") as file:
            file.write(f"{os.getpid()}\n")
        return sum((1.0 + i % 3) * math.log(config[f"layer{i}.width"]) for i in range(8)) + config["layer3.kernel"]

    def pids(self) -> list[int]:
        return [int(line) for line in (self.directory / "pids").read_text().split()]


def search(searcher_cls: type, score: RecordingScore, executor: Any = None) -> Any:
    searcher = searcher_cls()
    config = {"score_func": score, "num_iters": 300, "seed": 5, "executor": executor}
    searcher.search(ChoiceSpace(CHOICES), {"flops": (flops, LIMIT)}, config)
    return searcher


@pytest.fixture(scope="module")
def client() -> Any:
    with distributed.Client(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None) as client:
        yield client


@pytest.mark.parametrize("searcher_cls", [EvolveSearcher, RandomSearcher])
def test_a_dask_executor_scores_on_the_workers_with_the_serial_result(
    client: Any, searcher_cls: type, tmp_path: Path
) -> None:
    serial_score = RecordingScore(tmp_path / "serial")
    (tmp_path / "serial").mkdir()
    serial = search(searcher_cls, serial_score)

    dask_score = RecordingScore(tmp_path / "dask")
    (tmp_path / "dask").mkdir()
    with client.get_executor() as executor:
        parallel = search(searcher_cls, dask_score, executor)

    assert parallel.best == serial.best
    assert parallel.state_dict() == serial.state_dict()
    worker_pids = set(client.run(os.getpid).values())
    assert len(worker_pids) == 2 and os.getpid() not in worker_pids
    scored = sum(c["is_satisfied"] for c in serial.samples.values())
    assert serial_score.pids() == [os.getpid()] * scored
    assert set(dask_score.pids()) == worker_pids  # both workers scored, this process did not
    assert len(dask_score.pids()) == scored  # each satisfied candidate once
