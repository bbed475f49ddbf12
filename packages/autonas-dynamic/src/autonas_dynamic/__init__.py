"""autonas_dynamic: dynamic PyTorch layers whose widths, kernel sizes and depths change at run time.

Converting a module swaps its class in place (see :mod:`autonas_dynamic.registry`); hparams
(:mod:`autonas_dynamic.hparam`) hold the choices; :func:`export_model` turns a model back into
plain torch modules at the active sizes; :func:`sort_parameters` orders channels by importance.
"""

from importlib.metadata import version as _version

from . import layers  # registers the built-in dynamic layers
from .dynamic import DynamicModule, HparamAttribute, LayerImportance, export_model, is_dynamic
from .ext import ExtensionsStatus, extensions_status  # installs the fused training path of conv/linear
from .hparam import ConcatHparam, DepthHparam, Hparam
from .registry import DYNAMIC_REGISTRY, DMRegistry
from .sorting import sort_parameters

__version__ = _version("autonas-dynamic")

__all__ = [
    "DYNAMIC_REGISTRY",
    "ConcatHparam",
    "DMRegistry",
    "DepthHparam",
    "DynamicModule",
    "ExtensionsStatus",
    "Hparam",
    "HparamAttribute",
    "LayerImportance",
    "export_model",
    "extensions_status",
    "is_dynamic",
    "layers",
    "sort_parameters",
]
