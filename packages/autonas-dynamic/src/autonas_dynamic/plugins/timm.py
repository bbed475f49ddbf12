"""timm (PyTorch Image Models) layers as searchable layers.

Most of timm's layers need nothing from here: ``BatchNormAct2d``, ``GroupNormAct``,
``LayerNorm``, ``LayerNorm2d``, ``LayerNormAct2d``, ``RmsNorm``-free norms, ``StdConv2d`` and
timm's ``Linear`` subclass a torch layer and override ``forward`` in terms of their attributes,
so they convert as their base and are verified on probe inputs (see
:mod:`autonas_dynamic.registry`). This integration declares the ones that need more:

========================================  ===================================================
class                                     declaration
========================================  ===================================================
``Conv2dSame``, ``StdConv2dSame``         padding computed from the active kernel at run time
                                          (:class:`~autonas_dynamic.layers.conv.RuntimePaddingConv`:
                                          the kernel size can be searched too)
``ScaledStdConv2d``, ``ScaledStdConv2dSame``  the per-output-channel ``gain`` parameter (NFNets)
``GroupNorm1``                            one group whatever the width (PoolFormer / MetaFormer)
``BlurPool2d``                            one fixed blur filter per channel (anti-aliased
                                          downsampling), rule key ``"timm.BlurPool2d"``
``LayerScale``, ``LayerScale2d``,         one learned scale per channel, rule key
MetaFormer ``Scale``, FastViT             ``"timm.LayerScale"``
``LayerScale2d``
``MixedConv2d``                           convolutions over channel splits (MixNet), rule key
                                          ``"timm.MixedConv2d"``: see :mod:`.timm_mixed_conv`
``CondConv2d``                            per-sample mixtures of expert kernels (EfficientNet-
                                          CondConv), rule key ``"timm.CondConv2d"``: see
                                          :mod:`.timm_cond_conv`
========================================  ===================================================

:func:`install` registers the rule keys at once when timm is installed (so configs built before
the model carry them), the layers when ``timm.layers`` is first imported, and an example input
for tracing timm models (:func:`example_input`) when ``timm.models`` is; it never imports timm
itself.
"""

from __future__ import annotations

import importlib.util
import types
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from autonas_config import ChannelRule, get_layer_type, register_layer_type, registered_layer_types

from ..generic import LayoutModule
from ..hparam import Hparam
from ..layers.conv import CONV_LAYOUT, RuntimePaddingConv
from ..layers.norm import GROUP_NORM_LAYOUT, _DynamicGroupNorm
from ..layout import LayerLayout
from ..registry import DYNAMIC_REGISTRY, register_layer
from ..trace import register_example_input_maker
from .imports import when_imported
from .timm_cond_conv import COND_CONV_LAYOUT, DynamicCondConv2d
from .timm_mixed_conv import MIXED_CONV_LAYOUT, DynamicMixedConv2d

__all__ = ["BLUR_POOL_KEY", "COND_CONV_KEY", "LAYER_SCALE_KEY", "MIXED_CONV_KEY", "example_input", "install"]

#: Rule keys of the timm layer types that are not subclasses of torch layers.
BLUR_POOL_KEY = "timm.BlurPool2d"
LAYER_SCALE_KEY = "timm.LayerScale"
MIXED_CONV_KEY = "timm.MixedConv2d"
COND_CONV_KEY = "timm.CondConv2d"
_SCALE = LayerLayout(incoming="num_features", tensors={"gamma": {0: "num_features"}}, axis="last")


def install() -> None:
    """Activate the integration if timm is installed; imports nothing from it."""
    if importlib.util.find_spec("timm") is None:
        return
    channel_default = get_layer_type("nn.GroupNorm").default  # channel ratios and divisor, as for convs
    for key in (BLUR_POOL_KEY, LAYER_SCALE_KEY, MIXED_CONV_KEY, COND_CONV_KEY):
        if key not in registered_layer_types():
            register_layer_type(key, ChannelRule, channel_default)
    for module_name, declare in _DECLARATIONS.items():
        when_imported(module_name, declare)


class DynamicGroupNorm1(_DynamicGroupNorm):
    """``GroupNorm1``: a GroupNorm of one group, whose group grows and shrinks with the width."""

    def _setup(self) -> None:
        self._move_aside("num_groups")
        size = self.__dict__["num_channels"]
        self._register_hparam("num_channels", Hparam(range(1, size + 1), original=size))

    @property
    def num_groups(self) -> int:
        """Always one group."""
        return 1


