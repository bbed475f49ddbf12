"""The closed-form cost model on torchvision families: exact on every subnet, built from meta forwards.

Per model (default ``AutoNASConfig`` rules, small inputs): the :class:`CostModel`'s FLOPs and
parameters equal ``count_flops`` / ``count_params`` of the exported subnet -- one real forward
count of a plain torchvision-shaped model -- on the smallest subnet and on random subnets. The
probe forwards run on meta tensors (confirmed by the build's one real check), except for the ViT:
its ``nn.MultiheadAttention`` runs the unfused attention fallback on meta tensors, which the real
check catches, and the build falls back to real forwards.
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
    if name == "vit":
        with pytest.warns(RuntimeWarning, match=r"records other costs than on real ones.*self_attention"):
            costs = CostModel(model, dummy)
        assert not costs.meta_forwards
    else:
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
