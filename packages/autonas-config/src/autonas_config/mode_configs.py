"""The configs of the autonas modes: ``AutoNASConfig`` (what to search) and ``ExportConfig``."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, PlainSerializer, PlainValidator, StrictBool

from . import rules
from .base import BaseConfig
from .outputs import DEFAULT_OUTPUTS, OutputsSection, validate_outputs
from .registry import register_builtin_layer_type
from .rule_config import BaseRuleConfig, LayerSection, layer_field

__all__ = ["DEFAULT_RATIOS", "HEADS_KEY", "AutoNASConfig", "ExportConfig"]

DEFAULT_RATIOS = (0.5, 0.67, 1.0)
"""The width ratios AutoNAS searches by default, for every channel and feature dimension."""

_CONV = {"channels_ratio": DEFAULT_RATIOS, "channel_divisor": 32, "kernel_size": ()}
_FEATURES = {"features_ratio": DEFAULT_RATIOS, "feature_divisor": 32}
_GROUP_NORM = {"channels_ratio": DEFAULT_RATIOS, "channel_divisor": 32}

HEADS_KEY = "heads"
"""The section of attention head counts; its glob patterns match attention modules, not layers."""

_BUILTIN_LAYER_TYPES: list[tuple[str, type[rules.BaseRule], dict[str, Any]]] = [
    ("nn.Conv1d", rules.DynamicConv1dConfig, _CONV),
    ("nn.Conv2d", rules.DynamicConv2dConfig, _CONV),
    ("nn.Conv3d", rules.DynamicConv3dConfig, _CONV),
    ("nn.ConvTranspose1d", rules.DynamicConvTranspose1dConfig, _CONV),
    ("nn.ConvTranspose2d", rules.DynamicConvTranspose2dConfig, _CONV),
    ("nn.ConvTranspose3d", rules.DynamicConvTranspose3dConfig, _CONV),
    ("nn.Linear", rules.DynamicLinearConfig, _FEATURES),
    ("nn.BatchNorm1d", rules.DynamicBatchNorm1dConfig, _FEATURES),
    ("nn.BatchNorm2d", rules.DynamicBatchNorm2dConfig, _FEATURES),
    ("nn.BatchNorm3d", rules.DynamicBatchNorm3dConfig, _FEATURES),
    ("nn.SyncBatchNorm", rules.DynamicSyncBatchNormConfig, _FEATURES),
    ("nn.InstanceNorm1d", rules.DynamicInstanceNorm1dConfig, _FEATURES),
    ("nn.InstanceNorm2d", rules.DynamicInstanceNorm2dConfig, _FEATURES),
    ("nn.InstanceNorm3d", rules.DynamicInstanceNorm3dConfig, _FEATURES),
    ("nn.LayerNorm", rules.DynamicLayerNormConfig, _FEATURES),
    ("nn.GroupNorm", rules.DynamicGroupNormConfig, _GROUP_NORM),
    ("nn.Sequential", rules.DynamicSequentialConfig, {"min_depth": 0}),
    (HEADS_KEY, rules.HeadsRule, {"heads_ratio": DEFAULT_RATIOS, "heads_divisor": 1}),
]
for _key, _rule_class, _default in _BUILTIN_LAYER_TYPES:
    register_builtin_layer_type(_key, _rule_class, _default)


class AutoNASConfig(BaseRuleConfig):
    """What AutoNAS searches: for each layer type, which layers and which choices.

    Two sections are not layer types. The ``heads`` section's patterns match attention modules
    (those whose query/key/value projections are split into heads) and its rules set their head
    counts, which decide the widths of those projections. The ``outputs`` section's patterns match
    the paths of the model's outputs (``"last_hidden_state"``, ``"0"``) and say whether each may
    change width (see :mod:`autonas_config.outputs`); by default only the hidden states a Hugging
    Face model returns may.

    Every key holds a section: a rule (``{"channels_ratio": (0.5, 1.0)}``), ``None`` (layers of
    that type are not searched), or a dict of glob patterns over qualified module names to rules
    or ``None``. Keys are accepted as aliases (``"nn.Conv2d"``) and as field names
    (``nn_conv2d``); layer types added with :func:`~autonas_config.register_layer_type` are
    accepted too. A rule only overrides the keys it names; see
    :func:`~autonas_config.resolve_rule` for how a module's rule is found.

    Examples:
        >>> cfg = AutoNASConfig(**{"nn.Conv2d": {"channels_ratio": (0.5, 1.0)}, "nn.Sequential": None})
        >>> cfg["nn.Conv2d"]
        {'*': {'channels_ratio': (0.5, 1.0)}}
    """

    nn_conv1d: LayerSection = layer_field("nn.Conv1d")
    nn_conv2d: LayerSection = layer_field("nn.Conv2d")
    nn_conv3d: LayerSection = layer_field("nn.Conv3d")
    nn_convtranspose1d: LayerSection = layer_field("nn.ConvTranspose1d")
    nn_convtranspose2d: LayerSection = layer_field("nn.ConvTranspose2d")
    nn_convtranspose3d: LayerSection = layer_field("nn.ConvTranspose3d")
    nn_linear: LayerSection = layer_field("nn.Linear")
    nn_batchnorm1d: LayerSection = layer_field("nn.BatchNorm1d")
    nn_batchnorm2d: LayerSection = layer_field("nn.BatchNorm2d")
    nn_batchnorm3d: LayerSection = layer_field("nn.BatchNorm3d")
    nn_syncbatchnorm: LayerSection = layer_field("nn.SyncBatchNorm")
    nn_instancenorm1d: LayerSection = layer_field("nn.InstanceNorm1d")
    nn_instancenorm2d: LayerSection = layer_field("nn.InstanceNorm2d")
    nn_instancenorm3d: LayerSection = layer_field("nn.InstanceNorm3d")
    nn_layernorm: LayerSection = layer_field("nn.LayerNorm")
    nn_groupnorm: LayerSection = layer_field("nn.GroupNorm")
    nn_sequential: LayerSection = layer_field("nn.Sequential")
    heads: LayerSection = layer_field(HEADS_KEY)
    outputs: Annotated[
        OutputsSection,
        PlainValidator(validate_outputs, json_schema_input_type=dict[str, bool] | None),
        PlainSerializer(dict),
    ] = Field(
        default=DEFAULT_OUTPUTS,  # copied for each instance
        description="Which model outputs may change width: glob patterns over output paths (keys and positions "
        "in the return value joined by '.') to True or False; the last matching pattern decides, unmatched "
        "outputs keep their sizes.",
    )


class ExportConfig(BaseConfig):
    """How a searched model is exported to plain PyTorch modules."""

    strict: StrictBool = Field(
        default=True, description="Restoring an export requires the recorded subnet config to match exactly."
    )
    calib: StrictBool = Field(default=False, description="Recalibrate BatchNorm statistics before exporting.")
