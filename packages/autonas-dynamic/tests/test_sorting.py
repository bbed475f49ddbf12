"""Sorting channels by importance: outputs kept, importance ordered, subnets keep the best channels."""

import copy

import pytest
import torch
from layer_models import convert_all, couple, coupled_convnet, pin, warm_up_batchnorm
from torch import nn

from autonas_dynamic import DYNAMIC_REGISTRY, ConcatHparam, Hparam, sort_parameters


def is_descending(values: torch.Tensor) -> bool:
    return bool(torch.all(values[:-1] >= values[1:]))


def test_sorting_keeps_outputs_and_orders_importance():
    torch.manual_seed(0)
    model, groups = coupled_convnet()
    warm_up_batchnorm(model, 4, 3, 8, 8)
    x = torch.randn(2, 3, 8, 8)
    before = model(x)
    assert not is_descending(groups["conv1"].importance) and not is_descending(groups["conv2"].importance)
    groups["conv1"].active = 8  # active values are kept, sorting works on the full tensors
    sort_parameters(model)
    assert groups["conv1"].active == 8
    groups["conv1"].active = 16
    torch.testing.assert_close(model(x), before)
    assert is_descending(groups["conv1"].importance) and is_descending(groups["conv2"].importance)


def test_small_subnet_keeps_the_most_important_channels():
    torch.manual_seed(0)
    model, groups = coupled_convnet()
    importance = groups["conv1"].importance
    top = torch.argsort(importance, descending=True)[:4]
    weight = model.conv1.weight.detach().clone()
    running_var = model.bn1.running_var.clone()
    with torch.no_grad():
        model.bn1._buffers["running_var"].uniform_(0.5, 2.0)
    running_var = model.bn1.running_var.clone()
    sort_parameters(model)
    groups["conv1"].active = 4
    torch.testing.assert_close(model.conv1.weight, weight[top])
    torch.testing.assert_close(model.bn1.running_var, running_var[top])
    torch.testing.assert_close(model.conv2.weight, model.conv2._parameters["weight"][:, :4])


def test_gradients_follow_the_permutation():
    torch.manual_seed(0)
    model, groups = coupled_convnet()
    model(torch.randn(2, 3, 8, 8)).sum().backward()
    grad = model.conv1.weight.grad.clone()
    order = torch.argsort(groups["conv1"].importance, descending=True)
    sort_parameters(model, hps_to_sort=["conv1.out_channels"])
    torch.testing.assert_close(model.conv1.weight.grad, grad[order])


def test_hps_to_sort_filters_by_name():
    torch.manual_seed(0)
    model, groups = coupled_convnet()
    conv2_weight = model.conv2._parameters["weight"].detach().clone()
    sort_parameters(model, hps_to_sort=["conv1.out_channels"])
    assert is_descending(groups["conv1"].importance) and not is_descending(groups["conv2"].importance)
    # conv2's input channels moved with conv1's output channels; its own outputs stayed in place
    torch.testing.assert_close(model.conv2._parameters["weight"].sum(dim=(1, 2, 3)), conv2_weight.sum(dim=(1, 2, 3)))
    sort_parameters(model, hps_to_sort=["out_channels"])
    assert is_descending(groups["conv2"].importance)


def test_linear_layernorm_chain():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 12), nn.LayerNorm(12), nn.GELU(), nn.Linear(12, 3))
    with torch.no_grad():
        model[1].weight.normal_()
    convert_all(model)
    shared = couple((model[0], "out_features"), (model[1], "num_features"), (model[3], "in_features"))
    pin(model[0], "in_features")
    pin(model[3], "out_features")
    x = torch.randn(4, 6)
    before = model(x)
    sort_parameters(model)
    torch.testing.assert_close(model(x), before)
    assert is_descending(shared.importance)


def test_groupnorm_makes_the_group_unsortable():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 1), nn.GroupNorm(2, 8), nn.Conv2d(8, 4, 1))
    convert_all(model)
    shared = couple((model[0], "out_channels"), (model[1], "num_channels"), (model[2], "in_channels"))
    pin(model[0], "in_channels")
    pin(model[2], "out_channels")
    assert not shared.is_sortable
    weights = [p.detach().clone() for p in model.parameters()]
    sort_parameters(model)
    assert all(torch.equal(a, b) for a, b in zip(weights, model.parameters(), strict=True))


def test_uncoupled_depthwise_conv_is_skipped_with_a_warning():
    model = convert_all(nn.Sequential(nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 3, groups=8)))
    couple((model[0], "out_channels"), (model[1], "in_channels"))  # depthwise out_channels left separate
    with pytest.warns(
        UserWarning, match="not sorting 0.out_channels, 1.out_channels: they govern the same tensor dimension"
    ):
        sort_parameters(model)


class CatNet(nn.Module):
    """Two branches concatenated along channels, then a 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(10)
        self.out = nn.Conv2d(10, 5, 1)

    def forward(self, x):
        return self.out(self.bn(torch.cat([self.a(x), self.b(x)], dim=1)))


def coupled_catnet() -> tuple[CatNet, ConcatHparam]:
    torch.manual_seed(0)
    model = convert_all(CatNet())
    warm_up_batchnorm(model, 4, 3, 6, 6)
    cat = ConcatHparam([model.a.get_hparam("out_channels"), model.b.get_hparam("out_channels")])
    model.bn.num_features = cat
    model.out.in_channels = cat
    for conv in (model.a, model.b):
        pin(conv, "in_channels")
    pin(model.out, "out_channels")
    return model, cat


def test_concat_channels_sort_within_their_segments():
    model, cat = coupled_catnet()
    x = torch.randn(2, 3, 6, 6)
    before = model(x)
    importance = cat.importance
    segments = [(0, 4), (4, 10)]
    assert not all(is_descending(importance[lo:hi]) for lo, hi in segments)
    sort_parameters(model)
    torch.testing.assert_close(model(x), before)
    importance = cat.importance
    assert all(is_descending(importance[lo:hi]) for lo, hi in segments)
    cat.active = 6
    assert (model.a.out_channels, model.b.out_channels) == (3, 3)
    torch.testing.assert_close(model.out.weight, model.out._parameters["weight"][:, [0, 1, 2, 4, 5, 6]])
    out = model(x)
    exported = copy.deepcopy(model)
    from autonas_dynamic import export_model

    export_model(exported)
    torch.testing.assert_close(exported(x), out)


def test_concat_input_gathers_do_not_break_gradients():
    model, cat = coupled_catnet()
    cat.active = 6
    model.train()
    model(torch.randn(2, 3, 6, 6)).sum().backward()
    grad = model.out._parameters["weight"].grad
    assert torch.count_nonzero(grad[:, [3, 7, 8, 9]]) == 0 and torch.count_nonzero(grad[:, [0, 4]]) > 0


def test_model_without_dynamic_modules_is_untouched():
    model = nn.Linear(3, 3)
    weight = model.weight.detach().clone()
    sort_parameters(model)
    assert torch.equal(model.weight, weight)
    assert DYNAMIC_REGISTRY.get_key(model) == "nn.Linear"
    assert Hparam([1]).importance is None
