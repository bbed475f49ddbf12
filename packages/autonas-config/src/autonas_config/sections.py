"""One layer type's section of a rule-based config: which modules are searched, and how.

A user may write a section three ways; all are stored in one normalised form, a dict from glob
pattern to rule (or ``None``), where each rule keeps only the keys the user gave:

* ``None``: no layer of this type is searched -> ``None``;
* a rule (a dict of ``modify()`` arguments or a rule instance), short for ``{"*": rule}``;
* a dict of glob patterns over qualified module names, each mapped to a rule or ``None``.

A dict is read as a rule when any of its keys is a rule key (``{}`` is a rule that sets nothing),
otherwise as a dict of patterns.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from .registry import LayerType, validate_rule
from .rules import BaseRule

__all__ = ["Rule", "Section", "copy_section", "validate_section"]

Rule = dict[str, Any]
"""A rule as stored: the ``modify()`` keyword arguments it sets."""

Section = dict[str, Rule | None] | None
"""A section as stored: glob pattern -> rule or ``None``, in the order given; ``None`` when unsearched."""


def validate_section(layer_type: LayerType, value: Any) -> Section:
    """Validate a section for ``layer_type`` and bring it into the stored form.

    Raises:
        ValueError: The section is malformed; the message names the layer type, the pattern and
            the key at fault and what is allowed.
    """
    if value is None:
        return None
    if isinstance(value, BaseRule):
        return {"*": _validate_pattern_rule(layer_type, "*", value)}
    if not isinstance(value, Mapping):
        raise ValueError(f"{layer_type.key}: expected {_expected(layer_type)}; got {value!r}")
    rule_keys = [key for key in value if key in layer_type.rule_class.model_fields]
    if rule_keys or not value:
        patterns = [key for key in value if key not in rule_keys]
        if patterns:
            raise ValueError(
                f"{layer_type.key}: {dict(value)!r} mixes rule keys {rule_keys} with glob patterns {patterns}; "
                "give either one rule or a dict of glob patterns to rules"
            )
        return {"*": _validate_pattern_rule(layer_type, "*", value)}
    return {pattern: _validate_pattern_rule(layer_type, pattern, rule) for pattern, rule in value.items()}


def _validate_pattern_rule(layer_type: LayerType, pattern: Any, rule: Any) -> Rule | None:
    where = f"{layer_type.key} pattern {pattern!r}"
    if not isinstance(pattern, str):
        raise ValueError(f"{where}: glob patterns must be strings")
    if rule is not None and not isinstance(rule, BaseRule | Mapping):
        raise ValueError(f"{where}: expected a rule or None; got {rule!r}. A section is {_expected(layer_type)}")
    try:
        return validate_rule(layer_type.rule_class, rule)
    except ValidationError as error:
        problems = "; ".join(_describe(problem) for problem in error.errors())
        raise ValueError(f"{where}: {problems}") from None


def _describe(problem: Any) -> str:
    message = str(problem["msg"]).removeprefix("Value error, ")
    location = ".".join(str(part) for part in problem["loc"])
    return f"{location}: {message}" if location else message


def _expected(layer_type: LayerType) -> str:
    keys = list(layer_type.rule_class.model_fields)
    return (
        f"a {layer_type.rule_class.__name__} rule (a dict with keys {keys}), None, "
        "or a dict of glob patterns to such rules or None"
    )


def copy_section(section: Section) -> Section:
    """A copy of a stored section that shares no mutable container with it."""
    if section is None:
        return None
    return {pattern: None if rule is None else dict(rule) for pattern, rule in section.items()}
