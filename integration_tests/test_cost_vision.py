"""The closed-form cost model on torchvision families: exact on every subnet, built from meta forwards.

Per model (default ``AutoNASConfig`` rules, small inputs): the :class:`CostModel`'s FLOPs and
parameters equal ``count_flops`` / ``count_params`` of the exported subnet -- one real forward
count of a plain torchvision-shaped model -- on the smallest subnet and on random subnets. The
probe forwards run on meta tensors (confirmed by the build's one real check), the ViT's searched
``nn.MultiheadAttention`` heads included.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable

import pytest
import torch
from torch import nn

pytestmark = pytest.mark.vision
torchvision = pytest.importorskip("torchvision")

from autonas_config import AutoNASConfig  # noqa: E402
from autonas_dynamic import export_model  # noqa: E402
from autonas_dynamic.cost import CostModel, count_flops, count_params  # noqa: E402
from autonas_dynamic.space import generate_search_space  # noqa: E402

NUM_RANDOM_SUBNETS = 3


def small_vit() -> nn.Module:
    """torchvision's ``VisionTransformer`` at a small size (vit_b_16's structure, fewer and narrower layers)."""
    return torchvision.models.VisionTransformer(
        image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=64, mlp_dim=128, num_classes=10
    )


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=10), (2, 3, 64, 64)),
    "mobilenet_v3_small": (lambda: torchvision.models.mobilenet_v3_small(num_classes=10), (1, 3, 64, 64)),
    "squeezenet1_0": (lambda: torchvision.models.squeezenet1_0(num_classes=10), (1, 3, 64, 64)),
    "convnext_tiny": (lambda: torchvision.models.convnext_tiny(num_classes=10), (1, 3, 64, 64)),
    "swin_t": (lambda: torchvision.models.swin_t(num_classes=10), (1, 3, 64, 64)),
    "vit": (small_vit, (2, 3, 32, 32)),
}


@pytest.mark.parametrize("name", list(MODELS))
def test_cost_model_equals_the_count_of_the_exported_subnet(name: str) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    build, shape = MODELS[name]
    model = build().eval()
    space = generate_search_space(model, AutoNASConfig().model_dump())
    dummy = torch.randn(shape)
    costs = CostModel(model, dummy)
    assert costs.meta_forwards, "the probe forwards should run on meta tensors"

    rng = random.Random(0)
    configs = [
        space.sample(min),
        *(space.sample(lambda choices: rng.choice(choices)) for _ in range(NUM_RANDOM_SUBNETS)),
    ]
    seen = set()
    for config in configs:
        space.select(config)
        exported = export_model(copy.deepcopy(model))
        flops, params = costs.flops(), costs.params()
        assert flops == count_flops(exported, dummy), f"FLOPs of {name} at {config}"
        assert params == count_params(exported) == sum(p.numel() for p in exported.parameters())
        seen.add((flops, params))
    assert len(seen) >= len(configs) - 1, "the checked subnets should differ in cost"


def test_vit_b_16_searches_whole_heads_of_its_multihead_attention() -> None:
    """vit_b_16 (at 32x32 pixels: four patches and the class token): 12 heads of 64 per layer, searched."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    model = torchvision.models.vit_b_16(image_size=32).eval()
    dummy = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        reference = model(dummy)
    space = generate_search_space(model, AutoNASConfig().model_dump())
    heads = {name: choices for name, choices in space.hparams().items() if name.endswith("num_heads")}
    assert heads == {f"encoder.layers.encoder_layer_{i}.self_attention.num_heads": [6, 8, 12] for i in range(12)}
    costs = CostModel(model, dummy)
    assert costs.meta_forwards
    rng = random.Random(0)
    with torch.no_grad():
        torch.testing.assert_close(model(dummy), reference, rtol=0, atol=0)
        for sample in (min, lambda c: c[len(c) // 2], rng.choice, rng.choice, rng.choice):
            space.sample(sample)
            output = model(dummy)
            exported = export_model(copy.deepcopy(model))
            for name, attention in exported.named_modules():
                if name.endswith("self_attention"):
                    width = model.get_submodule(name).num_heads * 64
                    assert attention.in_proj_weight.shape == (3 * width, 768)
            assert not any(type(m).__module__.startswith("autonas") for m in exported.modules())
            torch.testing.assert_close(exported(dummy), output, rtol=0, atol=0)
            assert (costs.flops(), costs.params()) == (count_flops(exported, dummy), count_params(exported))
