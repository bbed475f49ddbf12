"""SearchSpace API: names, sampling with glob dicts, strict selection, size, rules, bad input."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn as nn
from example_models import AuxiliaryHead, ConcatConvs, Conv1dStages, FailingSubmodule, ResBlock, SkippableDepth
from layer_models import ConvNet

from autonas_config import AutoNASConfig
from autonas_dynamic import is_dynamic
from autonas_dynamic.errors import AlreadyConvertedError, UnsupportedModelError
from autonas_dynamic.space import SearchSpace, generate_search_space


def _space(model: nn.Module, rules: dict | None = None) -> SearchSpace:
    return generate_search_space(model.eval(), rules)


def test_names_config_and_size() -> None:
    space = _space(SkippableDepth())
    hparams = space.hparams()
    assert list(hparams)[:2] == ["stem.out_channels", "blocks.depth"]
    assert space.size() == math.prod(len(choices) for choices in hparams.values())
    full = space.config()
    assert set(space.config(configurable=True)) == set(hparams)
    # a shared hparam appears under every module holding it in the full config
    assert full["blocks.1.conv_b.out_channels"] == full["blocks.0.out_channels"] == 8
    assert space.is_configurable()


def test_sample_glob_dict_last_matching_pattern_wins() -> None:
    space = _space(SkippableDepth())
    config = space.sample({"*": min, "*.depth": max})
    assert config["blocks.depth"] == 3
    assert config["stem.out_channels"] == 1
    config = space.sample({"*.depth": min, "*": max})
    assert config["blocks.depth"] == 3 and config["stem.out_channels"] == 8
    config = space.sample({"blocks.*": min})  # unmatched hparams keep their value
    assert config["blocks.depth"] == 1 and config["stem.out_channels"] == 8


def test_select_round_trips_full_and_configurable_configs() -> None:
    model = SkippableDepth().eval()
    space = _space(model)
    x = torch.randn(1, 3, 8, 8)
    full = space.sample(min)
    expected = model(x)
    configurable = space.config(configurable=True)
    space.sample(max)
    space.select(full)
    torch.testing.assert_close(model(x), expected)
    space.sample(max)
    space.select(configurable)
    torch.testing.assert_close(model(x), expected)


def test_select_strict_errors_name_the_keys() -> None:
    space = _space(SkippableDepth())
    config = space.config(configurable=True)
    missing = dict(config)
    del missing["blocks.depth"]
    with pytest.raises(ValueError, match=r"missing keys \['blocks.depth'\]"):
        space.select(missing)
    with pytest.raises(ValueError, match=r"unexpected keys \['nope.out_channels'\]"):
        space.select({**config, "nope.out_channels": 3})
    with pytest.raises(ValueError, match=r"inconsistent keys \['stem.in_channels=2 \(active 3\)'\]"):
        space.select({**space.config(), "stem.in_channels": 2})
    with pytest.raises(ValueError, match="allowed"):
        space.select({**config, "stem.out_channels": 99})
    space.select({"stem.out_channels": 4, "nope": 1}, strict=False)
    assert space.config()["blocks.0.in_channels"] == 4


def test_rules_restrict_before_merging() -> None:
    """conv(64) -> BN -> conv: the BN's rule restricts the whole group (SPEC 1.2)."""

    def model() -> nn.Module:
        return nn.Sequential(nn.Conv2d(3, 64, 1), nn.BatchNorm2d(64), nn.Conv2d(64, 8, 1))

    conv_rule = {"nn.Conv2d": {"*": {"channels_ratio": (0.5, 1.0), "channel_divisor": 8}}}
    assert _space(model(), {**conv_rule, "nn.BatchNorm2d": {"*": {}}}).hparams() == {"0.out_channels": [32, 64]}
    assert _space(model(), {**conv_rule, "nn.BatchNorm2d": None}).hparams() == {}
    bn_rule = {"nn.BatchNorm2d": {"*": {"features_ratio": (0.75, 1.0), "feature_divisor": 16}}}
    assert _space(model(), {**conv_rule, **bn_rule}).hparams() == {}
    # rules keyed by class, and glob patterns over module names
    assert _space(model(), {nn.Conv2d: {"*": {"channels_ratio": (0.5, 1.0)}}, nn.BatchNorm2d: {}}).hparams() == {
        "0.out_channels": [32, 64]
    }
    assert _space(model(), {nn.Conv2d: {"*": {}, "0": None}, nn.BatchNorm2d: {}}).hparams() == {}


def test_an_unknown_top_level_rules_key_is_named_with_the_accepted_ones() -> None:
    from autonas_config import registered_layer_types

    model = nn.Sequential(nn.Conv2d(3, 64, 1), nn.BatchNorm2d(64), nn.Conv2d(64, 8, 1))
    rules = {"nn.Conv2d": {"*": {"channels_ratio": (0.5, 1.0)}}, "wrong_key": {"*": {}}}
    with pytest.raises(ValueError) as info:
        generate_search_space(model.eval(), rules)
    assert str(info.value) == (
        f"unknown layer type 'wrong_key' for rules; accepted keys: {[*registered_layer_types(), 'outputs']} "
        "(register custom layer types with autonas_config.register_layer_type)"
    )


