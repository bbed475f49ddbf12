"""A small supernet with a handmade width/depth mechanism and BatchNorm, and its SubnetSampler."""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


class SlimConv(nn.Conv2d):
    """A 3x3 conv whose active output channels are a prefix of its weight; input width follows the input."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(in_channels, out_channels, 3, padding=1, bias=False)
        self.active_out = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight[: self.active_out, : x.shape[1]]
        return F.conv2d(x, weight, None, self.stride, self.padding)


class SlimBatchNorm(nn.BatchNorm2d):
    """BatchNorm over the first ``x.shape[1]`` channels; running statistics are updated through prefix views."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked += 1
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked)
        use_batch_stats = self.training or self.running_mean is None
        return F.batch_norm(
            x,
            None if self.running_mean is None else self.running_mean[:c],
            None if self.running_var is None else self.running_var[:c],
            self.weight[:c],
            self.bias[:c],
            use_batch_stats,
            momentum,
            self.eps,
        )


class Block(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = SlimConv(channels, hidden)
        self.bn1 = SlimBatchNorm(hidden)
        self.conv2 = SlimConv(hidden, channels)
        self.bn2 = SlimBatchNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class DepthSequential(nn.Sequential):
    """Runs only its first ``active_depth`` blocks."""

    def __init__(self, *blocks: nn.Module) -> None:
        super().__init__(*blocks)
        self.active_depth = len(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in list(self)[: self.active_depth]:
            x = block(x)
        return x


class SuperNet(nn.Module):
    """stem conv + BN, three residual blocks of searchable hidden width, searchable depth, linear head."""

    def __init__(self, channels: int = 8, hidden: int = 8, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(channels)
        self.blocks = DepthSequential(*(Block(channels, hidden) for _ in range(3)))
        self.head = nn.Linear(channels, num_classes)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        x = torch.relu(self.stem_bn(self.stem(x)))
        x = self.blocks(x)
        return self.head(x.mean(dim=(2, 3))) * scale


class SuperNetSampler:
    """SubnetSampler over a SuperNet: hidden width of every block and the depth."""

    def __init__(self, model: SuperNet, widths: tuple[int, ...] = (2, 4, 8), depths: tuple[int, ...] = (1, 2, 3)):
        self.model = model
        self.choices: dict[str, tuple[int, ...]] = {"blocks.depth": depths}
        for index in range(len(model.blocks)):
            self.choices[f"blocks.{index}.hidden"] = widths

    def _set(self, name: str, value: int) -> None:
        if name == "blocks.depth":
            self.model.blocks.active_depth = value
        else:
            self.model.blocks[int(name.split(".")[1])].conv1.active_out = value

    def is_configurable(self) -> bool:
        return any(len(choices) > 1 for choices in self.choices.values())

    def sample(self, rng: random.Random) -> None:
        self.select({name: rng.choice(choices) for name, choices in self.choices.items()})

    def sample_max(self) -> None:
        self.select({name: max(choices) for name, choices in self.choices.items()})

    def sample_min(self) -> None:
        self.select({name: min(choices) for name, choices in self.choices.items()})

    def select(self, config: dict[str, Any]) -> None:
        for name, value in config.items():
            self._set(name, value)

    def config(self) -> dict[str, int]:
        blocks = self.model.blocks
        config = {"blocks.depth": blocks.active_depth}
        config.update({f"blocks.{i}.hidden": block.conv1.active_out for i, block in enumerate(blocks)})
        return config


def patched_supernet(seed: int | None = 0, **kwargs: Any) -> tuple[SuperNet, SuperNetSampler]:
    from autonas_patch import AutoNASPatchManager

    torch.manual_seed(0)
    model = SuperNet(**kwargs)
    sampler = SuperNetSampler(model)
    AutoNASPatchManager(model).patch(sampler, seed=seed)
    return model, sampler
