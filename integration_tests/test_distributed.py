"""Training a patched supernet with DistributedDataParallel: every rank runs the same subnet at every step.

Two processes (torch.distributed, gloo on 127.0.0.1) convert the same model with ``autonas.convert``
(which patches it with the AutoNAS patch manager and no seed, so only the sampling generator's
one-time broadcast can make the ranks agree), wrap it in DistributedDataParallel and train on
different data per rank.
"""

from __future__ import annotations

import socket
import warnings
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn
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
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("ddp")
    mp.spawn(_train_on_rank, args=(free_port(), str(out_dir)), nprocs=2)
    return [torch.load(out_dir / f"rank{rank}.pt", weights_only=False) for rank in range(2)]


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
