"""BaseConfig: a pydantic model that also behaves as a mapping over aliases and field names."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
from pydantic import Field, ValidationError

from autonas_config import BaseConfig, ExportConfig


class Schedule(BaseConfig):
    """A small config with one aliased field and one plain field."""

    warmup_steps: int = Field(default=10, alias="warmup-steps", ge=0)
    lr: float = 0.1


def test_items_are_reachable_by_alias_and_by_field_name() -> None:
    cfg = Schedule()
    assert cfg["warmup-steps"] == cfg["warmup_steps"] == 10
    assert cfg["lr"] == 0.1
    assert "warmup-steps" in cfg
    assert "warmup_steps" in cfg
    assert "lr" in cfg
    assert "missing" not in cfg
    assert 3 not in cfg


def test_iteration_and_keys_yield_aliases_or_names_without_alias() -> None:
    cfg = Schedule(lr=0.5)
    assert list(cfg) == ["warmup-steps", "lr"]
    assert list(cfg.keys()) == ["warmup-steps", "lr"]
    assert list(cfg.values()) == [10, 0.5]
    assert list(cfg.items()) == [("warmup-steps", 10), ("lr", 0.5)]
    assert dict(cfg) == {"warmup-steps": 10, "lr": 0.5}
    assert len(cfg) == 2
    assert isinstance(cfg, Mapping)


def test_get_returns_the_default_only_for_unknown_keys() -> None:
    cfg = Schedule(**{"warmup-steps": 0})
    assert cfg.get("warmup_steps", 99) == 0
    assert cfg.get("nope") is None
    assert cfg.get("nope", 7) == 7


def test_unknown_key_raises_key_error_listing_allowed_keys() -> None:
    cfg = Schedule()
    with pytest.raises(KeyError, match=r"'momentum' is not a key of Schedule; allowed keys: \['warmup-steps', 'lr'\]"):
        cfg["momentum"]
    with pytest.raises(KeyError, match="'momentum' is not a key of Schedule"):
        cfg["momentum"] = 0.9


def test_deleting_a_key_is_a_type_error() -> None:
    cfg = Schedule()
    with pytest.raises(TypeError, match="cannot be deleted"):
        del cfg["lr"]
    assert cfg["lr"] == 0.1


def test_setitem_and_update_validate_each_value() -> None:
    cfg = Schedule()
    cfg["warmup-steps"] = 5
    assert cfg.warmup_steps == 5
    cfg.update({"warmup_steps": 7}, lr=0.01)
    assert (cfg.warmup_steps, cfg.lr) == (7, 0.01)
    cfg.update([("lr", 0.2)])
    assert cfg.lr == 0.2
    with pytest.raises(ValidationError, match="greater than or equal to 0"):
        cfg["warmup-steps"] = -1
    assert cfg.warmup_steps == 7
    with pytest.raises(ValidationError, match="valid number"):
        cfg.lr = "fast"


def test_construction_refuses_unknown_keys_naming_them_and_the_allowed_ones() -> None:
    with pytest.raises(ValidationError) as caught:
        Schedule(warmup=3)
    assert "unknown key(s) ['warmup'] for Schedule; allowed keys: ['warmup-steps', 'lr']" in str(caught.value)


def test_a_key_given_by_alias_and_by_name_is_refused() -> None:
    with pytest.raises(ValidationError, match="'warmup-steps' is given twice"):
        Schedule(**{"warmup-steps": 1, "warmup_steps": 2})


def test_dumps_use_aliases_and_round_trip_through_json() -> None:
    cfg = Schedule(warmup_steps=3, lr=0.25)
    assert cfg.model_dump() == {"warmup-steps": 3, "lr": 0.25}
    assert cfg.model_dump(by_alias=False) == {"warmup_steps": 3, "lr": 0.25}
    assert cfg.model_dump_json() == '{"warmup-steps":3,"lr":0.25}'
    assert Schedule.model_validate_json(cfg.model_dump_json()) == cfg
    assert Schedule.model_validate(cfg.model_dump()) == cfg


def test_every_field_needs_a_default() -> None:
    with pytest.raises(TypeError, match=r"Incomplete: every config field needs a default; missing for \['size'\]"):

        class Incomplete(BaseConfig):
            size: int


def test_export_config_defaults_and_validation() -> None:
    cfg = ExportConfig()
    assert cfg.model_dump() == {"strict": True, "calib": False}
    assert ExportConfig(calib=True)["calib"] is True
    with pytest.raises(ValidationError, match="valid boolean"):
        ExportConfig(strict="yes")
    with pytest.raises(ValidationError, match=r"unknown key\(s\) \['calibrate'\] for ExportConfig"):
        ExportConfig(calibrate=True)
    assert ExportConfig.model_validate_json('{"strict": false}') == ExportConfig(strict=False)


def test_json_schema_of_a_plain_config() -> None:
    schema = ExportConfig.model_json_schema()
    assert schema["additionalProperties"] is False
    assert schema["properties"]["strict"]["default"] is True
    assert schema["properties"]["calib"]["type"] == "boolean"
