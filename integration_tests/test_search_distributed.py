"""Model search under torch.distributed: 2 and 3 gloo ranks split the scoring and agree with one process.

Every rank converts the same model, calibrates BatchNorm and scores on the same data, and runs
``autonas.search``; the candidates of each batch are scored across the ranks. The ranks must end
with the state and exported subnet of a one-process search with the same seed, each having
scored its share; a search whose ranks are all killed resumes from rank 0's checkpoint on
another number of ranks.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from test_distributed import Net, free_port
from torch import nn

import autonas as an

NUM_ITERS = 40
RULES = {
    "nn.Conv2d": {"*": {"channels_ratio": (0.25, 0.5, 0.75, 1.0), "channel_divisor": 8, "kernel_size": (3,)}},
    "nn.BatchNorm2d": {"*": {"features_ratio": (0.25, 0.5, 0.75, 1.0), "feature_divisor": 8}},
    "nn.Sequential": {"*": {"min_depth": 2}},
}


def _data(seed: int, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(8, 3, 16, 16, generator=generator), torch.randint(0, 10, (8,), generator=generator))
        for _ in range(count)
    ]


def _search_on_rank(rank: int, world: int, port: int, out_dir: str, options: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)
        model = an.convert(Net(num_blocks=5), mode=[("autonas", RULES)])
        validation = _data(1, 2)
        shard = validation[rank::world] if options.get("score_on") == "every_rank" else validation
        calls = []

        def score_func(net: nn.Module) -> float:
            calls.append(json.dumps(an.get_subnet_config(net, configurable=True), sort_keys=True))
            if rank == 0 and len(calls) == options.get("kill_at"):
                os.kill(os.getpid(), signal.SIGKILL)  # no cleanup, no last checkpoint: a real crash
            with torch.no_grad():
                loss = sum(F.cross_entropy(net(x), y, reduction="sum") for x, y in shard)
            if options.get("all_reduce"):
                total = torch.tensor([float(loss)])
                dist.all_reduce(total)
                loss = total.item()
            return -float(loss)

        config = {"score_func": score_func, "data_loader": _data(2, 3), "num_iters": NUM_ITERS, "seed": 3}
        config.update({key: options[key] for key in ("checkpoint", "score_on") if key in options})
        try:
            model, state = an.search(model, {"flops": "60%"}, torch.randn(1, 3, 16, 16), config=config)
        except RuntimeError as error:
            torch.save({"error": str(error)}, Path(out_dir) / f"rank{rank}.pt")
            return
        with torch.no_grad():
            output = model(torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(5)))
        torch.save(
            {"state": json.dumps(state, sort_keys=True, default=repr), "output": output, "calls": calls},
            Path(out_dir) / f"rank{rank}.pt",
        )
    finally:
        if world > 1:
            dist.destroy_process_group()


def run_search(world: int, out_dir: Path, **options: Any) -> list[dict[str, Any]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    mp.spawn(_search_on_rank, args=(world, free_port(), str(out_dir), options), nprocs=world)
    return [torch.load(out_dir / f"rank{rank}.pt", weights_only=False) for rank in range(world)]


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return run_search(1, tmp_path_factory.mktemp("single"))[0]


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_split_the_scoring_and_end_like_one_process(single: dict[str, Any], world: int, tmp_path: Path) -> None:
    ranks = run_search(world, tmp_path)
    state = json.loads(single["state"])
    scored = sum(c["is_satisfied"] for c in state["samples"].values())
    assert scored >= 25, "the search must score many candidates"
    for result in ranks:
        assert result["state"] == single["state"]
        assert torch.equal(result["output"], single["output"])
    per_rank = [len(result["calls"]) for result in ranks]
    assert sum(per_rank) == scored and max(per_rank) - min(per_rank) <= 1, per_rank
    assert sorted(call for result in ranks for call in result["calls"]) == sorted(single["calls"])


def test_a_search_killed_on_two_ranks_resumes_on_three(single: dict[str, Any], tmp_path: Path) -> None:
    checkpoint = tmp_path / "search.json"
    with pytest.raises(mp.ProcessExitedException, match="signal SIGKILL"):
        run_search(2, tmp_path / "killed", checkpoint=str(checkpoint), kill_at=8)
    saved = json.loads(checkpoint.read_text())["state"]["iter_num"]
    assert 0 < saved < NUM_ITERS
    resumed = run_search(3, tmp_path / "resumed", checkpoint=str(checkpoint))
    for result in resumed:
        assert result["state"] == single["state"]
        assert torch.equal(result["output"], single["output"])
    assert sum(len(r["calls"]) for r in resumed) < len(single["calls"]), "it resumed rather than starting again"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["killed", "resumed", "search.json"]  # rank 0 writes


def test_every_rank_scoring_all_reduces_over_the_shards(tmp_path: Path) -> None:
    ranks = run_search(2, tmp_path, score_on="every_rank", all_reduce=True)
    assert ranks[0]["state"] == ranks[1]["state"]
    assert ranks[0]["calls"] == ranks[1]["calls"]  # every candidate scored on both ranks
    state = json.loads(ranks[0]["state"])
    assert len(ranks[0]["calls"]) == sum(c["is_satisfied"] for c in state["samples"].values())


def test_a_collective_in_a_one_rank_score_stops_the_search_with_advice(tmp_path: Path) -> None:
    ranks = run_search(2, tmp_path, all_reduce=True)
    for result in ranks:
        assert "score_func called torch.distributed.all_reduce" in result["error"]
        assert "score_on='every_rank'" in result["error"]
