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