def test_default_autonas_config() -> None:
    model = SkippableDepth().eval()
    space = _space(model, AutoNASConfig().model_dump())
    # every width is at most 16 channels: the divisor 32 keeps them; only the depth is searched
    assert space.hparams() == {"blocks.depth": [1, 2, 3]}


def test_unsearchable_layers_stay_plain() -> None:
    model = ConcatConvs().eval()
    generate_search_space(model, {"nn.Conv2d": None, "nn.BatchNorm2d": None})
    assert not is_dynamic(model)


def test_export_gives_plain_modules_at_the_active_sizes() -> None:
    model = SkippableDepth().eval()
    space = _space(model)
    space.select({**space.config(configurable=True), "blocks.depth": 1, "stem.out_channels": 5})
    x = torch.randn(1, 3, 8, 8)
    expected = model(x)
    exported = space.export()
    assert exported is model and not is_dynamic(model)
    assert type(model.blocks) is nn.Sequential and len(model.blocks) == 1
    assert model.stem.out_channels == 5 and model.stem.weight.shape == (5, 3, 1, 1)
    torch.testing.assert_close(model(x), expected)


def test_summary_marks_first_names_of_searched_hparams() -> None:
    space = _space(SkippableDepth())
    lines = space.summary().splitlines()
    assert "* blocks.depth" in "\n".join(lines)
    starred = [line for line in lines if line.startswith("*")]
    assert len(starred) == len(space.hparams())
    assert not any("kernel_size" in line for line in lines)


def test_train_mode_model_converts_and_keeps_its_mode() -> None:
    model = SkippableDepth().train()
    generate_search_space(model).sample(min)
    assert model.training and all(m.training for m in model.modules())
    model(torch.randn(2, 3, 8, 8)).sum().backward()


def test_bad_models_are_rejected_with_clear_errors() -> None:
    model = SkippableDepth().eval()
    generate_search_space(model)
    with pytest.raises(AlreadyConvertedError, match="SkippableDepth is already converted"):
        generate_search_space(model)
    with pytest.raises(
        UnsupportedModelError, match=r"DataParallel wrapper around SkippableDepth; convert its \.module"
    ):
        generate_search_space(nn.DataParallel(SkippableDepth()))
    channels_last = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Conv2d(8, 4, 3)).to(memory_format=torch.channels_last)
    with pytest.raises(UnsupportedModelError, match=r"'0\.weight' of Sequential is in channels_last"):
        generate_search_space(channels_last)
    assert issubclass(AlreadyConvertedError, ValueError) and issubclass(UnsupportedModelError, ValueError)


@pytest.mark.parametrize("compile_module", ["script", "trace"])
def test_torchscript_modules_are_refused_before_tracing(compile_module: str) -> None:
    model = SkippableDepth().eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit is deprecated
        if compile_module == "script":
            compiled = torch.jit.script(model)
        else:
            compiled = torch.jit.trace(model, torch.randn(1, 3, 8, 8))
    with pytest.raises(UnsupportedModelError, match=r"TorchScript module .*pass the eager nn\.Module"):
        generate_search_space(compiled)
    assert not is_dynamic(model)


def test_protocol_of_autonas_search() -> None:
    model = ResBlock(8).eval()
    x = torch.randn(2, 8, 6, 6)
    expected = model(x)
    space = _space(model)
    hparams = space.hparams()
    assert hparams["conv_a.out_channels"] == sorted(hparams["conv_a.out_channels"]) and len(hparams) >= 1
    smallest = {name: choices[0] for name, choices in hparams.items()}
    space.select(smallest)
    assert space.config(configurable=True) == smallest
    assert model.conv_a(x).shape[1] == smallest["conv_a.out_channels"] < 16  # the layer itself shrank
    assert model(x).shape == expected.shape
    space.select({name: choices[-1] for name, choices in hparams.items()})
    torch.testing.assert_close(model(x), expected)  # the largest config is the original model
    with pytest.raises(ValueError, match="missing keys"):
        space.select({})


def test_layers_running_only_in_training_follow_their_inputs() -> None:
    model = AuxiliaryHead().eval()
    space = generate_search_space(model)
    assert not model.training  # traced in both modes, flags restored
    space.sample(min)
    model.train()
    main, aux = model(torch.randn(2, 3, 8, 8))
    assert main.shape == (2, 4, 8, 8) and aux.shape == (2, 2, 8, 8)


