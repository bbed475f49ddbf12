"""The mode machinery on small modes defined here: chaining rules, export stack, state, model-likes."""

from __future__ import annotations

import json
from typing import Any

import pytest
import torch
import torch.nn as nn
from pydantic import BaseModel

from autonas_modes.apply import apply_mode
from autonas_modes.mode import ApplyModeError, ModeDescriptor, ModeRegistry, get_mode_descriptor
from autonas_modes.state import StateManager, autonas_state, get_mode, restore_from_autonas_state, validate_state

TEST_REGISTRY = ModeRegistry("modes-under-test")


class ScaleConfig(BaseModel):
    scale: float = 1.0


class EmptyConfig(BaseModel):
    pass


class _Base(ModeDescriptor):
    mode_name = ""

    @property
    def name(self) -> str:
        return self.mode_name

    @property
    def config_class(self) -> type[BaseModel]:
        return EmptyConfig

    def convert(self, model: nn.Module, config: BaseModel, **kw: Any) -> tuple[nn.Module, dict]:
        model.applied = [*getattr(model, "applied", []), self.name]
        return model, {"order": len(model.applied)}

    def restore(self, model: nn.Module, config: BaseModel, metadata: dict) -> nn.Module:
        return self.convert(model, config)[0]


@TEST_REGISTRY.register_mode
class ScaleMode(_Base):
    """Multiplies the output by ``scale``; must be closed by ``scale_export``."""

    mode_name = "scale"

    @property
    def config_class(self) -> type[BaseModel]:
        return ScaleConfig

    @property
    def export_mode(self) -> str | None:
        return "scale_export"

    def convert(self, model: nn.Module, config: BaseModel, **kw: Any) -> tuple[nn.Module, dict]:
        model.register_buffer("scale", torch.tensor(config.scale))
        return super().convert(model, config)


@TEST_REGISTRY.register_mode
class ScaleExportMode(_Base):
    mode_name = "scale_export"

    @property
    def is_export_mode(self) -> bool:
        return True


@TEST_REGISTRY.register_mode
class FinalMode(_Base):
    mode_name = "final"

    @property
    def next_modes(self) -> set[str] | None:
        return set()


@TEST_REGISTRY.register_mode
class NoScaleAfterMode(_Base):
    mode_name = "no_scale_after"

    @property
    def next_prohibited_modes(self) -> set[str] | None:
        return {"scale"}


class Net(nn.Module):
    def __init__(self, width: int = 4, bias: bool = True) -> None:
        super().__init__()
        self.body = nn.Linear(width, width, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) * getattr(self, "scale", 1.0)


def test_apply_records_modes_configs_and_metadata_as_plain_json() -> None:
    model = Net()
    out = apply_mode(model, [("scale", {"scale": 2.0}), "final"])
    assert out is model
    assert model.applied == ["scale", "final"]
    assert get_mode(model).name == "final"
    state = autonas_state(model)
    assert json.loads(json.dumps(state)) == state
    assert [entry["mode"] for entry in state["modes"]] == ["scale", "final"]
    assert state["modes"][0]["config"] == {"scale": 2.0}
    assert state["modes"][1]["metadata"] == {"order": 2}
    assert state["format_version"] == 1


def test_unconverted_model_has_empty_state_and_no_mode() -> None:
    assert autonas_state(Net())["modes"] == []
    assert get_mode(Net()) is None


def test_export_mode_without_its_mode_is_refused() -> None:
    with pytest.raises(ApplyModeError, match="Cannot add scale_export according to the current export stack"):
        apply_mode(Net(), "scale_export")


def test_mode_after_a_mode_with_no_next_modes_is_refused() -> None:
    model = apply_mode(Net(), "final")
    with pytest.raises(ApplyModeError, match=r"Cannot add scale after final! Next modes of final are \[\]"):
        apply_mode(model, "scale")


def test_prohibited_next_mode_is_refused_with_both_names() -> None:
    model = apply_mode(Net(), "no_scale_after")
    with pytest.raises(ApplyModeError, match="no_scale_after does not allow scale to be its next mode"):
        apply_mode(model, "scale")


def test_export_closes_its_mode_and_a_second_export_is_refused() -> None:
    model = apply_mode(Net(), ["scale", "scale_export"])
    assert StateManager(model).export_stack() == type(StateManager(model).export_stack())()
    with pytest.raises(ApplyModeError, match="current export stack"):
        apply_mode(model, "scale_export")


def test_restore_replays_modes_on_a_fresh_model_with_equal_outputs() -> None:
    model = apply_mode(Net(), [("scale", {"scale": 3.0}), "scale_export"])
    state = json.loads(json.dumps(autonas_state(model)))
    fresh = Net()
    fresh.load_state_dict(model.state_dict(), strict=False)
    restored = restore_from_autonas_state(fresh, state)
    restored.load_state_dict(model.state_dict())
    x = torch.randn(2, 4)
    torch.testing.assert_close(restored(x), model(x))
    assert restored.applied == ["scale", "scale_export"]
    assert autonas_state(restored) == autonas_state(model)


