"""The demo's supernet: a small residual 1-D CNN for MNIST-1D signals (1 channel, 40 samples).

A strided stem, one stage of residual blocks (an ``nn.Sequential``, so that autonas can drop
trailing blocks), global average pooling and a linear head. The residual width, the width inside
every block and the number of blocks are searchable. The demo's search rules
(:data:`SEARCH_RULES`) use a channel divisor of 8, so even the narrow layers get four width
choices each.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

NUM_CLASSES = 10
INPUT_SHAPE = (1, 1, 40)

_RATIOS = (0.25, 0.5, 0.75, 1.0)

SEARCH_RULES: dict[str, Any] = {
    "nn.Conv1d": {"*": {"channels_ratio": _RATIOS, "channel_divisor": 8}},
    "nn.BatchNorm1d": {"*": {"features_ratio": _RATIOS, "feature_divisor": 8}},
    "nn.Linear": {"*": {"features_ratio": _RATIOS, "feature_divisor": 8}},
    "nn.Sequential": {"*": {"min_depth": 1}},
}
"""The autonas rules of the demo: four widths per layer (25-100 %, multiples of 8), at least one
block. Passed as ``an.convert(model, mode=[("autonas", SEARCH_RULES)])``."""


class ResidualBlock(nn.Module):
    """conv-BN-ReLU-conv-BN (kernel 5, length kept) plus the input, then ReLU.

    Args:
        channels: channels of the input and the output (the residual width).
        hidden: channels between the two convolutions.
    """

    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(channels, hidden, 5, padding=2, bias=False)
        self.bn1 = nn.BatchNorm1d(hidden)
        self.conv2 = nn.Conv1d(hidden, channels, 5, padding=2, bias=False)
        self.bn2 = nn.BatchNorm1d(channels)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(x + self.bn2(self.conv2(out)))


class SignalNet(nn.Module):
    """Residual 1-D CNN: stride-2 stem, residual blocks, global average pooling, linear head.

    Args:
        channels: residual width (the stem's output and every block's input and output).
        hidden: width inside each block.
        blocks: residual blocks.
        num_classes: outputs of the classifier.
        zero_init_residual: start every block's last BatchNorm scale at zero, so that each block
            begins as the identity (as torchvision's ResNet option of the same name).
    """

    def __init__(
        self,
        channels: int = 32,
        hidden: int = 64,
        blocks: int = 3,
        num_classes: int = NUM_CLASSES,
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        self.stem = nn.Conv1d(1, channels, 5, stride=2, padding=2, bias=False)
        self.stem_bn = nn.BatchNorm1d(channels)
        self.blocks = nn.Sequential(*(ResidualBlock(channels, hidden) for _ in range(blocks)))
        if zero_init_residual:
            for block in self.blocks:
                nn.init.zeros_(block.bn2.weight)
        self.head = nn.Linear(channels, num_classes)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.relu(self.stem_bn(self.stem(x))))
        return self.head(x.mean(dim=-1))  # global average pooling; keeps the residual width searchable
