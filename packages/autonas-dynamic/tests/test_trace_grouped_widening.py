"""Grouped convolutions whose output is a whole multiple of their input (FastViT's downsampling).

A conv with ``groups=16`` from 16 to 32 channels (two outputs per input channel) and one with
``groups=2`` from 32 to 64 (groups of 16 in, 32 out) move by whole groups: the output width is
always twice the input width, the input follows as half of the output, chained from conv to conv.
Checked: the choices, the largest subnet is the original, exported subnets compute what the dynamic
model does, exact costs, and the groups of each exported conv. A conv whose group sizes do not
divide one another (24 to 32 in 8 groups: 3 in, 4 out) keeps both widths.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from subnet_checks import assert_exact_subnets
from torch import nn

from autonas_config import AutoNASConfig
from autonas_dynamic.space import generate_search_space


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.widen = nn.Conv2d(16, 32, 3, stride=2, padding=1, groups=16)
        self.norm = nn.BatchNorm2d(32)
        self.grouped = nn.Conv2d(32, 64, 3, padding=1, groups=2)
        self.head = nn.Conv2d(64, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.widen(F.relu(self.stem(x))))
        return self.head(F.relu(self.grouped(self.norm(x))))


def _images() -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_widening_grouped_convs_move_by_whole_groups() -> None:
    torch.manual_seed(0)
    model, x = Net().eval(), _images()
    model.norm.running_mean.uniform_(-0.5, 0.5)
    with torch.no_grad():
        reference = model(x)
    rules = AutoNASConfig().model_dump()
    rules["nn.Conv2d"] = {"*": {"channels_ratio": (0.5, 0.75, 1.0), "channel_divisor": 4, "kernel_size": ()}}
    rules["nn.BatchNorm2d"] = {"*": {"features_ratio": (0.5, 0.75, 1.0), "feature_divisor": 4}}
    space = generate_search_space(model, rules, example_input=x)
    # the stem follows as a quarter of the last grouped conv's width (16 channels per group of 32 there)
    assert space.hparams() == {"grouped.out_channels": [32, 64]}

    def check(model: nn.Module, exported: nn.Module) -> None:
        out = model.grouped.out_channels
        assert (model.grouped.in_channels, model.widen.in_channels, model.stem.out_channels) == (
            out // 2,
            out // 4,
            out // 4,
        )
        assert (exported.widen.groups, exported.grouped.groups) == (out // 4, out // 32)

    assert_exact_subnets(model, space, x, reference, check)


def test_group_sizes_that_do_not_divide_keep_both_widths() -> None:
    model = nn.Sequential(nn.Conv2d(3, 24, 1), nn.Conv2d(24, 32, 3, groups=8), nn.ReLU(), nn.Conv2d(32, 4, 1))
    space = generate_search_space(model, AutoNASConfig().model_dump(), example_input=_images())
    assert space.hparams() == {}
