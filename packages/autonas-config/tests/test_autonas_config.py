"""AutoNASConfig: the seventeen layer-type keys, the heads and outputs sections, their defaults, accepted forms, dumps
and schema."""

from __future__ import annotations

import copy
import json
import pickle
import re

import pytest
from pydantic import ValidationError

import autonas_config as ac
from autonas_config import AutoNASConfig

RATIOS = (0.5, 0.67, 1.0)
CONV = {"channels_ratio": RATIOS, "channel_divisor": 32, "kernel_size": ()}
FEATURES = {"features_ratio": RATIOS, "feature_divisor": 32}

# SPEC §3.3, in its order: alias, field name, rule class, default rule.
EXPECTED = [
    ("nn.Conv1d", "nn_conv1d", ac.DynamicConv1dConfig, CONV),
    ("nn.Conv2d", "nn_conv2d", ac.DynamicConv2dConfig, CONV),
    ("nn.Conv3d", "nn_conv3d", ac.DynamicConv3dConfig, CONV),
    ("nn.ConvTranspose1d", "nn_convtranspose1d", ac.DynamicConvTranspose1dConfig, CONV),
    ("nn.ConvTranspose2d", "nn_convtranspose2d", ac.DynamicConvTranspose2dConfig, CONV),
    ("nn.ConvTranspose3d", "nn_convtranspose3d", ac.DynamicConvTranspose3dConfig, CONV),
    ("nn.Linear", "nn_linear", ac.DynamicLinearConfig, FEATURES),
    ("nn.BatchNorm1d", "nn_batchnorm1d", ac.DynamicBatchNorm1dConfig, FEATURES),
    ("nn.BatchNorm2d", "nn_batchnorm2d", ac.DynamicBatchNorm2dConfig, FEATURES),
    ("nn.BatchNorm3d", "nn_batchnorm3d", ac.DynamicBatchNorm3dConfig, FEATURES),
    ("nn.SyncBatchNorm", "nn_syncbatchnorm", ac.DynamicSyncBatchNormConfig, FEATURES),
    ("nn.InstanceNorm1d", "nn_instancenorm1d", ac.DynamicInstanceNorm1dConfig, FEATURES),
    ("nn.InstanceNorm2d", "nn_instancenorm2d", ac.DynamicInstanceNorm2dConfig, FEATURES),
    ("nn.InstanceNorm3d", "nn_instancenorm3d", ac.DynamicInstanceNorm3dConfig, FEATURES),
    ("nn.LayerNorm", "nn_layernorm", ac.DynamicLayerNormConfig, FEATURES),
    ("nn.GroupNorm", "nn_groupnorm", ac.DynamicGroupNormConfig, {"channels_ratio": RATIOS, "channel_divisor": 32}),
    ("nn.Sequential", "nn_sequential", ac.DynamicSequentialConfig, {"min_depth": 0}),
    ("heads", "heads", ac.HeadsRule, {"heads_ratio": RATIOS, "heads_divisor": 1}),
]


OUTPUTS = {"last_hidden_state": True, "encoder_last_hidden_state": True}  # the hidden states Hugging Face returns


def test_seventeen_layer_fields_heads_and_outputs_in_spec_order_with_their_aliases() -> None:
    fields = AutoNASConfig.model_fields
    expected = [(alias, name) for alias, name, _, _ in EXPECTED] + [(None, "outputs")]
    assert [(field.alias, name) for name, field in fields.items()] == expected
    assert list(AutoNASConfig()) == [alias for alias, *_ in EXPECTED] + ["outputs"]
    assert len(AutoNASConfig()) == 19


def test_default_dump_is_the_rules_dict_the_space_generator_consumes() -> None:
    expected = {alias: {"*": default} for alias, _, _, default in EXPECTED}
    assert AutoNASConfig().model_dump() == {**expected, "outputs": OUTPUTS}


@pytest.mark.parametrize(("alias", "name", "rule_class", "default"), EXPECTED)
def test_each_default_is_reachable_by_alias_name_and_attribute(alias, name, rule_class, default) -> None:
    cfg = AutoNASConfig()
    assert cfg[alias] == cfg[name] == getattr(cfg, name) == {"*": default}
    assert ac.get_layer_type(alias).rule_class is rule_class
    assert ac.get_layer_type(name).key == alias


