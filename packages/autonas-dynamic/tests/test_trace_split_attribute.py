"""A split by a size the module keeps in an attribute (Res2Net's ``torch.split(x, self.width, 1)``).

The block splits its expansion into ``scale`` parts of ``self.width`` channels, runs a conv on each
part but the last (each added to the next part), concatenates the results with the last part and
projects back. The expansion is then the concatenation of equal parts that shrink together, the
convs follow the parts, and ``self.width`` follows the active part width (set for good on export).
Checked: the choices, the largest subnet is the original, exported subnets compute what the dynamic
model does, exact costs. With a second attribute of the same value the split size is ambiguous and
the widths stay.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from subnet_checks import assert_exact_subnets
from torch import nn

from autonas_config import AutoNASConfig
from autonas_dynamic.space import generate_search_space

WIDTH, SCALE = 16, 4


class SplitBlock(nn.Module):
    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.width, self.scale = WIDTH, SCALE
        self.conv1 = nn.Conv2d(channels, WIDTH * SCALE, 1)
        self.convs = nn.ModuleList(nn.Conv2d(WIDTH, WIDTH, 3, padding=1) for _ in range(SCALE - 1))
        self.conv3 = nn.Conv2d(WIDTH * SCALE, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(F.relu(self.conv1(x)), self.width, 1)
        outputs, current = [], parts[0]
        for index, conv in enumerate(self.convs):
            current = F.relu(conv(current if index == 0 else current + parts[index]))
            outputs.append(current)
        return x + self.conv3(torch.cat([*outputs, parts[-1]], 1))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, padding=1)
        self.block = SplitBlock()
        self.head = nn.Conv2d(32, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)))


def _images() -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_split_by_a_width_attribute_shrinks_every_part_alike() -> None:
    torch.manual_seed(0)
    model, x = Net().eval(), _images()
    with torch.no_grad():
        reference = model(x)
    rules = AutoNASConfig().model_dump()
    rules["nn.Conv2d"] = {"*": {"channels_ratio": (0.5, 0.75, 1.0), "channel_divisor": 4, "kernel_size": ()}}
    space = generate_search_space(model, rules, example_input=x)
    assert space.hparams()["block.conv1.out_channels"] == [32, 48, 64]  # 4 parts of 8, 12 or 16

    def check(model: nn.Module, exported: nn.Module) -> None:
        part = model.block.conv1.out_channels // SCALE
        assert model.block.width == part and all(conv.in_channels == part for conv in model.block.convs)
        assert exported.block.width == part and not exported.block._forward_pre_hooks

    assert_exact_subnets(model, space, x, reference, check)


def test_a_split_size_two_attributes_hold_is_ambiguous() -> None:
    model = Net().eval()
    model.block.planes = WIDTH
    space = generate_search_space(model, AutoNASConfig().model_dump(), example_input=_images())
    assert not any(name.startswith("block.conv") for name in space.hparams())
    assert model.block.width == WIDTH and not model.block._forward_pre_hooks
