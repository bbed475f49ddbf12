"""Converting real (small) models, the mode chain of autonas/export_nas, and the architecture state."""

from __future__ import annotations

import copy
import json
import math
import random
import re

import pytest
import torch
import torch.nn as nn
from modes_models import RULES, DataDependentNet, OtherNet, TinyNet, make_tiny

import autonas_modes as am
from autonas_modes.mode import ApplyModeError


def _convert(model: nn.Module) -> nn.Module:
    return am.convert(model, mode=[("autonas", RULES)])


def test_convert_keeps_class_names_and_outputs_at_the_max_subnet(tiny: nn.Module, images: torch.Tensor) -> None:
    reference = copy.deepcopy(tiny)
    names = [name for name, _ in tiny.named_parameters()]
    model = _convert(tiny)
    assert model is tiny and type(model).__name__ == "TinyNet" and isinstance(model.stem[0], nn.Conv2d)
    assert [name for name, _ in model.named_parameters()] == names
    assert am.is_dynamic(model) and am.is_configurable(model)
    assert am.get_mode(model).name == "autonas"
    torch.testing.assert_close(model(images), reference(images))


def test_metadata_records_model_attributes_and_the_full_subnet_config(tiny: nn.Module) -> None:
    model = _convert(tiny)
    (entry,) = am.autonas_state(model)["modes"]
    assert entry["mode"] == "autonas"
    assert entry["metadata"]["model_attributes"] == {
        "type(model)": "TinyNet",
        "model.forward": "forward",
        "training": False,
    }
    assert entry["metadata"]["subnet_config"] == json.loads(json.dumps(am.get_subnet_config(model)))
    am.sample(model, min)
    refreshed = am.autonas_state(model)["modes"][0]["metadata"]["subnet_config"]
    assert refreshed == json.loads(json.dumps(am.get_subnet_config(model)))
    assert refreshed != entry["metadata"]["subnet_config"]


def test_search_space_size_is_the_product_of_choice_counts(tiny: nn.Module) -> None:
    model = _convert(tiny)
    counts = [len(hp.choices) for _, hp in am.named_hparams(model, configurable=True)]
    assert am.search_space_size(model) == math.prod(counts) > 1
    assert "blocks.depth" in dict(am.named_hparams(model, configurable=True))


def test_nothing_configurable_is_an_apply_mode_error() -> None:
    rules = {"nn.Conv2d": None, "nn.BatchNorm2d": None, "nn.Linear": None, "nn.Sequential": None}
    with pytest.raises(ApplyModeError, match="does not contain any configurable hyperparameters"):
        am.convert(make_tiny(), mode=[("autonas", rules)])


def test_nothing_configurable_because_of_tracing_names_the_untraced_modules() -> None:
    model = DataDependentNet()
    with pytest.warns(UserWarning, match="could not be traced"), pytest.raises(ApplyModeError) as error:
        am.convert(model, mode="autonas")
    message = str(error.value)
    assert "torch.fx could not trace '<root>': TraceError: bool() of a traced value whose value is unknown" in message
    assert "Loosen the rules" not in message
    traceable = DataDependentNet()
    traceable = am.convert(nn.Sequential(traceable.conv1, traceable.conv2), mode="autonas")
    assert am.get_subnet_config(traceable, configurable=True) == {"0.out_channels": 64}  # its layers are searchable


def test_export_closes_autonas_and_the_mode_system_refuses_a_second_export_nas(tiny: nn.Module) -> None:
    model = _convert(tiny)
    am.export(model)
    assert not am.is_dynamic(model)
    assert [entry["mode"] for entry in am.autonas_state(model)["modes"]] == ["autonas", "export_nas"]
    with pytest.raises(ApplyModeError, match="current export stack"):
        am.apply_mode(model, "export_nas")


def test_sample_select_and_their_errors(tiny: nn.Module) -> None:
    model = _convert(tiny)
    smallest = am.sample(model, min)
    assert all(hp.active == hp.min for _, hp in am.named_hparams(model, configurable=True))
    am.sample(model, max)
    am.select(model, smallest)
    assert am.get_subnet_config(model) == smallest
    configurable = am.get_subnet_config(model, configurable=True)
    first, *_ = configurable
    missing = {name: value for name, value in configurable.items() if name != first}
    with pytest.raises(Exception, match=re.escape(first)):
        am.select(model, missing)
    am.select(model, {**configurable, "blocks.depth": 2}, strict=True)
    assert am.get_subnet_config(model)["blocks.depth"] == 2