def test_restore_into_a_converted_model_is_refused() -> None:
    model = apply_mode(Net(), "scale")
    with pytest.raises(ApplyModeError, match="already holds an autonas state"):
        restore_from_autonas_state(model, autonas_state(model))


def test_state_on_a_submodule_is_found_and_refused_from_the_parent() -> None:
    parent = nn.Sequential(Net(), nn.ReLU())
    apply_mode(parent[0], "scale")
    with pytest.raises(ApplyModeError, match=r"Model has autonas state but not the root!.*'0'"):
        autonas_state(parent)
    with pytest.raises(ApplyModeError, match="not the root"):
        apply_mode(parent, "final")


@pytest.mark.parametrize(
    "recipe",
    [Net, (Net,), (Net, (6,)), (Net, (6,), {"bias": False})],
    ids=["class", "tuple1", "tuple2", "tuple3"],
)
def test_model_like_recipes_are_instantiated(recipe: Any) -> None:
    model = apply_mode(recipe, "scale")
    assert isinstance(model, Net)
    expected_width = recipe[1][0] if isinstance(recipe, tuple) and len(recipe) > 1 else 4
    assert model.body.in_features == expected_width
    assert (model.body.bias is None) == (isinstance(recipe, tuple) and len(recipe) == 3)
    restored = restore_from_autonas_state(recipe, autonas_state(model))
    assert isinstance(restored, Net) and restored.applied == ["scale"]


def test_empty_mode_list_only_instantiates() -> None:
    model = apply_mode((Net, (5,)), [])
    assert isinstance(model, Net) and get_mode(model) is None


def test_bad_recipe_and_bad_mode_entries_are_clear_errors() -> None:
    with pytest.raises(TypeError, match="model recipe tuple"):
        apply_mode((Net, (), {}, "extra"), "scale")
    with pytest.raises(KeyError, match=r"Unknown mode 'nope'.*registered modes"):
        apply_mode(Net(), "nope")
    with pytest.raises(TypeError, match="config of mode scale must be a dict"):
        apply_mode(Net(), [("scale", 3)])


def test_config_is_validated_by_the_mode_config_class() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="scale"):
        apply_mode(Net(), [("scale", {"scale": "large"})])


def test_registry_refuses_double_registration_and_names_unknown_modes() -> None:
    with pytest.raises(ValueError, match="'scale' is already registered in registry 'modes-under-test'"):
        TEST_REGISTRY.register_mode(ScaleMode)
    with pytest.raises(KeyError, match="'missing' is not registered"):
        TEST_REGISTRY["missing"]
    assert "scale" in TEST_REGISTRY and get_mode_descriptor("scale") is TEST_REGISTRY["scale"]
    with pytest.raises(ValueError, match="already exists"):
        ModeRegistry("modes-under-test")


def test_has_state_for_mode_type() -> None:
    from autonas_modes.mode import NAS_REGISTRY

    manager = StateManager(apply_mode(Net(), "scale"))
    assert manager.has_state_for_mode_type(TEST_REGISTRY)
    assert not manager.has_state_for_mode_type(NAS_REGISTRY)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ([1, 2], "must be a dict"),
        ({"autonas_state": {}, "model_state_dict": {}}, "full checkpoint"),
        ({"modes": []}, "missing keys"),
        ({"format_version": 99, "autonas_version": "0.1.0", "modes": []}, "format_version 99"),
        ({"format_version": 1, "autonas_version": "0.1.0", "modes": [{"mode": "x"}]}, "'modes' must be a list"),
    ],
)
def test_malformed_states_are_rejected_with_the_reason(state: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_state(state)


def test_state_from_another_major_minor_version_warns() -> None:
    model = apply_mode(Net(), "scale")
    state = {**autonas_state(model), "autonas_version": "9.9.0"}
    with pytest.warns(UserWarning, match="written by autonas 9.9.0"):
        restore_from_autonas_state(Net(), state)


def test_autonas_is_followed_by_the_modes_that_exist_and_a_registered_mode_extends_them() -> None:
    from autonas_modes.nas import AutoNASModeDescriptor

    class AfterAutoNAS(_Base):
        mode_name = "after_autonas"

        @property
        def may_follow(self) -> frozenset[str]:
            return frozenset({"autonas"})

    autonas = get_mode_descriptor("autonas")
    assert isinstance(autonas, AutoNASModeDescriptor) and autonas.next_modes == {"export_nas"}
    with pytest.raises(
        ApplyModeError, match=r"Cannot add autonas after autonas! Next modes of autonas are \['export_nas'\]"
    ):
        get_mode_descriptor("autonas").check_can_follow(autonas)
    TEST_REGISTRY.register_mode(AfterAutoNAS)
    try:
        assert autonas.next_modes == {"export_nas", "after_autonas"}
        get_mode_descriptor("after_autonas").check_can_follow(autonas)
    finally:
        TEST_REGISTRY.remove_mode("after_autonas")
    assert autonas.next_modes == {"export_nas"}
