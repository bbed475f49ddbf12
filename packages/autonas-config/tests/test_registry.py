"""Registering custom layer types: AutoNASConfig accepts them as extra keys with their defaults."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from pydantic import Field, ValidationError

import autonas_config as ac
from autonas_config import AutoNASConfig, resolve_rule

BUILTIN = [
    "nn.Conv1d",
    "nn.Conv2d",
    "nn.Conv3d",
    "nn.ConvTranspose1d",
    "nn.ConvTranspose2d",
    "nn.ConvTranspose3d",
    "nn.Linear",
    "nn.BatchNorm1d",
    "nn.BatchNorm2d",
    "nn.BatchNorm3d",
    "nn.SyncBatchNorm",
    "nn.InstanceNorm1d",
    "nn.InstanceNorm2d",
    "nn.InstanceNorm3d",
    "nn.LayerNorm",
    "nn.GroupNorm",
    "nn.Sequential",
    "heads",
]


class DynamicAttentionConfig(ac.BaseRule):
    """A rule for a custom attention block: which head counts to search."""

    heads_ratio: tuple[float, ...] | None = None
    head_divisor: int = Field(default=1, ge=1)


@pytest.fixture
def my_conv() -> Iterator[ac.LayerType]:
    layer_type = ac.register_layer_type("mylib.MyConv", ac.DynamicConv2dConfig, {"channels_ratio": (0.25, 1.0)})
    yield layer_type
    ac.unregister_layer_type("mylib.MyConv")


@pytest.fixture
def attention() -> Iterator[ac.LayerType]:
    layer_type = ac.register_layer_type("mylib.Attention", DynamicAttentionConfig)
    yield layer_type
    ac.unregister_layer_type("mylib.Attention")


def test_builtin_layer_types_are_registered_in_order() -> None:
    assert ac.registered_layer_types() == tuple(BUILTIN)
    assert all(ac.get_layer_type(key).builtin for key in BUILTIN)


def test_registered_type_appears_with_its_default_in_new_configs(my_conv: ac.LayerType) -> None:
    assert my_conv.key == "mylib.MyConv"
    assert my_conv.field_name == "mylib_myconv"
    assert my_conv.default == {"channels_ratio": (0.25, 1.0)}
    assert ac.registered_layer_types() == (*BUILTIN, "mylib.MyConv")
    cfg = AutoNASConfig()
    assert list(cfg)[-1] == "mylib.MyConv"
    assert len(cfg) == len(BUILTIN) + 2  # and the outputs section
    assert cfg["mylib.MyConv"] == cfg["mylib_myconv"] == {"*": {"channels_ratio": (0.25, 1.0)}}
    assert cfg.model_dump()["mylib.MyConv"] == {"*": {"channels_ratio": (0.25, 1.0)}}
    # A partial default merges over the rule class defaults.
    assert resolve_rule(cfg, "mylib.MyConv", "block.conv") == {
        "channels_ratio": (0.25, 1.0),
        "channel_divisor": 1,
        "kernel_size": (),
    }


@pytest.mark.parametrize("spelling", ["mylib.MyConv", "mylib_myconv"])
def test_registered_type_is_accepted_as_an_extra_key_under_both_spellings(my_conv: ac.LayerType, spelling: str) -> None:
    cfg = AutoNASConfig(**{spelling: {"*": None, "head.*": {"channel_divisor": 4}}})
    assert cfg["mylib.MyConv"] == {"*": None, "head.*": {"channel_divisor": 4}}
    assert "mylib_myconv" in cfg
    assert resolve_rule(cfg, "mylib.MyConv", "head.conv") == {
        "channels_ratio": (0.25, 1.0),
        "channel_divisor": 4,
        "kernel_size": (),
    }
    assert resolve_rule(cfg.model_dump(), "mylib.MyConv", "body.conv") is None


@pytest.mark.parametrize("spelling", ["mylib.MyConv", "mylib_myconv"])
def test_registered_type_is_a_valid_key_of_a_plain_rules_mapping(my_conv: ac.LayerType, spelling: str) -> None:
    rules = {spelling: {"channel_divisor": 8}, "nn.Conv2d": None}
    assert resolve_rule(rules, "nn.Conv2d", "conv") is None
    assert resolve_rule(rules, "mylib.MyConv", "conv") == {
        "channels_ratio": (0.25, 1.0),
        "channel_divisor": 8,
        "kernel_size": (),
    }
    with pytest.raises(ValueError, match=re.escape("unknown layer type 'mylib.MyConvv' for rules; accepted keys: [")):
        resolve_rule({"mylib.MyConvv": {}}, "nn.Conv2d", "conv")
    with pytest.raises(ValueError, match=re.escape("'mylib.MyConv', 'outputs'] (register custom")):
        resolve_rule({"mylib.MyConvv": {}}, "nn.Conv2d", "conv")


def test_extra_sections_are_validated_on_construction_and_assignment(my_conv: ac.LayerType) -> None:
    with pytest.raises(ValidationError, match=r"mylib.MyConv pattern '\*': kernel_size: kernel sizes must be odd"):
        AutoNASConfig(**{"mylib.MyConv": {"kernel_size": 2}})
    cfg = AutoNASConfig()
    cfg["mylib_myconv"] = {"kernel_size": [3, 5]}
    assert cfg["mylib.MyConv"] == {"*": {"kernel_size": (3, 5)}}
    cfg.update({"mylib.MyConv": None})
    assert cfg["mylib.MyConv"] is None
    with pytest.raises(ValueError, match=re.escape("mylib.MyConv pattern 'x': expected a rule or None; got 3")):
        cfg["mylib.MyConv"] = {"x": 3}
    assert cfg["mylib.MyConv"] is None
    with pytest.raises(ValidationError, match=re.escape("'mylib.MyConv' is given twice")):
        AutoNASConfig(**{"mylib.MyConv": None, "mylib_myconv": {}})


def test_extra_sections_round_trip_through_json(my_conv: ac.LayerType) -> None:
    cfg = AutoNASConfig(**{"mylib.MyConv": {"blocks.*": {"kernel_size": [(3, 3)]}}, "nn.Linear": None})
    text = cfg.model_dump_json()
    assert json.loads(text)["mylib.MyConv"] == {"blocks.*": {"kernel_size": [[3, 3]]}}
    again = AutoNASConfig.model_validate_json(text)
    assert again == cfg
    assert again["mylib.MyConv"] == {"blocks.*": {"kernel_size": ((3, 3),)}}


def test_custom_rule_class_with_no_default_is_not_searched_unless_configured(attention: ac.LayerType) -> None:
    cfg = AutoNASConfig()
    assert cfg["mylib.Attention"] is None
    assert resolve_rule(cfg, "mylib.Attention", "encoder.0.attn") is None
    cfg["mylib.Attention"] = {"heads_ratio": (0.5, 1.0)}
    assert resolve_rule(cfg, "mylib.Attention", "encoder.0.attn") == {"heads_ratio": (0.5, 1.0), "head_divisor": 1}
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['channels_ratio'\] for DynamicAttentionConfig"):
        cfg["mylib.Attention"] = {"enc*": {"channels_ratio": (0.5,)}}


def test_registering_twice_is_refused(my_conv: ac.LayerType) -> None:
    with pytest.raises(ValueError, match=r"layer type 'mylib.MyConv' is already registered \(as 'mylib.MyConv'\)"):
        ac.register_layer_type("mylib.MyConv", ac.DynamicConv2dConfig)
    with pytest.raises(ValueError, match=r"layer type 'MyLib.myconv' is already registered \(as 'mylib.MyConv'\)"):
        ac.register_layer_type("MyLib.myconv", ac.DynamicConv2dConfig)
    with pytest.raises(ValueError, match=r"'nn.Conv2d' is already registered .*registered layer types: \['nn.Conv1d'"):
        ac.register_layer_type("nn.Conv2d", ac.DynamicConv2dConfig)


@pytest.mark.parametrize("key", ["", "my lib.Conv", "mylib..Conv", "1lib.Conv", "mylib.Conv.", 3])
def test_malformed_keys_are_refused(key: object) -> None:
    with pytest.raises(ValueError, match=re.escape("must be a dotted name such as 'mylib.MyConv'")):
        ac.register_layer_type(key, ac.DynamicConv2dConfig)  # type: ignore[arg-type]
    assert ac.registered_layer_types() == tuple(BUILTIN)


def test_rule_class_must_be_a_base_rule() -> None:
    with pytest.raises(TypeError, match=re.escape("rule class for 'mylib.X' must be a BaseRule subclass")):
        ac.register_layer_type("mylib.X", dict)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a BaseRule subclass"):
        ac.register_layer_type("mylib.X", ac.ExportConfig)  # type: ignore[arg-type]
    assert "mylib.X" not in ac.registered_layer_types()


def test_invalid_default_is_refused_and_nothing_is_registered() -> None:
    with pytest.raises(ValidationError, match="channels_ratio"):
        ac.register_layer_type("mylib.X", ac.DynamicConv2dConfig, {"channels_ratio": (3.0,)})
    with pytest.raises(ValueError, match="a DynamicConv2dConfig rule must be a dict with keys"):
        ac.register_layer_type("mylib.X", ac.DynamicConv2dConfig, 0.5)  # type: ignore[arg-type]
    assert "mylib.X" not in ac.registered_layer_types()


def test_default_may_be_a_rule_instance() -> None:
    layer_type = ac.register_layer_type("mylib.X", ac.DynamicLinearConfig, ac.DynamicLinearConfig(feature_divisor=8))
    try:
        assert layer_type.default == {"feature_divisor": 8}
        assert AutoNASConfig()["mylib.X"] == {"*": {"feature_divisor": 8}}
    finally:
        ac.unregister_layer_type("mylib.X")


def test_unregistering_removes_the_key_from_new_configs(my_conv: ac.LayerType) -> None:
    ac.unregister_layer_type("mylib_myconv")
    try:
        assert "mylib.MyConv" not in AutoNASConfig()
        with pytest.raises(ValidationError, match=re.escape("unknown layer type 'mylib.MyConv'")):
            AutoNASConfig(**{"mylib.MyConv": None})
        with pytest.raises(KeyError, match=re.escape("layer type 'mylib.MyConv' is not registered")):
            resolve_rule({"mylib.MyConv": {}}, "mylib.MyConv", "conv")
    finally:
        ac.register_layer_type("mylib.MyConv", ac.DynamicConv2dConfig)  # for the fixture to remove


def test_unregistering_unknown_or_builtin_types_is_refused() -> None:
    with pytest.raises(
        KeyError, match=r"layer type 'mylib.Nope' is not registered; registered layer types: \['nn.Conv1d'"
    ):
        ac.unregister_layer_type("mylib.Nope")
    with pytest.raises(ValueError, match=re.escape("'nn.Conv2d' is a built-in layer type and cannot be unregistered")):
        ac.unregister_layer_type("nn_conv2d")
    assert ac.registered_layer_types() == tuple(BUILTIN)
