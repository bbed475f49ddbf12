"""Optional dependencies: imported only when a feature needs them, with an install hint when missing."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

__all__ = ["EXTRAS", "ONNX_MODULES", "import_optional", "is_installed"]

#: What ONNX export and ONNX Runtime latency import: the ``onnx`` extra.
ONNX_MODULES = ("onnx", "onnxscript", "onnxruntime")
#: optional module -> the pip extra of ``autonas`` (and ``autonas-modes``) that installs it
EXTRAS = dict.fromkeys(ONNX_MODULES, "onnx")


def is_installed(*modules: str) -> bool:
    """Whether every one of ``modules`` can be imported (nothing is imported)."""
    return all(importlib.util.find_spec(module) is not None for module in modules)


def import_optional(module: str, feature: str) -> ModuleType:
    """Import ``module``; if it is missing, raise an error that names ``feature`` and the pip extra to install.

    Raises:
        ModuleNotFoundError: ``module`` is not installed (the message says
            ``pip install 'autonas[onnx]'``, or ``'autonas-modes[onnx]'`` without the meta-package).
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name != module:  # the module is there but one of its own imports failed
            raise
        extra = EXTRAS[module]
        raise ModuleNotFoundError(
            f"{feature} needs the optional package {module!r}, which is not installed. Install it with "
            f"pip install 'autonas[{extra}]' (or pip install 'autonas-modes[{extra}]').",
            name=module,
        ) from None
