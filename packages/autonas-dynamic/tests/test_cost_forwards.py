"""Probe forwards on meta tensors: same cost model as real forwards, model untouched, real fallback."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable

import pytest
import torch
from torch import nn

from autonas_config import AutoNASConfig
from autonas_dynamic import export_model
from autonas_dynamic.cost import CostModel, count_flops, count_params
from autonas_dynamic.meta import MetaShortcuts
from autonas_dynamic.space import SearchSpace, generate_search_space

RULES = AutoNASConfig(
    **{
        "nn.Conv2d": {"*": {"channels_ratio": (0.5, 0.75, 1.0), "channel_divisor": 4, "kernel_size": (3, 5)}},
        "nn.BatchNorm2d": {"*": {"features_ratio": (0.5, 0.75, 1.0), "feature_divisor": 4}},
        "nn.Linear": {"*": {"features_ratio": (0.5, 1.0), "feature_divisor": 4}},
        "nn.Sequential": {"*": {"min_depth": 1}},
    }
).model_dump()


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(channels, 2 * channels, 3, padding=1), nn.BatchNorm2d(2 * channels)
        self.conv2, self.bn2 = nn.Conv2d(2 * channels, channels, 3, padding=1), nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))))


class Net(nn.Module):
    """Stem, a stack of residual blocks (searchable depth), linear head; ``gate`` picks an extra branch."""

    def __init__(self, gate: str = "none") -> None:
        super().__init__()
        self.gate = gate
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(Block(16), Block(16), Block(16))
        self.extra = nn.Conv2d(16, 16, 1) if gate != "none" else None
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(x))
        if self.gate == "values" and x.mean() > -1e9:  # needs the values: fails on meta tensors
            x = self.extra(x)
        if self.gate == "device" and not x.is_meta:  # runs differently on meta tensors
            x = self.extra(x)
        return self.fc(x.mean((2, 3)))


def converted(gate: str = "none") -> tuple[Net, SearchSpace]:
    torch.manual_seed(0)
    model = Net(gate)
    return model, generate_search_space(model, RULES)


def assert_exact(model: nn.Module, space: SearchSpace, costs: CostModel, dummy: torch.Tensor) -> None:
    """The cost model equals the forward count of the exported subnet on the smallest and random subnets."""
    rng = random.Random(1)
    configs = [space.sample(min), *(space.sample(lambda choices: rng.choice(choices)) for _ in range(4))]
    assert len({tuple(config.values()) for config in configs}) > 3
    for config in configs:
        space.select(config)
        exported = export_model(copy.deepcopy(model))
        assert costs.flops() == count_flops(exported, dummy)
        assert costs.params() == count_params(exported)


class DeviceLog:
    """The device of the root module's input on every forward."""

    def __init__(self, model: nn.Module) -> None:
        self.devices: list[str] = []
        self.handle = model.register_forward_pre_hook(lambda module, args: self.devices.append(args[0].device.type))


def test_probe_forwards_run_on_meta_and_leave_the_model_untouched() -> None:
    model, space = converted()
    dummy = torch.randn(2, 3, 16, 16)
    rng = random.Random(0)
    space.select(space.sample(lambda choices: rng.choice(choices)))
    config = space.config()
    with torch.no_grad():
        output = model.eval()(dummy)  # dynamic layers memoise their active tensors
    model.train()
    model.blocks[1].eval()
    flags = {name: module.training for name, module in model.named_modules()}
    tensors = {name: (tensor, tensor.clone()) for name, tensor in model.state_dict(keep_vars=True).items()}
    log = DeviceLog(model)

    costs = CostModel(model, dummy)

    assert costs.meta_forwards
    assert log.devices.count("cpu") == 1, "one real forward, to confirm the meta forwards"
    assert log.devices.count("meta") == costs.num_forwards
    assert space.config() == config
    assert {name: module.training for name, module in model.named_modules()} == flags
    memoised = [value for module in model.modules() for value in module.__dict__.get("_memo", ((), ()))[1]]
    assert memoised and not any(isinstance(value, torch.Tensor) and value.is_meta for value in memoised)
    for name, tensor in model.state_dict(keep_vars=True).items():
        stored, before = tensors[name]
        assert tensor is stored, f"{name} was replaced"
        assert torch.equal(tensor, before), f"{name} changed (BatchNorm statistics must not be updated)"
    log.handle.remove()
    with torch.no_grad():
        assert torch.equal(model.eval()(dummy), output)
    assert_exact(model, space, costs, dummy)


