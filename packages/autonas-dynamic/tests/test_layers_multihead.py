"""nn.MultiheadAttention with a searchable head count, and its plain-torch export.

Checked on hand-written attention blocks: the exact hparams and choices (the ``heads`` section),
the largest subnet is the original exactly, fewer heads compute what torch's own attention computes
with the other heads switched off, the exported subnet (a ``torch.fx.GraphModule`` at fewer heads,
the module itself at all heads) computes exactly what the dynamic module did and survives pickling,
is specialised to the call it was made for, the cost model is exact on meta forwards, and sorting
reorders whole heads (of q, k, v and the output projection alike) without changing the output.
"""

from __future__ import annotations

import copy
import io
import pickle
import random

import pytest
import torch
import torch.fx as fx
import torch.nn as nn

from autonas_config import AutoNASConfig
from autonas_dynamic import DYNAMIC_REGISTRY, export_model, sort_parameters
from autonas_dynamic.cost import CostModel, count_flops, count_params
from autonas_dynamic.space import generate_search_space

EMBED, HEADS, HEAD_DIM, LENGTH = 32, 4, 8, 5


class AttentionBlock(nn.Module):
    """A pre-norm transformer block around ``nn.MultiheadAttention`` (the ViT encoder block's shape)."""

    def __init__(self, batch_first: bool = True, **attention: object) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(EMBED)
        self.attention = nn.MultiheadAttention(EMBED, HEADS, batch_first=batch_first, **attention)  # type: ignore[arg-type]
        self.fc1, self.fc2 = nn.Linear(EMBED, 64), nn.Linear(64, EMBED)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.norm(x)
        y, _ = self.attention(y, y, y, need_weights=False)
        x = x + y
        return x + self.fc2(torch.relu(self.fc1(x)))


def _tokens(batch_first: bool = True) -> torch.Tensor:
    shape = (2, LENGTH, EMBED) if batch_first else (LENGTH, 2, EMBED)
    return torch.randn(*shape, generator=torch.Generator().manual_seed(0))


