"""Attention heads recognised from the graph: q/k/v split into ``(heads, head_dim)`` move by whole heads.

A hand-written attention block (separate query/key/value projections reshaped with
``view(b, n, -1, head_dim)``, products per head, merged back with ``reshape(b, n, -1)``) gets one
group for the q/k/v widths and the output projection's input, in steps of the head width. Checked:
the exact groups and choices, the largest subnet computes what the block computed, exported
subnets compute what the dynamic model does, the cost model is exact, and sorting reorders whole
heads by importance (each head's channels together) and leaves the block's outputs alone. The block's ``num_heads`` and
``all_head_size`` follow the active heads and are set for good on export.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from autonas_config import AutoNASConfig
from autonas_dynamic import export_model, sort_parameters
from autonas_dynamic.cost import CostModel, count_flops, count_params
from autonas_dynamic.space import generate_search_space
from autonas_dynamic.trace import analyze

HIDDEN, HEADS, HEAD_DIM = 16, 4, 8


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate projections (``fused=True``: SDPA, else explicit products)."""

    def __init__(self, fused: bool, heads: str = "-1") -> None:
        super().__init__()
        self.fused, self.heads = fused, heads
        self.num_heads, self.all_head_size = HEADS, HEADS * HEAD_DIM  # attributes that follow the heads
        self.query, self.key, self.value = (nn.Linear(HIDDEN, HEADS * HEAD_DIM) for _ in range(3))
        self.out = nn.Linear(HEADS * HEAD_DIM, HIDDEN)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if self.heads == "argument":
            return self._by_argument(x, mask, self.num_heads, HEAD_DIM)
        if self.heads == "unpacked":
            return self._unpacked(x, mask)
        batch, length, _ = x.shape
        heads = {"-1": -1, "attribute": self.num_heads, "literal": HEADS}[self.heads]
        q, k, v = (
            proj(x).view(batch, length, heads, HEAD_DIM).transpose(1, 2) for proj in (self.query, self.key, self.value)
        )
        if self.fused:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        else:
            scores = q @ k.transpose(-1, -2) / HEAD_DIM**0.5 + mask
            attended = torch.matmul(F.softmax(scores, dim=-1), v)
        return x + self.out(attended.transpose(1, 2).reshape(batch, length, -1))

    def _by_argument(self, x: torch.Tensor, mask: torch.Tensor, heads: int, head_dim: int) -> torch.Tensor:
        """GPT-Neo's reshapes: by a head count passed in, to the input's leading sizes plus ``(heads, head_dim)``."""
        q, k, v = (p(x) for p in (self.query, self.key, self.value))
        q, k, v = (t.view(t.size()[:-1] + (heads, head_dim)).permute(0, 2, 1, 3) for t in (q, k, v))  # noqa: RUF005
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).permute(0, 2, 1, 3).contiguous()
        return x + self.out(attended.view(attended.size()[:-2] + (heads * head_dim,)))  # noqa: RUF005

    def _unpacked(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """MPNet's reshapes: a shape tuple unpacked into ``view``, merged by the ``all_head_size`` attribute."""
        q, k, v = (p(x).view(*x.shape[:-1], -1, HEAD_DIM).transpose(1, 2) for p in (self.query, self.key, self.value))
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).permute(0, 2, 1, 3).contiguous()
        merged_shape = attended.size()[:-2] + (self.all_head_size,)  # noqa: RUF005
        return x + self.out(attended.view(*merged_shape))


