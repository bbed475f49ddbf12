"""Hugging Face transformers built from tiny configs (no downloads) as search spaces.

Attention internals are boundaries (reshapes, matmuls), so the searchable dimensions are the MLP
hidden widths (and BERT's pooler width); GPT-2's MLP is built from ``transformers``' own ``Conv1D``
layers, searchable through autonas_dynamic's transformers integration. Each model keeps its outputs
at the maximal subnet and exports exactly at random subnets.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable

import pytest
import torch

transformers = pytest.importorskip("transformers")

from autonas_config import AutoNASConfig  # noqa: E402
from autonas_dynamic.space import SearchSpace, generate_search_space  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _bert() -> torch.nn.Module:
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, num_labels=3
    )
    return transformers.BertForSequenceClassification(config)


def _vit() -> torch.nn.Module:
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, num_labels=3,
    )  # fmt: skip
    return transformers.ViTForImageClassification(config)


def _gpt2() -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=100, n_positions=32, n_embd=64, n_layer=2, n_head=4, n_inner=128, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2LMHeadModel(config)


MLP_WIDTHS = [64, 96, 128]
CASES = {
    "bert": (
        _bert,
        lambda: {"input_ids": torch.randint(0, 100, (2, 8))},
        {
            "bert.encoder.layer.0.intermediate.dense.out_features": MLP_WIDTHS,
            "bert.encoder.layer.1.intermediate.dense.out_features": MLP_WIDTHS,
            "bert.pooler.dense.out_features": [32, 64],
        },
    ),
    "vit": (
        _vit,
        lambda: {"pixel_values": torch.randn(2, 3, 32, 32)},
        {"vit.layers.0.mlp.fc1.out_features": MLP_WIDTHS, "vit.layers.1.mlp.fc1.out_features": MLP_WIDTHS},
    ),
    "gpt2": (
        _gpt2,
        lambda: {"input_ids": torch.randint(0, 100, (2, 8))},
        {"transformer.h.0.mlp.c_fc.out_features": MLP_WIDTHS, "transformer.h.1.mlp.c_fc.out_features": MLP_WIDTHS},
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_transformer_search_space(name: str) -> None:
    build, make_inputs, expected = CASES[name]
    factory: Callable[[], torch.nn.Module] = build
    torch.manual_seed(0)
    model = factory().eval()
    inputs = make_inputs()
    with torch.no_grad():
        reference = model(**inputs).logits
    space = generate_search_space(model, AutoNASConfig().model_dump())
    assert space.hparams() == expected
    rng = random.Random(0)
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, reference, rtol=0, atol=0)
        for sample in (min, rng.choice, rng.choice, rng.choice):
            space.sample(sample)
            dynamic = model(**inputs).logits
            exported = copy.deepcopy(model)
            SearchSpace(exported).export()
            torch.testing.assert_close(exported(**inputs).logits, dynamic, rtol=1e-5, atol=1e-6)


def test_wav2vec2_with_its_weight_normed_positional_conv_converts() -> None:
    """Wav2Vec2's positional conv is weight-normed (a parametrization): it keeps its size, with a warning."""
    torch.manual_seed(0)
    config = transformers.Wav2Vec2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        conv_dim=(32, 32), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, vocab_size=32,
    )  # fmt: skip
    model = transformers.Wav2Vec2ForCTC(config).eval()
    conv = model.wav2vec2.encoder.pos_conv_embed.conv
    assert torch.nn.utils.parametrize.is_parametrized(conv, "weight")
    inputs = {"input_values": torch.randn(2, 800)}
    with torch.no_grad():
        reference = model(**inputs).logits
    with pytest.warns(UserWarning, match=r"ParametrizedConv1d layers keep their sizes: its 'weight' is computed by a "):
        space = generate_search_space(model, AutoNASConfig().model_dump())
    assert "wav2vec2.encoder.layers.0.feed_forward.intermediate_dense.out_features" in space.hparams()
    with torch.no_grad():
        torch.testing.assert_close(model(**inputs).logits, reference, rtol=0, atol=0)
        space.sample(min)
        dynamic = model(**inputs).logits
        exported = copy.deepcopy(model)
        SearchSpace(exported).export()
        torch.testing.assert_close(exported(**inputs).logits, dynamic, rtol=1e-5, atol=1e-6)
