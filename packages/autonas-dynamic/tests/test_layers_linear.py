"""Dynamic Linear."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autonas_config import make_divisible
from autonas_dynamic import DYNAMIC_REGISTRY


@pytest.mark.parametrize(("cin", "cout", "bias", "ain", "aout"), [(12, 6, False, 2, 3), (4, 8, True, 1, 7)])
def test_dynamic_linear(cin, cout, bias, ain, aout):
    torch.manual_seed(0)
    layer = nn.Linear(cin, cout, bias=bias)
    x = torch.randn(3, cin)
    reference = layer(x)
    weight = layer.weight
    DYNAMIC_REGISTRY.convert(layer)
    assert layer.weight is weight and layer.bias is layer._parameters["bias"]
    assert torch.equal(layer(x), reference)
    assert layer.get_hparam("in_features").choices == list(range(1, cin + 1))

    layer.in_features, layer.out_features = ain, aout
    assert layer.weight.shape == (aout, ain)
    out = layer(x[:, :ain])
    torch.testing.assert_close(out, F.linear(x[:, :ain], weight[:aout, :ain], None if not bias else layer.bias))
    out.sum().backward()
    assert torch.count_nonzero(weight.grad[aout:]) == 0 and torch.count_nonzero(weight.grad[:, ain:]) == 0
    if bias:
        assert torch.count_nonzero(layer._parameters["bias"].grad[aout:]) == 0

    layer.eval()
    exported = copy.deepcopy(layer).export()
    assert type(exported) is nn.Linear and not exported.training
    assert (exported.in_features, exported.out_features) == (ain, aout)
    assert set(exported.__dict__) == set(nn.Linear(ain, aout, bias=bias).__dict__)
    torch.testing.assert_close(exported(x[:, :ain]), out)

    layer.modify(features_ratio=[0.5, 1.0], feature_divisor=2)
    assert layer.get_hparam("in_features").choices == sorted({make_divisible(0.5 * cin, 2), cin})
    assert layer.get_hparam("out_features").choices == sorted({make_divisible(0.5 * cout, 2), cout})


@pytest.mark.parametrize(
    ("cin", "cout", "in_choices", "out_choices"),
    [(10, 64, [10], [32, 64]), (100, 200, [64, 96, 100], [96, 128, 192, 200])],
)
def test_autonas_default_rule(cin, cout, in_choices, out_choices):
    layer = DYNAMIC_REGISTRY.convert(nn.Linear(cin, cout))
    layer.modify(features_ratio=(0.5, 0.67, 1.0), feature_divisor=32)
    assert layer.get_hparam("in_features").choices == in_choices
    assert layer.get_hparam("out_features").choices == out_choices


def test_in_feature_importance_is_the_column_norm():
    layer = DYNAMIC_REGISTRY.convert(nn.Linear(5, 3))
    norms = layer.weight.detach().norm(dim=0)
    torch.testing.assert_close(layer.get_hparam("in_features").importance, norms / norms.max())
    assert layer.get_hparam("out_features").importance is None


def test_bad_ratio_and_divisor():
    layer = DYNAMIC_REGISTRY.convert(nn.Linear(5, 3))
    with pytest.raises(ValueError, match="ratios must be positive"):
        layer.modify(features_ratio=(0.0, 1.0))
    with pytest.raises(ValueError, match="divisor must be a positive int, got 0"):
        layer.modify(feature_divisor=0)
