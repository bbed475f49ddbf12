"""The dynamic-module registry: keys, membership, class generation, conversion, user layers."""

import copy
import pickle
import warnings

import pytest
import torch
from torch import nn

from autonas_config import ChannelRule, registered_layer_types
from autonas_dynamic import (
    DYNAMIC_REGISTRY,
    DMRegistry,
    DynamicModule,
    Hparam,
    HparamAttribute,
    LayerLayout,
    SearchableLayer,
    is_dynamic,
    register_layer,
    unregister_layer,
)
from autonas_dynamic.dynamic import sliced_tensor_property

ALIASES = [
    *(f"nn.Conv{d}d" for d in (1, 2, 3)),
    *(f"nn.ConvTranspose{d}d" for d in (1, 2, 3)),
    "nn.Linear",
    *(f"nn.BatchNorm{d}d" for d in (1, 2, 3)),
    "nn.SyncBatchNorm",
    *(f"nn.InstanceNorm{d}d" for d in (1, 2, 3)),
    "nn.LayerNorm",
    "nn.GroupNorm",
    "nn.Sequential",
]
EXTRA_KEYS = ["nn.ModuleList", "nn.Embedding"]  # with the rules of nn.Sequential and nn.Linear


class Linear(nn.Linear):
    """A subclass that keeps nn.Linear's forward (and shares its class name)."""


class Linear2(nn.Linear):
    pass


class OwnForwardLinear(nn.Linear):
    """Overrides forward, reading only its attributes: converts, verified on probe inputs."""

    def forward(self, x):
        return super().forward(x) * 2


class StoredTensorLinear(nn.Linear):
    """Overrides forward reading the stored full weight: fails the probe at smaller widths."""

    def forward(self, x):
        return nn.functional.linear(x, self._parameters["weight"], self.bias)


def test_keys_are_the_seventeen_config_aliases_the_module_list_and_the_embedding():
    built_in = [key for key in DYNAMIC_REGISTRY.keys if key.startswith("nn.")]  # plugins may add theirs
    assert sorted(built_in) == sorted(ALIASES + EXTRA_KEYS)
    for alias in ALIASES + EXTRA_KEYS:
        cls = getattr(nn, alias.removeprefix("nn."))
        assert DYNAMIC_REGISTRY.get_key(cls) == alias
        assert cls in DYNAMIC_REGISTRY


def test_membership_by_class_and_instance_and_subclass_rules():
    assert nn.Linear(2, 2) in DYNAMIC_REGISTRY
    assert Linear in DYNAMIC_REGISTRY and DYNAMIC_REGISTRY.get_key(Linear2(2, 2)) == "nn.Linear"
    assert OwnForwardLinear(3, 2) in DYNAMIC_REGISTRY and DYNAMIC_REGISTRY.get_key(OwnForwardLinear) == "nn.Linear"
    assert StoredTensorLinear in DYNAMIC_REGISTRY  # the class converts as nn.Linear ...
    refused = DYNAMIC_REGISTRY.match(StoredTensorLinear(4, 3))
    assert refused.layer.cls is nn.Linear and "in_features=2, out_features=2 it fails" in refused.refusal
    assert StoredTensorLinear(4, 3) not in DYNAMIC_REGISTRY  # ... but this instance does not pass its check
    assert nn.ReLU() not in DYNAMIC_REGISTRY and DYNAMIC_REGISTRY.get_key(nn.ReLU) is None


def test_generated_classes_and_name_clash():
    registry = DMRegistry()
    declaration = DYNAMIC_REGISTRY.layer_of(nn.Linear)
    registry.register(declaration)
    assert registry.dynamic_class(nn.Linear).__name__ == "DynamicLinear"
    assert registry.dynamic_class(Linear).__name__ == f"{__name__.replace('.', '_')}_DynamicLinear"
    assert registry.dynamic_class(Linear2).__name__ == "DynamicLinear2"
    assert registry.dynamic_class(nn.Linear) is registry.dynamic_class(nn.Linear)
    generated = registry.dynamic_class(Linear)
    assert issubclass(generated, Linear) and issubclass(generated, DynamicModule)
    assert registry.get_key(generated) == "nn.Linear"
    registry.unregister(nn.Linear)
    assert Linear not in registry and registry.get_key(nn.Linear) is None
    with pytest.raises(KeyError, match="not registered"):
        registry.unregister(nn.Linear)
    # registered again, in the other order: the names swap
    registry.register(declaration)
    assert registry.dynamic_class(Linear).__name__ == "DynamicLinear"
    assert registry.dynamic_class(nn.Linear).__name__ == "torch_nn_modules_linear_DynamicLinear"


