"""Attention heads with a relative position bias of one entry per head, searched by whole heads.

Two patterns: a window attention that owns a learned table of shape ``((2w-1)^2, heads)``, picked
by a relative position index, viewed and permuted to ``(1, heads, n, n)`` and added to the scores
with a fixed window mask (as Swin does); and a stack whose first layer embeds relative position
buckets into one bias per head and hands it to every later layer (as T5 does). The bias follows
the head count of its heads' width (``heads * head_dim``): the table keeps one column and the
embedding one feature per active head, the layers sharing one bias share one heads hparam, and
sorting moves each head's bias entries with the head. Checked: the exact groups and choices, the
largest subnet computes the original, exported subnets compute what the dynamic model does with
plain modules at the active sizes, exact costs, and sorting leaves the output alone. Before, the
bias had a size of its own and every head stayed. A zero bias the first layer creates with
``self.num_heads`` entries (T5's attention without a learned bias) couples the heads of the layers
reading it and needs no slicing; a tensor created with the head count that meets another width
keeps it.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from subnet_checks import assert_exact_subnets

from autonas_dynamic import sort_parameters
from autonas_dynamic.space import generate_search_space
from autonas_dynamic.trace import analyze

HIDDEN, HEADS, HEAD_DIM, WINDOW, BUCKETS = 16, 4, 8, 3, 6
HEAD_WIDTHS = [8, 16, 24, 32]  # 1 to 4 heads of 8 (no rules: every whole number of heads)


def _heads(module: nn.Module, fused: bool, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Attention of ``module``'s query/key/value projections with an additive per-head ``bias``."""
    batch, length, _ = x.shape
    q, k, v = (p(x).view(batch, length, -1, HEAD_DIM).transpose(1, 2) for p in (module.q, module.k, module.v))
    if fused:
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    else:
        attended = torch.matmul(F.softmax(q @ k.transpose(-1, -2) * HEAD_DIM**-0.5 + bias, dim=-1), v)
    return x + module.o(attended.transpose(1, 2).reshape(batch, length, -1))