def test_defaults_are_not_shared_between_instances() -> None:
    first, second = AutoNASConfig(), AutoNASConfig()
    first["nn.Conv2d"]["*"]["channel_divisor"] = 8
    assert second["nn.Conv2d"]["*"]["channel_divisor"] == 32
    assert AutoNASConfig()["nn.Conv2d"]["*"]["channel_divisor"] == 32


def test_dump_is_a_copy_of_the_config() -> None:
    cfg = AutoNASConfig()
    dump = cfg.model_dump()
    dump["nn.Linear"]["*"]["feature_divisor"] = 1
    dump["nn.Linear"]["fc"] = None
    assert cfg["nn.Linear"] == {"*": FEATURES}


@pytest.mark.parametrize("spelling", ["nn.Conv2d", "nn_conv2d"])
def test_sections_are_accepted_by_alias_and_by_field_name(spelling: str) -> None:
    cfg = AutoNASConfig(**{spelling: {"channels_ratio": (0.5, 1.0)}})
    assert cfg["nn.Conv2d"] == {"*": {"channels_ratio": (0.5, 1.0)}}
    assert cfg["nn.Conv3d"] == {"*": CONV}


def test_a_flat_rule_is_wrapped_and_keeps_only_the_keys_given() -> None:
    cfg = AutoNASConfig(nn_linear={"feature_divisor": 16})
    assert cfg.model_dump()["nn.Linear"] == {"*": {"feature_divisor": 16}}


def test_an_empty_rule_means_the_defaults_for_every_layer() -> None:
    assert AutoNASConfig(nn_linear={})["nn.Linear"] == {"*": {}}
    assert ac.resolve_rule(AutoNASConfig(nn_linear={}), "nn.Linear", "fc") == FEATURES


def test_rule_instances_contribute_the_fields_set_explicitly() -> None:
    rule = ac.DynamicConv2dConfig(channel_divisor=16)
    cfg = AutoNASConfig(nn_conv2d=rule, nn_conv1d={"a.*": ac.DynamicConv1dConfig(kernel_size=3), "b": None})
    assert cfg["nn.Conv2d"] == {"*": {"channel_divisor": 16}}
    assert cfg["nn.Conv1d"] == {"a.*": {"kernel_size": (3,)}, "b": None}


def test_pattern_dicts_keep_their_order_and_normalise_each_rule() -> None:
    section = {"*": None, "layer2.*": {"channels_ratio": [1, 0.25]}, "layer1.*": {"kernel_size": [5, 3]}}
    cfg = AutoNASConfig(**{"nn.Conv2d": section})
    assert cfg["nn.Conv2d"] == {
        "*": None,
        "layer2.*": {"channels_ratio": (0.25, 1.0)},
        "layer1.*": {"kernel_size": (5, 3)},
    }
    assert list(cfg["nn.Conv2d"]) == ["*", "layer2.*", "layer1.*"]


def test_none_turns_a_layer_type_off() -> None:
    cfg = AutoNASConfig(**{"nn.Sequential": None})
    assert cfg["nn.Sequential"] is None
    assert cfg.model_dump()["nn.Sequential"] is None


def test_assignment_and_update_validate_and_normalise_sections() -> None:
    cfg = AutoNASConfig()
    cfg["nn.GroupNorm"] = {"channel_divisor": 8}
    cfg.nn_layernorm = None
    cfg.update({"nn_linear": {"fc*": {"features_ratio": [1.0, 0.5]}}})
    assert cfg["nn.GroupNorm"] == {"*": {"channel_divisor": 8}}
    assert cfg["nn.LayerNorm"] is None
    assert cfg["nn.Linear"] == {"fc*": {"features_ratio": (0.5, 1.0)}}
    with pytest.raises(
        ValidationError, match=re.escape("nn.GroupNorm pattern '*': channel_divisor: Input should be greater")
    ):
        cfg["nn.GroupNorm"] = {"channel_divisor": 0}
    assert cfg["nn.GroupNorm"] == {"*": {"channel_divisor": 8}}


