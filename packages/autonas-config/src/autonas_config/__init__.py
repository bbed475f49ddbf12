"""autonas_config: what a user may configure in autonas, validated with pydantic (no torch).

* :class:`AutoNASConfig`: which layers AutoNAS searches and with which choices, and which model
  outputs may change width (:mod:`.outputs`);
  :class:`ExportConfig`: how a searched model is exported.
* The per-layer-type rules (``DynamicConv2dConfig``, ...), :func:`resolve_rule` (the effective
  rule of one module) and the registry of searchable layer types.
* :func:`make_divisible`: the one rounding rule that turns width ratios into layer sizes.
"""

from importlib.metadata import version as _version

from . import rules
from .base import BaseConfig
from .mode_configs import DEFAULT_RATIOS, HEADS_KEY, AutoNASConfig, ExportConfig
from .outputs import DEFAULT_OUTPUTS, OUTPUTS_KEY, output_may_change, validate_outputs
from .registry import LayerType, get_layer_type, register_layer_type, registered_layer_types, unregister_layer_type
from .resolve import is_unmatched, resolve_rule
from .rounding import make_divisible
from .rule_config import BaseRuleConfig, LayerSection, layer_field
from .rules import *  # noqa: F403 (the rule classes, listed once in rules.__all__)
from .sections import Rule, Section

__version__ = _version("autonas-config")

__all__ = [
    "DEFAULT_OUTPUTS",
    "DEFAULT_RATIOS",
    "HEADS_KEY",
    "OUTPUTS_KEY",
    "AutoNASConfig",
    "BaseConfig",
    "BaseRuleConfig",
    "ExportConfig",
    "LayerSection",
    "LayerType",
    "Rule",
    "Section",
    "get_layer_type",
    "is_unmatched",
    "layer_field",
    "make_divisible",
    "output_may_change",
    "register_layer_type",
    "registered_layer_types",
    "resolve_rule",
    "unregister_layer_type",
    "validate_outputs",
]
__all__ += rules.__all__
