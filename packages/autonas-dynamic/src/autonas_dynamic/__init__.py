"""autonas_dynamic: dynamic PyTorch layers whose widths, kernel sizes and depths change at run time.

Converting a module swaps its class in place (see :mod:`autonas_dynamic.registry`); hparams
(:mod:`autonas_dynamic.hparam`) hold the choices; :func:`generate_search_space` traces a whole model,
couples the layers that must change together and applies the user's rules
(:mod:`autonas_dynamic.space`); :class:`CostModel` gives FLOPs and parameters of any subnet in closed
form (:mod:`autonas_dynamic.cost`); :func:`export_model` turns a model back into plain torch modules at
the active sizes; :func:`sort_parameters` orders channels by importance. Its errors are in
:mod:`autonas_dynamic.errors`.
"""

from importlib.metadata import version as _version

from . import layers, plugins  # importing layers registers the built-in layer types
from .cost import CostModel, CostModelError, count_flops, count_params
from .dynamic import DynamicModule, HparamAttribute, LayerImportance, export_model, is_dynamic
from .errors import AlreadyConvertedError, DynamicError, UnsupportedModelError
from .ext import ExtensionsStatus, extensions_status
from .hparam import ConcatHparam, DepthHparam, DerivedHparam, Hparam
from .layout import LayerLayout
from .registry import DYNAMIC_REGISTRY, DMRegistry, SearchableLayer, register_layer, unregister_layer
from .sorting import sort_parameters
from .space import SearchSpace, generate_search_space
from .trace import register_leaf, register_shape_preserving, unregister_leaf

__version__ = _version("autonas-dynamic")

plugins.install()  # the layer types of installed libraries (transformers, timm)

__all__ = [
    "DYNAMIC_REGISTRY",
    "AlreadyConvertedError",
    "ConcatHparam",
    "CostModel",
    "CostModelError",
    "DMRegistry",
    "DepthHparam",
    "DerivedHparam",
    "DynamicError",
    "DynamicModule",
    "ExtensionsStatus",
    "Hparam",
    "HparamAttribute",
    "LayerImportance",
    "LayerLayout",
    "SearchSpace",
    "SearchableLayer",
    "UnsupportedModelError",
    "count_flops",
    "count_params",
    "export_model",
    "extensions_status",
    "generate_search_space",
    "is_dynamic",
    "layers",
    "plugins",
    "register_layer",
    "register_leaf",
    "register_shape_preserving",
    "sort_parameters",
    "unregister_layer",
    "unregister_leaf",
]