class DynamicMetaFormerScale(LayoutModule.for_layout(replace(_SCALE, tensors={"scale": {0: "num_features"}}))):  # type: ignore[misc]
    """MetaFormer's ``Scale``: its forward views the scale as ``self.shape``, which leads with the width."""

    @classmethod
    def instance_layout(cls, module: nn.Module, layout: LayerLayout) -> LayerLayout:
        """``shape`` ``(dim, 1, 1)`` scales the channels of NCHW input, ``(dim,)`` the last dim."""
        shape: tuple[int, ...] = module.__dict__["shape"]
        return layout.with_axis("channels") if len(shape) > 1 else layout

    def _setup(self) -> None:
        self._move_aside("shape")
        super()._setup()

    @property
    def shape(self) -> tuple[int, ...]:
        """The active width, then the stored trailing sizes."""
        return (self._hparams["num_features"].active, *self._saved["shape"][1:])

    def _export_attributes(self) -> dict[str, Any]:
        return {**super()._export_attributes(), "shape": self.shape}


def _declare(module: types.ModuleType, name: str, *args: Any, **kwargs: Any) -> None:
    """Declare ``module.name`` unless this timm version lacks it or it is declared already."""
    cls = getattr(module, name, None)
    if not isinstance(cls, type):
        return
    declared = DYNAMIC_REGISTRY.layer_of(cls)
    if declared is None or declared.cls is not cls:
        register_layer(cls, *args, **kwargs)


def _declare_layers(layers: types.ModuleType) -> None:
    gain = CONV_LAYOUT.with_tensors(gain={0: "out_channels"})
    _declare(layers, "Conv2dSame", dynamic=RuntimePaddingConv)
    _declare(layers, "StdConv2dSame", dynamic=RuntimePaddingConv)
    _declare(layers, "ScaledStdConv2d", gain)
    _declare(layers, "ScaledStdConv2dSame", gain, dynamic=RuntimePaddingConv)
    _declare(layers, "GroupNorm1", replace(GROUP_NORM_LAYOUT, sortable=True), dynamic=DynamicGroupNorm1)
    _declare(
        layers, "BlurPool2d", LayerLayout(incoming="channels", tensors={"filt": {0: "channels"}}), key=BLUR_POOL_KEY
    )
    _declare(layers, "LayerScale", _SCALE, key=LAYER_SCALE_KEY)
    _declare(layers, "LayerScale2d", _SCALE.with_axis("channels"), key=LAYER_SCALE_KEY)
    _declare(layers, "MixedConv2d", MIXED_CONV_LAYOUT, key=MIXED_CONV_KEY, dynamic=DynamicMixedConv2d)
    _declare(layers, "CondConv2d", COND_CONV_LAYOUT, key=COND_CONV_KEY, dynamic=DynamicCondConv2d)


def _declare_fastvit(fastvit: types.ModuleType) -> None:
    _declare(fastvit, "LayerScale2d", _SCALE.with_axis("channels"), key=LAYER_SCALE_KEY)


def _declare_metaformer(metaformer: types.ModuleType) -> None:
    _declare(metaformer, "Scale", DynamicMetaFormerScale._layout, key=LAYER_SCALE_KEY, dynamic=DynamicMetaFormerScale)


#: What runs when each timm module is first imported: layer declarations, the example-input maker.
def example_input(model: nn.Module) -> tuple[torch.Tensor] | None:
    """A meta image batch for a timm model: ``(2, channels, height, width)``; None for other models.

    The size is the patch embedding's ``img_size`` where the model has one (a ViT built for another
    size expects exactly that), else the model's configured ``input_size``. It answers the shape
    reads of timm's forwards (``B, N, C = x.shape``) while tracing.
    """
    config = getattr(model, "pretrained_cfg", None)
    if not (isinstance(config, dict) and type(model).__module__.startswith("timm.")):
        return None
    channels, *size = config.get("input_size", (3, 224, 224))
    patch_size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if isinstance(patch_size, (tuple, list)) and len(patch_size) == 2:
        size = list(patch_size)
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    return (torch.zeros(2, channels, *size, dtype=dtype, device="meta"),)


def _register_example_inputs(models: types.ModuleType) -> None:
    register_example_input_maker(example_input)


_DECLARATIONS: dict[str, Callable[[types.ModuleType], None]] = {
    "timm.models": _register_example_inputs,
    "timm.layers": _declare_layers,
    "timm.models.fastvit": _declare_fastvit,
    "timm.models.metaformer": _declare_metaformer,
}
