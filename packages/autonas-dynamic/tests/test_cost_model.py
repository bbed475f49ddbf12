"""The closed-form cost model: on every subnet it equals a forward count of the exported subnet."""

from __future__ import annotations

import copy
import itertools
import random

import pytest
import torch
import torch.nn.functional as F
from example_models import SharedBlock
from torch import nn

from autonas_config import AutoNASConfig
from autonas_dynamic import DYNAMIC_REGISTRY, ConcatHparam, Hparam, export_model
from autonas_dynamic.cost import CostModel, CostModelError, count_flops, count_params
from autonas_dynamic.space import generate_search_space

# --------------------------------------------------------------------------------------- models


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU()
    )


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, channels // 2, 1)
        self.expand = nn.Conv2d(channels // 2, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.expand(torch.relu(self.reduce(x.mean((2, 3), keepdim=True))))
        return x * torch.sigmoid(scale)


class InvertedResidual(nn.Module):
    def __init__(self, channels: int, hidden: int) -> None:
        super().__init__()
        self.expand = conv_bn_relu(channels, hidden, 1)
        self.depthwise = conv_bn_relu(hidden, hidden, 5, groups=hidden)
        self.se = SqueezeExcite(hidden)
        self.project = nn.Conv2d(hidden, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.bn(self.project(self.se(self.depthwise(self.expand(x)))))


class TwoBranches(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.narrow = conv_bn_relu(channels, 16, 1)
        self.wide = conv_bn_relu(channels, 8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.narrow(x), self.wide(x)], 1)


class SmallCNN(nn.Module):
    """Residual stage with depthwise convs and squeeze-excite, a concatenation, leaky ReLU and a linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = conv_bn_relu(3, 16, 3, 2)
        self.stage = nn.Sequential(InvertedResidual(16, 32), InvertedResidual(16, 48), InvertedResidual(16, 32))
        self.branches = TwoBranches(16)
        self.head = nn.Sequential(nn.Conv2d(24, 32, 1), nn.GroupNorm(4, 32), nn.LeakyReLU())
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.head(self.branches(self.stage(self.stem(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class MLPBlock(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.gelu(self.fc1(self.norm(x))))


class MLPStack(nn.Module):
    """ViT-like: patch embedding, a stack of pre-norm MLP blocks, mean-pooled tokens, linear head."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.patches = nn.Conv2d(3, dim, 4, stride=4)
        self.blocks = nn.Sequential(*(MLPBlock(dim, 64) for _ in range(4)))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patches(x).flatten(2).transpose(1, 2)
        return self.head(self.norm(self.blocks(tokens)).mean(1))


class SelfAttention(nn.Module):
    def __init__(self, dim: int, inner: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = (nn.Linear(dim, inner) for _ in range(3))
        self.proj = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = (lin(x).view(batch, length, self.heads, -1).transpose(1, 2) for lin in (self.q, self.k, self.v))
        mixed = F.scaled_dot_product_attention(q, k, v)
        return self.proj(mixed.transpose(1, 2).reshape(batch, length, -1))


class TransformerBlock(nn.Module):
    def __init__(self, dim: int = 16, inner: int = 24, heads: int = 4, hidden: int = 32) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, inner, heads)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


def searchable_transformer_block() -> TransformerBlock:
    """A transformer block converted by hand: attention width (a multiple of the heads) and MLP width."""
    block = TransformerBlock()
    attention = block.attention
    for layer in (attention.q, attention.k, attention.v, attention.proj, block.fc1, block.fc2):
        DYNAMIC_REGISTRY.convert(layer)
    width = attention.q.get_hparam("out_features")
    width.choices = [8, 16, 24]
    for layer in (attention.k, attention.v):
        layer.set_hparam("out_features", width)
    attention.proj.set_hparam("in_features", width)
    hidden = block.fc1.get_hparam("out_features")
    hidden.choices = [8, 20, 32]
    block.fc2.set_hparam("in_features", hidden)
    for layer, name in [(attention.q, "in_features"), (attention.k, "in_features"), (attention.v, "in_features")]:
        layer.get_hparam(name).choices = [16]
    for layer, name in [(attention.proj, "out_features"), (block.fc1, "in_features"), (block.fc2, "out_features")]:
        layer.get_hparam(name).choices = [16]
    return block


RULES = AutoNASConfig(
    **{
        "nn.Conv2d": {"*": {"channels_ratio": (0.5, 0.75, 1.0), "channel_divisor": 4, "kernel_size": (3, 5)}},
        "nn.BatchNorm2d": {"*": {"features_ratio": (0.5, 0.75, 1.0), "feature_divisor": 4}},
        "nn.GroupNorm": {"*": {"channels_ratio": (0.5, 1.0), "channel_divisor": 8}},
        "nn.Linear": {"*": {"features_ratio": (0.25, 0.5, 1.0), "feature_divisor": 4}},
        "nn.LayerNorm": {"*": {"features_ratio": (0.5, 1.0), "feature_divisor": 4}},
        "nn.Sequential": {"*": {"min_depth": 1}},
    }
).model_dump()


def configurable(model: nn.Module) -> list[Hparam]:
    found: dict[int, Hparam] = {}
    for module in model.modules():
        if hasattr(module, "named_hparams"):
            for _, hparam in module.named_hparams(configurable=True):
                found.setdefault(id(hparam), hparam)
    return list(found.values())


def assert_exact_on_random_subnets(model: nn.Module, dummy: torch.Tensor, num_subnets: int = 6) -> CostModel:
    """The cost model equals the forward count of the exported subnet, on random subnets."""
    costs = CostModel(model, dummy)
    hparams = configurable(model)
    rng = random.Random(0)
    seen = set()
    for _ in range(num_subnets):
        for hparam in hparams:
            hparam.active = rng.choice(hparam.choices)
        exported = export_model(copy.deepcopy(model))
        flops, params = costs.flops(), costs.params()
        assert flops == count_flops(exported, dummy) == count_flops(model, dummy)
        assert params == count_params(exported) == count_params(model) == sum(p.numel() for p in exported.parameters())
        seen.add((flops, params))
    assert len(seen) > num_subnets // 2, "the random subnets should differ in cost"
    return costs


# --------------------------------------------------------------------------------------- tests


def test_cnn_with_residuals_depthwise_squeeze_excite_and_concat() -> None:
    torch.manual_seed(0)
    model = SmallCNN()
    generate_search_space(model, RULES)
    hparams = configurable(model)
    assert any(isinstance(hp, ConcatHparam) for hp in hparams)
    assert any(isinstance(hp.active, tuple) for hp in hparams), "kernel sizes are searched"
    assert any(hp.name == "depth" for hp in hparams)
    assert_exact_on_random_subnets(model, torch.randn(2, 3, 16, 16))


def test_vit_like_mlp_stack() -> None:
    torch.manual_seed(0)
    model = MLPStack()
    generate_search_space(model, RULES)
    assert {hp.name for hp in configurable(model)} >= {"out_features", "depth"}
    assert_exact_on_random_subnets(model, torch.randn(2, 3, 16, 16))


def test_transformer_block_with_attention_width_and_mlp_width() -> None:
    torch.manual_seed(0)
    block = searchable_transformer_block()
    costs = assert_exact_on_random_subnets(block, torch.randn(2, 5, 16))
    width = block.attention.q.get_hparam("out_features")
    hidden = block.fc1.get_hparam("out_features")
    width.active, hidden.active = 8, 32
    batch, length, dim, heads = 2, 5, 16, 4
    attention = 2 * batch * heads * length * length * (8 // heads) * 2
    projections = 2 * batch * length * (3 * dim * 8 + 8 * dim)
    mlp = 2 * batch * length * (dim * 32 + 32 * dim)
    norms = 2 * (2 * batch * length * dim)
    assert costs.flops() == attention + projections + mlp + norms


def test_plain_model_costs_are_constants() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 36, 3))
    dummy = torch.randn(1, 3, 8, 8)
    costs = CostModel(model, dummy)
    assert costs.flops() == count_flops(model, dummy) == 2 * (36 * 4 * 27 + 144 * 3)
    assert costs.params() == sum(p.numel() for p in model.parameters())


def test_building_keeps_the_active_subnet_and_evaluation_runs_no_forward() -> None:
    torch.manual_seed(0)
    model = MLPStack()
    space = generate_search_space(model, RULES)
    config = space.sample(min)
    costs = CostModel(model, torch.randn(1, 3, 16, 16))
    assert space.config() == config

    def no_forward(*args: object) -> None:
        raise AssertionError("the cost model ran a forward")

    calls = [module.register_forward_pre_hook(no_forward) for module in model.modules()]
    flops, params = costs.flops(), costs.params()
    space.sample(max)
    assert costs.flops() > flops and costs.params() > params
    for handle in calls:
        handle.remove()


class OuterProduct(nn.Module):
    """Its cost grows with the square of a searched width: not a monomial of degree one per hparam."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.conv(x).mean((2, 3))
        pairs = torch.einsum("bi,bj->bij", features, features).flatten(1)
        return pairs * pairs


def test_costs_outside_the_closed_form_raise_a_clear_error() -> None:
    model = OuterProduct()
    conv = DYNAMIC_REGISTRY.convert(model.conv)
    conv.get_hparam("in_channels").choices = [3]
    conv.get_hparam("out_channels").choices = [4, 8]
    with pytest.raises(CostModelError, match=r"aten\.mul.* in the root module .*16 when it is 4.*'conv\.out_channels'"):
        CostModel(model, torch.randn(1, 3, 4, 4))
    assert conv.out_channels == 8


class TiedAcrossDepth(nn.Module):
    """The head reuses the weight of a block that the depth can drop."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
        self.head = nn.Linear(4, 4)
        self.head.weight = self.blocks[1].weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x))


def test_a_parameter_shared_by_a_droppable_block_and_another_module_is_refused() -> None:
    model = TiedAcrossDepth()
    DYNAMIC_REGISTRY.convert(model.blocks).get_hparam("depth").choices = [1, 2]
    with pytest.raises(CostModelError, match=r"'blocks\.1\.weight' is also registered as 'head\.weight'"):
        CostModel(model, torch.randn(2, 4))


def test_a_block_filling_every_position_costs_one_call_per_kept_position() -> None:
    torch.manual_seed(0)
    model = SharedBlock().eval()
    space = generate_search_space(model)
    dummy = torch.randn(2, 3, 8, 8)
    costs = assert_exact_on_random_subnets(model, dummy, num_subnets=8)
    flops = []
    for depth in range(5):
        space.select({"blocks.depth": depth}, strict=False)
        exported = export_model(copy.deepcopy(model))
        assert costs.flops() == count_flops(exported, dummy)
        assert costs.params() == count_params(exported)
        flops.append(costs.flops())
    steps = {later - earlier for earlier, later in itertools.pairwise(flops)}
    assert len(steps) == 1 and steps.pop() > 0  # every call of the block costs the same
