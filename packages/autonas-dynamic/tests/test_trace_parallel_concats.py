"""Concatenations added together (GhostNet's blocks on one residual stream) are one concatenation.

Each block makes half its output with a conv and the other half with a depthwise conv of that half,
concatenated; the blocks' outputs are added by the residuals, so the stream is produced by several
concatenations at once. Their inputs of equal sizes are then coupled pairwise and the stream is one
concatenation: every block's primary conv shares one width. Checked: the choices, the largest
subnet is the original, exported subnets compute what the dynamic model does, exact costs. Inputs
of different sizes keep the stream fixed.
"""

from __future__ import annotations

import torch
from subnet_checks import assert_exact_subnets
from torch import nn

from autonas_config import AutoNASConfig
from autonas_dynamic.space import generate_search_space


class Ghost(nn.Module):
    def __init__(self, width: int = 32, primary: int = 16) -> None:
        super().__init__()
        self.primary = nn.Conv2d(width, primary, 1)
        self.cheap = nn.Conv2d(primary, width - primary, 3, padding=1, groups=primary)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = torch.relu(self.primary(x))
        return x + torch.cat([half, self.cheap(half)], 1)


class Net(nn.Module):
    def __init__(self, second_primary: int = 16) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.cheap = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.blocks = nn.ModuleList([Ghost(), Ghost(primary=second_primary)])
        self.head = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.stem(x)
        x = torch.cat([half, self.cheap(half)], 1)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


def _rules() -> dict:
    rules = AutoNASConfig().model_dump()
    rules["nn.Conv2d"] = {"*": {"channels_ratio": (0.5, 0.75, 1.0), "channel_divisor": 4, "kernel_size": ()}}
    return rules


def test_concatenations_added_together_share_their_inputs_widths() -> None:
    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model(x)
    space = generate_search_space(model, _rules(), example_input=x)
    assert space.hparams()["blocks.0.primary.in_channels"] == [16, 24, 32]  # twice the shared half: 8, 12 or 16

    def check(model: nn.Module, exported: nn.Module) -> None:
        half = model.head.in_channels // 2
        primaries = [block.primary.out_channels for block in model.blocks._modules.values()]  # dropped ones too
        assert primaries == [half, half] and model.stem.out_channels == half

    assert_exact_subnets(model, space, x, reference, check)


def test_added_concatenations_of_different_parts_keep_the_stream() -> None:
    model = Net(second_primary=8).eval()
    space = generate_search_space(model, _rules(), example_input=torch.randn(2, 3, 8, 8))
    assert "blocks.0.primary.in_channels" not in space.hparams()
