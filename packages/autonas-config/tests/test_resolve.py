"""resolve_rule: how a module's effective rule follows from its layer type's section."""

from __future__ import annotations

import doctest

import pytest

import autonas_config
from autonas_config import AutoNASConfig, resolve_rule

CONV = {"channels_ratio": (0.5, 0.67, 1.0), "channel_divisor": 32, "kernel_size": ()}
LINEAR = {"features_ratio": (0.5, 0.67, 1.0), "feature_divisor": 32}


def both_forms(**sections: object) -> list:
    """The same rules as a config and as its dump: resolve_rule must read both alike."""
    cfg = AutoNASConfig(**sections)
    return [cfg, cfg.model_dump()]


@pytest.mark.parametrize("rules", both_forms())
def test_defaults_give_every_module_the_autonas_rule_of_its_type(rules) -> None:
    assert resolve_rule(rules, "nn.Conv2d", "features.0") == CONV
    assert resolve_rule(rules, "nn.Linear", "classifier") == LINEAR
    assert resolve_rule(rules, "nn.GroupNorm", "gn") == {"channels_ratio": (0.5, 0.67, 1.0), "channel_divisor": 32}
    assert resolve_rule(rules, "nn.Sequential", "layer1") == {"min_depth": 0}
    assert resolve_rule(rules, "nn.Conv2d", "") == CONV  # the root module


@pytest.mark.parametrize("rules", both_forms(nn_conv2d={"channels_ratio": (0.5, 1.0)}))
def test_a_partial_rule_overrides_only_the_keys_it_names(rules) -> None:
    assert resolve_rule(rules, "nn.Conv2d", "conv1") == {
        "channels_ratio": (0.5, 1.0),
        "channel_divisor": 32,
        "kernel_size": (),
    }
    assert resolve_rule(rules, "nn.Conv1d", "conv1") == CONV


@pytest.mark.parametrize(
    "rules", both_forms(nn_conv2d={"*": {"channels_ratio": (0.5, 1.0)}, "layer1.*": {"channel_divisor": 16}})
)
def test_later_patterns_merge_over_earlier_matches(rules) -> None:
    assert resolve_rule(rules, "nn.Conv2d", "layer1.0.conv1") == {
        "channels_ratio": (0.5, 1.0),
        "channel_divisor": 16,
        "kernel_size": (),
    }
    assert resolve_rule(rules, "nn.Conv2d", "layer2.0.conv1") == {
        "channels_ratio": (0.5, 1.0),
        "channel_divisor": 32,
        "kernel_size": (),
    }


@pytest.mark.parametrize(
    "rules", both_forms(nn_conv2d={"layer1.*": {"channel_divisor": 16}, "*": {"channel_divisor": 8}})
)
def test_order_decides_which_pattern_wins(rules) -> None:
    # "*" comes last, so it overrides the divisor for layer1 too.
    assert resolve_rule(rules, "nn.Conv2d", "layer1.0.conv1")["channel_divisor"] == 8
    assert resolve_rule(rules, "nn.Conv2d", "stem")["channel_divisor"] == 8


@pytest.mark.parametrize("rules", both_forms(nn_conv2d={"*": None, "a*": {"channel_divisor": 8}}))
def test_a_rule_after_a_freezing_match_starts_again_from_the_defaults(rules) -> None:
    assert resolve_rule(rules, "nn.Conv2d", "ab") == {**CONV, "channel_divisor": 8}
    assert resolve_rule(rules, "nn.Conv2d", "b") is None


@pytest.mark.parametrize(
    "rules",
    both_forms(nn_conv2d={"*": {"channels_ratio": (0.25, 1.0)}, "layer1.*": None, "layer1.0.*": {"kernel_size": 3}}),
)
def test_none_freezes_and_discards_what_earlier_matches_built(rules) -> None:
    assert resolve_rule(rules, "nn.Conv2d", "layer1.1.conv1") is None
    # layer1.0: "*" built a ratio, None dropped it, so the kernel rule merges over the defaults.
    assert resolve_rule(rules, "nn.Conv2d", "layer1.0.conv1") == {**CONV, "kernel_size": (3,)}
    assert resolve_rule(rules, "nn.Conv2d", "layer2.conv1") == {**CONV, "channels_ratio": (0.25, 1.0)}


@pytest.mark.parametrize("rules", both_forms(nn_linear={"head": {"feature_divisor": 8}}))
def test_a_module_no_pattern_matches_is_frozen(rules) -> None:
    assert resolve_rule(rules, "nn.Linear", "head") == {**LINEAR, "feature_divisor": 8}
    assert resolve_rule(rules, "nn.Linear", "body.fc") is None