def test_meta_and_real_probe_forwards_build_the_same_cost_model() -> None:
    model, space = converted()
    dummy = torch.randn(1, 3, 12, 12)
    log = DeviceLog(model)
    real = CostModel(model, dummy, meta_forwards=False)
    assert set(log.devices) == {"cpu"} and not real.meta_forwards
    meta = CostModel(model, dummy)
    assert meta.num_forwards == real.num_forwards
    rng = random.Random(2)
    for _ in range(20):
        space.select(space.sample(lambda choices: rng.choice(choices)))
        assert (meta.flops(), meta.params()) == (real.flops(), real.params())


@pytest.mark.parametrize(
    ("case", "warning"),
    [
        # a forward that needs tensor values fails on meta tensors: real forwards instead
        ("values", r"Net run on real tensors.*fails on meta tensors \(RuntimeError: "),
        # a forward that runs differently on meta tensors is caught by the real check
        ("device", r"records other costs than on real ones \(aten\.convolution.*'extra'"),
    ],
)
def test_meta_forwards_that_cannot_be_trusted_fall_back_to_real_forwards(case: str, warning: str) -> None:
    model, space = converted(case)
    dummy = torch.randn(1, 3, 12, 12)
    with pytest.warns(RuntimeWarning, match=warning):
        costs = CostModel(model, dummy)
    assert not costs.meta_forwards
    assert_exact(model, space, costs, dummy)


@pytest.mark.parametrize(
    "layer",
    [
        nn.BatchNorm2d(6).eval(),
        nn.ReLU(),
        nn.ReLU(inplace=True),
        nn.ReLU6(inplace=True),
        nn.Hardswish(),
        nn.SiLU(inplace=True),
        nn.GELU(approximate="tanh"),
        nn.LeakyReLU(0.1),
    ],
    ids=["batchnorm", "relu", "relu_", "relu6_", "hardswish", "silu_", "gelu", "leaky_relu"],
)
def test_meta_shortcuts_give_the_shapes_and_strides_of_the_meta_kernels(layer: nn.Module) -> None:
    x = torch.empty(2, 6, 5, 3, device="meta").to(memory_format=torch.channels_last)
    layer = layer.to("meta")
    with torch.no_grad():
        expected = layer(x.clone())
        with MetaShortcuts():
            actual = layer(x)
    assert actual.is_meta
    assert (actual is x) == getattr(layer, "inplace", False)
    assert (actual.shape, actual.stride(), actual.dtype) == (expected.shape, expected.stride(), expected.dtype)


@pytest.mark.parametrize(
    "op",
    [
        lambda x: torch.nn.functional.layer_norm(x, x.shape[-1:]),
        lambda x: torch.nn.functional.layer_norm(x, x.shape[-2:], torch.ones(x.shape[-2:], device="meta")),
        lambda x: torch.softmax(x, -1),
        lambda x: torch._safe_softmax(x, -1),
        lambda x: x * 0.5,
        lambda x: x / 3,
    ],
    ids=["layer_norm", "layer_norm_2d", "softmax", "safe_softmax", "mul_scalar", "div_scalar"],
)
@pytest.mark.parametrize("layout", ["contiguous", "transposed", "strided"])
def test_transformer_op_shortcuts_give_the_outputs_of_the_meta_kernels(op: Callable, layout: str) -> None:
    x = torch.empty(2, 6, 8, device="meta")
    x = {"contiguous": x, "transposed": x.transpose(0, 1), "strided": x[:, ::2]}[layout]
    expected = op(x)
    with MetaShortcuts():
        actual = op(x)
    assert (actual.shape, actual.stride(), actual.dtype) == (expected.shape, expected.stride(), expected.dtype)
