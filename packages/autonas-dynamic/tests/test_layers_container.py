"""Dynamic Sequential (depth)."""

import copy

import pytest
import torch
from layer_models import InvertedResidual, convert_all
from torch import nn

from autonas_dynamic import DYNAMIC_REGISTRY, export_model


@pytest.mark.parametrize(("depth", "width", "active"), [(2, 4, 2), (4, 3, 3), (3, 1, 1)])
def test_sequential_depth(depth, width, active):
    torch.manual_seed(0)
    seq = nn.Sequential(*(nn.Linear(width, width) for _ in range(depth)))
    layers = list(seq)
    keys = list(seq.state_dict())
    DYNAMIC_REGISTRY.convert(seq)
    assert seq.get_hparam("depth").choices == list(range(depth + 1))
    with pytest.raises(ValueError, match=r"'depth'.*choices are"):
        seq.depth = depth + 1
    seq.depth = active
    x = torch.randn(2, width)
    torch.testing.assert_close(seq(x), nn.Sequential(*layers[:active])(x))
    assert len(seq) == depth and list(seq.state_dict()) == keys and seq[depth - 1] is layers[-1]
    assert repr(seq).count("Linear") == active
    seq.modify(min_depth=active)
    assert seq.get_hparam("depth").choices == list(range(active, depth + 1))
    exported = copy.deepcopy(seq).export()
    assert type(exported) is nn.Sequential and len(exported) == active
    assert set(exported.__dict__) == set(nn.Sequential().__dict__)  # no stray depth attribute
    torch.testing.assert_close(exported(x), seq(x))


def test_depth_zero_is_identity():
    seq = DYNAMIC_REGISTRY.convert(nn.Sequential(nn.Linear(3, 3)))
    seq.depth = 0
    x = torch.randn(2, 3)
    assert seq(x) is x


def test_min_depth_validation():
    seq = DYNAMIC_REGISTRY.convert(nn.Sequential(nn.Linear(3, 3)))
    with pytest.raises(ValueError, match="min_depth must be a non-negative int, got -1"):
        seq.modify(min_depth=-1)
    seq.modify(min_depth=5)  # deeper than the container: only the full depth stays
    assert seq.get_hparam("depth").choices == [1]


def test_nested_blocks_with_dynamic_layers_export():
    torch.manual_seed(0)
    model = nn.Sequential(*(InvertedResidual(16, 2) for _ in range(4))).eval()
    convert_all(model, skip=())
    model.depth = 2
    for block in model:
        block.conv[0].out_channels = 20  # hidden width of each block (coupled by hand below)
        block.conv[1].num_features = 20
        block.conv[3].in_channels = block.conv[3].out_channels = 20
        block.conv[4].num_features = 20
        block.conv[6].in_channels = 20
    x = torch.randn(1, 16, 8, 8)
    out = model(x)
    exported = export_model(copy.deepcopy(model))
    assert type(exported) is nn.Sequential and len(exported) == 2
    assert not any(type(m).__name__.startswith("Dynamic") for m in exported.modules())
    assert exported[0].conv[3].groups == 20
    torch.testing.assert_close(exported(x), out)
