"""What keeps torch.distributed ranks in step during a model search (one process; gloo runs in integration_tests)."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.distributed as dist

from autonas_modes.distributed import COLLECTIVES, collectives_refused, distributed_ranks, latency_on_rank_zero


class FakeRanks:
    """Rank `rank` of `size`; `all_gather` answers with rank 0's value from `rank0` (no processes)."""

    def __init__(self, rank: int, size: int, rank0: Any) -> None:
        self.rank, self.size, self.rank0 = rank, size, rank0
        self.gathered: list[Any] = []

    def all_gather(self, obj: Any) -> list[Any]:
        self.gathered.append(obj)
        return [self.rank0 if self.rank else obj, *([None] * (self.size - 1))]


def test_latency_is_measured_on_rank_zero_alone_and_shared() -> None:
    measured: list[int] = []

    def latency(model: Any, dummy_input: Any) -> float:
        measured.append(1)
        return 12.5

    model = torch.nn.Linear(2, 2)
    assert latency_on_rank_zero(latency, FakeRanks(0, 2, None))(model, None) == 12.5
    other = FakeRanks(1, 2, rank0=12.5)
    assert latency_on_rank_zero(latency, other)(model, None) == 12.5
    assert measured == [1] and other.gathered == [None]  # rank 1 measured nothing and sent nothing


def test_collectives_are_refused_with_advice_inside_and_restored_after() -> None:
    originals = {name: getattr(dist, name) for name in COLLECTIVES if hasattr(dist, name)}
    assert {"all_reduce", "all_gather", "broadcast", "barrier"} <= set(originals)
    with collectives_refused():
        for name in originals:
            with pytest.raises(
                RuntimeError, match=rf"score_func called torch.distributed.{name} .*score_on='every_rank'"
            ):
                getattr(dist, name)(torch.zeros(1))
    assert {name: getattr(dist, name) for name in originals} == originals
    with pytest.raises(ValueError), collectives_refused():
        raise ValueError("the score failed")
    assert dist.all_reduce is originals["all_reduce"]


def test_one_process_has_no_ranks() -> None:
    assert distributed_ranks() is None