def test_a_model_traceable_in_one_mode_only_warns() -> None:
    class EvalOnly(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2 = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 4, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if self.training and x.sum() > 0:  # data-dependent only in training
                x = x * 2
            return self.conv2(self.conv1(x))

    with pytest.warns(UserWarning, match="could not be traced in its other mode"):
        space = generate_search_space(EvalOnly().eval())
    assert list(space.hparams()) == ["conv1.out_channels"]


def _converted_with(model: nn.Module, rules: dict) -> tuple[SearchSpace, list[str]]:
    """``model`` converted with ``AutoNASConfig(rules)``, and the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        space = generate_search_space(model.eval(), AutoNASConfig.model_validate(rules).model_dump())
    return space, [str(w.message) for w in caught]


def test_kernel_sizes_a_layer_cannot_take_are_reported_in_one_warning() -> None:
    space, messages = _converted_with(ConvNet(), {"nn.Conv2d": {"kernel_size": (3, 5)}})
    assert messages == [
        "rule values that do not fit some layers are ignored there: "
        "kernel_size (5, 5) on Conv2d kernels (3, 3) with padding (1, 1): conv1, dw"
    ]
    kernels = {name: hp.choices for name, hp in space.named_hparams() if name.endswith("kernel_size")}
    assert kernels["conv2.kernel_size"] == [(3, 3), (5, 5)]  # the 5x5 conv searches both
    assert "conv1.kernel_size" not in kernels  # 3x3 -> (1, 1), (3, 3) would need the rule to ask for 1

    _, messages = _converted_with(Conv1dStages(), {"nn.Conv1d": {"kernel_size": (3, 7)}})
    assert messages == [
        "rule values that do not fit some layers are ignored there: "
        "kernel_size (7,) on Conv1d kernels (3,) with padding (1,): stem; "
        "kernel_size (7,) on Conv1d kernels (5,) with padding (2,): stage1.conv1, stage1.conv2"
    ]  # not the 1x1 head: it has no kernel to search


def test_kernel_sizes_on_layers_with_no_kernel_to_crop_to_them_pass_silently() -> None:
    class PatchEmbedding(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.patches, self.mix = nn.Conv2d(3, 64, 4, stride=4), nn.Conv2d(64, 64, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.mix(self.patches(x))

    assert _converted_with(PatchEmbedding(), {"nn.Conv2d": {"kernel_size": (3, 5)}})[1] == []
    reflect = nn.Sequential(nn.Conv2d(3, 64, 3, padding=1), nn.Conv2d(64, 8, 3, padding=1, padding_mode="reflect"))
    assert _converted_with(reflect, {"nn.Conv2d": {"kernel_size": (1, 3)}})[1] == [
        "rule values that do not fit some layers are ignored there: "
        "kernel_size (1, 1) on Conv2d kernels (3, 3) with padding_mode 'reflect': 1"
    ]


def test_rules_whose_kernel_sizes_fit_give_no_warning() -> None:
    for kernels in ((), (3,), (1, 3)):
        assert _converted_with(ConvNet(), {"nn.Conv2d": {"kernel_size": kernels}})[1] == []


def test_layers_no_glob_pattern_matches_are_frozen_with_one_warning() -> None:
    kernels = {"kernel_size": (3, 5)}
    space, messages = _converted_with(Conv1dStages(), {"nn.Conv1d": {"stage*.conv*": kernels}})
    assert len(messages) == 1
    assert messages[0].startswith(
        "2 layers that the default rule would search match no glob pattern of their rules section and are "
        'frozen (nn.Conv1d: stem, head). To search them with the default rule, put "*": {} before the patterns'
    )
    assert '"*": None' in messages[0]
    assert "stem.out_channels" not in space.hparams()
    assert space.hparams()["stage1.conv1.out_channels"] == [32, 64]

    space, messages = _converted_with(Conv1dStages(), {"nn.Conv1d": {"*": {}, "stage*.conv*": kernels}})
    assert messages == [] and space.hparams()["stem.out_channels"] == [32, 64]
    space, messages = _converted_with(Conv1dStages(), {"nn.Conv1d": {"*": None, "stage*.conv*": kernels}})
    assert messages == [] and "stem.out_channels" not in space.hparams()


def test_unmatched_layers_the_default_rule_would_not_search_give_no_warning() -> None:
    # ConvNet's widths (16, 24) are below the default divisor 32: freezing them loses nothing
    assert _converted_with(ConvNet(), {"nn.Conv2d": {"conv2": {"channel_divisor": 8}}})[1] == []


def test_the_space_names_the_modules_that_could_not_be_traced() -> None:
    with pytest.warns(UserWarning, match="could not be traced"):
        space = generate_search_space(FailingSubmodule().eval())
    assert space.untraced == {
        "block": "TraceError: bool() of a traced value whose value is unknown: no example value for the input 'x'"
    }
    assert generate_search_space(SkippableDepth().eval()).untraced == {}
    assert SearchSpace(space.model).untraced == {}  # a later view knows nothing of the tracing
