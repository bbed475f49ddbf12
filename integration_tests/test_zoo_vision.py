"""One torchvision model per family converts with the default AutoNASConfig and stays correct.

Per model: the maximal subnet computes what the original model computed; the minimal subnet,
the centroid and three random subnets export to plain models that compute what the dynamic model
computed. ``tools/zoo.py`` runs the same check over every variant and writes docs/zoo.md.
"""

from __future__ import annotations

from types import ModuleType

import pytest
import torch

pytestmark = pytest.mark.vision

REPRESENTATIVES = [
    "alexnet", "convnext_tiny", "densenet121", "efficientnet_b0", "efficientnet_v2_s", "googlenet",
    "inception_v3", "maxvit_t", "mnasnet0_5", "mobilenet_v2", "mobilenet_v3_small", "regnet_x_400mf",
    "resnet18", "resnext50_32x4d", "shufflenet_v2_x0_5", "squeezenet1_0", "swin_t", "swin_v2_t", "vgg11",
    "vit_b_16", "wide_resnet50_2", "fcn_resnet50", "deeplabv3_mobilenet_v3_large", "lraspp_mobilenet_v3_large",
    "ssdlite320_mobilenet_v3_large",
]  # fmt: skip


def test_every_family_has_a_representative(zoo: ModuleType) -> None:
    assert REPRESENTATIVES == zoo.REPRESENTATIVES
    families = {zoo.family(name) for name in zoo.torchvision_model_names()} - {"fasterrcnn"}
    assert families == {zoo.family(name) for name in REPRESENTATIVES}


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_family_converts_and_exports_exactly(zoo: ModuleType, name: str) -> None:
    torch.set_num_threads(1)
    result = zoo.check_model(name)
    assert result.ok, result.status
    assert result.hparams > 0 and result.size > 1


@pytest.mark.parametrize(
    ("name", "kwargs", "reference", "ours"),
    [
        ("resnet18", {}, (15, 1_259_712), (16, 3_779_136)),
        ("resnet50", {}, (40, 1.90e18), (41, 5.69e18)),
        ("mobilenet_v3_small", {"num_classes": 10}, (20, 17_915_904), (21, 53_747_712)),
    ],
)
def test_at_least_the_reference_counts(name: str, kwargs: dict, reference: tuple, ours: tuple) -> None:
    """The reference finds ``reference`` (configurable hparams, space size); we find at least as many.

    We find one more hparam: the last conv's width (the residual stream of the last stage for
    ResNets), which the reference keeps fixed because global pooling + flatten feeds the classifier.
    """
    import torchvision

    from autonas_config import AutoNASConfig
    from autonas_dynamic.space import generate_search_space

    model = torchvision.models.get_model(name, weights=None, **kwargs).eval()
    space = generate_search_space(model, AutoNASConfig().model_dump())
    hparams, size = len(space.hparams()), space.size()
    assert hparams >= reference[0] and size >= reference[1] * 0.995
    assert hparams == ours[0]
    assert size == pytest.approx(ours[1], rel=5e-3)
    classifier = "fc" if name.startswith("resnet") else "classifier.0"
    assert len(model.get_submodule(classifier).get_hparam("in_features").choices) > 1  # follows the last conv


def test_auxiliary_heads_follow_their_inputs_in_training() -> None:
    """GoogLeNet's auxiliary heads run only in training; converted in eval mode, they still fit every subnet."""
    import torchvision

    from autonas_config import AutoNASConfig
    from autonas_dynamic.space import generate_search_space

    model = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False).eval()
    space = generate_search_space(model, AutoNASConfig().model_dump())
    space.sample(min)
    model.train()
    outputs = model(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outputs] == [(2, 1000)] * 3


@pytest.mark.parametrize(("name", "kwargs"), [("resnet18", {}), ("mobilenet_v3_small", {"num_classes": 10})])
def test_converted_model_prints_its_active_subnet(name: str, kwargs: dict) -> None:
    """``print(model)`` works on a whole converted model and shows the active sizes: the text of its export."""
    import copy

    import torchvision

    import autonas as an

    model = an.convert(torchvision.models.get_model(name, weights=None, **kwargs).eval(), mode="autonas")
    an.sample(model, min)
    text = str(model)
    exported = an.export(copy.deepcopy(model))
    assert text.replace("Dynamic", "") == str(exported)
    assert text != str(torchvision.models.get_model(name, weights=None, **kwargs))
    searched = next(key for key in an.get_subnet_config(model, configurable=True) if key.endswith(".out_channels"))
    conv = model.get_submodule(searched.removesuffix(".out_channels"))
    width = conv.get_hparam("out_channels").min
    assert width < conv.get_hparam("out_channels").original
    assert f"DynamicConv2d({conv.in_channels}, {width}, kernel_size=" in text
