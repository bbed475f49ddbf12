"""The timm layers that autonas_dynamic's timm integration declares, each between searchable convs.

A small model per layer is converted with the default ``AutoNASConfig``: the timm layer converts and
couples with its neighbours, the maximal subnet is exact, exported subnets equal the dynamic model
and the closed-form costs equal a count of each exported subnet. Importing ``autonas_dynamic`` does
not import timm.
"""

from __future__ import annotations

import copy
import random
import subprocess
import sys
from collections.abc import Callable

import pytest
import torch
from torch import nn

pytestmark = pytest.mark.vision
timm = pytest.importorskip("timm")
layers = pytest.importorskip("timm.layers")

from autonas_config import AutoNASConfig  # noqa: E402
from autonas_dynamic import CostModel, DynamicModule, count_flops, count_params, export_model  # noqa: E402
from autonas_dynamic.space import generate_search_space  # noqa: E402


def between_convs(middle: Callable[[int], nn.Module], width: int = 96) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, width, 3, padding=1), nn.BatchNorm2d(width), middle(width), nn.ReLU(), nn.Conv2d(width, 32, 1)
    )


MODELS: dict[str, Callable[[], nn.Module]] = {
    "MixedConv2d depthwise": lambda: between_convs(lambda w: layers.MixedConv2d(w, w, [3, 5], depthwise=True)),
    "MixedConv2d": lambda: between_convs(lambda w: layers.MixedConv2d(w, 2 * w, [1, 1]), width=128)[:3].append(
        nn.Conv2d(256, 32, 1)
    ),
    "BlurPool2d": lambda: between_convs(layers.BlurPool2d),
    "GroupNorm1": lambda: between_convs(layers.GroupNorm1),
    "LayerScale2d": lambda: between_convs(layers.LayerScale2d),
    "ScaledStdConv2d": lambda: between_convs(lambda w: layers.ScaledStdConv2d(w, w, 3, padding=1)),
    "Conv2dSame": lambda: between_convs(lambda w: layers.Conv2dSame(w, w, 5, stride=2)),
    "BatchNormAct2d": lambda: between_convs(lambda w: layers.BatchNormAct2d(w, act_layer=nn.SiLU)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_timm_layer_between_convs(name: str) -> None:
    torch.manual_seed(0)
    model = MODELS[name]().eval()
    x = torch.randn(2, 3, 17, 17)
    with torch.no_grad():
        reference = model(x)
    rules = AutoNASConfig(**{"nn.Conv2d": {"kernel_size": (3,)}}).model_dump()
    space = generate_search_space(model, rules)
    middle = model[2]
    assert isinstance(middle, DynamicModule), f"{name} was not converted"
    assert len(model[0].get_hparam("out_channels").choices) > 1
    costs = CostModel(model, x)
    rng = random.Random(0)
    with torch.no_grad():
        assert torch.equal(model(x), reference)
        for sample in (min, rng.choice, rng.choice):
            space.sample(sample)
            exported = export_model(copy.deepcopy(model))
            torch.testing.assert_close(exported(x), model(x), rtol=1e-5, atol=1e-6)
            assert (costs.flops(), costs.params()) == (count_flops(exported, x), count_params(exported))


def test_same_padding_conv_searches_its_kernel() -> None:
    model = MODELS["Conv2dSame"]()
    generate_search_space(model, AutoNASConfig(**{"nn.Conv2d": {"kernel_size": (3,)}}).model_dump())
    assert model[2].get_hparam("kernel_size").choices == [(3, 3), (5, 5)]


def test_importing_autonas_dynamic_does_not_import_timm() -> None:
    code = "import sys, autonas_dynamic, autonas_config; print('timm' in sys.modules, 'timm.LayerScale' in autonas_config.registered_layer_types())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]


@pytest.mark.parametrize("name", ["vit_tiny_patch16_224", "deit_tiny_patch16_224"])
def test_timm_vit_heads_are_searched_with_the_example_input_made_for_timm_models(name: str) -> None:
    """timm's fused ``qkv`` reshaped into ``(3, heads, head_dim)``: three parts of 2 or 3 heads of 64."""
    from autonas_dynamic.plugins.timm import example_input

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, img_size=32, patch_size=8, depth=2).eval()
    (made,) = example_input(model)
    assert (made.shape, made.device.type) == ((2, 3, 32, 32), "meta")  # the patch embedding's size, not 224
    assert example_input(nn.Linear(2, 2)) is None
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        reference = model(x)
    space = generate_search_space(model, AutoNASConfig().model_dump())  # no example input given
    assert {k: v for k, v in space.hparams().items() if ".attn." in k} == {
        f"blocks.{i}.attn.qkv.out_features": [384, 576] for i in range(2)
    }
    assert space.hparams()["cls_token_size"] == [96, 128, 192]  # the hidden width, with the tables on the root
    costs = CostModel(model, x)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference, rtol=0, atol=0)
        largest = {k: max(v) for k, v in space.hparams().items()}
        space.select({**largest, "blocks.0.attn.qkv.out_features": 384, "cls_token_size": 128})
        exported = export_model(copy.deepcopy(model))
        attention = exported.blocks[0].attn
        assert (attention.num_heads, attention.attn_dim, attention.proj.in_features) == (2, 128, 128)
        assert exported.cls_token.shape[-1] == exported.pos_embed.shape[-1] == exported.patch_embed.proj.out_channels
        assert exported.pos_embed.shape[-1] == exported.head.in_features == attention.qkv.in_features == 128
        torch.testing.assert_close(exported(x), model(x), rtol=1e-5, atol=1e-6)
        assert (costs.flops(), costs.params()) == (count_flops(exported, x), count_params(exported))


@pytest.mark.parametrize("name", ["levit_128s", "efficientvit_m0"])
def test_attention_bias_caches_filled_while_traced_do_not_reach_the_next_trace(name: str) -> None:
    # LeViT and EfficientViT attention cache their biases per device key in eval mode; a proxy
    # cached by one trace must neither reach the depth check's trace nor stay in the model
    model = timm.create_model(name, pretrained=False, num_classes=10, img_size=64).eval()
    space = generate_search_space(model, AutoNASConfig().model_dump())
    depths = {key: choices for key, choices in space.hparams().items() if key.endswith("blocks.depth")}
    assert len(depths) == 3 and all(choices[0] < choices[-1] for choices in depths.values())
    caches = [m.attention_bias_cache for m in model.modules() if hasattr(m, "attention_bias_cache")]
    assert caches and all(not cache for cache in caches)  # what they held before conversion: nothing
    space.sample(min)
    exported = copy.deepcopy(model)
    export_model(exported)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(exported(x), model(x), atol=1e-5)