def test_register_layer_rejects_bad_declarations():
    layout = LayerLayout(incoming="width", tensors={"scale": {0: "width"}})
    with pytest.raises(TypeError, match=r"nn\.Module subclass"):
        register_layer(int, layout, key="my.Int", rule=ChannelRule)
    with pytest.raises(TypeError, match="must subclass DynamicModule"):
        register_layer(Scale, layout, key="my.Scale", rule=ChannelRule, dynamic=object)
    with pytest.raises(ValueError, match="needs a LayerLayout"):
        register_layer(Scale, key="my.Scale", rule=ChannelRule)
    with pytest.raises(ValueError, match="needs a key"):
        register_layer(Scale, layout, rule=ChannelRule)
    with pytest.raises(ValueError, match="needs its rule class"):
        register_layer(Scale, layout, key="my.Scale")
    with pytest.raises(ValueError, match="already a layer type"):
        register_layer(Scale, layout, key="nn.Linear", rule=ChannelRule)
    with pytest.raises(ValueError, match="has no hparam 'width'"):
        register_layer(Scale, layout, key="my.Scale", rule=ChannelRule, dynamic=DynamicModule)
    with pytest.raises(ValueError, match="already registered"):
        register_layer(nn.Linear)
    with pytest.raises(ValueError, match=r"tensors\['scale'\]\[0\] names 'depth'"):
        LayerLayout(incoming="width", tensors={"scale": {0: "depth"}})
    with pytest.raises(ValueError, match="axis must be one of"):
        LayerLayout(incoming="width", axis="first")  # type: ignore[arg-type]
    assert Scale not in DYNAMIC_REGISTRY and "my.Scale" not in registered_layer_types()


def test_convert_is_in_place_and_keeps_identity_params_hooks_state_dict():
    layer = nn.Linear(4, 3)
    weight, keys = layer.weight, {k: v.shape for k, v in layer.state_dict().items()}
    calls = []
    layer.register_forward_hook(lambda module, args, out: calls.append(out.shape))
    converted = DYNAMIC_REGISTRY.convert(layer)
    assert converted is layer and isinstance(layer, nn.Linear) and type(layer).__name__ == "DynamicLinear"
    assert layer.original_cls is nn.Linear and is_dynamic(layer)
    assert layer._parameters["weight"] is weight
    assert {k: v.shape for k, v in layer.state_dict().items()} == keys
    layer.out_features = 2
    layer(torch.randn(1, 4))
    assert calls == [torch.Size([1, 2])]
    assert DYNAMIC_REGISTRY.convert(layer) is layer  # converting twice is a no-op


def test_convert_unsupported_layers_names_the_class():
    with pytest.raises(KeyError, match=r"ReLU has no dynamic implementation; supported: .*nn\.Conv2d"):
        DYNAMIC_REGISTRY.convert(nn.ReLU())
    with pytest.raises(KeyError, match="StoredTensorLinear cannot be converted: at in_features=2"):
        DYNAMIC_REGISTRY.convert(StoredTensorLinear(4, 3))


def test_subclass_overriding_forward_runs_its_forward_on_the_active_sizes():
    torch.manual_seed(0)
    layer = OwnForwardLinear(6, 4)
    full = layer.weight.detach().clone()
    x = torch.randn(2, 6)
    reference = layer(x)
    DYNAMIC_REGISTRY.convert(layer)
    torch.testing.assert_close(layer(x), reference, rtol=0, atol=0)
    layer.in_features, layer.out_features = 3, 2
    torch.testing.assert_close(layer(x[:, :3]), 2 * nn.functional.linear(x[:, :3], full[:2, :3], layer.bias))
    layer.export()
    assert type(layer) is OwnForwardLinear and layer.weight.shape == (2, 3)


def test_subclass_keeping_forward_converts_like_its_base():
    layer = Linear(6, 4)
    DYNAMIC_REGISTRY.convert(layer)
    assert isinstance(layer, Linear)
    layer.in_features = 3
    assert layer(torch.randn(2, 3)).shape == (2, 4)


