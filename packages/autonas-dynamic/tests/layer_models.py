"""Small models and helpers shared by the dynamic-layer tests."""

from __future__ import annotations

import torch
from torch import nn

from autonas_dynamic import DYNAMIC_REGISTRY, Hparam
from autonas_dynamic.dynamic import DynamicModule


def convert_all(model: nn.Module, skip: tuple[type, ...] = (nn.Sequential,)) -> nn.Module:
    """Convert every supported submodule of ``model`` (no coupling), except the ``skip`` types."""
    for module in list(model.modules()):
        if module in DYNAMIC_REGISTRY and not isinstance(module, skip):
            DYNAMIC_REGISTRY.convert(module)
    return model


def couple(*sites: tuple[DynamicModule, str]) -> Hparam:
    """Install the hparam of the first ``(module, name)`` site into every other site, as coupling does."""
    first, name = sites[0]
    shared = first.get_hparam(name)
    for module, other in sites[1:]:
        setattr(module, other, shared)
    return shared


def pin(module: DynamicModule, *names: str) -> None:
    """Pin hparams at a model boundary (what the tracer does for inputs and outputs of the model)."""
    for name in names:
        hparam = module.get_hparam(name)
        hparam.choices = [hparam.original]


class InvertedResidual(nn.Module):
    """A MobileNetV2-style block with a residual connection (shape preserving)."""

    def __init__(self, channels: int, expand: int) -> None:
        super().__init__()
        hidden = channels * expand
        self.conv = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, hidden, 3, padding=1, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
            nn.Conv2d(hidden, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x)


class ConvNet(nn.Module):
    """conv-BN-ReLU x2, a depthwise conv, pooling and a linear head: the chain most CNNs are made of."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 24, 5, padding=2, bias=False)
        self.bn2 = nn.BatchNorm2d(24)
        self.dw = nn.Conv2d(24, 24, 3, padding=1, groups=24)
        self.head = nn.Linear(24, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        x = torch.relu(self.dw(x))
        return self.head(x.mean(dim=(2, 3)))


def coupled_convnet() -> tuple[ConvNet, dict[str, Hparam]]:
    """A converted :class:`ConvNet` with its coupled groups installed by hand and boundaries pinned."""
    model = convert_all(ConvNet())
    groups = {
        "conv1": couple((model.conv1, "out_channels"), (model.bn1, "num_features"), (model.conv2, "in_channels")),
        "conv2": couple(
            (model.conv2, "out_channels"),
            (model.bn2, "num_features"),
            (model.dw, "in_channels"),
            (model.dw, "out_channels"),
            (model.head, "in_features"),
        ),
    }
    pin(model.conv1, "in_channels")
    pin(model.head, "out_features")
    return model, groups


def warm_up_batchnorm(model: nn.Module, *shape: int, steps: int = 3) -> None:
    """A few training forwards so BatchNorm running statistics are not trivial, then eval mode."""
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(torch.randn(*shape))
    model.eval()
