"""Training a patched supernet with DistributedDataParallel: every rank runs the same subnet at every step.

Two processes (torch.distributed, gloo on 127.0.0.1) convert the same model with ``autonas.convert``
(which patches it with the AutoNAS patch manager and no seed, so only the sampling generator's
one-time broadcast can make the ranks agree), wrap it in DistributedDataParallel and train on
different data per rank.
"""

from __future__ import annotations

import socket
import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel

import autonas as an
from autonas_patch import AutoNASPatchManager, PatchManager, prep_for_eval

STEPS = 20


class Block(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class Net(nn.Module):
    def __init__(self, num_blocks: int = 3) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(*(Block(16, 32) for _ in range(num_blocks)))
        self.head = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)).mean(dim=(2, 3)))


RULES = {
    "nn.Conv2d": {"*": {"channels_ratio": (0.25, 0.5, 0.75, 1.0), "channel_divisor": 8, "kernel_size": (3,)}},
    "nn.BatchNorm2d": {"*": {"features_ratio": (0.25, 0.5, 0.75, 1.0), "feature_divisor": 8}},
    "nn.Sequential": {"*": {"min_depth": 1}},
}


def build_supernet() -> Net:
    """Net converted into a search space: the hidden width of every block and the depth of ``blocks``."""
    torch.manual_seed(0)
    return an.convert(Net(), mode=[("autonas", RULES)])


def subnet(model: nn.Module) -> tuple[tuple[str, int], ...]:
    return tuple(an.get_subnet_config(model, configurable=True).items())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _train_on_rank(rank: int, port: int, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        model = build_supernet()  # patched without a seed: rank 0's generator is broadcast on first use
        assert type(PatchManager.get_manager(model)) is AutoNASPatchManager
        ddp = DistributedDataParallel(model, find_unused_parameters=True)  # skipped blocks have unused params
        optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
        data = torch.Generator().manual_seed(100 + rank)  # every rank trains on its own data
        configs = []
        ddp.train()
        for _ in range(STEPS):
            x = torch.randn(4, 3, 16, 16, generator=data)
            y = torch.randint(0, 10, (4,), generator=data)
            loss = F.cross_entropy(ddp(x), y)
            configs.append(subnet(model))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ddp.eval()  # back to the maximal subnet; 20 cached batches are too few to recalibrate
        config_after_eval = subnet(model)

        calibration = [torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(7 + i)) for i in range(3)]
        prep_for_eval(ddp, lambda m: [m(x) for x in calibration])
        with torch.no_grad():
            output = ddp(torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)))
        manager = PatchManager.get_manager(ddp)
        torch.save(
            {
                "configs": configs,
                "config_after_eval": config_after_eval,
                "warnings": [str(w.message) for w in caught],
                "parameters": {name: p.detach().clone() for name, p in model.named_parameters()},
                "output": output,
                "queue": len(manager.patch_data["queue"]),
            },
            Path(out_dir) / f"rank{rank}.pt",
        )
        dist.barrier()  # leave together: tearing gloo down while the peer still sends aborts the process
    finally:
        dist.destroy_process_group()


def _results_of_two_ranks(worker: Callable[[int, int, str], None], out_dir: Path) -> list[dict]:
    """Run ``worker(rank, port, out_dir)`` in two processes and load what each rank saved."""
    mp.spawn(worker, args=(free_port(), str(out_dir)), nprocs=2)
    return [torch.load(out_dir / f"rank{rank}.pt", weights_only=False) for rank in range(2)]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return _results_of_two_ranks(_train_on_rank, tmp_path_factory.mktemp("ddp"))


def test_every_rank_runs_the_same_subnet_at_every_step(ranks) -> None:
    first, second = ranks
    assert len(first["configs"]) == STEPS
    assert first["configs"] == second["configs"]
    assert len(set(first["configs"])) > 5, "training must visit many subnets"
    depths = {dict(config)["blocks.depth"] for config in first["configs"]}
    assert depths >= {1, 3}, "depth must be sampled too"


def test_parameters_are_identical_after_training(ranks) -> None:
    first, second = ranks
    assert first["parameters"].keys() == second["parameters"].keys()
    for name, value in first["parameters"].items():
        assert torch.equal(value, second["parameters"][name]), name
    untrained = build_supernet()
    assert not torch.equal(first["parameters"]["head.weight"], untrained.head.weight), "training must change weights"


def test_eval_returns_to_the_maximal_subnet_and_gives_identical_outputs(ranks) -> None:
    first, second = ranks
    maximal = subnet(build_supernet())
    assert dict(maximal) == {
        "blocks.depth": 3,
        "blocks.0.conv1.out_channels": 32,
        "blocks.1.conv1.out_channels": 32,
        "blocks.2.conv1.out_channels": 32,
    }
    for rank in ranks:
        assert rank["config_after_eval"] == maximal
        assert any("queue not filled (20 of 50 batches)" in message for message in rank["warnings"])
        assert rank["queue"] == STEPS + 3, "the calibration batches are cached too"
    assert torch.equal(first["output"], second["output"])


# ------------------------------------------------------------------------------- sandwich steps
SANDWICH_STEPS = 6
NUM_RANDOM = 2


def count_allreduces(calls, bucket):  # unannotated: DDP rejects the string annotations of this module
    calls[-1] += 1
    return default_hooks.allreduce_hook(None, bucket)


CANDIDATES = 3


