"""Small models for the autonas-modes tests: a residual CNN whose block stack can lose trailing blocks."""

from __future__ import annotations

import torch
import torch.nn as nn

#: Rules with divisor 8 so that the small widths below have several choices.
RULES = {
    "nn.Conv2d": {"*": {"channels_ratio": (0.5, 0.75, 1.0), "channel_divisor": 8}},
    "nn.BatchNorm2d": {"*": {"features_ratio": (0.5, 0.75, 1.0), "feature_divisor": 8}},
    "nn.Linear": {"*": {"features_ratio": (0.5, 0.75, 1.0), "feature_divisor": 8}},
    "nn.Sequential": {"*": {"min_depth": 1}},
}


class Block(nn.Module):
    """A residual block that keeps the shape, so a Sequential of them may drop trailing blocks."""

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class TinyNet(nn.Module):
    """stem -> residual blocks -> strided conv -> pool -> MLP head."""

    def __init__(self, width: int = 16, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        self.blocks = nn.Sequential(Block(width, 24), Block(width, 24), Block(width, 24))
        self.down = nn.Sequential(
            nn.Conv2d(width, 32, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(32), nn.ReLU()
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(32, 24)
        self.fc2 = nn.Linear(24, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.down(self.blocks(self.stem(x)))).flatten(1)
        return self.fc2(torch.relu(self.fc1(x)))


class OtherNet(TinyNet):
    """Same layers, another class (restoring a TinyNet state into it must fail)."""


class DataDependentNet(nn.Module):
    """conv -> conv behind a branch on a tensor value: torch.fx cannot trace the forward."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(64, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(x if x.mean() > 0 else -x)


def randomize_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters (so BN errors show)."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=gen) * 0.1)
    return model


def make_tiny(seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return randomize_batchnorm(TinyNet(), seed).eval()


class FlopsLatency:
    """A stand-in for measured latency: affine in the FLOPs of the active subnet, recording every call.

    Attributes:
        calls: the configurable subnet config of the model at each call (``{}`` for a plain model).
    """

    def __init__(self, ms_per_mflop: float = 1.8, offset_ms: float = 0.5) -> None:
        self.ms_per_mflop, self.offset_ms = ms_per_mflop, offset_ms
        self.calls: list[dict] = []

    def __call__(self, model: nn.Module, dummy: torch.Tensor) -> float:
        import autonas_modes as am
        from autonas_dynamic.cost import count_flops

        self.calls.append(am.get_subnet_config(model, configurable=True) if am.is_dynamic(model) else {})
        return self.ms_per_mflop * count_flops(model, dummy) / 1e6 + self.offset_ms