class Encoder(nn.Module):
    def __init__(self, fused: bool, heads: str = "-1") -> None:
        super().__init__()
        self.attention = SelfAttention(fused, heads)
        self.norm = nn.LayerNorm(HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros(x.shape[0], 1, x.shape[1], x.shape[1], device=x.device)  # broadcast over the heads
        return self.norm(self.attention(x, mask))


def _tokens() -> torch.Tensor:
    return torch.randn(2, 5, HIDDEN, generator=torch.Generator().manual_seed(0))


def _evaluated(build: Callable[[], nn.Module]) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A freshly seeded model in eval mode, an input, and the model's output on it."""
    torch.manual_seed(0)
    model = build().eval()
    x = _tokens()
    with torch.no_grad():
        return model, x, model(x)


@pytest.mark.parametrize(
    ("fused", "heads"), [(False, "-1"), (True, "-1"), (True, "attribute"), (True, "argument"), (True, "unpacked")]
)
def test_heads_of_separate_projections_form_one_group_in_head_steps(fused: bool, heads: str) -> None:
    """``heads``: the head count the reshape asks for: ``-1``, ``self.num_heads`` (which follows),
    ``self.num_heads`` passed to a method that reshapes to ``x.size()[:-1] + (heads, head_dim)``, or
    heads merged by a shape unpacked into ``view`` that ends in ``self.all_head_size``."""
    model, x, reference = _evaluated(lambda: Encoder(fused, heads))
    attention = model.attention
    analysis = analyze(model, x)
    group = analysis.group(attention.query, "out_features")
    assert {(s.module, s.name) for s in group.slots} == {
        (attention.query, "out_features"), (attention.key, "out_features"),
        (attention.value, "out_features"), (attention.out, "in_features"),
    }  # fmt: skip
    assert (group.step, group.fixed_reason, group.sortable) == (HEAD_DIM, None, True)

    space = generate_search_space(model, example_input=x)
    assert space.hparams() == {"attention.query.out_features": [8, 16, 24, 32]}  # 1 to 4 heads of 8
    costs = CostModel(model, x)
    assert costs.meta_forwards
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference, rtol=0, atol=0)
        rng = random.Random(0)
        for sample in (min, rng.choice, rng.choice, max):
            space.sample(sample)
            heads = attention.query.out_features // HEAD_DIM
            model(x)
            assert (attention.num_heads, attention.all_head_size) == (heads, heads * HEAD_DIM)
            exported = export_model(copy.deepcopy(model))
            assert exported.attention.out.in_features == exported.attention.query.out_features == heads * HEAD_DIM
            assert (exported.attention.num_heads, exported.attention.all_head_size) == (heads, heads * HEAD_DIM)
            assert not exported.attention._forward_pre_hooks
            torch.testing.assert_close(exported(x), model(x), rtol=1e-6, atol=1e-6)
            assert costs.flops() == count_flops(exported, x)
            assert costs.params() == count_params(exported)
        space.sample(max)
        before = attention.out.weight.detach().clone()
        sort_parameters(model)
        torch.testing.assert_close(model(x), reference, rtol=1e-6, atol=1e-6)
    after = attention.out.weight.detach()

    def heads_of(weight: torch.Tensor) -> list[torch.Tensor]:
        return [weight[:, h * HEAD_DIM : (h + 1) * HEAD_DIM] for h in range(HEADS)]

    order = [next(g for g, old in enumerate(heads_of(before)) if torch.equal(old, new)) for new in heads_of(after)]
    assert sorted(order) == list(range(HEADS)) and order != list(range(HEADS))  # whole heads, reordered
    head_norms = after.norm(dim=0).reshape(HEADS, HEAD_DIM).sum(1)
    assert torch.all(head_norms[:-1] >= head_norms[1:]), "heads should be in decreasing importance"


def test_a_head_count_that_does_not_follow_the_heads_keeps_them_fixed() -> None:
    model = Encoder(fused=True, heads="literal")
    with pytest.warns(UserWarning, match=r"the heads of 'attention' stays 32: at its smallest the forward fails"):
        space = generate_search_space(model, example_input=_tokens())
    assert space.hparams() == {}
    assert not model.attention._forward_pre_hooks


