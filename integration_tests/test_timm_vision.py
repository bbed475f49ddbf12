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
