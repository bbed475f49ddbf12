"""Depth of an ``nn.Sequential`` subclass whose own forward loops over its blocks (HRNet's ``SequentialList``).

Its blocks hand a list of streams (two resolutions) from one to the next; each block is residual on
every stream (each output passes an addition back to its own input) and only the next block reads
its outputs, so a trailing run of blocks may be dropped, as in a Sequential. The container's own
forward then sees only the active blocks. Checked: the depth choices, the largest subnet is the
original, exported subnets compute what the dynamic model does at every depth, exact costs. A block
that mixes the streams without a residual path keeps the depth.
"""

from __future__ import annotations

import copy

import torch
import torch.nn as nn
import torch.nn.functional as F

from autonas_config import AutoNASConfig
from autonas_dynamic import export_model
from autonas_dynamic.cost import CostModel, count_flops, count_params
from autonas_dynamic.space import generate_search_space


class TwoStreams(nn.Module):
    """One module of two resolutions: a residual conv per stream, then the low one added into the high one."""

    def __init__(self, residual: bool = True) -> None:
        super().__init__()
        self.residual = residual
        self.high, self.low = nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(16, 16, 3, padding=1)
        self.fuse = nn.Conv2d(16, 8, 1)

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        high = F.relu(x[0] + self.high(x[0])) if self.residual else F.relu(self.high(x[0]))
        low = F.relu(x[1] + self.low(x[1]))
        return [high + F.interpolate(self.fuse(low), scale_factor=2.0), low]


class SequentialList(nn.Sequential):
    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        for module in self:
            x = module(x)
        return x


class Net(nn.Module):
    def __init__(self, residual: bool = True) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.down = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.stage = SequentialList(TwoStreams(), TwoStreams(residual), TwoStreams(residual))
        self.head = nn.Linear(8 + 16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        high, low = self.stage([x, self.down(x)])
        return self.head(torch.cat([high.mean((2, 3)), low.mean((2, 3))], 1))


def _images() -> torch.Tensor:
    return torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))


def test_trailing_modules_of_a_list_passing_stage_may_be_dropped() -> None:
    torch.manual_seed(0)
    model, x = Net().eval(), _images()
    with torch.no_grad():
        reference = model(x)
    space = generate_search_space(model, AutoNASConfig().model_dump(), example_input=x)
    assert space.hparams()["stage.depth"] == [0, 1, 2, 3]
    costs = CostModel(model, x)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference, rtol=0, atol=0)
        for depth in (0, 1, 2, 3):
            space.sample({"*": max, "stage.depth": lambda choices, depth=depth: depth})
            assert len(model.stage) == depth and len(list(model.stage)) == depth
            dynamic = model(x)
            exported = export_model(copy.deepcopy(model))
            assert type(exported.stage) is SequentialList and len(exported.stage) == depth
            torch.testing.assert_close(exported(x), dynamic, rtol=0, atol=0)
            assert (costs.flops(), costs.params()) == (count_flops(exported, x), count_params(exported))
        space.sample(min)
        exported = export_model(copy.deepcopy(model))
        torch.testing.assert_close(exported(x), model(x), rtol=1e-6, atol=1e-6)
        assert (costs.flops(), costs.params()) == (count_flops(exported, x), count_params(exported))


def test_a_module_without_a_residual_path_on_every_stream_keeps_the_depth() -> None:
    model, x = Net(residual=False).eval(), _images()
    space = generate_search_space(model, AutoNASConfig().model_dump(), example_input=x)
    assert "stage.depth" not in space.hparams()
