"""autonas: weight-sharing neural architecture search for PyTorch.

``import autonas as an`` gives the whole public API: the model workflow (``an.convert``,
``an.search``, ``an.export``, ``an.save`` / ``an.restore``, ``an.profile``, ...), the configuration
(``an.AutoNASConfig``), the searchers, the switches of training-time sampling, the sandwich rule
(``an.sandwich``) and the errors (each package's base class and the errors it raises on purpose).
Each name lives in one of the autonas packages (its *home*) and is the very same object here. Names
are imported on first access, so ``import autonas`` does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# The one table of public names: home package -> the names it provides to `autonas`.
_HOMES: dict[str, tuple[str, ...]] = {
    "autonas_modes": (
        # the model workflow
        "convert",
        "search_space_size",
        "get_subnet_config",
        "sample",
        "select",
        "profile",
        "search",
        "export",
        "export_onnx",
        "save",
        "restore",
        "autonas_state",
        "restore_from_autonas_state",
        # the seed names of the AutoNAS mode
        "AutoNASModeDescriptor",
        "convert_searchspace",
        "restore_searchspace",
        "convert_autonas_searchspace",
        "restore_autonas_searchspace",
        "update_autonas_metadata",
        # helpers
        "sort_parameters",
        "print_search_space_summary",
        "inference_flops",
        "param_count",
        "sample_and_reset",
        "centroid",
        "replace_forward",
        "is_dynamic",
        "is_configurable",
        "named_hparams",
        # errors
        "ModesError",
        "ApplyModeError",
        "NotConvertedError",
        "InvalidStateError",
    ),
    "autonas_config": ("AutoNASConfig",),
    "autonas_dynamic": ("DynamicError", "UnsupportedModelError", "AlreadyConvertedError", "CostModelError"),
    "autonas_search": (
        "IterativeSearcher",
        "RandomSearcher",
        "EvolveSearcher",
        "ChoiceSpace",
        "SearchError",
        "CheckpointError",
        "NoSatisfiedCandidateError",
    ),
    "autonas_patch": (
        "AutoNASPatchManager",
        "no_patches",
        "enable_patches",
        "set_patches_enabled",
        "is_patches_enabled",
        "sandwich",
        "soft_cross_entropy",
    ),
}

_HOME_OF: dict[str, str] = {name: home for home, names in _HOMES.items() for name in names}

#: Every public name, derived from the table (the types are declared by ``__init__.pyi``, which
#: ``tools/write_public_stubs.py`` generates from the same table).
__all__ = sorted([*_HOME_OF, "__version__"])


def __getattr__(name: str) -> Any:
    if name == "__version__":  # read from the installed metadata on demand: importlib.metadata is slow to import
        from importlib.metadata import version

        value = version("autonas")
        globals()[name] = value
        return value
    home = _HOME_OF.get(name)
    if home is None:
        raise AttributeError(f"module 'autonas' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
