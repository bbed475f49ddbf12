"""Hugging Face transformers built from tiny configs (no downloads) as search spaces.

The searchable dimensions are the MLP hidden widths (and BERT's pooler width, MobileNetV2's
expansion widths) and, where queries, keys and values are separate projections reshaped into
heads with ``view(..., -1, head_dim)``, the attention heads (BERT, ViT: the q/k/v widths and the
output projection's input move together by whole heads); GPT-2's MLP is built from
``transformers``' own ``Conv1D`` layers, searchable through autonas_dynamic's transformers
integration. T5's and Swin's scores get a relative position bias with one entry per head (T5's
computed by the first block and shared by all, so its blocks share one heads hparam), which keeps
one entry per active head. T5, Whisper, Segformer and MobileNetV2 read sizes in Python while they
run; they are traced with an example input made from their config. Each model keeps its outputs at
the maximal subnet, exports exactly (to plain transformers classes) at random subnets, has exact
closed-form costs, and computes the same after sorting. Text models with a residual stream wide
enough for the rounding (Llama, Mistral, Qwen2, RoBERTa, DistilBERT, BERT, ELECTRA, GPT-2, T5
encoder, BART) also search their hidden width (embeddings, norms and every projection on the
stream), so all four axes:
hidden width, heads, MLP width and depth; so does the Whisper encoder. Where the stream is an
output (T5's and Whisper's ``last_hidden_state``, BART's ``encoder_last_hidden_state``) the default
``outputs`` section lets it change width.
"""

from __future__ import annotations

import copy
import random
import warnings
from collections.abc import Callable

import pytest
import torch

transformers = pytest.importorskip("transformers")

from autonas_config import AutoNASConfig  # noqa: E402
from autonas_dynamic import sort_parameters  # noqa: E402
from autonas_dynamic.cost import CostModel, count_flops, count_params  # noqa: E402
from autonas_dynamic.space import SearchSpace, generate_search_space  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _bert() -> torch.nn.Module:
    config = transformers.BertConfig(
        vocab_size=100, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128, num_labels=3
    )
    return transformers.BertForSequenceClassification(config)


def _albert() -> torch.nn.Module:
    config = transformers.AlbertConfig(
        vocab_size=100, embedding_size=32, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, num_labels=3,
    )  # fmt: skip
    return transformers.AlbertForSequenceClassification(config)


def _electra() -> torch.nn.Module:
    config = transformers.ElectraConfig(
        vocab_size=100, embedding_size=64, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, num_labels=3,
    )  # fmt: skip
    return transformers.ElectraForSequenceClassification(config)


def _vit() -> torch.nn.Module:
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, num_labels=3,
    )  # fmt: skip
    return transformers.ViTForImageClassification(config)


def _deit() -> torch.nn.Module:
    config = transformers.DeiTConfig(
        image_size=32, patch_size=8, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, num_labels=3,
    )  # fmt: skip
    return transformers.DeiTForImageClassificationWithTeacher(config)  # a class and a distillation token


def _clip_vision() -> torch.nn.Module:
    vision = {"image_size": 32, "patch_size": 8, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4}
    text = {"vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "bos_token_id": 0}
    config = transformers.CLIPConfig(
        vision_config={**vision, "intermediate_size": 128}, text_config={**text, "eos_token_id": 1}, num_labels=3
    )
    return transformers.CLIPForImageClassification(config)  # the vision tower and a head on its mean patch token


def _gpt2() -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=100, n_positions=32, n_embd=64, n_layer=2, n_head=4, n_inner=128, bos_token_id=0, eos_token_id=0
    )
    return transformers.GPT2LMHeadModel(config)


def _gpt_neo() -> torch.nn.Module:
    config = transformers.GPTNeoConfig(
        vocab_size=100, hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, window_size=4,
        attention_types=[[["global", "local"], 1]], max_position_embeddings=32, bos_token_id=0, eos_token_id=0,
        use_cache=False,
    )  # fmt: skip
    return transformers.GPTNeoForCausalLM(config)


