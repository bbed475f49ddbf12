"""The effective rule of one module: its layer type's section matched against its qualified name."""

from __future__ import annotations

from collections.abc import Mapping
from fnmatch import fnmatchcase
from typing import Any

from .outputs import OUTPUTS_KEY
from .registry import LayerType, find_layer_type, get_layer_type
from .sections import Rule, Section, validate_section

__all__ = ["is_unmatched", "resolve_rule"]


def resolve_rule(rules: Mapping[str, Any], key: str, module_name: str) -> Rule | None:
    """The ``modify()`` keyword arguments for one module, or ``None`` when it is frozen.

    ``rules`` is an :class:`~autonas_config.AutoNASConfig`, its ``model_dump()``, or any mapping
    from layer key (or field name) to section. The section of ``key`` is read as follows:

    1. A missing or ``None`` section freezes every layer of the type.
    2. Glob patterns are matched with ``fnmatch`` (case-sensitive; ``*`` also matches dots)
       against ``module_name``, in the order they were given.
    3. A matching pattern whose value is ``None`` freezes the module (for now: a later match may
       give it a rule again).
    4. A matching pattern with a rule merges the keys it names over the rule built so far; when
       nothing was built yet (first match, or after a ``None``), it merges over the layer type's
       AutoNAS default rule, itself completed with the rule class defaults.
    5. No matching pattern freezes the module.

    The result names every ``modify()`` argument of the layer type.

    Args:
        rules: The rule-based config or its dump.
        key: The layer type, e.g. ``"nn.Conv2d"`` (or its field name ``"nn_conv2d"``).
        module_name: The module's qualified name in the model, e.g. ``"layer1.0.conv1"``.

    Raises:
        KeyError: ``key`` is not a registered layer type.
        ValueError: A key of ``rules`` other than ``"outputs"`` names no registered layer type (the
            message names it and lists the accepted keys), or the section of ``key`` is malformed.

    Examples:
        >>> rules = {"nn.Conv2d": {"*": {"channels_ratio": (0.5, 1.0)}, "layer1.*": {"channel_divisor": 16}}}
        >>> resolve_rule(rules, "nn.Conv2d", "layer1.0.conv1")
        {'channels_ratio': (0.5, 1.0), 'channel_divisor': 16, 'kernel_size': ()}
        >>> resolve_rule(rules, "nn.Conv2d", "conv1")
        {'channels_ratio': (0.5, 1.0), 'channel_divisor': 32, 'kernel_size': ()}
    """
    layer_type = get_layer_type(key)
    for name in rules:
        if name != OUTPUTS_KEY:  # the one section that holds no layer rules
            find_layer_type(name, "rules")
    return match_section(layer_type, validate_section(layer_type, _find_section(rules, layer_type)), module_name)


def is_unmatched(rules: Mapping[str, Any], key: str, module_name: str) -> bool:
    """Whether ``module_name`` is frozen only because no glob pattern of its section matches it.

    True when the section of ``key`` is a dict of patterns none of which matches (rule 5 of
    :func:`resolve_rule`); False when a pattern matches or the section is missing or ``None``
    (the whole layer type is frozen on purpose).

    Examples:
        >>> rules = {"nn.Conv1d": {"stage*.conv*": {"kernel_size": (3, 5)}}}
        >>> is_unmatched(rules, "nn.Conv1d", "stem"), is_unmatched(rules, "nn.Conv1d", "stage1.conv1")
        (True, False)
    """
    layer_type = get_layer_type(key)
    section = validate_section(layer_type, _find_section(rules, layer_type))
    return section is not None and not any(fnmatchcase(module_name, pattern) for pattern in section)


def _find_section(rules: Mapping[str, Any], layer_type: LayerType) -> Any:
    for spelling in (layer_type.key, layer_type.field_name):
        if spelling in rules:
            return rules[spelling]
    return None


def match_section(layer_type: LayerType, section: Section, module_name: str) -> Rule | None:
    """Resolve a validated section (see :func:`resolve_rule`) for the module named ``module_name``."""
    rule: Rule | None = None
    for pattern, pattern_rule in (section or {}).items():
        if not fnmatchcase(module_name, pattern):
            continue
        base = layer_type.base_rule() if rule is None else rule
        rule = None if pattern_rule is None else {**base, **pattern_rule}
    return rule