class GroupedQueryAttention(nn.Module):
    """Four query heads sharing two key/value heads: repeated as Llama's ``repeat_kv`` (``"repeat_kv"``;
    ``"eager"``: then multiplied by ``matmul`` as eager attention does), or SDPA's ``enable_gqa``."""

    def __init__(self, repeat: str) -> None:
        super().__init__()
        self.repeat = repeat
        self.query = nn.Linear(HIDDEN, HEADS * HEAD_DIM)
        self.key, self.value = (nn.Linear(HIDDEN, HEADS // 2 * HEAD_DIM) for _ in range(2))
        self.out = nn.Linear(HEADS * HEAD_DIM, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = (
            proj(x).view(batch, length, -1, HEAD_DIM).transpose(1, 2) for proj in (self.query, self.key, self.value)
        )
        if self.repeat == "eager":
            k, v = (self._repeated(t) for t in (k, v))
            weights = F.softmax(torch.matmul(q, k.transpose(2, 3)) / HEAD_DIM**0.5, dim=-1)
            attended = torch.matmul(weights, v)
        elif self.repeat == "repeat_kv":
            k, v = (self._repeated(t) for t in (k, v))
            attended = F.scaled_dot_product_attention(q, k, v)
        else:
            attended = F.scaled_dot_product_attention(q, k, v, enable_gqa=True)
        return x + self.out(attended.transpose(1, 2).reshape(batch, length, -1))

    @staticmethod
    def _repeated(t: torch.Tensor) -> torch.Tensor:
        batch, heads, length, width = t.shape
        return t[:, :, None, :, :].expand(batch, heads, 2, length, width).reshape(batch, heads * 2, length, width)


@pytest.mark.parametrize("repeat", ["repeat_kv", "eager", "enable_gqa"])
def test_grouped_query_heads_shrink_by_whole_groups(repeat: str) -> None:
    model, x, reference = _evaluated(lambda: GroupedQueryAttention(repeat))
    space = generate_search_space(model, example_input=x)
    assert space.hparams() == {"query.out_features": [16, 32]}  # 2 or 4 query heads: 1 or 2 key/value heads
    costs = CostModel(model, x)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference, rtol=0, atol=0)
        for width in (16, 32):
            space.select({"query.out_features": width})
            assert model.key.out_features == model.value.out_features == width // 2
            exported = export_model(copy.deepcopy(model))
            assert (exported.query.out_features, exported.key.out_features) == (width, width // 2)
            torch.testing.assert_close(exported(x), model(x), rtol=1e-6, atol=1e-6)
            assert (costs.flops(), costs.params()) == (count_flops(exported, x), count_params(exported))


def _with_heads(section: object) -> dict:
    return AutoNASConfig(heads=section).model_dump()


@pytest.mark.parametrize(
    ("section", "widths"),
    [
        (None, None),  # not searched
        ({"heads_ratio": (0.5, 0.67, 1.0)}, [16, 24, 32]),  # the default: 2, 3 or 4 heads of 8
        ({"heads_ratio": (0.25, 1.0)}, [8, 32]),
        ({"heads_ratio": (0.5, 0.67, 1.0), "heads_divisor": 2}, [16, 32]),
        ({"heads_ratio": None}, [8, 16, 24, 32]),  # every head count
        ({"*": {"heads_ratio": (0.5, 1.0)}, "attention": None}, None),  # the module matched by a pattern
    ],
)
def test_the_heads_section_sets_head_counts_whatever_the_linear_rule(section: object, widths: list[int] | None) -> None:
    """The Linear default (multiples of 32 of 16-wide layers) would leave nothing: the heads section decides."""
    model, x, reference = _evaluated(lambda: Encoder(fused=True, heads="attribute"))
    space = generate_search_space(model, _with_heads(section), example_input=x)
    assert space.hparams() == ({} if widths is None else {"attention.query.out_features": widths})
    assert (model.attention.num_heads, bool(model.attention._forward_pre_hooks)) == (HEADS, widths is not None)
    costs = CostModel(model, x)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference, rtol=0, atol=0)
        space.sample(min)
        exported = export_model(copy.deepcopy(model))
        torch.testing.assert_close(exported(x), model(x), rtol=1e-6, atol=1e-6)
        assert (costs.flops(), costs.params()) == (count_flops(exported, x), count_params(exported))
    assert exported.attention.num_heads == (widths or [HEADS * HEAD_DIM])[0] // HEAD_DIM


def test_grouped_query_heads_section_counts_the_key_value_heads() -> None:
    model, x, _ = _evaluated(lambda: GroupedQueryAttention(repeat="repeat_kv"))
    space = generate_search_space(model, _with_heads({"heads_ratio": (0.5, 1.0)}), example_input=x)
    assert space.hparams() == {"query.out_features": [16, 32]}  # 1 or 2 key/value heads, 2 query heads each
    space.select({"query.out_features": 16})
    assert (model.key.out_features, model.value.out_features) == (8, 8)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"heads_ratio": (0.0, 1.0)}, r"heads pattern '\*': heads_ratio: .*ratios must lie in \(0, 1\]; got \[0.0\]"),
        ({"heads_divisor": 0}, r"heads pattern '\*': heads_divisor: .*greater than or equal to 1"),
        (
            {"features_ratio": (0.5,)},
            r"heads pattern 'features_ratio': expected a rule or None; got \(0.5,\)\. A section is a HeadsRule rule",
        ),
    ],
)
def test_a_bad_heads_section_is_refused_naming_the_key(section: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        generate_search_space(Encoder(fused=True), {"heads": section}, example_input=_tokens())


class HeadNorm(nn.Module):
    """An RMSNorm over each head's features, written as module code (Qwen3's ``q_norm`` / ``k_norm``)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.rand(HEAD_DIM) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6))


class NormedHeadsAttention(SelfAttention):
    """Queries and keys normalised per head after the split into ``(heads, head_dim)``."""

    def __init__(self) -> None:
        super().__init__(fused=True)
        self.q_norm, self.k_norm = HeadNorm(), HeadNorm()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = (proj(x).view(batch, length, -1, HEAD_DIM) for proj in (self.query, self.key, self.value))
        q, k = self.q_norm(q), self.k_norm(k)
        attended = F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v)), attn_mask=mask)
        return x + self.out(attended.transpose(1, 2).reshape(batch, length, -1))


def test_a_norm_inside_each_head_keeps_its_size_and_the_heads_are_searched() -> None:
    def build() -> nn.Module:
        encoder = Encoder(fused=True)
        encoder.attention = NormedHeadsAttention()
        return encoder

    model, x, reference = _evaluated(build)
    space = generate_search_space(model, example_input=x)
    assert space.hparams() == {"attention.query.out_features": [8, 16, 24, 32]}  # the norms' weights stay
    costs = CostModel(model, x)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference, rtol=0, atol=0)
        for sample in (min, random.Random(0).choice):
            space.sample(sample)
            exported = export_model(copy.deepcopy(model))
            assert exported.attention.q_norm.weight.shape == (HEAD_DIM,)
            torch.testing.assert_close(exported(x), model(x), rtol=1e-6, atol=1e-6)
            assert (costs.flops(), costs.params()) == (count_flops(exported, x), count_params(exported))
        space.sample(max)
        sort_parameters(model)
        torch.testing.assert_close(model(x), reference, rtol=1e-6, atol=1e-6)


class InterleavedQKVAttention(nn.Module):
    """GPT-NeoX's fused projection: viewed as ``(heads, 3 * head_dim)``, each head chunked into q, k and v."""

    def __init__(self) -> None:
        super().__init__()
        self.num_attention_heads = HEADS
        self.qkv = nn.Linear(HIDDEN, 3 * HEADS * HEAD_DIM)
        self.out = nn.Linear(HEADS * HEAD_DIM, HIDDEN)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        q, k, v = self.qkv(x).view(batch, length, -1, 3 * HEAD_DIM).transpose(1, 2).chunk(3, dim=-1)
        attended = F.scaled_dot_product_attention(q, k, v)
        return x + self.out(attended.transpose(1, 2).reshape(batch, length, -1))


def test_heads_of_a_fused_projection_chunked_per_head_keep_q_k_and_v_of_each_head() -> None:
    model, x, reference = _evaluated(InterleavedQKVAttention)
    space = generate_search_space(model, example_input=x)
    assert space.hparams() == {"qkv.out_features": [24, 48, 72, 96]}  # 1 to 4 heads of q, k and v of 8
    costs = CostModel(model, x)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference, rtol=0, atol=0)
        for width in (24, 48, 72, 96):
            space.select({"qkv.out_features": width})
            dynamic = model(x)  # the head count follows before each forward
            assert (model.out.in_features, model.num_attention_heads) == (width // 3, width // (3 * HEAD_DIM))
            exported = export_model(copy.deepcopy(model))
            assert (exported.qkv.out_features, exported.out.in_features) == (width, width // 3)
            assert exported.num_attention_heads == width // (3 * HEAD_DIM)
            torch.testing.assert_close(exported.qkv.weight, model.qkv.weight[:width])  # whole heads: a prefix
            torch.testing.assert_close(exported(x), dynamic, rtol=1e-6, atol=1e-6)
            assert (costs.flops(), costs.params()) == (count_flops(exported, x), count_params(exported))