def _t5_encoder() -> torch.nn.Module:
    config = transformers.T5Config(
        vocab_size=100, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4, decoder_start_token_id=0
    )
    return transformers.T5EncoderModel(config)


def _swin() -> torch.nn.Module:
    config = transformers.SwinConfig(
        image_size=32, patch_size=4, embed_dim=16, depths=[2, 1], num_heads=[2, 4], window_size=4
    )  # stage 0 (8 x 8 patches) has a shifted window, with its mask
    model = transformers.SwinModel(config)
    for name, table in model.named_parameters():  # zeros at init: make each head's bias its own
        if name.endswith("relative_position_bias_table"):
            torch.nn.init.normal_(table)
    return model


def _whisper_encoder() -> torch.nn.Module:
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    config = transformers.WhisperConfig(
        d_model=64, encoder_layers=2, encoder_attention_heads=4, encoder_ffn_dim=128, num_mel_bins=16,
        max_source_positions=8,
    )  # fmt: skip
    return WhisperEncoder(config)


def _segformer() -> torch.nn.Module:
    config = transformers.SegformerConfig(
        num_encoder_blocks=2, depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32], patch_sizes=[7, 3],
        strides=[4, 2], num_attention_heads=[1, 2], mlp_ratios=[4, 4],
    )  # fmt: skip
    return transformers.SegformerModel(config)


def _mobilenet_v2() -> torch.nn.Module:
    return transformers.MobileNetV2Model(transformers.MobileNetV2Config(image_size=32, depth_multiplier=0.35))


def _wav2vec2() -> torch.nn.Module:
    config = transformers.Wav2Vec2Config(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        conv_dim=(32, 32), conv_stride=(5, 2), conv_kernel=(10, 3), num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, vocab_size=32,
    )  # fmt: skip
    return transformers.Wav2Vec2ForCTC(config)


def _audio() -> dict[str, torch.Tensor]:
    return {"input_values": torch.randn(2, 800, generator=torch.Generator().manual_seed(0))}


def _opt() -> torch.nn.Module:
    config = transformers.OPTConfig(
        vocab_size=100, hidden_size=64, num_attention_heads=4, ffn_dim=128, num_hidden_layers=2,
        max_position_embeddings=32, word_embed_proj_dim=64, bos_token_id=0, eos_token_id=0, pad_token_id=1,
    )  # fmt: skip
    return transformers.OPTForCausalLM(config)


def _mpnet() -> torch.nn.Module:
    config = transformers.MPNetConfig(
        vocab_size=100, hidden_size=64, num_attention_heads=4, intermediate_size=128, num_hidden_layers=2, num_labels=3
    )
    return transformers.MPNetForSequenceClassification(config)


