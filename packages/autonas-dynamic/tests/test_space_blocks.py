"""Block patterns of modern CNNs between layers: per-channel scales, channels-last MLPs, chunks, slices.

Each model is converted with the default ``AutoNASConfig`` and checked by numbers as in
``test_layer_declaration`` (maximal subnet exact, exported subnets equal the dynamic model, exact costs).
"""

from __future__ import annotations

import pickle

import torch
import torch.nn.functional as F
from test_layer_declaration import _converted_exactly
from torch import nn

from autonas_dynamic import ConcatHparam, DynamicModule, sort_parameters


class ScaledBlock(nn.Module):
    """A ConvNeXt-style block: depthwise conv, channels-last LayerNorm and MLP, a per-channel ``gamma``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 3, padding=1, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, 2 * dim), nn.Linear(2 * dim, dim)
        self.gamma = nn.Parameter(torch.rand(dim) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_dw(x).permute(0, 2, 3, 1)
        y = self.fc2(F.gelu(self.fc1(self.norm(y))))
        return x + y.permute(0, 3, 1, 2).mul(self.gamma.reshape(1, -1, 1, 1))


class TokenBlock(nn.Module):
    """Flattens the spatial axes with the width read from the tensor's own shape, then back."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc = nn.Linear(dim, dim)
        self.scale = nn.Parameter(torch.rand(dim) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = x.reshape(b, c, h * w).transpose(1, 2)
        tokens = tokens + self.scale * self.fc(self.norm(tokens))
        return tokens.transpose(1, 2).reshape(b, c, h, w)


class SplitBlock(nn.Module):
    """Res2Net-style: equal chunks along the channels, a depthwise conv chain over them, put back with cat."""

    def __init__(self, dim: int, parts: int = 4) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(dim // parts, dim // parts, 3, padding=1, groups=dim // parts) for _ in range(parts - 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pieces = x.chunk(len(self.convs) + 1, 1)
        outs, y = [], pieces[0]
        for i, conv in enumerate(self.convs):
            y = conv(y if i == 0 else y + pieces[i])
            outs.append(y)
        return torch.cat([*outs, pieces[-1]], 1)


class GhostModule(nn.Module):
    """GhostNet's module: a conv, a cheap depthwise conv of its output, both concatenated, then sliced to ``out``."""

    def __init__(self, cin: int, out: int) -> None:
        super().__init__()
        self.out, half = out, (out + 1) // 2
        self.primary = nn.Sequential(nn.Conv2d(cin, half, 1), nn.BatchNorm2d(half), nn.ReLU())
        self.cheap = nn.Sequential(nn.Conv2d(half, half, 3, padding=1, groups=half), nn.BatchNorm2d(half))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.primary(x)
        return torch.cat([a, self.cheap(a)], 1)[:, : self.out]


class Net(nn.Module):
    def __init__(self, block: nn.Module, dim: int = 64, out: int | None = None) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dim, 3, stride=2, padding=1), nn.BatchNorm2d(dim), nn.ReLU())
        self.block = block
        self.head = nn.Conv2d(out or dim, 32, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x))).mean((2, 3))


X = torch.randn(2, 3, 16, 16)


def test_per_channel_scale_of_a_block_and_its_channels_last_mlp_follow_the_stem() -> None:
    model = Net(ScaledBlock(64))
    space = _converted_exactly(model, X)
    block = model.block
    assert isinstance(block, DynamicModule) and type(block).forward is ScaledBlock.forward
    width = model.stem[0].get_hparam("out_channels")
    assert block.get_hparam("gamma_size") is width is block.norm.get_hparam("num_features")
    assert block.fc2.get_hparam("out_features") is width and space.hparams()["stem.0.out_channels"] == [32, 64]
    width.active = 32
    assert block.gamma.shape == (32,)
    clone = pickle.loads(pickle.dumps(model))
    with torch.no_grad():
        torch.testing.assert_close(clone(X), model(X))
        width.active = 64
        before = model(X)
        sort_parameters(model)
        torch.testing.assert_close(model(X), before, rtol=1e-5, atol=1e-5)
    exported = space.export()
    assert type(exported.block) is ScaledBlock and exported.block.gamma.shape == (64,)
    assert not hasattr(exported.block, "gamma_size")


def test_tokens_reshaped_with_the_width_read_from_the_shape_keep_it() -> None:
    model = Net(TokenBlock(64))
    space = _converted_exactly(model, X)
    assert model.block.fc.get_hparam("out_features") is model.stem[0].get_hparam("out_channels")
    assert space.hparams()["stem.0.out_channels"] == [32, 64]


def test_equal_chunks_put_back_together_make_the_producer_a_concatenation() -> None:
    model = Net(SplitBlock(256), dim=256)
    space = _converted_exactly(model, X)
    width = model.stem[0].get_hparam("out_channels")
    assert isinstance(width, ConcatHparam) and width.choices == [128, 256]  # 4 parts of [32, 64]
    assert model.head.get_hparam("in_channels") is width
    space.sample(min)
    assert model.block.convs[0].in_channels == 32 and model.stem[0].out_channels == 128


def test_a_slice_keeping_every_channel_of_a_concatenation_passes_it_on() -> None:
    model = Net(GhostModule(128, 128), dim=128)
    space = _converted_exactly(model, X)
    assert space.hparams()["head.in_channels"] == [64, 128]  # twice the primary conv's [32, 64]
    space.sample(min)
    assert model.block.primary[0].out_channels == 32 and model.head.in_channels == 64
    narrow = Net(GhostModule(128, 127), dim=128, out=127)  # 64 + 64 channels sliced to 127: their sizes stay
    space = _converted_exactly(narrow, X)
    assert not any(name.startswith(("head.in", "block.")) for name in space.hparams())
