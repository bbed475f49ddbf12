"""Class tokens and position tables held as bare parameters join the hidden width of a vision transformer.

A hand-written ViT holds its class token ``(1, 1, C)`` and position table ``(1, n + 1, C)`` on the
root module, as timm's does: the patch convolution's output channels, both tensors, every norm and
projection on the residual stream and the head's in-features are one hparam (named after the class
token, the first of them the forward reads). A table of batch 1 is held along its last dim; where
that dim is not the stream's (a learned ``(1, C, H, W)`` bias on a feature map) the coupling fails
and the width stays fixed. Pads and rolls that leave the channel axis alone keep it searchable.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from subnet_checks import assert_exact_subnets

from autonas_config import AutoNASConfig
from autonas_dynamic import export_model, sort_parameters
from autonas_dynamic.space import generate_search_space

HIDDEN, HEAD_DIM, MLP, PATCHES = 64, 16, 128, 16


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(HIDDEN), nn.LayerNorm(HIDDEN)
        self.q, self.k, self.v = (nn.Linear(HIDDEN, HIDDEN) for _ in range(3))
        self.proj = nn.Linear(HIDDEN, HIDDEN)
        self.fc1, self.fc2 = nn.Linear(HIDDEN, MLP), nn.Linear(MLP, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        q, k, v = (p(h).view(*h.shape[:-1], -1, HEAD_DIM).transpose(1, 2) for p in (self.q, self.k, self.v))
        x = x + self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2))
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class TinyViT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.patch = nn.Conv2d(3, HIDDEN, 4, stride=4)
        self.cls_token = nn.Parameter(torch.randn(1, 1, HIDDEN))
        self.pos_embed = nn.Parameter(torch.randn(1, PATCHES + 1, HIDDEN))
        self.block, self.norm, self.head = Block(), nn.LayerNorm(HIDDEN), nn.Linear(HIDDEN, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        tokens = self.patch(images).flatten(2).transpose(1, 2)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1) + self.pos_embed
        return self.head(self.norm(self.block(tokens))[:, 0])


def _images() -> torch.Tensor:
    return torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def test_class_token_and_position_table_on_the_root_follow_the_hidden_width() -> None:
    torch.manual_seed(0)
    model, images = TinyViT().eval(), _images()
    with torch.no_grad():
        reference = model(images)
    space = generate_search_space(model, AutoNASConfig().model_dump(), example_input=images)
    assert space.hparams() == {
        "cls_token_size": [32, 64],  # patch.out_channels, pos_embed, norms, q/k/v and fc1 inputs, proj/fc2 outputs
        "block.q.out_features": [32, 48, 64],  # 2, 3 or 4 heads of 16
        "block.fc1.out_features": [64, 96, 128],
    }
    width = model.get_hparam("cls_token_size")
    assert model.get_hparam("pos_embed_size") is width is model.patch.get_hparam("out_channels")
    assert model.head.get_hparam("in_features") is width is model.block.fc2.get_hparam("out_features")

    def check(model: nn.Module, exported: nn.Module) -> None:
        assert type(exported) is TinyViT
        active = width.active
        assert exported.cls_token.shape == (1, 1, active) and exported.pos_embed.shape == (1, PATCHES + 1, active)
        assert exported.patch.out_channels == exported.norm.normalized_shape[0] == exported.head.in_features == active

    assert_exact_subnets(model, space, images, reference, check)
    space.sample(max)
    sort_parameters(model)  # the tables' channels move with the stream's
    with torch.no_grad():
        torch.testing.assert_close(model(images), reference, rtol=1e-5, atol=1e-5)


def test_a_min_subnet_exports_the_tables_sliced_and_runs_without_its_hparams() -> None:
    torch.manual_seed(0)
    model, images = TinyViT().eval(), _images()
    original = model.pos_embed.detach().clone()
    space = generate_search_space(model, AutoNASConfig().model_dump(), example_input=images)
    space.sample(min)
    exported = export_model(model)
    assert not hasattr(exported, "cls_token_size")
    torch.testing.assert_close(exported.pos_embed, original[..., :32], rtol=0, atol=0)


class FeatureMapBias(nn.Module):
    """A learned ``(1, C, H, W)`` bias on a feature map: batch 1, but its channels are not its last dim."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(16, 8, 3, padding=1)
        self.bias = nn.Parameter(torch.randn(1, 16, 8, 8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x) + self.bias))


def test_a_batch_one_table_whose_last_dim_is_not_the_width_keeps_the_width_fixed() -> None:
    model = FeatureMapBias().eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        reference = model(x)
    space = generate_search_space(model, AutoNASConfig().model_dump(), example_input=x)
    assert space.hparams() == {}
    with torch.no_grad():
        assert torch.equal(model(x), reference)


class PaddedAndRolled(nn.Module):
    """Windows padded and shifted along the spatial axes of a channels-last stream (Swin's pattern)."""

    def __init__(self, roll_dims: tuple[int, ...]) -> None:
        super().__init__()
        self.roll_dims = roll_dims
        self.up, self.down = nn.Linear(8, 128), nn.Linear(128, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.pad(self.up(x), (0, 0, 0, 1, 0, 1))  # channels-last: nothing added to the channel axis
        h = torch.roll(h, shifts=(1,) * len(self.roll_dims), dims=self.roll_dims).flip(1)
        return self.down(F.relu(h[:, :-1, :-1]))


def test_pads_and_rolls_along_other_axes_keep_the_channel_width_searchable() -> None:
    torch.manual_seed(0)
    x = torch.randn(2, 5, 5, 8)
    model = PaddedAndRolled((1, 2)).eval()
    with torch.no_grad():
        reference = model(x)
    space = generate_search_space(model, AutoNASConfig().model_dump(), example_input=x)
    assert space.hparams() == {"up.out_features": [64, 96, 128]}
    assert_exact_subnets(model, space, x, reference)

    rolled_channels = PaddedAndRolled((1, 3)).eval()  # rolls the channels into each other
    assert generate_search_space(rolled_channels, AutoNASConfig().model_dump(), example_input=x).hparams() == {}