def test_direct_construction_is_an_error():
    with pytest.raises(RuntimeError, match="cannot be constructed directly"):
        DYNAMIC_REGISTRY.dynamic_class(nn.Linear)(2, 2)


def test_converted_modules_deepcopy_and_pickle():
    layer = nn.Linear(8, 8)
    DYNAMIC_REGISTRY.convert(layer)
    layer.out_features = 5
    x = torch.randn(2, 8)
    for clone in (copy.deepcopy(layer), pickle.loads(pickle.dumps(layer))):
        assert type(clone) is type(layer) and clone.out_features == 5
        torch.testing.assert_close(clone(x), layer(x))
        clone.out_features = 8
        assert layer.out_features == 5  # the clone owns its own hparams


def test_monkey_patched_forward_is_set_aside_and_restored_on_export():
    layer = nn.Linear(3, 3)
    patched = layer.forward
    layer.forward = patched  # an instance-level forward
    with pytest.warns(UserWarning, match="monkey-patched forward"):
        DYNAMIC_REGISTRY.convert(layer)
    assert "forward" not in layer.__dict__
    layer.export()
    assert layer.__dict__["forward"] is patched


class Scale(nn.Module):
    """A user layer: multiplies each channel by a learned scale."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.scale = nn.Parameter(torch.randn(width))

    def forward(self, x):
        return x * self.scale


class DynamicScale(DynamicModule):
    width = HparamAttribute()
    _dynamic_tensors = ("scale",)
    scale = sliced_tensor_property("scale", "width")

    def _setup(self):
        self._register_hparam("width", Hparam(range(1, self.width + 1)))

    def forward(self, x):
        return x * self.scale


SCALE_LAYOUT = LayerLayout(incoming="width", tensors={"scale": {0: "width"}}, axis="last")


@pytest.mark.parametrize("dynamic", [DynamicScale, None], ids=["own implementation", "generic implementation"])
def test_user_registered_layer_converts_and_exports(dynamic):
    declared = register_layer(Scale, SCALE_LAYOUT, key="my.Scale", rule=ChannelRule, dynamic=dynamic)
    try:
        assert isinstance(declared, SearchableLayer) and declared.own_forward == (dynamic is not None)
        layer = Scale(6)
        full = layer.scale.detach().clone()
        DYNAMIC_REGISTRY.convert(layer)
        assert DYNAMIC_REGISTRY.get_key(layer) == "my.Scale" and layer.width == 6
        assert layer.hparam_tensor_dims() == {"width": [("scale", 0)]}
        layer.width = 4
        torch.testing.assert_close(layer(torch.ones(4)), full[:4])
        layer.export()
        assert type(layer) is Scale and layer.width == 4 and layer.scale.shape == (4,)
        torch.testing.assert_close(layer(torch.ones(4)), full[:4])
    finally:
        unregister_layer(Scale)
    assert "my.Scale" not in registered_layer_types() and Scale not in DYNAMIC_REGISTRY


def test_register_hparam_needs_a_declared_attribute():
    class Broken(DynamicModule):
        width = HparamAttribute()

        def _setup(self):
            self._register_hparam("depth", Hparam([1, 2]))

    register_layer(Scale, SCALE_LAYOUT, key="my.Scale", rule=ChannelRule, dynamic=Broken)
    try:
        with pytest.raises(TypeError, match="no HparamAttribute named 'depth'"):
            DYNAMIC_REGISTRY.convert(Scale(2))
    finally:
        unregister_layer(Scale)


def test_named_and_get_hparam():
    conv = DYNAMIC_REGISTRY.convert(nn.Conv2d(4, 8, 3))
    assert [name for name, _ in conv.named_hparams()] == ["in_channels", "out_channels", "kernel_size"]
    assert [name for name, _ in conv.named_hparams(configurable=True)] == ["in_channels", "out_channels"]
    assert [name for name, _ in conv.named_hparams(configurable=False)] == ["kernel_size"]
    with pytest.raises(KeyError, match="no hparam 'weight'"):
        conv.get_hparam("weight")
    with pytest.raises(ValueError, match=r"original 8 as 'in_channels'.*original is 4"):
        conv.in_channels = conv.get_hparam("out_channels")
    with pytest.raises(TypeError, match="must be an Hparam"):
        conv.set_hparam("in_channels", 3)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        conv.in_channels = Hparam([2, 4])
    assert conv.get_hparam("in_channels").choices == [2, 4]
