"""The reference counters: count_flops (one recorded forward) and count_params."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from autonas_dynamic.cost import count_flops, count_params


def torch_flops(model: nn.Module, *args: torch.Tensor) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(*args)
    return counter.get_total_flops()


def test_spec_example_grouped_same_padding_conv() -> None:
    conv = nn.Conv2d(2, 4, 3, groups=2, padding="same", bias=False)
    assert count_flops(conv, torch.randn(1, 2, 3, 5)) == 2 * 60 * 9 == 1080


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (nn.Conv1d(3, 6, 5, stride=2, padding=1), (2, 3, 17)),
        (nn.Conv2d(4, 8, 3, groups=4, dilation=2), (2, 4, 11, 9)),
        (nn.Conv3d(2, 4, (1, 3, 3), padding=(0, 1, 1)), (1, 2, 4, 6, 6)),
        (nn.ConvTranspose1d(4, 6, 3, stride=2, groups=2), (2, 4, 7)),
        (nn.ConvTranspose2d(6, 4, 4, stride=2, padding=1, output_padding=0), (1, 6, 5, 5)),
        (nn.ConvTranspose3d(2, 2, 2, stride=2, bias=False), (1, 2, 3, 3, 3)),
        (nn.Linear(12, 7), (5, 12)),
        (nn.Linear(12, 7, bias=False), (2, 3, 12)),
    ],
)
def test_conv_and_linear_layers_agree_with_torch_flop_counter(model: nn.Module, shape: tuple[int, ...]) -> None:
    x = torch.randn(shape)
    assert count_flops(model, x) == torch_flops(model, x) > 0


def test_conv_linear_network_agrees_with_torch_flop_counter() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2),
        nn.ReLU(),
        nn.Conv2d(8, 8, 3, groups=8, padding=1),
        nn.ConvTranspose2d(8, 4, 3, stride=2, groups=2),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(4 * 7 * 7, 10),
    )
    x = torch.randn(2, 3, 16, 16)
    assert count_flops(model, x) == torch_flops(model, x)


def test_matmul_family_counts_products_only() -> None:
    a, b = torch.randn(3, 4, 5), torch.randn(3, 5, 6)

    class Products(nn.Module):
        def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return (a @ b).sum() + torch.einsum("bij,bjk->bik", a, b).sum() + (a[0] @ b[0, :, 0]).sum()

    expected = 2 * (3 * 4 * 5 * 6) * 2 + 2 * 4 * 5
    assert count_flops(Products(), (a, b)) == expected


def test_norms_cost_their_output_size_when_affine_and_batch_norm_is_free() -> None:
    x = torch.randn(2, 8, 5, 5)
    assert count_flops(nn.BatchNorm2d(8), x) == 0
    assert count_flops(nn.GroupNorm(2, 8), x) == 2 * x.numel()
    assert count_flops(nn.GroupNorm(2, 8, affine=False), x) == 0
    assert count_flops(nn.InstanceNorm2d(8, affine=True), x) == 2 * x.numel()
    assert count_flops(nn.InstanceNorm2d(8), x) == 0
    tokens = torch.randn(2, 6, 8)
    assert count_flops(nn.LayerNorm(8), tokens) == 2 * tokens.numel()
    assert count_flops(nn.LayerNorm(8, elementwise_affine=False), tokens) == 0


def test_pooling_mean_mul_and_upsampling_conventions() -> None:
    x = torch.randn(2, 4, 8, 8)
    assert count_flops(nn.AvgPool2d(2), x) == 2 * (2 * 4 * 4 * 4)
    assert count_flops(nn.AdaptiveAvgPool2d(1), x) == 2 * (2 * 4)
    assert count_flops(nn.AdaptiveAvgPool2d(3), x) == 2 * (2 * 4 * 9)
    assert count_flops(nn.LeakyReLU(), x) == 2 * x.numel()
    assert count_flops(nn.Upsample(scale_factor=2, mode="bilinear"), x) == 8 * (2 * 4 * 16 * 16)
    for free in (nn.ReLU(), nn.MaxPool2d(2), nn.Sigmoid(), nn.Softmax(dim=1), nn.Identity()):
        assert count_flops(free, x) == 0

    class Gate(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            scale = x.mean((2, 3), keepdim=True)
            return torch.cat([x * scale, x + scale], 1)

    assert count_flops(Gate(), x) == 2 * (2 * 4) + 2 * x.numel()


def test_scaled_dot_product_attention_counts_both_products() -> None:
    class Attention(nn.Module):
        def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
            return F.scaled_dot_product_attention(q, k, v)

    batch, heads, length, source, dim, value_dim = 2, 3, 5, 7, 4, 6
    q = torch.randn(batch, heads, length, dim)
    k = torch.randn(batch, heads, source, dim)
    v = torch.randn(batch, heads, source, value_dim)
    expected = 2 * batch * heads * length * source * (dim + value_dim)
    assert count_flops(Attention(), (q, k, v)) == expected


def test_multihead_attention_counts_its_products_with_the_fast_path_off() -> None:
    embed, heads, batch, length = 8, 2, 3, 5
    attention = nn.MultiheadAttention(embed, heads, batch_first=True)
    x = torch.randn(batch, length, embed)
    tokens = batch * length
    projections = 2 * tokens * embed * 3 * embed + 2 * tokens * embed * embed
    scores_and_mix = 2 * (2 * batch * heads * length * length * (embed // heads))
    query_scaling = 2 * tokens * embed  # q * head_dim ** -0.5
    head_average = 2 * batch * length * length  # mean of the attention weights over heads
    assert count_flops(attention, (x, x, x)) == projections + scores_and_mix + query_scaling + head_average
    assert torch.backends.mha.get_fastpath_enabled()


def test_dummy_input_conventions() -> None:
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor, y: torch.Tensor | dict | None = None, scale: int = 1) -> torch.Tensor:
            out = self.linear(x)
            if isinstance(y, dict):
                out = self.linear(out)
            elif y is not None:
                out = out + self.linear(y)
            return self.linear(out) if scale == 2 else out

    model, x = TwoInputs(), torch.randn(3, 4)
    one = 2 * 3 * 4 * 4
    assert count_flops(model, x) == one
    assert count_flops(model, (x, x)) == 2 * one
    assert count_flops(model, (x, {"scale": 2})) == 2 * one
    assert count_flops(model, (x, {"k": 1}, {})) == 2 * one


def test_counting_restores_training_flags_and_runs_without_autograd() -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5), nn.Linear(4, 2))
    model[1].eval()
    grads = []
    model.register_forward_hook(lambda module, args, out: grads.append(out.requires_grad))
    count_flops(model, torch.randn(2, 4))
    assert [m.training for m in model.modules()] == [True, True, False, True]
    assert grads == [False]


def test_count_params_counts_every_parameter_once() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(16, 5), nn.LayerNorm(5))
    assert count_params(model) == sum(p.numel() for p in model.parameters())
    expected = (3 * 4 * 9 + 4) + (4 + 4) + (16 * 5 + 5) + (5 + 5)
    assert count_params(model) == expected
    tied = nn.Sequential(nn.Linear(5, 5), nn.Linear(5, 5))
    tied[1].weight = tied[0].weight
    assert count_params(tied) == 25 + 5 + 5
    assert math.prod(tied[0].weight.shape) == 25