def _gpt_neox() -> torch.nn.Module:
    config = transformers.GPTNeoXConfig(
        vocab_size=100, hidden_size=64, num_attention_heads=4, intermediate_size=128, num_hidden_layers=2,
        max_position_embeddings=32, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.GPTNeoXForCausalLM(config)


def _tokens() -> dict[str, torch.Tensor]:
    return {"input_ids": torch.randint(0, 100, (2, 8))}


def _image() -> dict[str, torch.Tensor]:
    return {"pixel_values": torch.randn(2, 3, 32, 32)}


def _expansions() -> dict[str, list[int]]:
    """MobileNetV2 (depth multiplier 0.35): every expansion conv, and two projections the residuals allow."""
    widths = {range(0, 3): [32, 48], range(3, 6): [64, 96], range(6, 10): [96, 144], range(10, 13): [96, 128, 192]}
    widths[range(13, 16)] = [160, 224, 336]
    found = {f"layer.{i}.expand_1x1.convolution.out_channels": w for block, w in widths.items() for i in block}
    found["layer.12.reduce_1x1.convolution.out_channels"] = [32, 56]
    found["layer.15.reduce_1x1.convolution.out_channels"] = [64, 96, 112]
    return dict(sorted(found.items(), key=lambda item: int(item[0].split(".")[1])))


MLP_WIDTHS = [64, 96, 128]
HEADS_OF_16 = [32, 48, 64]  # q/k/v widths of 2, 3 or 4 heads of 16 (the heads section's default ratios)
CASES = {
    "bert": (
        _bert,
        lambda: {"input_ids": torch.randint(0, 100, (2, 8))},
        {
            "bert.encoder.layer.0.intermediate.dense.out_features": MLP_WIDTHS,
            "bert.encoder.layer.1.intermediate.dense.out_features": MLP_WIDTHS,
            "bert.encoder.layer.depth": [0, 1, 2],
            **{f"bert.encoder.layer.{i}.attention.self.query.out_features": HEADS_OF_16 for i in range(2)},
            "bert.pooler.dense.out_features": [32, 64],
            "bert.embeddings.word_embeddings.embedding_dim": [32, 64],  # the hidden width of the residual stream
        },
    ),
    "albert": (
        _albert,
        _tokens,
        {
            # one shared layer group, run config.num_hidden_layers times: the encoder's depth sets that
            # count; the stream after the embedding projection is the hidden width (its embeddings keep
            # their own size)
            "albert.encoder.depth": [1, 2],
            "albert.encoder.embedding_hidden_mapping_in.out_features": [32, 64],
            "albert.encoder.albert_layer_groups.0.albert_layers.0.attention.query.out_features": HEADS_OF_16,
            "albert.encoder.albert_layer_groups.0.albert_layers.0.ffn.out_features": MLP_WIDTHS,
            "albert.pooler.out_features": [32, 64],
        },
    ),
    "electra": (
        _electra,
        _tokens,
        {
            "electra.embeddings.word_embeddings.embedding_dim": [32, 64],
            "electra.encoder.layer.depth": [0, 1, 2],
            **{f"electra.encoder.layer.{i}.attention.self.query.out_features": HEADS_OF_16 for i in range(2)},
            "electra.encoder.layer.0.intermediate.dense.out_features": MLP_WIDTHS,
            "electra.encoder.layer.1.intermediate.dense.out_features": MLP_WIDTHS,
            "classifier.dense.out_features": [32, 64],
        },
    ),
    "vit": (
        _vit,
        lambda: {"pixel_values": torch.randn(2, 3, 32, 32)},
        {
            "vit.layers.0.mlp.fc1.out_features": MLP_WIDTHS,
            "vit.layers.1.mlp.fc1.out_features": MLP_WIDTHS,
            "vit.layers.depth": [0, 1, 2],
            **{f"vit.layers.{i}.attention.q_proj.out_features": HEADS_OF_16 for i in range(2)},
            "vit.embeddings.cls_token_size": [32, 64],  # the hidden width: class token, position table, patch conv
        },
    ),
    "deit": (
        _deit,
        _image,
        {
            "deit.embeddings.cls_token_size": [32, 64],  # with the distillation token
            "deit.layers.depth": [0, 1, 2],
            **{f"deit.layers.{i}.attention.q_proj.out_features": HEADS_OF_16 for i in range(2)},
            "deit.layers.0.mlp.fc1.out_features": MLP_WIDTHS,
            "deit.layers.1.mlp.fc1.out_features": MLP_WIDTHS,
        },
    ),
    "clip_vision": (
        _clip_vision,
        _image,
        {
            "vision_model.embeddings.class_embedding_size": [32, 64],
            "vision_model.encoder.layers.depth": [0, 1, 2],
            **{f"vision_model.encoder.layers.{i}.self_attn.k_proj.out_features": HEADS_OF_16 for i in range(2)},
            "vision_model.encoder.layers.0.mlp.fc1.out_features": MLP_WIDTHS,
            "vision_model.encoder.layers.1.mlp.fc1.out_features": MLP_WIDTHS,
        },
    ),
    "gpt2": (
        _gpt2,
        lambda: {"input_ids": torch.randint(0, 100, (2, 8))},
        {
            "transformer.h.0.mlp.c_fc.out_features": MLP_WIDTHS,
            "transformer.h.1.mlp.c_fc.out_features": MLP_WIDTHS,
            **{f"transformer.h.{i}.attn.c_attn.out_features": [96, 144, 192] for i in range(2)},  # fused q, k, v
            "transformer.wte.embedding_dim": [32, 64],  # the hidden width; lm_head's weight stays tied to wte's
            "transformer.h.depth": [0, 1, 2],
        },
    ),
    "gpt-neo": (
        _gpt_neo,
        _tokens,
        {
            "transformer.wte.embedding_dim": [32, 64],
            "transformer.h.depth": [0, 1, 2],
            **{f"transformer.h.{i}.attn.attention.k_proj.out_features": HEADS_OF_16 for i in range(2)},  # heads
            **{f"transformer.h.{i}.mlp.c_fc.out_features": MLP_WIDTHS for i in range(2)},
        },
    ),
    "mpnet": (
        _mpnet,
        _tokens,
        {
            "mpnet.embeddings.word_embeddings.embedding_dim": [32, 64],
            "mpnet.encoder.layer.depth": [0, 1, 2],
            # one heads hparam for both layers: they add the relative position bias the encoder computes
            # once (one entry per head); the heads are merged by a shape unpacked into view
            "mpnet.encoder.layer.0.attention.attn.q.out_features": HEADS_OF_16,
            **{f"mpnet.encoder.layer.{i}.intermediate.dense.out_features": MLP_WIDTHS for i in range(2)},
            "classifier.dense.out_features": [32, 64],
        },
    ),
    "gpt-neox": (
        _gpt_neox,
        _tokens,
        {
            "gpt_neox.embed_in.embedding_dim": [32, 64],
            "gpt_neox.layers.depth": [0, 1, 2],
            # query_key_value viewed as (heads, 3 * head_dim) and chunked: 2 to 4 heads of q, k and v of 16
            **{f"gpt_neox.layers.{i}.attention.query_key_value.out_features": [96, 144, 192] for i in range(2)},
            **{f"gpt_neox.layers.{i}.mlp.dense_h_to_4h.out_features": MLP_WIDTHS for i in range(2)},
        },
    ),
    "opt": (
        _opt,
        _tokens,
        {
            # the learned positions (counted from the attention mask) join the stream; each layer
            # flattens its tokens around the MLP and views them back, and stays skippable
            "model.decoder.embed_tokens.embedding_dim": [32, 64],
            "model.decoder.layers.depth": [0, 1, 2],
            **{f"model.decoder.layers.{i}.self_attn.k_proj.out_features": HEADS_OF_16 for i in range(2)},
            **{f"model.decoder.layers.{i}.fc1.out_features": MLP_WIDTHS for i in range(2)},
        },
    ),
    "t5-encoder": (
        _t5_encoder,
        _tokens,
        {
            **{f"encoder.block.{i}.layer.1.DenseReluDense.wi.out_features": [32, 64] for i in range(2)},
            "encoder.block.depth": [1, 2],  # block 0 computes the position bias every block reads
            # one heads hparam for every block: the position bias, one entry per head, is shared
            "encoder.block.0.layer.0.SelfAttention.q.out_features": [16, 24, 32],
        },
    ),
    "swin": (
        _swin,
        _image,
        {
            # heads per block (each has its relative position bias table), MLP widths, stage and block depths
            **{f"encoder.layers.0.blocks.{i}.attention.q_proj.out_features": [8, 16] for i in range(2)},
            **{f"encoder.layers.0.blocks.{i}.mlp.fc1.out_features": [32, 64] for i in range(2)},
            "encoder.layers.0.blocks.depth": [0, 1, 2],
            "encoder.layers.1.blocks.0.attention.q_proj.out_features": [16, 24, 32],
            "encoder.layers.1.blocks.0.mlp.fc1.out_features": MLP_WIDTHS,
            "encoder.layers.1.blocks.depth": [0, 1],
            "encoder.layers.depth": [1, 2],
        },
    ),
    "whisper-encoder": (
        _whisper_encoder,
        lambda: {"input_features": torch.randn(2, 16, 16)},
        {
            "conv1.out_channels": [32, 64],
            "conv2.out_channels": [32, 64],  # the hidden width: its output and the positions start the stream
            **{f"layers.{i}.fc1.out_features": MLP_WIDTHS for i in range(2)},
            **{f"layers.{i}.self_attn.k_proj.out_features": HEADS_OF_16 for i in range(2)},  # 2 to 4 heads of 16
            "layers.depth": [0, 1, 2],
        },
    ),
    "segformer": (
        _segformer,
        _image,
        {
            "stages.0.blocks.0.mlp.fc1.out_features": [32, 64],
            "stages.1.blocks.0.mlp.fc1.out_features": MLP_WIDTHS,
            "stages.1.blocks.0.attention.q_proj.out_features": [16, 32],  # 1 or 2 heads (stage 0 has one)
            **{f"stages.{i}.blocks.depth": [0, 1] for i in range(2)},
        },
    ),
    "mobilenet-v2": (_mobilenet_v2, _image, _expansions()),
    # heads, MLP width and depth; the stream stays: the weight-normed positional conv adds to it
    "wav2vec2": (
        _wav2vec2,
        _audio,
        {
            "wav2vec2.encoder.layers.depth": [0, 1, 2],
            **{
                f"wav2vec2.encoder.layers.{i}.{name}": choices
                for i in range(2)
                for name, choices in [
                    ("attention.k_proj.out_features", [32, 48, 64]),
                    ("feed_forward.intermediate_dense.out_features", [64, 96, 128]),
                ]
            },
        },
    ),
}


def _output(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        output = model(**inputs)
    return output.logits if hasattr(output, "logits") else output.last_hidden_state


@pytest.mark.parametrize("name", list(CASES))
def test_transformer_search_space(name: str) -> None:
    build, make_inputs, expected = CASES[name]
    factory: Callable[[], torch.nn.Module] = build
    torch.manual_seed(0)
    model = factory().eval()
    inputs = make_inputs()
    reference = _output(model, inputs)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message=".*could not be traced")  # no module may fail to trace
        space = generate_search_space(model, AutoNASConfig().model_dump())
    assert space.hparams() == expected
    torch.testing.assert_close(_output(model, inputs), reference, rtol=0, atol=0)
    costs = CostModel(model, (inputs,))
    rng = random.Random(0)
    for sample in (min, rng.choice, rng.choice, rng.choice):
        space.sample(sample)
        dynamic = _output(model, inputs)
        exported = copy.deepcopy(model)
        SearchSpace(exported).export()
        torch.testing.assert_close(_output(exported, inputs), dynamic, rtol=1e-5, atol=1e-6)
        assert not any(type(m).__module__.startswith("autonas") for m in exported.modules())  # plain classes
        _assert_consistent_heads(exported)
        assert costs.flops() == count_flops(exported, (inputs,))
        assert costs.params() == count_params(exported)
    space.sample(max)
    sort_parameters(model)  # whole heads move with their channels and per-head entries (position biases)
    torch.testing.assert_close(_output(model, inputs), reference, rtol=1e-5, atol=1e-5)


def _assert_consistent_heads(model: torch.nn.Module) -> None:
    """Every exported attention module states the head count and width its projections have."""
    for module in model.modules():
        heads = _int_attribute(module, "num_attention_heads", "num_heads", "n_heads")
        head_dim = _int_attribute(module, "attention_head_size", "head_dim", "key_value_proj_dim")
        width = _int_attribute(module, "all_head_size", "inner_dim")
        if heads is None or head_dim is None:
            continue
        if width is not None and heads * head_dim != width:
            raise AssertionError(f"{type(module).__name__}: {heads} heads of {head_dim} != {width}")
        query = next((child for child in module.children() if isinstance(child, torch.nn.Linear)), None)
        if query is not None:  # GPT-2's fused Conv1D: split_size is checked apart
            assert heads * head_dim == query.out_features, type(module).__name__


def _int_attribute(module: torch.nn.Module, *names: str) -> int | None:
    """The first of ``module``'s attributes ``names`` that is an int."""
    return next((value for name in names if isinstance(value := getattr(module, name, None), int)), None)


def _causal_lm(name: str) -> torch.nn.Module:
    small = {"vocab_size": 100, "hidden_size": 32, "intermediate_size": 64, "num_attention_heads": 4}
    llama_like = {**small, "num_hidden_layers": 1, "num_key_value_heads": 2, "max_position_embeddings": 32}
    ids = {"bos_token_id": 0, "eos_token_id": 0}
    configs = {
        "gpt2": lambda: transformers.GPT2LMHeadModel(
            transformers.GPT2Config(vocab_size=100, n_positions=32, n_embd=32, n_layer=1, n_head=4, n_inner=64, **ids)
        ),
        "gpt-neo": lambda: transformers.GPTNeoForCausalLM(
            transformers.GPTNeoConfig(
                **small, num_layers=1, num_heads=4, attention_types=[[["global"], 1]], max_position_embeddings=32, **ids
            )
        ),
        "llama": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(**llama_like, **ids)),
        "mistral": lambda: transformers.MistralForCausalLM(transformers.MistralConfig(**llama_like, **ids)),
        "qwen2": lambda: transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**llama_like, **ids)),
        "bart": lambda: transformers.BartForConditionalGeneration(
            transformers.BartConfig(
                vocab_size=100, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=32,
            )
        ),
    }  # fmt: skip
    return configs[name]()