class Projections(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.num_heads = HEADS  # follows the active heads
        self.q, self.k, self.v = (nn.Linear(HIDDEN, HEADS * HEAD_DIM) for _ in range(3))
        self.o = nn.Linear(HEADS * HEAD_DIM, HIDDEN)


class WindowAttention(Projections):
    """Window attention with a learned relative position bias table (one column per head)."""

    def __init__(self, fused: bool) -> None:
        super().__init__()
        self.fused, self.window_area = fused, WINDOW * WINDOW
        self.relative_position_bias_table = nn.Parameter(torch.randn((2 * WINDOW - 1) ** 2, HEADS))
        grid = torch.stack(torch.meshgrid(torch.arange(WINDOW), torch.arange(WINDOW), indexing="ij")).flatten(1)
        relative = grid[:, :, None] - grid[:, None, :] + WINDOW - 1
        index = (relative[0] * (2 * WINDOW - 1) + relative[1]).flatten()
        self.register_buffer("relative_position_index", index, persistent=False)

    def forward(self, x: torch.Tensor, window_mask: torch.Tensor) -> torch.Tensor:
        bias = self.relative_position_bias_table[self.relative_position_index]
        bias = bias.view(self.window_area, self.window_area, -1).permute(2, 0, 1).contiguous().unsqueeze(0)
        return _heads(self, self.fused, x, bias + window_mask)


class Windows(nn.Module):
    """Two window attentions, each with heads of its own; a fixed mask broadcast over the heads."""

    def __init__(self, fused: bool) -> None:
        super().__init__()
        self.first, self.second = WindowAttention(fused), WindowAttention(fused)
        self.norm = nn.LayerNorm(HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        position = torch.arange(x.shape[1], device=x.device)
        window_mask = ((position[:, None] - position[None, :]).abs() > 4).float().mul(-100.0)[None, None]
        return self.norm(self.second(self.first(x, window_mask), window_mask))


class BucketAttention(Projections):
    """Attention whose scores get a bias per head; the first layer embeds relative position buckets into it."""

    def __init__(self, fused: bool, has_bias: bool) -> None:
        super().__init__()
        self.fused = fused
        if has_bias:
            self.relative_attention_bias = nn.Embedding(BUCKETS, HEADS)

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if position_bias is None:
            position = torch.arange(x.shape[1], device=x.device)
            buckets = (position[None, :] - position[:, None]).clamp(-BUCKETS // 2, BUCKETS // 2 - 1) + BUCKETS // 2
            position_bias = self.relative_attention_bias(buckets).permute([2, 0, 1]).unsqueeze(0)
        return _heads(self, self.fused, x, position_bias), position_bias


class BucketStack(nn.Module):
    """Layers that share the first layer's position bias (``returns_bias``: it is an output too)."""

    def __init__(self, fused: bool, returns_bias: bool = False) -> None:
        super().__init__()
        self.layers = nn.ModuleList([BucketAttention(fused, has_bias=i == 0) for i in range(2)])
        self.norm = nn.LayerNorm(HIDDEN)
        self.returns_bias = returns_bias

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        bias = None
        for layer in self.layers:
            x, bias = layer(x, bias)
        return (self.norm(x), bias) if self.returns_bias else self.norm(x)


def _tokens(length: int) -> torch.Tensor:
    return torch.randn(2, length, HIDDEN, generator=torch.Generator().manual_seed(0))


def _slots(group: object) -> set[tuple[nn.Module, str]]:
    return {(slot.module, slot.name) for slot in group.slots}  # type: ignore[attr-defined]


def _projections(*modules: Projections) -> set[tuple[nn.Module, str]]:
    return {(getattr(m, p), "out_features") for m in modules for p in "qkv"} | {(m.o, "in_features") for m in modules}


def _head_order(before: torch.Tensor, after: torch.Tensor) -> list[int]:
    """For each head of ``after`` (an output projection's weight), its index in ``before``."""
    heads = [before[:, h * HEAD_DIM : (h + 1) * HEAD_DIM] for h in range(HEADS)]
    return [
        next(g for g, old in enumerate(heads) if torch.equal(old, after[:, h * HEAD_DIM : (h + 1) * HEAD_DIM]))
        for h in range(HEADS)
    ]


def _assert_sorting_keeps_heads_with_their_bias(
    model: nn.Module, x: torch.Tensor, reference: torch.Tensor, attention: Projections, bias: torch.Tensor, dim: int
) -> None:
    """Sorting at the largest subnet reorders whole heads and ``bias``'s entries along ``dim`` alike."""
    weight, entries = attention.o.weight.detach().clone(), bias.detach().clone()
    with torch.no_grad():
        sort_parameters(model)
        torch.testing.assert_close(model(x), reference, rtol=1e-6, atol=1e-6)
    order = _head_order(weight, attention.o.weight.detach())
    assert sorted(order) == list(range(HEADS)) and order != list(range(HEADS))  # whole heads, reordered
    torch.testing.assert_close(bias.detach(), entries.index_select(dim, torch.tensor(order)), rtol=0, atol=0)


@pytest.mark.parametrize("fused", [False, True])
def test_a_learned_bias_table_per_head_follows_the_heads_of_its_window_attention(fused: bool) -> None:
    torch.manual_seed(0)
    model, x = Windows(fused).eval(), _tokens(WINDOW * WINDOW)
    with torch.no_grad():
        reference = model(x)
    analysis = analyze(model, x)
    assert [(_slots(heads), _slots(table), head_dim) for heads, table, head_dim in analysis.head_counts] == [
        (_projections(attention), {(attention, "relative_position_bias_table_size")}, HEAD_DIM)
        for attention in (model.first, model.second)
    ]
    assert all(heads.fixed_reason is None and heads.step == HEAD_DIM for heads, _, _ in analysis.head_counts)

    space = generate_search_space(model, example_input=x)
    assert space.hparams() == {"first.q.out_features": HEAD_WIDTHS, "second.q.out_features": HEAD_WIDTHS}

    def check(model: nn.Module, exported: nn.Module) -> None:
        for name in ("first", "second"):
            heads = getattr(model, name).q.out_features // HEAD_DIM
            attention = getattr(exported, name)
            assert type(attention) is WindowAttention and attention.num_heads == heads
            assert attention.relative_position_bias_table.shape == ((2 * WINDOW - 1) ** 2, heads)

    assert_exact_subnets(model, space, x, reference, check)
    space.sample(max)
    table = model.first.relative_position_bias_table
    _assert_sorting_keeps_heads_with_their_bias(model, x, reference, model.first, table, dim=1)


@pytest.mark.parametrize("fused", [False, True])
def test_a_bias_computed_by_the_first_layer_couples_the_heads_of_every_layer_reading_it(fused: bool) -> None:
    torch.manual_seed(0)
    model, x = BucketStack(fused).eval(), _tokens(5)
    with torch.no_grad():
        reference = model(x)
    first, second = model.layers
    embedding = first.relative_attention_bias
    analysis = analyze(model, x)
    [(heads, bias, head_dim)] = analysis.head_counts
    assert (_slots(heads), _slots(bias), head_dim) == (_projections(first, second), {(embedding, "embedding_dim")}, 8)
    assert (heads.fixed_reason, heads.step, bias.fixed_reason) == (None, HEAD_DIM, None)

    space = generate_search_space(model, example_input=x)
    # one heads hparam for both layers; the first layer computes the bias the others read
    assert space.hparams() == {"layers.0.q.out_features": HEAD_WIDTHS, "layers.depth": [1, 2]}

    def check(model: nn.Module, exported: nn.Module) -> None:
        heads = model.layers[0].q.out_features // HEAD_DIM
        assert all(layer.q.out_features == heads * HEAD_DIM for layer in model.layers[: model.layers.depth])
        assert type(exported.layers[0].relative_attention_bias) is nn.Embedding
        assert exported.layers[0].relative_attention_bias.weight.shape == (BUCKETS, heads)
        assert exported.layers[0].relative_attention_bias.embedding_dim == heads
        assert [layer.num_heads for layer in exported.layers] == [heads] * len(exported.layers)

    assert_exact_subnets(model, space, x, reference, check)
    space.sample(max)
    _assert_sorting_keeps_heads_with_their_bias(model, x, reference, first, embedding.weight, dim=1)


def test_a_per_head_bias_that_keeps_its_size_keeps_the_heads() -> None:
    """A bias that is also an output of the model keeps its size: so do the heads it is added to."""
    model, x = BucketStack(fused=True, returns_bias=True).eval(), _tokens(5)
    [(heads, bias, _)] = analyze(model, x).head_counts
    assert bias.fixed_reason == "reaches the model's output '1'"
    assert heads.fixed_reason == "a tensor with one entry per head keeps its size (reaches the model's output '1')"
    assert generate_search_space(model, example_input=x).hparams() == {"layers.depth": [1, 2]}


class ZeroBiasAttention(Projections):
    """Attention without a learned bias: the first layer makes a zero bias of ``self.num_heads`` entries (T5's)."""

    def forward(self, x: torch.Tensor, position_bias: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if position_bias is None:
            position_bias = torch.zeros((1, self.num_heads, x.shape[1], x.shape[1]), dtype=x.dtype)
        return _heads(self, True, x, position_bias), position_bias


class ZeroBiasStack(BucketStack):
    def __init__(self) -> None:
        super().__init__(fused=True)
        self.layers = nn.ModuleList([ZeroBiasAttention() for _ in range(2)])


def test_a_bias_created_with_the_head_count_attribute_couples_the_heads_that_read_it() -> None:
    torch.manual_seed(0)
    model, x = ZeroBiasStack().eval(), _tokens(5)
    with torch.no_grad():
        reference = model(x)
    analysis = analyze(model, x)
    assert analysis.head_counts == []  # the created bias has nothing to slice
    space = generate_search_space(model, example_input=x)
    assert space.hparams() == {"layers.0.q.out_features": HEAD_WIDTHS, "layers.depth": [1, 2]}

    def check(model: nn.Module, exported: nn.Module) -> None:
        heads = model.layers[0].q.out_features // HEAD_DIM
        assert [layer.num_heads for layer in exported.layers] == [heads] * len(exported.layers)
        modules = dict(model.named_modules())
        assert modules["layers.1.q"].get_hparam("out_features") is modules["layers.0.q"].get_hparam("out_features")

    assert_exact_subnets(model, space, x, reference, check)


class HeadSizedGate(nn.Module):
    """A tensor made with the head count that meets a layer's width: it keeps its size, and so does the layer."""

    def __init__(self) -> None:
        super().__init__()
        self.num_heads = 32
        self.up, self.down = nn.Linear(HIDDEN, 32), nn.Linear(32, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(self.up(x) * torch.ones((1, x.shape[1], self.num_heads)))


def test_a_tensor_created_with_the_head_count_that_meets_another_width_keeps_it() -> None:
    model, x = HeadSizedGate().eval(), _tokens(5)
    groups = [g for g in analyze(model, x).groups if (model.up, "out_features") in _slots(g)]
    assert groups[0].fixed_reason == "a tensor created with its module's head count meets another width"
    assert generate_search_space(model, example_input=x).hparams() == {}
