"""What a model must be to be converted, checked in one place for every entry point.

:func:`autonas_dynamic.generate_search_space` and the ``"autonas"`` mode of autonas_modes both call
:func:`check_convertible`; the DataParallel / DDP wrapper types are known here only.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from .dynamic import is_dynamic
from .errors import AlreadyConvertedError, UnsupportedModelError

__all__ = ["WRAPPER_TYPES", "check_convertible", "check_not_wrapped", "is_wrapped"]

#: Modules that only wrap the model that does the work (``.module``).
WRAPPER_TYPES: tuple[type[nn.Module], ...] = (nn.DataParallel, nn.parallel.DistributedDataParallel)


def is_wrapped(model: object) -> bool:
    """Whether ``model`` is a DataParallel / DistributedDataParallel wrapper."""
    return isinstance(model, WRAPPER_TYPES)


def check_not_wrapped(model: nn.Module, advice: str) -> None:
    """Raise :class:`UnsupportedModelError` (with ``advice``) when ``model`` is a DataParallel / DDP wrapper."""
    if is_wrapped(model):
        raise UnsupportedModelError(
            f"got a {type(model).__name__} wrapper around {type(model.module).__name__}; {advice}"
        )


def check_convertible(model: nn.Module) -> None:
    """Check that ``model`` can become a search space.

    Raises:
        UnsupportedModelError: ``model`` is a TorchScript module, a DataParallel / DDP wrapper, or
            holds parameters in ``channels_last`` memory format.
        AlreadyConvertedError: ``model`` already holds dynamic layers.
    """
    if isinstance(model, torch.jit.ScriptModule):
        raise UnsupportedModelError(
            f"cannot convert a TorchScript module ({type(model).__name__}, made by torch.jit.script or "
            "torch.jit.trace): autonas traces and converts the Python code of a model; pass the eager nn.Module "
            "you scripted or traced, and script or trace the exported model instead"
        )
    check_not_wrapped(model, "convert its .module instead, then wrap the converted model")
    if is_dynamic(model):
        raise AlreadyConvertedError(
            f"{type(model).__name__} is already converted into a search space; convert a fresh model"
        )
    for name, param in model.named_parameters():
        if param.dim() == 4 and not param.is_contiguous() and param.is_contiguous(memory_format=torch.channels_last):
            raise UnsupportedModelError(
                f"parameter {name!r} of {type(model).__name__} is in channels_last memory format, which is not "
                "supported; call model.to(memory_format=torch.contiguous_format) first"
            )