def test_unknown_keys_are_refused_everywhere_naming_them() -> None:
    cfg = AutoNASConfig()
    with pytest.raises(ValidationError) as caught:
        AutoNASConfig(**{"nn.Conv4d": {}})
    assert "unknown layer type 'nn.Conv4d' for AutoNASConfig; accepted keys: ['nn.Conv1d'" in str(caught.value)
    assert "'nn.Sequential', 'heads', 'outputs']" in str(caught.value)
    with pytest.raises(
        KeyError, match=re.escape("'nn.Conv4d' is not a key of AutoNASConfig; allowed keys: ['nn.Conv1d'")
    ):
        cfg["nn.Conv4d"]
    with pytest.raises(KeyError, match=re.escape("'nn.Conv4d' is not a key of AutoNASConfig")):
        cfg["nn.Conv4d"] = None
    with pytest.raises(KeyError, match="'nn_conv4d' is not a key of AutoNASConfig"):
        cfg.nn_conv4d = None
    with pytest.raises(TypeError, match="cannot be deleted"):
        del cfg["nn.Conv2d"]
    assert "nn.Conv4d" not in cfg
    assert cfg.get("nn.Conv4d", "absent") == "absent"


def test_a_key_given_under_both_spellings_is_refused() -> None:
    with pytest.raises(
        ValidationError, match=re.escape("'nn.Linear' is given twice, by alias 'nn.Linear' and by name 'nn_linear'")
    ):
        AutoNASConfig(**{"nn.Linear": None, "nn_linear": {}})


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (
            5,
            "nn.Conv2d: expected a DynamicConv2dConfig rule (a dict with keys ['channels_ratio', 'channel_divisor', 'kernel_size']), None",
        ),
        (
            {"channels_ratio": (0.5, 1.0), "layer1.*": None},
            "mixes rule keys ['channels_ratio'] with glob patterns ['layer1.*']",
        ),
        ({"layer1.*": 0.5}, "nn.Conv2d pattern 'layer1.*': expected a rule or None; got 0.5"),
        ({"channel_ratio": (0.5, 1.0)}, "nn.Conv2d pattern 'channel_ratio': expected a rule or None"),
        (
            {"layer1.*": {"channel_ratio": (0.5,)}},
            "nn.Conv2d pattern 'layer1.*': unknown key(s) ['channel_ratio'] for DynamicConv2dConfig",
        ),
        (
            {"*": {"channels_ratio": (0.5, 2.0)}},
            "nn.Conv2d pattern '*': channels_ratio: ratios must lie in (0, 1]; got [2.0]",
        ),
        (
            {"*": {"kernel_size": (3, 4)}},
            "nn.Conv2d pattern '*': kernel_size: kernel sizes must be odd positive integers",
        ),
        (
            {"*": {"channel_divisor": 0}},
            "nn.Conv2d pattern '*': channel_divisor: Input should be greater than or equal to 1",
        ),
        ({1: {"channel_divisor": 8}}, "nn.Conv2d pattern 1: glob patterns must be strings"),
        (
            ac.DynamicLinearConfig(features_ratio=(0.5, 1.0)),
            "unknown key(s) ['features_ratio'] for DynamicConv2dConfig",
        ),
    ],
)
def test_malformed_sections_are_refused_naming_the_key_and_the_problem(section: object, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AutoNASConfig(**{"nn.Conv2d": section})
    assert caught.value.errors()[0]["loc"] == ("nn.Conv2d",)
    assert message in str(caught.value)


def test_negative_min_depth_is_refused() -> None:
    with pytest.raises(
        ValidationError,
        match=re.escape("nn.Sequential pattern '*': min_depth: Input should be greater than or equal to 0"),
    ):
        AutoNASConfig(**{"nn.Sequential": {"min_depth": -1}})


def test_json_round_trip_of_defaults_and_user_sections() -> None:
    cfg = AutoNASConfig(
        **{
            "nn.Conv2d": {"*": {"channels_ratio": (0.5, 1.0)}, "layer1.*": {"kernel_size": [3, (5, 5)]}, "fc": None},
            "nn.Sequential": None,
            "nn_linear": {"feature_divisor": 8},
        }
    )
    text = cfg.model_dump_json()
    data = json.loads(text)
    assert data["nn.Conv2d"] == {
        "*": {"channels_ratio": [0.5, 1.0]},
        "layer1.*": {"kernel_size": [3, [5, 5]]},
        "fc": None,
    }
    assert data["nn.Conv1d"] == {"*": {"channels_ratio": [0.5, 0.67, 1.0], "channel_divisor": 32, "kernel_size": []}}
    again = AutoNASConfig.model_validate_json(text)
    assert again == cfg
    assert again.model_dump() == cfg.model_dump()
    assert again["nn.Conv2d"]["layer1.*"]["kernel_size"] == (3, (5, 5))
    assert AutoNASConfig.model_validate(cfg.model_dump()) == cfg
    assert AutoNASConfig.model_validate(json.loads(AutoNASConfig().model_dump_json())) == AutoNASConfig()


def test_validating_a_config_instance_keeps_it() -> None:
    cfg = AutoNASConfig(nn_linear=None)
    assert AutoNASConfig.model_validate(cfg) is cfg


def test_configs_survive_deepcopy_and_pickle() -> None:
    cfg = AutoNASConfig(**{"nn.Conv2d": {"*": None, "head.*": {"kernel_size": 3}}})
    for clone in (copy.deepcopy(cfg), pickle.loads(pickle.dumps(cfg))):
        assert clone == cfg
        clone["nn.Conv2d"]["head.*"]["kernel_size"] = (5,)
        assert cfg["nn.Conv2d"]["head.*"]["kernel_size"] == (3,)


def test_json_schema_describes_every_key_by_its_rule_class() -> None:
    schema = AutoNASConfig.model_json_schema()
    json.dumps(schema)  # plain JSON data
    assert list(schema["properties"]) == [alias for alias, *_ in EXPECTED] + ["outputs"]
    outputs = schema["properties"]["outputs"]
    assert outputs["default"] == OUTPUTS
    assert outputs["anyOf"] == [{"type": "object", "additionalProperties": {"type": "boolean"}}, {"type": "null"}]
    conv = schema["properties"]["nn.Conv2d"]
    assert conv["default"] == {"*": {"channels_ratio": [0.5, 0.67, 1.0], "channel_divisor": 32, "kernel_size": []}}
    ref = {"$ref": "#/$defs/DynamicConv2dConfig"}
    assert conv["anyOf"] == [
        ref,
        {"type": "null"},
        {"type": "object", "additionalProperties": {"anyOf": [ref, {"type": "null"}]}},
    ]
    rule_schema = schema["$defs"]["DynamicConv2dConfig"]
    assert set(rule_schema["properties"]) == {"channels_ratio", "channel_divisor", "kernel_size"}
    assert rule_schema["additionalProperties"] is False
    assert rule_schema["properties"]["channel_divisor"]["minimum"] == 1
    assert set(schema["$defs"]) == {rule_class.__name__ for *_, rule_class, _ in EXPECTED}


def test_the_outputs_section_maps_glob_patterns_over_output_paths_to_whether_they_may_change_width() -> None:
    cfg = AutoNASConfig(outputs={"*": True, "logits": False})
    assert cfg["outputs"] == {"*": True, "logits": False}
    assert AutoNASConfig.model_validate_json(cfg.model_dump_json()) == cfg
    assert AutoNASConfig(outputs=None)["outputs"] == {}  # every output keeps its size
    first = AutoNASConfig()
    first["outputs"]["logits"] = True
    assert AutoNASConfig()["outputs"] == OUTPUTS  # the default is not shared
    # the last matching pattern decides; an output no pattern matches keeps its size
    assert [ac.output_may_change(cfg["outputs"], path) for path in ("0.features", "logits", "")] == [True, False, True]
    assert [ac.output_may_change(OUTPUTS, path) for path in ("last_hidden_state", "pooler_output", "")] == [
        True,
        False,
        False,
    ]
    assert ac.resolve_rule(cfg.model_dump(), "nn.Linear", "fc") == FEATURES  # the section names no layer type


@pytest.mark.parametrize(
    ("section", "message"),
    [
        (["logits"], "outputs: expected a dict of glob patterns over output paths to True or False"),
        ({0: True}, "outputs: pattern 0 is not a string"),
        ({"logits": 1}, "outputs pattern 'logits': expected True (its width may change) or False (it keeps its size)"),
        ({"logits": None}, "outputs pattern 'logits': expected True"),
    ],
)
def test_a_malformed_outputs_section_is_refused_naming_the_pattern(section: object, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        AutoNASConfig(outputs=section)
    assert caught.value.errors()[0]["loc"] == ("outputs",)
    assert message in str(caught.value)
    with pytest.raises(ValueError, match=re.escape(message)):
        ac.output_may_change(section, "logits")  # type: ignore[arg-type]


def test_outputs_cannot_be_registered_as_a_layer_type() -> None:
    with pytest.raises(ValueError, match="layer type key 'outputs' is reserved"):
        ac.register_layer_type("outputs", ac.FeatureRule)
