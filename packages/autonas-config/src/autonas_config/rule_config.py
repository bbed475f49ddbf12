"""Rule-based configs: one key per layer type, each holding that type's section of rules."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import ConfigDict, Field, PlainSerializer, PlainValidator, ValidationInfo, model_validator

from .base import BaseConfig
from .registry import find_layer_type, get_layer_type, registered_field_names, registered_layer_types
from .sections import Rule, Section, copy_section, validate_section

__all__ = ["BaseRuleConfig", "LayerSection", "layer_field"]


def _validate_field_section(value: Any, info: ValidationInfo) -> Section:
    assert info.field_name is not None  # pydantic always names the field it validates
    return validate_section(get_layer_type(info.field_name), value)


LayerSection = Annotated[
    Section,
    PlainValidator(_validate_field_section, json_schema_input_type=dict[str, Rule | None] | Rule | None),
    PlainSerializer(copy_section),
]
"""The type of a layer-type field: validated into a :data:`~autonas_config.sections.Section`."""


def layer_field(key: str) -> Any:
    """The field of a rule-based config for the registered layer type ``key``, holding its default section."""
    layer_type = get_layer_type(key)
    default = None if layer_type.default is None else {"*": layer_type.default}
    return Field(
        default=default,
        alias=key,
        description=f"Which {key} layers are searched and how: a {layer_type.rule_class.__name__} rule, "
        "None (not searched), or a dict of glob patterns over module names to such rules or None.",
    )


class BaseRuleConfig(BaseConfig):
    """A config whose keys are layer types; each value says which layers of that type are searched.

    Each field declared with :func:`layer_field` and typed :data:`LayerSection` is a registered
    layer type (field name ``nn_conv2d``, alias ``"nn.Conv2d"``), accepted under either spelling;
    a subclass may add sections of another kind (``AutoNASConfig.outputs``). Layer types registered with :func:`~autonas_config.register_layer_type`
    are accepted as extra keys and hold their registered default until set; any other key is
    an error naming it and listing the accepted ones. Values are stored normalised (see
    :mod:`autonas_config.sections`), so ``model_dump()`` is exactly what
    :func:`~autonas_config.resolve_rule` reads.
    """

    model_config = ConfigDict(extra="allow")

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The JSON schema, with each layer-type key described by its own rule class."""
        schema = super().model_json_schema(*args, **kwargs)
        definitions = schema.setdefault("$defs", {})
        for name, field in cls.model_fields.items():
            if name not in registered_field_names():
                continue  # a section that is no layer type (``outputs``) describes itself
            rule_class = get_layer_type(name).rule_class
            definitions[rule_class.__name__] = rule_class.model_json_schema()
            rule_or_null = [{"$ref": f"#/$defs/{rule_class.__name__}"}, {"type": "null"}]
            schema["properties"][field.alias or name]["anyOf"] = [
                *rule_or_null,
                {"type": "object", "additionalProperties": {"anyOf": rule_or_null}},
            ]
        return schema

    def _canonical_key(self, key: str) -> str | None:
        canonical = super()._canonical_key(key)
        if canonical is not None:
            return canonical
        try:
            return get_layer_type(key).key
        except KeyError:
            return None

    def _allowed_keys(self) -> list[str]:
        return self._accepted_keys()

    @classmethod
    def _accepted_keys(cls) -> list[str]:
        fields = cls._field_keys()
        return [*fields, *(key for key in registered_layer_types() if key not in fields)]

    def _set(self, canonical: str, value: Any) -> None:
        if canonical in self._field_keys():
            super()._set(canonical, value)
        else:
            assert self.__pydantic_extra__ is not None  # extra="allow" always creates it
            self.__pydantic_extra__[canonical] = validate_section(get_layer_type(canonical), value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self).model_fields or name.startswith("_"):
            super().__setattr__(name, value)
        else:
            self[name] = value

    @classmethod
    def _check_input_keys(cls, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """Check field keys as any config does; validate extra keys as registered layer types."""
        fields = cls._field_keys()
        names = set(fields.values())
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if key in fields or key in names:
                continue
            layer_type = find_layer_type(key, cls.__name__)
            if layer_type.key in extra:
                raise ValueError(
                    f"{layer_type.key!r} is given twice, as {layer_type.key!r} and {layer_type.field_name!r}"
                )
            extra[layer_type.key] = validate_section(layer_type, value)
        given = super()._check_input_keys({key: value for key, value in data.items() if key in fields or key in names})
        return {**given, **extra}

    @model_validator(mode="after")
    def _add_registered_defaults(self) -> BaseRuleConfig:
        """Give every registered layer type that is no field and was not given its default section."""
        extra = self.__pydantic_extra__
        assert extra is not None  # extra="allow" always creates it
        fields = self._field_keys()
        for key in registered_layer_types():
            if key not in fields and key not in extra:
                default = get_layer_type(key).default
                extra[key] = None if default is None else {"*": dict(default)}
        return self
