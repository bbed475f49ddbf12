"""The per-layer-type rule classes: fields, modify() defaults, normalisation and bad input."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

import autonas_config as ac

CONV_RULES = {
    ac.DynamicConv1dConfig: 1,
    ac.DynamicConv2dConfig: 2,
    ac.DynamicConv3dConfig: 3,
    ac.DynamicConvTranspose1dConfig: 1,
    ac.DynamicConvTranspose2dConfig: 2,
    ac.DynamicConvTranspose3dConfig: 3,
}
FEATURE_RULES = [
    ac.DynamicLinearConfig,
    ac.DynamicBatchNorm1dConfig,
    ac.DynamicBatchNorm2dConfig,
    ac.DynamicBatchNorm3dConfig,
    ac.DynamicSyncBatchNormConfig,
    ac.DynamicInstanceNorm1dConfig,
    ac.DynamicInstanceNorm2dConfig,
    ac.DynamicInstanceNorm3dConfig,
    ac.DynamicLayerNormConfig,
]


@pytest.mark.parametrize("rule_class", CONV_RULES)
def test_conv_rule_defaults_are_the_modify_defaults(rule_class: type[ac.BaseRule]) -> None:
    assert rule_class().model_dump() == {"channels_ratio": None, "channel_divisor": 1, "kernel_size": ()}


@pytest.mark.parametrize("rule_class", FEATURE_RULES)
def test_feature_rule_defaults_are_the_modify_defaults(rule_class: type[ac.BaseRule]) -> None:
    assert rule_class().model_dump() == {"features_ratio": None, "feature_divisor": 1}


def test_group_norm_and_sequential_rule_defaults() -> None:
    assert ac.DynamicGroupNormConfig().model_dump() == {"channels_ratio": None, "channel_divisor": 1}
    assert ac.DynamicSequentialConfig().model_dump() == {"min_depth": 0}


@pytest.mark.parametrize("rule_class", [*CONV_RULES, *FEATURE_RULES, ac.DynamicGroupNormConfig])
def test_ratios_are_normalised_to_a_sorted_tuple_without_duplicates(rule_class: type[ac.BaseRule]) -> None:
    field = next(name for name in rule_class.model_fields if name.endswith("_ratio"))
    rule = rule_class(**{field: [1, 0.5, 0.67, 0.5]})
    assert rule[field] == (0.5, 0.67, 1.0)
    assert isinstance(rule[field][2], float)


@pytest.mark.parametrize("bad", [[0.0], [1.5], [-0.5, 1.0], [0.5, 1.01]])
@pytest.mark.parametrize("field", ["channels_ratio", "features_ratio"])
def test_ratios_outside_zero_one_are_refused(field: str, bad: list[float]) -> None:
    rule_class = ac.DynamicConv2dConfig if field == "channels_ratio" else ac.DynamicLinearConfig
    with pytest.raises(ValidationError, match=r"ratios must lie in \(0, 1\]") as caught:
        rule_class(**{field: bad})
    assert caught.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize("bad", [[], "0.5", 0.5, [True], ["half"]])
def test_ratios_must_be_a_nonempty_sequence_of_numbers(bad: object) -> None:
    with pytest.raises(ValidationError, match="channels_ratio"):
        ac.DynamicConv2dConfig(channels_ratio=bad)


def test_empty_ratio_list_message_says_what_to_give_instead() -> None:
    with pytest.raises(ValidationError, match=r"at least one ratio in \(0, 1\], or None"):
        ac.DynamicLinearConfig(features_ratio=[])


@pytest.mark.parametrize(
    ("field", "rule_class"),
    [("channel_divisor", ac.DynamicGroupNormConfig), ("feature_divisor", ac.DynamicLayerNormConfig)],
)
@pytest.mark.parametrize("bad", [0, -8])
def test_divisors_below_one_are_refused(field: str, rule_class: type[ac.BaseRule], bad: int) -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 1") as caught:
        rule_class(**{field: bad})
    assert caught.value.errors()[0]["loc"] == (field,)


@pytest.mark.parametrize("bad", [True, 16.0, "16"])
def test_divisors_must_be_integers(bad: object) -> None:
    with pytest.raises(ValidationError, match="valid integer"):
        ac.DynamicConv2dConfig(channel_divisor=bad)


def test_kernel_sizes_accept_ints_tuples_and_a_bare_int() -> None:
    assert ac.DynamicConv2dConfig(kernel_size=3).kernel_size == (3,)
    assert ac.DynamicConv2dConfig(kernel_size=[3, (5, 3), 3, 7]).kernel_size == (3, (5, 3), 7)
    assert ac.DynamicConv3dConfig(kernel_size=[(1, 3, 5)]).kernel_size == ((1, 3, 5),)


@pytest.mark.parametrize("bad", [4, [3, 4], [0], [-3], [(3, 2)], [()]])
def test_even_or_non_positive_kernel_sizes_are_refused(bad: object) -> None:
    with pytest.raises(ValidationError, match="kernel sizes must be odd positive integers") as caught:
        ac.DynamicConv2dConfig(kernel_size=bad)
    assert caught.value.errors()[0]["loc"] == ("kernel_size",)


@pytest.mark.parametrize(("rule_class", "ndim"), CONV_RULES.items())
def test_kernel_tuples_must_have_one_size_per_spatial_dimension(rule_class: type[ac.BaseRule], ndim: int) -> None:
    assert rule_class(kernel_size=[(3,) * ndim]).kernel_size == ((3,) * ndim,)
    wrong = (3,) * (ndim + 1)
    with pytest.raises(
        ValidationError,
        match=rf"has {ndim + 1} dimension\(s\); {rule_class.__name__} takes an int or a tuple of {ndim}",
    ):
        rule_class(kernel_size=[wrong])


def test_min_depth_must_be_a_non_negative_integer() -> None:
    assert ac.DynamicSequentialConfig(min_depth=2).min_depth == 2
    with pytest.raises(ValidationError, match="greater than or equal to 0") as caught:
        ac.DynamicSequentialConfig(min_depth=-1)
    assert caught.value.errors()[0]["loc"] == ("min_depth",)
    with pytest.raises(ValidationError, match="valid integer"):
        ac.DynamicSequentialConfig(min_depth=1.5)


def test_unknown_rule_keys_are_named_with_the_allowed_ones() -> None:
    with pytest.raises(ValidationError) as caught:
        ac.DynamicConv2dConfig(out_channels_ratio=(0.5, 1.0))
    message = str(caught.value)
    assert "unknown key(s) ['out_channels_ratio'] for DynamicConv2dConfig" in message
    assert "allowed keys: ['channels_ratio', 'channel_divisor', 'kernel_size']" in message


def test_rules_revalidate_on_assignment() -> None:
    rule = ac.DynamicLinearConfig(features_ratio=(0.5, 1.0))
    rule["features_ratio"] = [1.0, 0.25]
    assert rule.features_ratio == (0.25, 1.0)
    with pytest.raises(ValidationError, match="feature_divisor"):
        rule.feature_divisor = 0
    assert rule.feature_divisor == 1


def test_rule_json_round_trip_restores_tuples() -> None:
    rule = ac.DynamicConv2dConfig(channels_ratio=(0.5, 1.0), channel_divisor=8, kernel_size=[3, (1, 5)])
    text = rule.model_dump_json()
    assert text == '{"channels_ratio":[0.5,1.0],"channel_divisor":8,"kernel_size":[3,[1,5]]}'
    again = ac.DynamicConv2dConfig.model_validate_json(text)
    assert again == rule
    assert again.kernel_size == (3, (1, 5))