def _heads_switched_off(attention: nn.MultiheadAttention, heads: int) -> nn.MultiheadAttention:
    """torch's own attention with every head from ``heads`` on contributing nothing (zero q, k, v and output)."""
    reference = copy.deepcopy(attention)
    width, full = heads * HEAD_DIM, HEADS * HEAD_DIM
    with torch.no_grad():
        for name in ("in_proj_weight", "in_proj_bias", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
            tensor = getattr(reference, name)
            if tensor is not None:
                blocks = tensor.view(3, full, *tensor.shape[1:]) if name.startswith("in_proj") else tensor[None]
                blocks[:, width:] = 0
        for name in ("bias_k", "bias_v"):
            if getattr(reference, name) is not None:
                getattr(reference, name)[..., width:] = 0
        reference.out_proj.weight[:, width:] = 0
    return reference


def test_heads_are_searched_by_the_heads_section_and_the_block_is_exact() -> None:
    torch.manual_seed(0)
    model, x = AttentionBlock().eval(), _tokens()
    with torch.no_grad():
        reference = model(x)
    space = generate_search_space(model, AutoNASConfig().model_dump(), example_input=x)
    assert space.hparams() == {"attention.num_heads": [2, 3, 4], "fc1.out_features": [32, 64]}
    costs = CostModel(model, x)
    assert costs.meta_forwards, "the attention runs on meta tensors"
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference, rtol=0, atol=0)  # torch's own fast path
        rng, seen = random.Random(0), set()
        for sample in (min, lambda c: c[len(c) // 2], rng.choice, rng.choice, rng.choice):
            space.sample(sample)
            output = model(x)
            seen.add(model.attention.num_heads)
            exported = export_model(copy.deepcopy(model))
            heads = model.attention.num_heads
            assert isinstance(exported.attention, fx.GraphModule if heads < HEADS else nn.MultiheadAttention)
            assert exported.attention.in_proj_weight.shape == (3 * heads * HEAD_DIM, EMBED)
            assert exported.attention.out_proj.weight.shape == (EMBED, heads * HEAD_DIM)
            torch.testing.assert_close(exported(x), output, rtol=0, atol=0)
            assert (costs.flops(), costs.params()) == (count_flops(exported, x), count_params(exported))
        assert seen == {2, 3, 4}
        assert not any(type(m).__module__.startswith("autonas") for m in exported.modules())


@pytest.mark.parametrize(
    ("attention", "batch_first"),
    [
        ({}, True),
        ({}, False),
        ({"kdim": 24, "vdim": 16}, True),
        ({"add_bias_kv": True, "add_zero_attn": True}, False),
        ({"bias": False}, True),
    ],
    ids=["packed", "sequence-first", "kdim-vdim", "bias-kv-zero-attn", "no-bias"],
)
@pytest.mark.parametrize("need_weights", [False, True], ids=["sdpa", "weights"])
@pytest.mark.filterwarnings("ignore:Support for mismatched key_padding_mask")  # torch's own, for bool masks
def test_fewer_heads_compute_torchs_attention_without_the_other_heads(
    attention: dict, batch_first: bool, need_weights: bool
) -> None:
    torch.manual_seed(0)
    plain = nn.MultiheadAttention(EMBED, HEADS, batch_first=batch_first, **attention).eval()
    dynamic = DYNAMIC_REGISTRY.convert(copy.deepcopy(plain))
    query = _tokens(batch_first)
    key = torch.randn(*query.shape[:-1], attention.get("kdim", EMBED))
    value = torch.randn(*query.shape[:-1], attention.get("vdim", EMBED))
    padding = torch.zeros(2, LENGTH, dtype=torch.bool)
    padding[1, -2:] = True
    causal = nn.Transformer.generate_square_subsequent_mask(LENGTH)  # a float mask
    kwargs = {"need_weights": need_weights, "average_attn_weights": False}
    masked = {**kwargs, "key_padding_mask": padding, "attn_mask": causal}
    with torch.no_grad():
        for call in (kwargs, masked):
            whole = dynamic(query, key, value, **call)
            torch.testing.assert_close(whole[0], plain(query, key, value, **call)[0], rtol=0, atol=0)
            dynamic.num_heads = 2
            out, weights = dynamic(query, key, value, **call)
            expected, expected_weights = _heads_switched_off(plain, 2)(query, key, value, **call)
            torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
            if need_weights:
                torch.testing.assert_close(weights, expected_weights[:, :2], rtol=1e-5, atol=1e-6)
            exported = export_model(copy.deepcopy(dynamic))
            torch.testing.assert_close(exported(query, key, value, **call), (out, weights), rtol=0, atol=0)
            dynamic.num_heads = HEADS


def test_self_attention_with_a_boolean_mask_exports_exactly_and_survives_pickling() -> None:
    torch.manual_seed(0)
    dynamic = DYNAMIC_REGISTRY.convert(nn.MultiheadAttention(EMBED, HEADS, batch_first=True).eval())
    x = _tokens()
    mask = torch.ones(LENGTH, LENGTH, dtype=torch.bool).triu(1)
    dynamic.num_heads = 3
    with torch.no_grad():
        output, weights = dynamic(x, x, x, attn_mask=mask)
        exported = export_model(copy.deepcopy(dynamic))
        buffer = io.BytesIO()
        torch.save(exported, buffer)
        buffer.seek(0)
        loaded = torch.load(buffer, weights_only=False)
        for module in (exported, loaded, pickle.loads(pickle.dumps(exported))):
            got, got_weights = module(x, x, x, attn_mask=mask)
            torch.testing.assert_close((got, got_weights), (output, weights), rtol=0, atol=0)
    assert weights.shape == (2, LENGTH, LENGTH)  # averaged over the 3 active heads
    assert sorted(exported.state_dict()) == ["in_proj_bias", "in_proj_weight", "out_proj.bias", "out_proj.weight"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        ({"need_weights": True}, "need_weights=False"),
        ({"is_causal": True, "attn_mask": torch.zeros(LENGTH, LENGTH)}, "is_causal=False"),
        ({"key": "other"}, "query is key is value"),
    ],
)
def test_the_export_is_specialised_to_the_call_and_says_so(call: dict, message: str) -> None:
    dynamic = DYNAMIC_REGISTRY.convert(nn.MultiheadAttention(EMBED, HEADS, batch_first=True).eval())
    x = _tokens()
    dynamic.num_heads = 2
    dynamic(x, x, x, need_weights=False)
    exported = export_model(dynamic)
    key = torch.randn_like(x) if call.pop("key", None) else x
    with pytest.raises(AssertionError, match=message):
        exported(x, key, x, **{"need_weights": False, **call})


def test_head_counts_follow_the_heads_rule_and_a_single_head_stays_plain() -> None:
    config = AutoNASConfig().model_dump()
    config["heads"] = {"*": {"heads_ratio": (0.25, 0.5, 1.0), "heads_divisor": 1}, "single": None}

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wide = nn.MultiheadAttention(EMBED, HEADS, batch_first=True)
            self.single = nn.MultiheadAttention(EMBED, HEADS, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.single(self.wide(x, x, x)[0], x, x)[0]

    model = Two()
    space = generate_search_space(model, config, example_input=_tokens())
    assert space.hparams() == {"wide.num_heads": [1, 2, 4]}
    assert type(model.single) is nn.MultiheadAttention
    with pytest.raises(ValueError, match=r"num_heads.*not allowed; choices are \[1, 2, 4\]"):
        model.wide.num_heads = 3


@pytest.mark.parametrize("attention", [{}, {"add_bias_kv": True}], ids=["packed", "bias-kv"])
def test_sorting_moves_whole_heads_and_keeps_the_output(attention: dict) -> None:
    torch.manual_seed(0)
    model, x = AttentionBlock(**attention).eval(), _tokens()
    generate_search_space(model, AutoNASConfig().model_dump(), example_input=x)
    with torch.no_grad():
        model.attention.out_proj.weight[:, 3 * HEAD_DIM :] *= 4  # the last head matters most
        reference = model(x)
        before = model.attention.out_proj.weight.detach().clone()
        sort_parameters(model)
        torch.testing.assert_close(model(x), reference, rtol=1e-5, atol=1e-6)
        after = model.attention.out_proj.weight.detach()
        old_heads = before.split(HEAD_DIM, dim=1)
        order = [
            next(i for i, old in enumerate(old_heads) if torch.equal(old, new)) for new in after.split(HEAD_DIM, 1)
        ]
        assert order[0] == 3 and sorted(order) == list(range(HEADS))
        norms = after.norm(dim=0).reshape(HEADS, HEAD_DIM).sum(1)
        assert torch.all(norms[:-1] >= norms[1:])
        model.attention.num_heads = 2  # the two best heads, as torch computes them
        y = model.norm(x)
        got = model.attention(y, y, y, need_weights=False)[0]
        expected = _heads_switched_off(_exported_full(model.attention), 2)(y, y, y, need_weights=False)[0]
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def _exported_full(attention: nn.Module) -> nn.MultiheadAttention:
    """A plain copy of a dynamic attention module at all its heads (its sorted tensors)."""
    copied = copy.deepcopy(attention)
    copied.num_heads = HEADS
    return copied.export()


def test_permuting_the_heads_of_separate_projections_keeps_the_output() -> None:
    torch.manual_seed(0)
    dynamic = DYNAMIC_REGISTRY.convert(nn.MultiheadAttention(EMBED, HEADS, kdim=24, vdim=16, batch_first=True).eval())
    query, key, value = _tokens(), torch.randn(2, LENGTH, 24), torch.randn(2, LENGTH, 16)
    with torch.no_grad():
        reference = dynamic(query, key, value)[0]
        weight = dynamic.k_proj_weight.detach().clone()
        assert dynamic.permute("num_heads", torch.tensor([2, 0, 3, 1]))
        torch.testing.assert_close(dynamic(query, key, value)[0], reference, rtol=1e-5, atol=1e-6)
    assert torch.equal(dynamic.k_proj_weight[:HEAD_DIM], weight[2 * HEAD_DIM : 3 * HEAD_DIM])
