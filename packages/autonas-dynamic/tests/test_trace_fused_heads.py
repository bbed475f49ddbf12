"""Fused query/key/value projections: one Linear whose output is split into queries, keys and values.

GPT-2's pattern, ``q, k, v = self.qkv(x).split(self.split_size, dim=2)`` and each part reshaped into
heads, and timm's, ``self.qkv(x).reshape(B, N, 3, self.num_heads, head_dim)`` permuted and unbound
into the three parts, merged back with ``reshape(B, N, self.attn_dim)``: the fused width is the concatenation of three parts that shrink together by whole heads
(the weight keeps the first heads of each of q, k and v), the output projection's input follows,
and ``split_size`` follows the active heads. Checked: exact groups and choices, the largest subnet
is the original, exported subnets compute what the dynamic model does, exact costs, whole heads
sorted. A split by a width attribute whose parts are never split into heads keeps its size.
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

HIDDEN, HEADS, HEAD_DIM = 16, 4, 8


class FusedAttention(nn.Module):
    """Self-attention with one fused projection split by ``self.split_size`` (``heads=False``: no heads)."""

    def __init__(self, heads: bool = True) -> None:
        super().__init__()
        self.heads = heads
        self.num_heads, self.split_size = HEADS, HEADS * HEAD_DIM
        self.qkv = nn.Linear(HIDDEN, 3 * HEADS * HEAD_DIM)
        self.out = nn.Linear(HEADS * HEAD_DIM, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).split(self.split_size, dim=2)
        if not self.heads:
            return x + self.out(q * torch.sigmoid(k) + v)
        q, k, v = (t.view(*t.shape[:-1], -1, HEAD_DIM).transpose(1, 2) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(attended.transpose(1, 2).reshape(*x.shape[:-1], -1))


class StackedAttention(nn.Module):
    """timm's fused attention: the projection reshaped into ``(3, heads, head_dim)`` at once."""

    def __init__(self) -> None:
        super().__init__()
        self.num_heads, self.attn_dim = HEADS, HEADS * HEAD_DIM
        self.qkv = nn.Linear(HIDDEN, 3 * HEADS * HEAD_DIM)
        self.out = nn.Linear(HEADS * HEAD_DIM, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        qkv = self.qkv(x).reshape(batch, length, 3, self.num_heads, HEAD_DIM).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        attended = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(attended.transpose(1, 2).reshape(batch, length, self.attn_dim))


def _tokens() -> torch.Tensor:
    return torch.randn(2, 5, HIDDEN, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("stacked", [False, True], ids=["split", "reshape-unbind"])
def test_fused_projection_shrinks_by_whole_heads_of_each_part(stacked: bool) -> None:
    torch.manual_seed(0)
    model, x = (StackedAttention() if stacked else FusedAttention()).eval(), _tokens()
    width_attribute = "attn_dim" if stacked else "split_size"
    with torch.no_grad():
        reference = model(x)
    space = generate_search_space(model, AutoNASConfig().model_dump(), example_input=x)
    assert space.hparams() == {"qkv.out_features": [48, 72, 96]}  # 3 parts of 2, 3 or 4 heads of 8
    full_weight = model.qkv.weight.detach().clone()

    def check(model: nn.Module, exported: nn.Module) -> None:
        width = model.qkv.out_features // 3
        assert (model.out.in_features, getattr(model, width_attribute)) == (width, width)
        assert model.num_heads == width // HEAD_DIM
        parts = [full_weight[i * 32 : i * 32 + width] for i in range(3)]  # the first heads of q, k and v
        torch.testing.assert_close(exported.qkv.weight, torch.cat(parts), rtol=0, atol=0)
        assert (getattr(exported, width_attribute), exported.num_heads) == (width, width // HEAD_DIM)
        assert exported.out.in_features == width and not exported._forward_pre_hooks

    assert_exact_subnets(model, space, x, reference, check)
    with torch.no_grad():
        space.sample(max)
        sort_parameters(model)
        torch.testing.assert_close(model(x), reference, rtol=1e-5, atol=1e-6)
    head_norms = model.out.weight.detach().norm(dim=0).reshape(HEADS, HEAD_DIM).sum(1)
    assert torch.all(head_norms[:-1] >= head_norms[1:]), "whole heads sorted by decreasing importance"


def test_split_by_a_width_attribute_without_heads_keeps_its_size() -> None:
    model, x = FusedAttention(heads=False).eval(), _tokens()
    space = generate_search_space(model, example_input=x)  # every width a choice, were the split followed
    assert space.hparams() == {}
    assert model.split_size == HEADS * HEAD_DIM and not model._forward_pre_hooks


@pytest.mark.parametrize("size", [8, 24])
def test_split_by_a_literal_size_stays_a_boundary(size: int) -> None:
    """Sizes written into the code would not follow a smaller width."""

    class Literal(FusedAttention):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.out(self.qkv(x).split(size, dim=2)[0].repeat(1, 1, 32 // size))

    model = Literal().eval()
    space = generate_search_space(model, example_input=_tokens())
    assert space.hparams() == {}