@pytest.mark.parametrize("name", ["gpt2", "gpt-neo", "llama", "mistral", "qwen2", "bart"])
def test_probe_forwards_of_models_with_attention_masks_run_on_meta_tensors(name: str) -> None:
    """Masking code reads mask values unless it sees tracing: on meta tensors it builds the mask."""
    torch.manual_seed(0)
    model = _causal_lm(name).eval()
    space = generate_search_space(model, AutoNASConfig().model_dump())
    assert space.size() > 1
    input_ids = torch.randint(3, 100, (2, 8))
    dummy = ({"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids)},)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # no fall-back to real forwards
        costs = CostModel(model, dummy)
    assert costs.meta_forwards
    rng = random.Random(0)
    for sample in (min, rng.choice):
        space.sample(sample)
        exported = SearchSpace(copy.deepcopy(model)).export()
        assert (costs.flops(), costs.params()) == (count_flops(exported, dummy), count_params(exported))


def test_wav2vec2_with_its_weight_normed_positional_conv_converts() -> None:
    """Wav2Vec2's positional conv is weight-normed (a parametrization): it keeps its size, with a warning.

    Its SpecAugment masks (numpy on the traced sizes) and LayerDrop (a random skip per layer) run in
    training only; both trace, so heads, MLP widths and the layer count are searched (its case above).
    """
    model = _wav2vec2()
    assert torch.nn.utils.parametrize.is_parametrized(model.wav2vec2.encoder.pos_conv_embed.conv, "weight")
    with pytest.warns(UserWarning, match=r"ParametrizedConv1d layers keep their sizes: its 'weight' is computed by a "):
        generate_search_space(model, AutoNASConfig().model_dump())


def _text_model(name: str) -> torch.nn.Module:
    wide = {"vocab_size": 100, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4}
    ids = {"bos_token_id": 0, "eos_token_id": 0}
    grouped = {**wide, "num_hidden_layers": 1, "num_key_value_heads": 2, "max_position_embeddings": 32, **ids}
    configs = {
        "llama": lambda: transformers.LlamaForCausalLM(transformers.LlamaConfig(**grouped)),
        "mistral": lambda: transformers.MistralForCausalLM(transformers.MistralConfig(**grouped)),
        "qwen2": lambda: transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**grouped)),
        "qwen3": lambda: transformers.Qwen3ForCausalLM(transformers.Qwen3Config(**grouped, head_dim=16)),
        "llama-eager": lambda: transformers.LlamaForCausalLM(
            transformers.LlamaConfig(**grouped, attn_implementation="eager")
        ),
        "gemma2": lambda: transformers.Gemma2ForCausalLM(transformers.Gemma2Config(**grouped, head_dim=16)),
        "roberta": lambda: transformers.RobertaForSequenceClassification(
            transformers.RobertaConfig(**wide, num_hidden_layers=1, num_labels=2)
        ),
        "distilbert": lambda: transformers.DistilBertForSequenceClassification(
            transformers.DistilBertConfig(vocab_size=100, dim=64, n_layers=1, n_heads=4, hidden_dim=128)
        ),
        "t5-encoder": lambda: transformers.T5EncoderModel(
            transformers.T5Config(vocab_size=100, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4)
        ),
        "t5": lambda: transformers.T5ForConditionalGeneration(
            transformers.T5Config(
                vocab_size=100, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4, decoder_start_token_id=0
            )
        ),
        "bart": lambda: transformers.BartForConditionalGeneration(
            transformers.BartConfig(
                vocab_size=100, d_model=64, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
                decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=32,
            )
        ),
    }  # fmt: skip
    return configs[name]()