def _recorded_loss(ddp, model, x, y, scores):  # unannotated, as count_allreduces
    """A candidate score: the loss on this rank's batch, recorded with the candidate's subnet."""

    def score():
        loss = F.cross_entropy(ddp(x), y)
        scores.append((subnet(model), float(loss)))
        return loss

    return score


def _sandwich_on_rank(rank: int, port: int, out_dir: str) -> None:
    """Sandwich steps twice: through the DDP model (no_sync) and through the inner model (every backward syncs)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        results = {}
        for variant in ("no_sync", "every_backward", "worst"):
            model = build_supernet()
            # A seed per rank: only the broadcast of rank 0's generator makes the ranks agree; both
            # variants then draw the same subnets.
            PatchManager.get_manager(model).generator.reseed(5 + rank)
            ddp = DistributedDataParallel(model, find_unused_parameters=True, bucket_cap_mb=100)
            calls: list[int] = []
            ddp.register_comm_hook(calls, count_allreduces)
            optimizer = torch.optim.SGD(ddp.parameters(), lr=0.05, momentum=0.9)
            data = torch.Generator().manual_seed(100 + rank)
            configs, first_gradients, scores = [], {}, []
            ddp.train()
            for _ in range(SANDWICH_STEPS):
                x = torch.randn(4, 3, 16, 16, generator=data)
                y = torch.randint(0, 10, (4,), generator=data)
                calls.append(0)
                optimizer.zero_grad()
                # Passing the inner model leaves DDP's no_sync unused: every backward all-reduces.
                options = {"num_random": NUM_RANDOM, "distill": True}
                if variant == "worst":  # each rank scores the candidates on its own batch
                    options.update(
                        choose="worst", candidates=CANDIDATES, score=_recorded_loss(ddp, model, x, y, scores)
                    )
                for step in an.sandwich(model if variant == "every_backward" else ddp, **options):
                    step.loss(ddp(x), y, F.cross_entropy).backward()
                    configs.append((step.kind, subnet(model)))
                if not first_gradients:
                    first_gradients = {name: p.grad.clone() for name, p in model.named_parameters()}
                optimizer.step()
            results[variant] = {
                "configs": configs,
                "allreduces_per_step": calls,
                "first_gradients": first_gradients,
                "scores": scores,
                "parameters": {name: p.detach().clone() for name, p in model.named_parameters()},
            }
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
        dist.barrier()  # leave together (see _train_on_rank)
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def sandwich_ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    return _results_of_two_ranks(_sandwich_on_rank, tmp_path_factory.mktemp("ddp_sandwich"))


def test_sandwich_steps_train_the_same_subnets_on_every_rank(sandwich_ranks) -> None:
    first, second = sandwich_ranks
    for variant in ("no_sync", "every_backward"):
        configs = first[variant]["configs"]
        assert configs == second[variant]["configs"]
        assert len(configs) == SANDWICH_STEPS * (2 + NUM_RANDOM)
        kinds = [kind for kind, _ in configs]
        assert kinds == ["max", "min", "random", "random"] * SANDWICH_STEPS
        randoms = {config for kind, config in configs if kind == "random"}
        assert len(randoms) > 3 and {dict(config)["blocks.depth"] for config in randoms} > {3}
    assert first["no_sync"]["configs"] == first["every_backward"]["configs"], "both variants from rank 0's seed"


def test_sandwich_steps_all_reduce_once_per_step_and_keep_ranks_identical(sandwich_ranks) -> None:
    first, second = sandwich_ranks
    assert first["no_sync"]["allreduces_per_step"] == [1] * SANDWICH_STEPS
    assert first["every_backward"]["allreduces_per_step"] == [2 + NUM_RANDOM] * SANDWICH_STEPS
    for variant in ("no_sync", "every_backward"):
        for name, value in first[variant]["parameters"].items():
            assert torch.equal(value, second[variant]["parameters"][name]), (variant, name)
    # Averaging the sum of the subnets' gradients once equals summing their averages (up to rounding).
    for name, value in first["no_sync"]["first_gradients"].items():
        other = first["every_backward"]["first_gradients"][name]
        torch.testing.assert_close(value, other, rtol=0, atol=1e-5 * float(other.abs().max()))
    untrained = build_supernet()
    assert not torch.equal(first["no_sync"]["parameters"]["head.weight"], untrained.head.weight)


def test_worst_candidates_are_chosen_by_the_loss_averaged_over_ranks(sandwich_ranks) -> None:
    first, second = sandwich_ranks
    assert first["worst"]["configs"] == second["worst"]["configs"]
    for name, value in first["worst"]["parameters"].items():
        assert torch.equal(value, second["worst"]["parameters"][name]), name
    assert first["worst"]["allreduces_per_step"] == [1] * SANDWICH_STEPS, "scoring forwards add no gradient sync"
    chosen = [config for kind, config in first["worst"]["configs"] if kind == "random"]
    groups = len(chosen)
    assert len(first["worst"]["scores"]) == groups * CANDIDATES
    local_picks = []
    for group in range(groups):
        rows = [rank["worst"]["scores"][group * CANDIDATES : (group + 1) * CANDIDATES] for rank in sandwich_ranks]
        assert [config for config, _ in rows[0]] == [config for config, _ in rows[1]], "the same candidates"
        mean = [(a + b) / 2 for (_, a), (_, b) in zip(*rows, strict=True)]
        assert chosen[group] == rows[0][mean.index(max(mean))][0]
        local_picks += [row[max(range(CANDIDATES), key=lambda i, row=row: row[i][1])][0] for row in rows]
    assert local_picks != [config for config in chosen for _ in range(2)], "ranks alone would have disagreed"
