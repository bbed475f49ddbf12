"""autonas_modes: the model workflow of autonas.

Convert a model into a search space, train it, search the best subnet under FLOPs / params /
latency limits, export it, and save / restore the architecture at every stage. Its errors are in
:mod:`autonas_modes.errors`. Names are imported lazily on first access, so ``import autonas_modes``
stays cheap.
"""

from __future__ import annotations

import importlib
from importlib.metadata import version as _version
from typing import Any

__version__ = _version("autonas-modes")

# The one table of public names: submodule -> the names it defines.
_HOMES: dict[str, tuple[str, ...]] = {
    ".errors": (
        "ModesError",
        "ApplyModeError",
        "NotConvertedError",
        "InvalidStateError",
    ),
    ".mode": (
        "ModeDescriptor",
        "ModeRegistry",
        "NAS_REGISTRY",
        "get_mode_descriptor",
    ),
    ".state": (
        "StateManager",
        "get_mode",
        "autonas_state",
        "restore_from_autonas_state",
    ),
    ".apply": ("apply_mode",),
    ".nas": (
        "AutoNASModeDescriptor",
        "ExportModeDescriptor",
        "convert_searchspace",
        "restore_searchspace",
        "convert_autonas_searchspace",
        "restore_autonas_searchspace",
        "update_autonas_metadata",
    ),
    ".workflow": (
        "convert",
        "export",
        "search_space_size",
        "get_subnet_config",
        "sample",
        "select",
        "sort_parameters",
        "print_search_space_summary",
        "sample_and_reset",
        "replace_forward",
        "is_dynamic",
        "is_configurable",
        "named_hparams",
    ),
    ".onnx_export": ("export_onnx",),
    ".sampling": ("centroid",),
    ".io": (
        "save",
        "restore",
    ),
    ".costs": (
        "inference_flops",
        "param_count",
    ),
    ".profiling": (
        "profile",
        "num2hrb",
    ),
    ".searching": ("search",),
    ".distributed": ("TorchRanks",),
    ".constraints": (
        "ModelConstraints",
        "ModelCosts",
    ),
    ".latency": (
        "measure_latency",
        "LatencyInterpolator",
    ),
}

_HOME_OF: dict[str, str] = {name: home for home, names in _HOMES.items() for name in names}

#: Every public name, derived from the table (the types are declared by ``__init__.pyi``, which
#: ``tools/write_public_stubs.py`` generates from the same table).
__all__ = sorted([*_HOME_OF, "__version__"])


def __getattr__(name: str) -> Any:
    home = _HOME_OF.get(name)
    if home is None:
        raise AttributeError(f"module 'autonas_modes' has no attribute {name!r}")
    value = getattr(importlib.import_module(home, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