#: The four axes of each text model: its hidden width, the heads of its first layer, its MLP and depth.
TEXT_AXES = {
    "llama": {
        "model.embed_tokens.embedding_dim": [32, 64],  # RMSNorm code on the stream follows
        "model.layers.0.self_attn.q_proj.out_features": [32, 64],  # 1 or 2 key/value heads, 2 queries each
        "model.layers.0.mlp.gate_proj.out_features": [64, 96, 128],
        "model.layers.depth": [0, 1],
    },
    **{  # grouped-query attention as in Llama
        name: {
            "model.embed_tokens.embedding_dim": [32, 64],
            "model.layers.0.self_attn.q_proj.out_features": [32, 64],
            "model.layers.0.mlp.gate_proj.out_features": [64, 96, 128],
            "model.layers.depth": [0, 1],
        }
        # Qwen3's per-head norms of head_dim entries keep their size; eager attention (Gemma2's default)
        # multiplies queries with keys and values repeated per group
        for name in ("mistral", "qwen2", "qwen3", "llama-eager", "gemma2")
    },
    "roberta": {
        "roberta.embeddings.word_embeddings.embedding_dim": [32, 64],
        "roberta.encoder.layer.0.attention.self.query.out_features": [32, 48, 64],
        "roberta.encoder.layer.0.intermediate.dense.out_features": [64, 96, 128],
        "roberta.encoder.layer.depth": [0, 1],
    },
    "distilbert": {
        "distilbert.embeddings.word_embeddings.embedding_dim": [32, 64],
        "distilbert.transformer.layer.0.attention.q_lin.out_features": [32, 48, 64],
        "distilbert.transformer.layer.0.ffn.lin1.out_features": [64, 96, 128],
        "distilbert.transformer.layer.depth": [0, 1],
    },
    "t5-encoder": {  # its output is the stream (last_hidden_state), which the default outputs section frees
        "shared.embedding_dim": [32, 64],  # T5LayerNorm code on the stream follows
        "encoder.block.0.layer.1.DenseReluDense.wi.out_features": [64, 96, 128],
        "encoder.block.depth": [1, 2],
    },
    "t5": {  # traced with decoder_input_ids beside input_ids; shared ties both streams and lm_head
        "shared.embedding_dim": [32, 64],
        "encoder.block.0.layer.0.SelfAttention.q.out_features": [32, 48, 64],
        "decoder.block.0.layer.0.SelfAttention.q.out_features": [32, 48, 64],
        # both cross-attentions: the first one's zero bias of self.n_heads entries is handed to the next
        "decoder.block.0.layer.1.EncDecAttention.q.out_features": [32, 48, 64],
        "decoder.block.0.layer.2.DenseReluDense.wi.out_features": [64, 96, 128],
        "encoder.block.depth": [1, 2],
        "decoder.block.depth": [1, 2],
    },
    "bart": {  # one stream: the shared embedding ties encoder, decoder, cross-attention keys/values and lm_head
        "model.shared.embedding_dim": [32, 64],
        "model.encoder.layers.0.self_attn.k_proj.out_features": [32, 48, 64],
        "model.decoder.layers.0.encoder_attn.k_proj.out_features": [32, 48, 64],
        "model.encoder.layers.0.fc1.out_features": [64, 96, 128],
        "model.decoder.layers.0.fc1.out_features": [64, 96, 128],
        "model.encoder.layers.depth": [0, 1],
        "model.decoder.layers.depth": [0, 1],
    },
}


