"""The layer types autonas can search: each key's rule class and AutoNAS default rule.

A layer type is named by a dotted key (``"nn.Conv2d"``, ``"mylib.MyConv"``); its field name in a
rule-based config is the key lower-cased with dots turned into underscores (``"nn_conv2d"``).
The seventeen ``torch.nn`` types are built in; :func:`register_layer_type` adds a custom one, which
:class:`~autonas_config.AutoNASConfig` then accepts as an extra key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .outputs import OUTPUTS_KEY
from .rules import BaseRule

__all__ = ["LayerType", "get_layer_type", "register_layer_type", "registered_layer_types", "unregister_layer_type"]

_KEY_PATTERN = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def field_name_of(key: str) -> str:
    """The config field name of a layer key: ``"nn.Conv2d"`` -> ``"nn_conv2d"``."""
    return key.lower().replace(".", "_")


@dataclass(frozen=True)
class LayerType:
    """One searchable layer type.

    Attributes:
        key: The dotted key, e.g. ``"nn.Conv2d"``; the alias of its config field.
        rule_class: Validates this type's rules; its fields are the layer's ``modify()`` arguments.
        default: The AutoNAS default rule (only the keys it sets), or ``None`` when layers of this
            type are not searched unless a config names them.
        builtin: ``True`` for the ``torch.nn`` types that are fields of ``AutoNASConfig``.
    """

    key: str
    rule_class: type[BaseRule]
    default: dict[str, Any] | None
    builtin: bool = False

    @property
    def field_name(self) -> str:
        """The config field name, e.g. ``"nn_conv2d"``."""
        return field_name_of(self.key)

    def base_rule(self) -> dict[str, Any]:
        """The complete rule a partial user rule merges over: the rule class defaults, then the AutoNAS default."""
        return {**self.rule_class().model_dump(), **(self.default or {})}


_REGISTRY: dict[str, LayerType] = {}
_RESERVED_KEYS = frozenset({OUTPUTS_KEY})  # config sections that are no layer type (nor rules)


def registered_layer_types() -> tuple[str, ...]:
    """The keys of every registered layer type, built-in ones first, in registration order."""
    return tuple(_REGISTRY)


def registered_field_names() -> frozenset[str]:
    """The config field names of every registered layer type (``"nn_conv2d"``, ...)."""
    return frozenset(layer_type.field_name for layer_type in _REGISTRY.values())


def get_layer_type(key: str) -> LayerType:
    """The registered layer type named by ``key`` (``"nn.Conv2d"``) or by its field name (``"nn_conv2d"``).

    Raises:
        KeyError: ``key`` is not registered; the message lists the registered keys.
    """
    if key in _REGISTRY:
        return _REGISTRY[key]
    for layer_type in _REGISTRY.values():
        if layer_type.field_name == key:
            return layer_type
    raise KeyError(f"layer type {key!r} is not registered; registered layer types: {list(_REGISTRY)}")


def find_layer_type(key: Any, owner: str) -> LayerType:
    """The layer type that a key of a rules mapping names: a registered key or its field name.

    Args:
        key: The key as the user wrote it, e.g. ``"nn.Conv2d"`` or ``"nn_conv2d"``.
        owner: What holds the key, for the message (e.g. ``"AutoNASConfig"``).

    Raises:
        ValueError: ``key`` names no registered layer type; the message lists the accepted keys
            (the registered layer types and the ``outputs`` section).
    """
    try:
        return get_layer_type(key)
    except KeyError:
        raise ValueError(
            f"unknown layer type {key!r} for {owner}; accepted keys: {[*_REGISTRY, *sorted(_RESERVED_KEYS)]} "
            "(register custom layer types with autonas_config.register_layer_type)"
        ) from None


def register_layer_type(
    key: str, rule_class: type[BaseRule], default: BaseRule | Mapping[str, Any] | None = None
) -> LayerType:
    """Make a custom layer type searchable, so rule-based configs accept ``key``.

    Args:
        key: A dotted name such as ``"mylib.MyConv"``, unique also after lower-casing.
        rule_class: The :class:`~autonas_config.BaseRule` subclass that validates rules for this
            type (a built-in one such as ``DynamicConv2dConfig`` when the layer takes the same
            ``modify()`` arguments).
        default: The rule AutoNAS applies to every layer of this type unless a config says
            otherwise; ``None`` (the default) leaves such layers unsearched.

    Returns:
        The registered :class:`LayerType`.

    Raises:
        ValueError: ``key`` is malformed or already registered (also under another spelling).
        TypeError: ``rule_class`` is not a ``BaseRule`` subclass.
        pydantic.ValidationError: ``default`` is not a valid rule of ``rule_class``.
    """
    return _register(key, rule_class, default, builtin=False)


def register_builtin_layer_type(key: str, rule_class: type[BaseRule], default: Mapping[str, Any]) -> LayerType:
    """Register one of the ``torch.nn`` layer types that are fields of ``AutoNASConfig``."""
    return _register(key, rule_class, default, builtin=True)


def _register(
    key: str, rule_class: type[BaseRule], default: BaseRule | Mapping[str, Any] | None, *, builtin: bool
) -> LayerType:
    if not isinstance(key, str) or not _KEY_PATTERN.fullmatch(key):
        raise ValueError(f"layer type key {key!r} must be a dotted name such as 'mylib.MyConv'")
    if not (isinstance(rule_class, type) and issubclass(rule_class, BaseRule)):
        raise TypeError(f"rule class for {key!r} must be a BaseRule subclass; got {rule_class!r}")
    if field_name_of(key) in _RESERVED_KEYS:
        raise ValueError(f"layer type key {key!r} is reserved: {sorted(_RESERVED_KEYS)} are sections of their own")
    taken = {layer_type.field_name: layer_type.key for layer_type in _REGISTRY.values()}
    if field_name_of(key) in taken:
        raise ValueError(
            f"layer type {key!r} is already registered (as {taken[field_name_of(key)]!r}); "
            f"registered layer types: {list(_REGISTRY)}"
        )
    layer_type = LayerType(key, rule_class, validate_rule(rule_class, default), builtin)
    _REGISTRY[key] = layer_type
    return layer_type


def unregister_layer_type(key: str) -> None:
    """Remove a layer type added with :func:`register_layer_type`.

    Raises:
        KeyError: ``key`` is not registered.
        ValueError: ``key`` is a built-in type (a field of ``AutoNASConfig``).
    """
    layer_type = get_layer_type(key)
    if layer_type.builtin:
        raise ValueError(f"{layer_type.key!r} is a built-in layer type and cannot be unregistered")
    del _REGISTRY[layer_type.key]


def validate_rule(rule_class: type[BaseRule], rule: BaseRule | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Validate one rule and keep only the keys it sets, so it can merge over defaults.

    A rule instance contributes the fields that were set explicitly when it was built.
    """
    if rule is None:
        return None
    if isinstance(rule, BaseRule):
        rule = rule.model_dump(exclude_unset=True)
    if not isinstance(rule, Mapping):
        raise ValueError(
            f"a {rule_class.__name__} rule must be a dict with keys {list(rule_class.model_fields)} or None; "
            f"got {rule!r}"
        )
    return rule_class.model_validate(rule).model_dump(exclude_unset=True)