def test_sample_and_select_mark_batchnorm_statistics_stale(tiny: nn.Module) -> None:
    from autonas_patch import PatchManager

    model = _convert(tiny)
    data = PatchManager.get_manager(model).patch_data
    assert data["train_count_since_sample"] == 100
    am.sample(model)
    assert data["train_count_since_sample"] == 0


def test_sample_and_reset_restores_the_previous_subnet(tiny: nn.Module) -> None:
    model = _convert(tiny)
    before = am.get_subnet_config(model)
    with am.sample_and_reset(model, min) as sampled:
        assert am.get_subnet_config(model) == sampled != before
    assert am.get_subnet_config(model) == before


@pytest.mark.parametrize("converted", [False, True])
def test_replace_forward_swaps_and_restores(converted: bool, tiny: nn.Module, images: torch.Tensor) -> None:
    model = _convert(tiny) if converted else tiny
    expected = model(images)
    with am.replace_forward(model, lambda x: x.sum()) as replaced:
        assert replaced(images) == images.sum()
        torch.testing.assert_close(replaced.forward_original(images), expected)
    torch.testing.assert_close(model(images), expected)
    assert not hasattr(model, "forward_original")


def _round_trip(model: nn.Module) -> nn.Module:
    state = json.loads(json.dumps(am.autonas_state(model)))
    restored = am.restore_from_autonas_state(make_tiny(seed=5), state)
    restored.load_state_dict(model.state_dict())
    return restored


@pytest.mark.parametrize("stage", ["space", "exported", "sorted"])
def test_state_round_trip_gives_the_same_subnet_and_outputs(stage: str, tiny: nn.Module, images: torch.Tensor) -> None:
    model = _convert(tiny)
    if stage == "sorted":
        am.sort_parameters(model)
    am.sample(model, random.Random(3).choice)
    if stage == "exported":
        am.export(model)
    restored = _round_trip(model)
    assert am.autonas_state(restored) == am.autonas_state(model)
    assert am.is_dynamic(restored) == (stage != "exported")
    assert not (model.training or restored.training)
    with torch.no_grad():
        torch.testing.assert_close(restored(images), model(images))


@pytest.mark.parametrize("stage", ["space", "exported"])
def test_a_state_restored_from_json_equals_the_saved_one_types_included(stage: str, tiny: nn.Module) -> None:
    from autonas_modes.state import StateManager

    conv_rule = {"channels_ratio": [0.5, 1.0], "channel_divisor": 8, "kernel_size": [1, 3]}  # lists, as JSON gives
    model = am.convert(tiny, mode=[("autonas", {**RULES, "nn.Conv2d": {"*": conv_rule}})])
    am.sample(model, random.Random(3).choice)
    if stage == "exported":
        am.export(model)
    state = json.loads(json.dumps(am.autonas_state(model)))
    saved = StateManager(model).state_dict()
    restored = StateManager(am.restore_from_autonas_state(make_tiny(seed=5), state)).state_dict()
    assert restored == saved  # (3, 3) != [3, 3]: tuples must come back as tuples
    for _, entry in restored:
        kernels = {name: value for name, value in entry["metadata"]["subnet_config"].items() if "kernel" in name}
        assert kernels and all(isinstance(value, tuple) for value in kernels.values())
    rules = restored[0][1]["config"]["nn.Conv2d"]["*"]
    assert rules["kernel_size"] == (1, 3) and rules["channels_ratio"] == (0.5, 1.0)


def test_restore_into_another_class_or_forward_is_refused(tiny: nn.Module) -> None:
    state = am.autonas_state(_convert(tiny))
    with pytest.raises(ApplyModeError, match="type\\(model\\): saved 'TinyNet', got 'OtherNet'"):
        am.restore_from_autonas_state(OtherNet().eval(), state)
    patched = make_tiny()
    patched.forward = lambda x: x
    with pytest.raises(ApplyModeError, match=re.escape("model.forward: saved 'forward', got '<lambda>'")):
        am.restore_from_autonas_state(patched, state)


