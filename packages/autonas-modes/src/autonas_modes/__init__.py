"""autonas_modes: the model workflow of autonas.

Convert a model into a search space, train it, search the best subnet under FLOPs / params /
latency limits, export it, and save / restore the architecture at every stage. Its errors are in
:mod:`autonas_modes.errors`. Names are imported lazily on first access, so ``import autonas_modes``
stays cheap.
"""

from __future__ import annotations

import importlib
from importlib.metadata import version as _version
from typing import TYPE_CHECKING, Any

__version__ = _version("autonas-modes")

# public name -> submodule that defines it
_EXPORTS: dict[str, str] = {
    # errors
    "ModesError": "errors",
    "ApplyModeError": "errors",
    "NotConvertedError": "errors",
    "InvalidStateError": "errors",
    # modes, registries, state
    "ModeDescriptor": "mode",
    "ModeRegistry": "mode",
    "NAS_REGISTRY": "mode",
    "get_mode_descriptor": "mode",
    "StateManager": "state",
    "get_mode": "state",
    "autonas_state": "state",
    "restore_from_autonas_state": "state",
    "apply_mode": "apply",
    # AutoNAS and export modes
    "AutoNASModeDescriptor": "nas",
    "ExportModeDescriptor": "nas",
    "convert_searchspace": "nas",
    "restore_searchspace": "nas",
    "convert_autonas_searchspace": "nas",
    "restore_autonas_searchspace": "nas",
    "update_autonas_metadata": "nas",
    # the workflow
    "convert": "workflow",
    "export": "workflow",
    "export_onnx": "onnx_export",
    "search_space_size": "workflow",
    "get_subnet_config": "workflow",
    "sample": "workflow",
    "select": "workflow",
    "sort_parameters": "workflow",
    "print_search_space_summary": "workflow",
    "sample_and_reset": "workflow",
    "replace_forward": "workflow",
    "is_dynamic": "workflow",
    "is_configurable": "workflow",
    "named_hparams": "workflow",
    "centroid": "sampling",
    "save": "io",
    "restore": "io",
    "inference_flops": "costs",
    "param_count": "costs",
    "profile": "profiling",
    "num2hrb": "profiling",
    "search": "searching",
    "TorchRanks": "distributed",
    "ModelConstraints": "constraints",
    "ModelCosts": "constraints",
    "measure_latency": "latency",
    "LatencyInterpolator": "latency",
}

__all__ = [
    "NAS_REGISTRY",
    "ApplyModeError",
    "AutoNASModeDescriptor",
    "ExportModeDescriptor",
    "InvalidStateError",
    "LatencyInterpolator",
    "ModeDescriptor",
    "ModeRegistry",
    "ModelConstraints",
    "ModelCosts",
    "ModesError",
    "NotConvertedError",
    "StateManager",
    "TorchRanks",
    "__version__",
    "apply_mode",
    "autonas_state",
    "centroid",
    "convert",
    "convert_autonas_searchspace",
    "convert_searchspace",
    "export",
    "export_onnx",
    "get_mode",
    "get_mode_descriptor",
    "get_subnet_config",
    "inference_flops",
    "is_configurable",
    "is_dynamic",
    "measure_latency",
    "named_hparams",
    "num2hrb",
    "param_count",
    "print_search_space_summary",
    "profile",
    "replace_forward",
    "restore",
    "restore_autonas_searchspace",
    "restore_from_autonas_state",
    "restore_searchspace",
    "sample",
    "sample_and_reset",
    "save",
    "search",
    "search_space_size",
    "select",
    "sort_parameters",
    "update_autonas_metadata",
]

if TYPE_CHECKING:
    from .apply import apply_mode
    from .constraints import ModelConstraints, ModelCosts
    from .costs import inference_flops, param_count
    from .distributed import TorchRanks
    from .errors import ApplyModeError, InvalidStateError, ModesError, NotConvertedError
    from .io import restore, save
    from .latency import LatencyInterpolator, measure_latency
    from .mode import NAS_REGISTRY, ModeDescriptor, ModeRegistry, get_mode_descriptor
    from .nas import (
        AutoNASModeDescriptor,
        ExportModeDescriptor,
        convert_autonas_searchspace,
        convert_searchspace,
        restore_autonas_searchspace,
        restore_searchspace,
        update_autonas_metadata,
    )
    from .onnx_export import export_onnx
    from .profiling import num2hrb, profile
    from .sampling import centroid
    from .searching import search
    from .state import StateManager, autonas_state, get_mode, restore_from_autonas_state
    from .workflow import (
        convert,
        export,
        get_subnet_config,
        is_configurable,
        is_dynamic,
        named_hparams,
        print_search_space_summary,
        replace_forward,
        sample,
        sample_and_reset,
        search_space_size,
        select,
        sort_parameters,
    )


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'autonas_modes' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
