"""The demo's supernet: a small residual CNN for 8x8 handwritten digits.

Two stages of residual blocks, each stage an ``nn.Sequential`` so that autonas can drop trailing
blocks (depth), with block-internal widths and each stage's residual width searchable. The demo's
search rules (:data:`SEARCH_RULES`) use a channel divisor of 8, so the narrow layers of this model
still get four width choices each.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

NUM_CLASSES = 10
INPUT_SHAPE = (1, 1, 8, 8)

_RATIOS = (0.25, 0.5, 0.75, 1.0)

SEARCH_RULES: dict[str, Any] = {
    "nn.Conv2d": {"*": {"channels_ratio": _RATIOS, "channel_divisor": 8}},
    "nn.BatchNorm2d": {"*": {"features_ratio": _RATIOS, "feature_divisor": 8}},
    "nn.Linear": {"*": {"features_ratio": _RATIOS, "feature_divisor": 8}},
    "nn.Sequential": {"*": {"min_depth": 1}},
}
"""The autonas rules of the demo: four widths per layer (25-100 %, multiples of 8), at least one
block per stage. Passed as ``an.convert(model, mode=[("autonas", SEARCH_RULES)])``."""


class ResidualBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN plus the input, then ReLU; keeps the shape of its input.

    Args:
        channels: channels of the input and the output (the residual width).
        hidden: channels between the two convolutions.
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, hidden, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(x + self.bn2(self.conv2(out)))


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(),
    )


class DigitsNet(nn.Module):
    """Residual CNN for 1x8x8 digit images: stem, stage 1 at 8x8, stage 2 at 4x4, global pooling, linear head.

    Args:
        widths: residual width of stage 1 and stage 2.
        blocks: residual blocks per stage.
        num_classes: outputs of the classifier.
    """

    def __init__(self, widths: tuple[int, int] = (32, 64), blocks: int = 3, num_classes: int = NUM_CLASSES) -> None:
        super().__init__()
        width1, width2 = widths
        self.stem = _conv_bn_relu(1, width1)
        self.stage1 = nn.Sequential(*(ResidualBlock(width1, width1) for _ in range(blocks)))
        self.down = _conv_bn_relu(width1, width2, stride=2)
        self.stage2 = nn.Sequential(*(ResidualBlock(width2, width2) for _ in range(blocks)))
        self.head = nn.Linear(width2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stage1(self.stem(x))
        x = self.stage2(self.down(x))
        return self.head(x.mean(dim=(2, 3)))  # global average pooling; keeps stage 2's width searchable
