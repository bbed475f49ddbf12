"""Saving and restoring a model's architecture state together with its weights."""

from __future__ import annotations

import os
from typing import IO, Any

import torch
import torch.nn as nn

from autonas_search.files import atomic_write

from .apply import unwrap_model
from .errors import InvalidStateError
from .state import autonas_state, restore_from_autonas_state

__all__ = ["restore", "save"]

File = str | os.PathLike[str] | IO[bytes]
_CHECKPOINT_KEYS = {"autonas_state", "model_state_dict"}


def save(model: nn.Module, f: File) -> None:
    """Write ``{"autonas_state": autonas_state(model), "model_state_dict": model.state_dict()}`` to ``f``.

    A path is written atomically (``autonas_search.files.atomic_write``): the checkpoint goes to a
    temporary file in the same folder, which replaces ``f`` only once complete, so an interrupted
    save leaves the previous file intact. The folder must exist; a missing or unwritable folder is
    an error raised before any work. A binary file object is written to directly.

    The state is plain data, so :func:`restore` reads the file with ``torch.load(weights_only=True)``.
    A search space's state dict holds the full-size tensors; an exported model's the pruned ones.

    Raises:
        OSError: ``f`` cannot be written (``FileNotFoundError``: its folder does not exist;
            ``NotADirectoryError``: a parent is a file; ``IsADirectoryError``: ``f`` is a folder).
    """
    model = unwrap_model(model, caller="save")
    if isinstance(f, str | os.PathLike):
        with atomic_write(f) as temporary:
            torch.save(_checkpoint(model), temporary)
    else:
        torch.save(_checkpoint(model), f)


def _checkpoint(model: nn.Module) -> dict[str, Any]:
    return {"autonas_state": autonas_state(model), "model_state_dict": model.state_dict()}


def restore(model: Any, f: File) -> nn.Module:
    """Rebuild the saved architecture on a fresh ``model`` and load the saved weights into it.

    Args:
        model: A freshly built model of the saved class (never converted), or a model-like recipe
            (the class, or ``(cls, args, kwargs)``) to build it.
        f: A path or binary file written by :func:`save`.

    Returns:
        The model with every saved mode replayed (converted, subnet selected, exported, ...) and
        the saved ``state_dict`` loaded strictly.

    Raises:
        InvalidStateError: ``f`` is not an autonas checkpoint.
        autonas_dynamic.errors.UnsupportedModelError: ``model`` is wrapped in DataParallel/DDP.
        ApplyModeError: The model differs from the saved one (class, forward).
    """
    checkpoint = torch.load(f, map_location="cpu", weights_only=True)
    if not isinstance(checkpoint, dict) or not set(checkpoint) >= _CHECKPOINT_KEYS:
        found = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise InvalidStateError(f"Not an autonas checkpoint: expected keys {sorted(_CHECKPOINT_KEYS)}, found {found}.")
    model = restore_from_autonas_state(model, checkpoint["autonas_state"])
    model.load_state_dict(checkpoint["model_state_dict"])
    return model