@pytest.mark.parametrize("name", list(TEXT_AXES))
def test_text_models_search_hidden_width_heads_mlp_and_depth(name: str) -> None:
    torch.manual_seed(0)
    model = _text_model(name).eval()
    inputs = {"input_ids": torch.randint(3, 100, (2, 8))}
    if name == "t5":  # T5 does not derive its decoder's inputs from input_ids
        inputs["decoder_input_ids"] = torch.randint(3, 100, (2, 5))
    reference = _output(model, inputs)
    space = generate_search_space(model, AutoNASConfig().model_dump())
    hparams = space.hparams()
    assert {key: hparams.get(key) for key in TEXT_AXES[name]} == TEXT_AXES[name]
    torch.testing.assert_close(_output(model, inputs), reference, rtol=0, atol=0)
    costs = CostModel(model, (inputs,))
    rng = random.Random(0)
    for sample in (min, lambda choices: choices[len(choices) // 2], rng.choice, rng.choice, rng.choice):
        space.sample(sample)
        dynamic = _output(model, inputs)
        exported = SearchSpace(copy.deepcopy(model)).export()
        assert not any(type(m).__module__.startswith("autonas") for m in exported.modules())  # plain classes
        torch.testing.assert_close(_output(exported, inputs), dynamic, rtol=1e-5, atol=1e-6)
        assert (costs.flops(), costs.params()) == (count_flops(exported, (inputs,)), count_params(exported))
    space.sample(min)
    dynamic = _output(model, inputs)
    with torch.no_grad():  # the smallest subnet runs with its own library's forward, caching off
        exported = SearchSpace(copy.deepcopy(model)).export()
        extra = {"use_cache": False} if name in ("llama", "qwen3", "llama-eager", "gemma2", "bart", "t5") else {}
        torch.testing.assert_close(_output(exported, {**inputs, **extra}), dynamic, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("outputs", [None, {}], ids=["default", "every-output-fixed"])
def test_the_outputs_section_is_saved_with_the_mode_and_restores_the_same_space(outputs, tmp_path) -> None:
    import autonas as an

    torch.manual_seed(0)
    model = _text_model("t5-encoder").eval()
    inputs = {"input_ids": torch.randint(3, 100, (2, 8))}
    config = {} if outputs is None else {"outputs": outputs}
    model = an.convert(model, mode=[("autonas", config)])
    hparams = SearchSpace(model).hparams()
    assert ("shared.embedding_dim" in hparams) is (outputs is None)  # the hidden width: the stream is the output
    an.save(model, tmp_path / "arch.pth")
    restored = an.restore(_text_model("t5-encoder").eval(), tmp_path / "arch.pth")
    assert SearchSpace(restored).hparams() == hparams
    for sample in (max, min):
        an.sample(model, sample)
        an.sample(restored, sample)
        torch.testing.assert_close(_output(restored, inputs), _output(model, inputs), rtol=0, atol=0)
