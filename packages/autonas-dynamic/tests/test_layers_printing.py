"""Printing converted layers and models: torch's summary at the active sizes."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from example_models import NestedSequentials, SkippableDepth
from torch import nn

from autonas_dynamic import DYNAMIC_REGISTRY, export_model, generate_search_space

#: One layer per built-in layer type, with at least two choices for every hparam.
LAYERS: dict[str, Callable[[], nn.Module]] = {
    "nn.Conv1d": lambda: nn.Conv1d(8, 6, 5, padding=2),
    "nn.Conv2d": lambda: nn.Conv2d(8, 6, 5, padding=2),
    "nn.Conv3d": lambda: nn.Conv3d(8, 6, 5, padding=2),
    "nn.ConvTranspose1d": lambda: nn.ConvTranspose1d(8, 6, 5, padding=2),
    "nn.ConvTranspose2d": lambda: nn.ConvTranspose2d(8, 6, 5, padding=2),
    "nn.ConvTranspose3d": lambda: nn.ConvTranspose3d(8, 6, 5, padding=2),
    "nn.Linear": lambda: nn.Linear(8, 6),
    "nn.BatchNorm1d": lambda: nn.BatchNorm1d(8),
    "nn.BatchNorm2d": lambda: nn.BatchNorm2d(8),
    "nn.BatchNorm3d": lambda: nn.BatchNorm3d(8),
    "nn.SyncBatchNorm": lambda: nn.SyncBatchNorm(8),
    "nn.InstanceNorm1d": lambda: nn.InstanceNorm1d(8),
    "nn.InstanceNorm2d": lambda: nn.InstanceNorm2d(8, affine=True),
    "nn.InstanceNorm3d": lambda: nn.InstanceNorm3d(8),
    "nn.LayerNorm": lambda: nn.LayerNorm([3, 8]),
    "nn.GroupNorm": lambda: nn.GroupNorm(4, 8),
    "nn.Sequential": lambda: nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8)),
    "nn.ModuleList": lambda: nn.ModuleList([nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 8)]),
    "nn.Embedding": lambda: nn.Embedding(10, 8),
}


def test_every_built_in_layer_type_is_covered() -> None:
    assert set(LAYERS) == {key for key in DYNAMIC_REGISTRY.keys if key.startswith("nn.")}
    assert len(LAYERS) == 19


def _static_text(module: nn.Module) -> str:
    """What the exported module prints, with the dynamic class names it would have had."""
    return repr(export_model(copy.deepcopy(module)))


def _dynamic_text(module: nn.Module) -> str:
    return repr(module).replace("Dynamic", "")


@pytest.mark.parametrize("key", list(LAYERS))
def test_converted_layer_prints_its_active_sizes(key: str) -> None:
    layer = DYNAMIC_REGISTRY.convert(LAYERS[key]())
    for _, hparam in layer.named_hparams():
        hparam.active = hparam.choices[(len(hparam.choices) - 1) // 2]  # below the original

    text = repr(layer)
    assert text.startswith("Dynamic")
    assert _dynamic_text(layer) == _static_text(layer)
    assert _dynamic_text(layer) != repr(LAYERS[key]())  # the active sizes show, not the full ones


def test_conv_text_names_the_active_channels_kernel_and_padding() -> None:
    conv = DYNAMIC_REGISTRY.convert(nn.Conv2d(8, 6, 5, padding=2))
    conv.in_channels, conv.out_channels, conv.kernel_size = 4, 3, (3, 3)
    assert repr(conv) == "DynamicConv2d(4, 3, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))"
    norm = DYNAMIC_REGISTRY.convert(nn.LayerNorm([3, 8]))
    norm.num_features = 5
    assert repr(norm) == "DynamicLayerNorm((3, 5), eps=1e-05, elementwise_affine=True, bias=True)"


def test_printing_leaves_the_module_unchanged() -> None:
    conv = DYNAMIC_REGISTRY.convert(nn.Conv2d(8, 6, 5, padding=2))
    conv.kernel_size = (3, 3)
    before = dict(conv.__dict__)
    repr(conv)
    assert conv.__dict__ == before
    assert conv.padding == (1, 1) and conv(torch.randn(1, 8, 6, 6)).shape == (1, 6, 6, 6)


@pytest.mark.parametrize("factory", [SkippableDepth, NestedSequentials])
def test_converted_model_prints_the_active_subnet(factory: type[nn.Module]) -> None:
    model = factory()
    space = generate_search_space(model)
    space.sample(min)
    text = str(model)
    assert text.replace("Dynamic", "") == _static_text(model)
    assert "ResBlock" not in text  # the dropped blocks are not printed
    assert "(stem): DynamicConv2d(3, 1, kernel_size=(1, 1), stride=(1, 1))" in text
    space.sample(max)
    assert str(model).replace("Dynamic", "") == str(factory())
