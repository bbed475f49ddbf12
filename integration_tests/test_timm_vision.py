"""One timm model per family converts with the default AutoNASConfig and stays correct, with exact costs.

Per model (``tools/zoo.py``'s check): the maximal subnet computes what the original model computed;
the minimal subnet, the centroid and three random subnets export to plain models that compute what
the dynamic model computed; the closed-form cost model's FLOPs and parameters equal a forward count of
each exported subnet; and in convolutional families the minimal subnet narrows backbone convolutions
(those that see more than one pixel), not only squeeze-excite ones. ``nox -s zoo`` runs more variants.
"""

from __future__ import annotations

from types import ModuleType

import pytest

pytestmark = pytest.mark.vision
timm = pytest.importorskip("timm")

FAMILIES = [
    "resnet", "seresnext", "efficientnet", "mobilenetv3", "mobilenetv4", "ghostnet", "regnetx", "regnety",
    "convnext", "convnextv2", "edgenext", "mobilevit", "efficientvit", "fastvit", "repvit", "levit", "vit", "deit",
    "swin", "maxvit", "coatnet", "poolformer", "cspdarknet", "dla", "hrnet", "densenet", "inception_v3", "xception",
    "dpn", "rexnet", "tinynet", "lcnet", "mixnet", "hardcorenas", "resnest", "res2net", "nfnet", "vgg", "vovnet",
    "tresnet",
]  # fmt: skip


def test_forty_families_each_with_a_representative(zoo: ModuleType) -> None:
    assert list(zoo.TIMM_FAMILIES) == FAMILIES
    assert [zoo.family(name) for name in zoo.TIMM_REPRESENTATIVES] == FAMILIES


@pytest.mark.parametrize("family", FAMILIES)
def test_family_converts_exactly_with_exact_costs(zoo: ModuleType, family: str) -> None:
    result = zoo.check_model(zoo.TIMM_REPRESENTATIVES[FAMILIES.index(family)])
    assert result.ok, result.status
    assert result.hparams > 0 and result.size > 1 and result.costs_exact
    if family in zoo.TIMM_ATTENTION:
        assert result.narrower is None
    else:
        assert result.narrower[0] > 0, f"no backbone convolution of {result.name} is narrower at the minimal subnet"


def _space(name: str) -> dict[str, list]:
    import torch

    from autonas_config import AutoNASConfig
    from autonas_dynamic.space import generate_search_space

    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10).eval()
    return generate_search_space(model, AutoNASConfig().model_dump()).hparams()


def test_edgenext_streams_move_by_whole_heads_of_their_channel_attention() -> None:
    """Stages 1 and 3 (chunked into equal halves / quarters) are searched; stage 2's 88 channels chunk
    unequally into 3 and keep their width."""
    hparams = _space("edgenext_xx_small")
    assert hparams["stages.1.blocks.1.xca.qkv.out_features"] == [72, 108, 144]  # 2, 3, 4 heads of 12, three times
    assert hparams["stages.3.blocks.1.xca.qkv.out_features"] == [252, 504]  # 42 and 126 channels do not chunk into 4
    assert not any(name.startswith("stages.2.blocks.5.xca") for name in hparams)


def test_hrnet_stages_drop_trailing_modules() -> None:
    hparams = _space("hrnet_w18_small_v2")
    assert {name: hparams[name] for name in ("stage2.depth", "stage3.depth", "stage4.depth")} == {
        "stage2.depth": [0, 1],
        "stage3.depth": [0, 1, 2, 3],
        "stage4.depth": [0, 1, 2],
    }


def test_condconv_expert_convolutions_are_searched(zoo: ModuleType) -> None:
    """EfficientNet-CondConv: the expansion and stage widths of its CondConv2d blocks, exactly and costed."""
    hparams = _space("efficientnet_cc_b0_4e")
    assert {"blocks.4.0.conv_pw.out_channels", "blocks.4.0.conv_pwl.out_channels"} <= set(hparams)
    assert "blocks.6.0.conv_pw.out_channels" in hparams
    result = zoo.check_model("timm/efficientnet_cc_b0_4e")
    assert result.ok and result.costs_exact, result.status
    assert result.narrower[0] > 17  # 17 of 25 backbone convs when the CondConv2d layers kept their widths
