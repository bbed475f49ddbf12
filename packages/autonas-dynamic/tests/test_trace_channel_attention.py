"""A stage stream through channel attention (EdgeNeXt's split-transpose block), searched by whole heads.

The block chunks its input into two halves (one goes through a depthwise conv), adds a positional
encoding reshaped with ``-1`` from a conv whose weight's ``device`` the forward reads, and runs
cross-covariance attention: a fused ``qkv`` reshaped into ``(3, heads, -1)`` (the head count from
``self.num_heads``), scores scaled by a per-head ``temperature`` of shape ``(heads, 1, 1)``, a
softmax, and the heads merged back with ``reshape(B, N, C)`` where ``C`` is the block input's
width. The stream between the convolutions is then one group that moves by whole heads (the
heads section), the chunked halves follow it, the temperature keeps one entry per active head.
Checked: the choices, the largest subnet is the original, exported subnets compute what the dynamic
model does, exact costs. Without the per-head scale's coupling, every width of the stream stayed.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from subnet_checks import assert_exact_subnets

from autonas_config import AutoNASConfig
from autonas_dynamic import sort_parameters
from autonas_dynamic.space import generate_search_space

WIDTH, HEADS, SIDE = 24, 4, 6


class ChannelAttention(nn.Module):
    """Attention across channels: each head's ``(head_dim x head_dim)`` map, scaled per head."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.num_heads = HEADS
        self.temperature = nn.Parameter(torch.rand(HEADS, 1, 1) + 0.5)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 4, 1)
        q, k, v = qkv.unbind(0)
        attn = (F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)) * self.temperature
        attn = attn.softmax(dim=-1)
        return self.proj((attn @ v).permute(0, 3, 1, 2).reshape(B, N, C))


class Encoding(nn.Module):
    """A positional encoding projected by a conv; the forward reads the weight's device and dtype."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.projection = nn.Conv2d(4, dim, 1)

    def forward(self, shape: tuple[int, int, int]) -> torch.Tensor:
        weight = self.projection.weight
        grid = torch.ones(shape, device=weight.device).cumsum(1).unsqueeze(1).expand(-1, 4, -1, -1)
        return self.projection(grid.to(weight.dtype))


class SplitTransposeBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim // 2, dim // 2, 3, padding=1, groups=dim // 2)
        self.encoding = Encoding(dim)
        self.norm = nn.LayerNorm(dim)
        self.attention = ChannelAttention(dim)
        self.gamma = nn.Parameter(torch.rand(dim) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = x.chunk(2, dim=1)
        mixed = torch.cat([self.conv(first), second], 1)
        B, C, H, W = mixed.shape
        tokens = mixed.reshape(B, C, H * W).permute(0, 2, 1)
        tokens = tokens + self.encoding((B, H, W)).reshape(B, -1, tokens.shape[1]).permute(0, 2, 1)
        tokens = tokens + self.gamma * self.attention(self.norm(tokens))
        return x + tokens.reshape(B, H, W, C).permute(0, 3, 1, 2)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, WIDTH, 3, padding=1)
        self.block = SplitTransposeBlock(WIDTH)
        self.head = nn.Conv2d(WIDTH, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.block(self.stem(x)))


def _images() -> torch.Tensor:
    return torch.randn(2, 3, SIDE, SIDE, generator=torch.Generator().manual_seed(0))


def test_stream_through_channel_attention_moves_by_whole_heads() -> None:
    torch.manual_seed(0)
    model, x = Net().eval(), _images()
    with torch.no_grad():
        reference = model(x)
    space = generate_search_space(model, AutoNASConfig().model_dump(), example_input=x)
    # 2, 3 or 4 heads of 6 channels: the stream, 3 x the stream for qkv; the halves follow
    assert space.hparams() == {"block.attention.qkv.out_features": [36, 54, 72]}

    def check(model: nn.Module, exported: nn.Module) -> None:
        width = model.block.attention.qkv.out_features // 3
        assert (model.stem.out_channels, model.block.conv.out_channels) == (width, width // 2)
        assert model.block.attention.temperature.shape == (width // 6, 1, 1)
        assert exported.block.attention.temperature.shape == (width // 6, 1, 1)
        assert exported.block.attention.num_heads == width // 6
        assert exported.block.encoding.projection.out_channels == width

    assert_exact_subnets(model, space, x, reference, check)


def test_sorting_leaves_heads_that_span_the_chunked_stream_alone() -> None:
    """Sorting reorders each half of the stream on its own, which whole heads and their temperature
    cannot follow: the heads are not sorted, and the block computes what it did."""
    torch.manual_seed(0)
    model, x = Net().eval(), _images()
    with torch.no_grad():
        reference = model(x)
        generate_search_space(model, AutoNASConfig().model_dump(), example_input=x)
        sort_parameters(model)
        torch.testing.assert_close(model(x), reference, rtol=1e-6, atol=1e-6)


def test_heads_merged_to_a_width_written_in_the_code_keep_the_stream() -> None:
    """``reshape(B, N, 24)`` would not follow a narrower stream: every width of the stream stays."""

    class Literal(ChannelAttention):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            B, N, _ = x.shape
            qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, -1).permute(2, 0, 3, 4, 1)
            q, k, v = qkv.unbind(0)
            attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
            return self.proj((attn @ v).permute(0, 3, 1, 2).reshape(B, N, WIDTH))

    model = Net().eval()
    model.block.attention = Literal(WIDTH)
    with pytest.warns(UserWarning, match=r"the heads of 'block.attention' stays 72: at its smallest the forward fails"):
        space = generate_search_space(model, AutoNASConfig().model_dump(), example_input=_images())
    assert space.hparams() == {}