@pytest.mark.parametrize("stage", ["space", "exported"])
@pytest.mark.parametrize("width", [8, 24])
def test_restore_into_a_model_of_other_sizes_names_the_first_layer_that_differs(
    stage: str, width: int, tiny: nn.Module, tmp_path
) -> None:
    model = _convert(tiny)  # TinyNet(width=16)
    am.sample(model, min)
    if stage == "exported":
        am.export(model)
    am.save(model, tmp_path / "arch.pth")
    expected = (
        "Cannot restore the search space into this TinyNet: its layer sizes differ from the saved model's, first at "
        f"layer 'stem.0' (stem.0.weight: shape ({width}, 3, 3, 3) in this model, shape (16, 3, 3, 3) in the saved one)"
    )
    with pytest.raises(ApplyModeError, match=re.escape(expected)):
        am.restore(TinyNet(width=width).eval(), tmp_path / "arch.pth")
    state = json.loads(json.dumps(am.autonas_state(model)))
    with pytest.raises(ApplyModeError, match=re.escape(expected)):
        am.restore_from_autonas_state(TinyNet(width=width).eval(), state)


def test_restore_names_layers_only_one_of_the_models_has(tiny: nn.Module) -> None:
    state = am.autonas_state(_convert(tiny))
    deeper = make_tiny()
    deeper.blocks.append(copy.deepcopy(deeper.blocks[0]))
    expected = "first at layer 'blocks.3.conv1' (blocks.3.conv1.weight: shape (24, 16, 3, 3) in this model, absent in"
    with pytest.raises(ApplyModeError, match=re.escape(expected)):
        am.restore_from_autonas_state(deeper, state)


def test_a_state_without_recorded_shapes_still_restores(tiny: nn.Module) -> None:
    model = _convert(tiny)
    am.sample(model, min)
    state = am.autonas_state(model)
    del state["modes"][0]["metadata"]["tensor_shapes"]  # as written before the shapes were recorded
    restored = am.restore_from_autonas_state(make_tiny(seed=2), state)
    assert am.get_subnet_config(restored) == am.get_subnet_config(model)


def test_restore_from_a_model_like_recipe(tiny: nn.Module) -> None:
    model = _convert(tiny)
    am.sample(model, min)
    restored = am.restore_from_autonas_state((TinyNet, (), {"num_classes": 5}), am.autonas_state(model))
    assert isinstance(restored, TinyNet) and restored.training
    assert am.get_subnet_config(restored) == am.get_subnet_config(model)


def test_a_seeded_conversion_samples_the_same_subnets_in_training(images: torch.Tensor) -> None:
    def training_subnets(seed: int) -> list[dict]:
        model = am.convert(make_tiny(), mode=[("autonas", RULES)], mode_kwargs={"seed": seed})
        model.train()
        configs = []
        for _ in range(4):
            model(images)
            configs.append(am.get_subnet_config(model, configurable=True))
        return configs

    first = training_subnets(0)
    assert first == training_subnets(0)
    assert len({str(config) for config in first}) > 1
    assert first != training_subnets(1)


def test_sandwich_steps_of_a_converted_model_visit_its_max_and_min_subnets(images: torch.Tensor) -> None:
    from autonas_patch import sandwich

    model = am.convert(make_tiny(), mode=[("autonas", RULES)], mode_kwargs={"seed": 0})
    expected = {}
    for bound in (max, min):
        am.sample(model, bound)
        expected[bound.__name__] = am.get_subnet_config(model)
    model.train()
    seen = []
    for subnet in sandwich(model, num_random=1):
        model(images)
        seen.append((subnet.kind, am.get_subnet_config(model)))
    assert seen[:2] == [("max", expected["max"]), ("min", expected["min"])]
    assert expected["max"] != expected["min"]
    with pytest.warns(UserWarning, match=r"queue not filled \(1 of 50 batches\)"):  # one cached batch per step
        model.eval()
    assert am.get_subnet_config(model) == expected["max"], "eval() returns to the maximal subnet"


def test_convert_and_export_unwrap_data_parallel(tiny: nn.Module) -> None:
    with pytest.warns(UserWarning, match=r"convert\(\) unwraps the DataParallel model and works on the inner TinyNet"):
        model = am.convert(nn.DataParallel(tiny), mode=[("autonas", RULES)])
    assert model is tiny and am.is_dynamic(tiny)
    with pytest.warns(UserWarning, match="unwraps the DataParallel"):
        exported = am.export(nn.DataParallel(tiny))
    assert exported is tiny and not am.is_dynamic(tiny)
