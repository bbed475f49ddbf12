"""Layer types beyond the built-in ones: declared layers, subclasses with their own forward, computed weights.

Every model here is converted with the default ``AutoNASConfig`` and checked by numbers: the maximal
subnet computes what the model computed, the exported minimal and random subnets compute what the
dynamic model computed, and the cost model's FLOPs and parameters equal a count of the exported model.
"""

from __future__ import annotations

import copy
import math
import random
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from autonas_config import AutoNASConfig, ChannelRule
from autonas_dynamic import (
    DYNAMIC_REGISTRY,
    CostModel,
    DynamicModule,
    LayerLayout,
    export_model,
    generate_search_space,
    probe,
    register_layer,
    sort_parameters,
    unregister_layer,
)
from autonas_dynamic.cost import count_flops, count_params
from autonas_dynamic.layers.conv import RuntimePaddingConv
from autonas_dynamic.space import SearchSpace

RULES = AutoNASConfig().model_dump()


# ------------------------------------------------------------------------------------ hand-written layers
class NormAct2d(nn.BatchNorm2d):
    """A BatchNorm2d that applies its activation in its own forward (as timm's BatchNormAct2d)."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self.act = nn.Hardswish()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        momentum = 0.0 if self.momentum is None else self.momentum
        x = F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, self.training, momentum, self.eps
        )
        return self.act(x)


class SameConv2d(nn.Conv2d):
    """A conv padding like TensorFlow's "SAME", computed at run time from the input and the weight's kernel."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride, padding=0, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s, d in zip(
            x.shape[:1:-1], self.weight.shape[:1:-1], self.stride[::-1], self.dilation[::-1], strict=True
        ):
            total = max((math.ceil(size / s) - 1) * s + (k - 1) * d + 1 - size, 0)
            pads += [total // 2, total - total // 2]
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class ChannelLayerNorm(nn.LayerNorm):
    """A LayerNorm over the channels of an NCHW tensor (as timm's LayerNorm2d)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), self.normalized_shape, self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class CachedWidthNorm(nn.BatchNorm2d):
    """Keeps its width in a plain attribute that its forward reads: it cannot run at another width."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self.channels = num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return y + y.new_zeros(self.channels, 1, 1)


class Scale(nn.Module):
    """A user layer: one learned scale per channel."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.scale = nn.Parameter(torch.rand(width) + 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale[:, None, None]


class Net(nn.Module):
    """Stem, an inverted residual block, a head: ``norm`` and ``conv`` build the norms and convs."""

    def __init__(self, norm=nn.BatchNorm2d, conv=nn.Conv2d, act=nn.Hardswish, kernel: int = 3) -> None:
        super().__init__()
        pad = {} if conv is not nn.Conv2d else {"padding": kernel // 2}
        self.stem = nn.Sequential(conv(3, 64, kernel, stride=2, **pad), norm(64), act())
        self.expand = nn.Sequential(conv(64, 128, 1), norm(128), act())
        self.depthwise = nn.Sequential(conv(128, 128, kernel, groups=128, **pad), norm(128), act())
        self.project = nn.Sequential(conv(128, 64, 1), norm(64))
        self.head = nn.Sequential(conv(64, 96, 1), norm(96), act())
        self.fc = nn.Linear(96, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = x + self.project(self.depthwise(self.expand(x)))
        return self.fc(self.head(x).mean((2, 3)))


def _identity() -> nn.Module:
    return nn.Identity()


def _converted_exactly(model: nn.Module, x: torch.Tensor, rules: dict | None = None) -> SearchSpace:
    """Convert ``model`` (default rules of the layer types declared now) and check it by numbers.

    See the module doc; returns the search space at its maximal subnet.
    """
    torch.manual_seed(0)
    model.eval()
    with torch.no_grad():
        reference = model(x)
    space = generate_search_space(model, AutoNASConfig().model_dump() if rules is None else rules)
    with torch.no_grad():
        assert torch.equal(model(x), reference)
    costs = CostModel(model, x)
    rng = random.Random(0)
    for sample in (min, rng.choice, rng.choice):
        space.sample(sample)
        with torch.no_grad():
            dynamic = model(x)
            exported = export_model(copy.deepcopy(model))
            torch.testing.assert_close(exported(x), dynamic, rtol=1e-5, atol=1e-6)
        assert costs.flops() == count_flops(exported, x)
        assert costs.params() == count_params(exported)
    space.sample(max)
    return space


# ------------------------------------------------------------------------------------ subclasses with their own forward
def test_norm_subclass_with_its_activation_in_forward_is_as_searchable_as_norm_plus_activation() -> None:
    x = torch.randn(2, 3, 16, 16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        space = _converted_exactly(Net(norm=NormAct2d, act=_identity), x)
    plain = generate_search_space(Net(), RULES)
    assert space.hparams() == plain.hparams()
    assert space.hparams()["stem.0.out_channels"] == [32, 64]
    norm = space.model.stem[1]
    assert isinstance(norm, DynamicModule) and type(norm).forward is NormAct2d.forward
    assert norm.get_hparam("num_features") is space.model.stem[0].get_hparam("out_channels")


def test_kinds_of_layers_are_probed_once_whatever_their_widths(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    verify = probe.verify_forward
    monkeypatch.setattr(probe, "verify_forward", lambda *args: calls.append(args[0]) or verify(*args))
    DYNAMIC_REGISTRY._forget()
    generate_search_space(Net(norm=NormAct2d, act=_identity), RULES)
    assert len(calls) == 1  # five NormAct2d of three widths: one probe


def test_conv_with_same_padding_computed_at_run_time_is_searchable() -> None:
    x = torch.randn(2, 3, 15, 15)  # odd sizes: asymmetric padding
    space = _converted_exactly(Net(conv=SameConv2d, kernel=5), x)
    assert space.hparams()["expand.0.out_channels"] == [64, 96, 128]
    assert len(space.model.depthwise[0].get_hparam("kernel_size").choices) == 1  # padding 0 allows no crop


def test_conv_declared_with_run_time_padding_searches_its_kernel() -> None:
    register_layer(SameConv2d, dynamic=RuntimePaddingConv)
    try:
        x = torch.randn(2, 3, 15, 15)
        rules = AutoNASConfig(**{"nn.Conv2d": {"kernel_size": (3,)}}).model_dump()
        space = _converted_exactly(Net(conv=SameConv2d, kernel=5), x, rules)
        depthwise = space.model.depthwise[0]
        assert depthwise.get_hparam("kernel_size").choices == [(3, 3), (5, 5)]
        depthwise.kernel_size = (3, 3)
        assert depthwise.weight.shape == (128, 1, 3, 3) and depthwise.padding == (0, 0)
        with torch.no_grad():
            assert space.model(x).shape == (2, 10)
    finally:
        unregister_layer(SameConv2d)


def test_layer_norm_over_channels_couples_with_its_convs() -> None:
    x = torch.randn(2, 3, 16, 16)
    space = _converted_exactly(Net(norm=ChannelLayerNorm), x)
    model = space.model
    assert model.expand[1].get_hparam("num_features") is model.expand[0].get_hparam("out_channels")
    assert space.hparams()["expand.0.out_channels"] == [64, 96, 128]


def test_subclass_whose_forward_cannot_be_verified_stays_fixed_with_one_warning() -> None:
    x = torch.randn(2, 3, 16, 16)
    model = Net(norm=lambda width: CachedWidthNorm(width) if width == 64 else nn.BatchNorm2d(width))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        space = _converted_exactly(model, x)
    messages = [str(w.message) for w in caught if "CachedWidthNorm" in str(w.message)]
    assert len(messages) == 1, messages  # two such norms, one warning
    assert messages[0].startswith("CachedWidthNorm layers keep their sizes: at num_features=32 it fails (RuntimeError")
    assert "register_layer" in messages[0]
    assert not isinstance(model.stem[1], DynamicModule) and not isinstance(model.project[1], DynamicModule)
    hparams = space.hparams()
    assert "stem.0.out_channels" not in hparams  # the residual stream runs through both of them
    assert hparams["expand.0.out_channels"] == [64, 96, 128] and hparams["head.0.out_channels"] == [64, 96]


# ------------------------------------------------------------------------------------ computed weights
class _Wrapped(nn.Module):
    def __init__(self, wrap) -> None:
        super().__init__()
        self.first = nn.Conv2d(3, 64, 3, padding=1)
        self.normed = wrap(nn.Conv2d(64, 64, 3, padding=1))
        self.last = nn.Conv2d(64, 64, 3, padding=1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.last(F.relu(self.normed(F.relu(self.first(x)))))
        return self.fc(x.mean((2, 3)))


WRAPS = {
    "weight_norm": (nn.utils.parametrizations.weight_norm, r"ParametrizedConv2d layers keep their sizes: its 'weight' "
                    r"is computed by a parametrization \(_WeightNorm\)"),
    "spectral_norm": (nn.utils.parametrizations.spectral_norm, r"ParametrizedConv2d layers keep their sizes: its "
                      r"'weight' is computed by a parametrization \(_SpectralNorm\)"),
    "hook weight_norm": (nn.utils.weight_norm, r"Conv2d layers keep their sizes: its 'weight' is not a parameter or "
                         r"buffer of its own"),
}  # fmt: skip


@pytest.mark.parametrize("name", list(WRAPS))
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_conv_with_a_computed_weight_stays_fixed_and_its_neighbours_convert(name: str) -> None:
    wrap, message = WRAPS[name]
    torch.manual_seed(0)
    model = _Wrapped(wrap)
    x = torch.randn(2, 3, 8, 8)
    with pytest.warns(UserWarning, match=message):
        space = _converted_exactly(model, x)
    assert not isinstance(model.normed, DynamicModule)
    assert "first.out_channels" not in space.hparams()  # it feeds the fixed conv
    assert space.hparams()["last.out_channels"] == [32, 64]
    with pytest.raises(KeyError, match="cannot be converted: its 'weight'"):
        DYNAMIC_REGISTRY.convert(model.normed)


# ------------------------------------------------------------------------------------ a declared user layer
def test_declared_user_layer_between_convs_is_searchable_sortable_and_costed() -> None:
    register_layer(
        Scale,
        LayerLayout(incoming="width", tensors={"scale": {0: "width"}}),
        key="tests.Scale",
        rule=ChannelRule,
        default={"channels_ratio": (0.5, 1.0), "channel_divisor": 16},
    )
    try:
        x = torch.randn(2, 3, 16, 16)
        model = Net(norm=lambda width: nn.Sequential(nn.BatchNorm2d(width), Scale(width)))
        space = _converted_exactly(model, x)
        scale = model.expand[1][1]
        assert isinstance(scale, DynamicModule)
        assert scale.get_hparam("width") is model.expand[0].get_hparam("out_channels")
        assert space.hparams()["expand.0.out_channels"] == [64, 128]  # the Scale's 96 is no conv choice
        with torch.no_grad():
            before = model(x)
            sort_parameters(model)
            torch.testing.assert_close(model(x), before, rtol=1e-5, atol=1e-5)
    finally:
        unregister_layer(Scale)