@pytest.mark.parametrize("rules", both_forms(nn_sequential=None))
def test_a_none_section_freezes_the_whole_layer_type(rules) -> None:
    assert resolve_rule(rules, "nn.Sequential", "layer1") is None


def test_glob_matching_is_case_sensitive_and_star_crosses_dots() -> None:
    rules = {"nn.Conv2d": {"Layer1.*": {"channel_divisor": 8}, "*.conv?": {"kernel_size": 5}, "x[12]": {}}}
    assert resolve_rule(rules, "nn.Conv2d", "layer1.0.conv") is None
    assert resolve_rule(rules, "nn.Conv2d", "Layer1.0.2.conv") == {**CONV, "channel_divisor": 8}
    assert resolve_rule(rules, "nn.Conv2d", "stage.0.block.conv2") == {**CONV, "kernel_size": (5,)}
    assert resolve_rule(rules, "nn.Conv2d", "x2") == CONV
    assert resolve_rule(rules, "nn.Conv2d", "x3") is None


def test_raw_rules_are_validated_and_may_use_field_names() -> None:
    rules = {"nn_linear": {"features_ratio": [1, 0.5]}}
    assert resolve_rule(rules, "nn.Linear", "fc") == {"features_ratio": (0.5, 1.0), "feature_divisor": 32}
    assert resolve_rule(rules, "nn_linear", "fc") == {"features_ratio": (0.5, 1.0), "feature_divisor": 32}
    with pytest.raises(ValueError, match=r"nn.Linear pattern '\*': features_ratio: ratios must lie in \(0, 1\]"):
        resolve_rule({"nn.Linear": {"features_ratio": [2]}}, "nn.Linear", "fc")


def test_a_layer_type_missing_from_raw_rules_is_frozen() -> None:
    assert resolve_rule({"nn.Linear": {}}, "nn.Conv2d", "conv") is None
    assert resolve_rule({}, "nn.Linear", "fc") is None


def test_an_unregistered_layer_type_is_a_key_error_listing_registered_ones() -> None:
    with pytest.raises(
        KeyError, match=r"layer type 'nn.Conv4d' is not registered; registered layer types: \['nn.Conv1d'"
    ):
        resolve_rule(AutoNASConfig(), "nn.Conv4d", "conv")


def test_resolved_rules_are_fresh_dicts() -> None:
    cfg = AutoNASConfig()
    rule = resolve_rule(cfg, "nn.Conv2d", "conv")
    rule["channel_divisor"] = 1
    assert resolve_rule(cfg, "nn.Conv2d", "conv") == CONV
    assert cfg["nn.Conv2d"] == {"*": CONV}


@pytest.mark.parametrize(
    "module", [autonas_config.resolve, autonas_config.mode_configs, autonas_config.rounding, autonas_config.outputs]
)
def test_docstring_examples_hold(module) -> None:
    failed, attempted = doctest.testmod(module, raise_on_error=False)
    assert attempted > 0
    assert failed == 0


def test_unknown_keys_of_a_rules_mapping_are_named_with_the_accepted_ones() -> None:
    rules = {"nn.Conv2d": {"*": {"channels_ratio": (0.5, 1.0)}}, "wrong_key": {"*": {}}}
    with pytest.raises(ValueError) as info:
        resolve_rule(rules, "nn.Conv2d", "conv1")
    accepted = [*autonas_config.registered_layer_types(), "outputs"]  # no custom type is registered here
    assert "nn.Conv2d" in accepted and "nn.Sequential" in accepted
    assert str(info.value) == (
        f"unknown layer type 'wrong_key' for rules; accepted keys: {accepted} "
        "(register custom layer types with autonas_config.register_layer_type)"
    )
    # both spellings of a layer type are keys, in a plain mapping as in a config
    rules = {"nn_conv2d": {"channels_ratio": (0.5, 1.0)}, "nn.Linear": None}
    assert resolve_rule(rules, "nn.Conv2d", "conv1") == {**CONV, "channels_ratio": (0.5, 1.0)}


@pytest.mark.parametrize("rules", both_forms(nn_conv1d={"stage*.conv*": {"kernel_size": (3, 5)}}, nn_linear=None))
def test_is_unmatched_only_when_a_section_of_patterns_misses_the_module(rules) -> None:
    assert autonas_config.is_unmatched(rules, "nn.Conv1d", "stem")
    assert resolve_rule(rules, "nn.Conv1d", "stem") is None
    assert not autonas_config.is_unmatched(rules, "nn.Conv1d", "stage1.conv2")
    assert not autonas_config.is_unmatched(rules, "nn.Linear", "fc")  # the whole type is frozen on purpose
    assert not autonas_config.is_unmatched(rules, "nn.Conv2d", "conv1")  # the default "*" section
    assert not autonas_config.is_unmatched({}, "nn.Conv2d", "conv1")  # a missing section
