"""A convolution that mixes flattened expert kernels per sample (timm's ``CondConv2d`` convention).

The layer stores ``weight`` as ``(num_experts, out * in / groups * k * k)``, is called as
``conv(x, routing)`` with routing weights a Linear computes from the pooled input, and its own
forward reads ``in_channels``, ``out_channels``, ``groups``, ``weight`` and ``bias``. Declared with
:class:`~autonas_dynamic.plugins.timm_cond_conv.DynamicCondConv2d` (which the timm integration uses
for ``CondConv2d``), a block of a plain, a depthwise and a plain expert conv between two convs is
searched: the expansion width (shared by the first two expert convs) and the stem's width (the
routing Linear's input follows it; rules with small divisors for these small widths). Checked: the choices, the largest subnet is the original,
exported subnets compute what the dynamic model does, exact costs, each expert's kernel keeps its
leading block.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from subnet_checks import assert_exact_subnets
from torch import nn

from autonas_config import AutoNASConfig, ChannelRule
from autonas_dynamic import register_layer, unregister_layer
from autonas_dynamic.plugins.timm_cond_conv import COND_CONV_LAYOUT, DynamicCondConv2d
from autonas_dynamic.space import generate_search_space

EXPERTS = 3


class ExpertConv(nn.Module):
    """A 3x3 convolution whose kernel is ``routing @ weight`` for each sample."""

    def __init__(self, in_channels: int, out_channels: int, groups: int = 1) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.groups = in_channels, out_channels, groups
        self.kernel_size = (3, 3)
        self.weight_shape = (out_channels, in_channels // groups, 3, 3)
        self.weight = nn.Parameter(torch.randn(EXPERTS, out_channels * in_channels // groups * 9) * 0.2)
        self.bias = nn.Parameter(torch.randn(EXPERTS, out_channels) * 0.1)

    def forward(self, x: torch.Tensor, routing: torch.Tensor) -> torch.Tensor:
        shape = (self.out_channels, self.in_channels // self.groups, *self.kernel_size)
        kernels, biases = routing @ self.weight, routing @ self.bias
        outputs = [
            F.conv2d(sample[None], kernel.view(shape), bias, padding=1, groups=self.groups)
            for sample, kernel, bias in zip(x, kernels, biases, strict=True)
        ]
        return torch.cat(outputs)


class Block(nn.Module):
    def __init__(self, width: int = 16, hidden: int = 32) -> None:
        super().__init__()
        self.routing = nn.Linear(width, EXPERTS)
        self.expand = ExpertConv(width, hidden)
        self.depthwise = ExpertConv(hidden, hidden, groups=hidden)
        self.project = ExpertConv(hidden, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        routing = torch.sigmoid(self.routing(F.adaptive_avg_pool2d(x, 1).flatten(1)))
        hidden = F.relu(self.depthwise(F.relu(self.expand(x, routing)), routing))
        return x + self.project(hidden, routing)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 16, 3, padding=1)
        self.block = Block()
        self.head = nn.Conv2d(16, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(F.relu(self.block(self.stem(x))))


@pytest.fixture
def declared() -> Iterator[None]:
    register_layer(
        ExpertConv,
        COND_CONV_LAYOUT,
        key="tests.ExpertConv",
        rule=ChannelRule,
        default={"channels_ratio": (0.5, 0.75, 1.0), "channel_divisor": 4},
        dynamic=DynamicCondConv2d,
    )
    try:
        yield
    finally:
        unregister_layer(ExpertConv)


def test_expert_conv_block_searches_its_widths_exactly(declared: None) -> None:
    torch.manual_seed(0)
    model, x = Net().eval(), torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = model(x)
    rules = AutoNASConfig().model_dump()
    rules["nn.Linear"] = {"*": {"features_ratio": (0.5, 0.75, 1.0), "feature_divisor": 4}}
    rules["nn.Conv2d"] = {"*": {"channels_ratio": (0.5, 0.75, 1.0), "channel_divisor": 4, "kernel_size": ()}}
    space = generate_search_space(model, rules, example_input=x)
    assert space.hparams() == {"stem.out_channels": [8, 12, 16], "block.expand.out_channels": [16, 24, 32]}
    assert model.block.routing.get_hparam("in_features") is model.stem.get_hparam("out_channels")
    full = model.block.expand.weight.detach().view(EXPERTS, 32, 16, 3, 3).clone()

    def check(model: nn.Module, exported: nn.Module) -> None:
        width, hidden = model.stem.out_channels, model.block.expand.out_channels
        assert (model.block.depthwise.groups, model.block.project.in_channels) == (hidden, hidden)
        expand = exported.block.expand
        assert type(expand) is ExpertConv and expand.weight_shape == (hidden, width, 3, 3)
        torch.testing.assert_close(expand.weight.view(EXPERTS, hidden, width, 3, 3), full[:, :hidden, :width])
        assert exported.block.depthwise.weight.shape == (EXPERTS, hidden * 9)

    assert_exact_subnets(model, space, x, reference, check)
