"""The errors autonas_modes raises on purpose.

Each one derives from :class:`ModesError` and from the built-in a caller would catch anyway:
``RuntimeError`` for a model in the wrong state for the call, ``ValueError`` for a saved state that
cannot be read. Models that cannot be converted at all raise the errors of
:mod:`autonas_dynamic.errors`, whichever function was called.
"""

from __future__ import annotations

__all__ = ["ApplyModeError", "InvalidStateError", "ModesError", "NotConvertedError"]


class ModesError(Exception):
    """Base class of every error autonas_modes raises on purpose."""


class ApplyModeError(ModesError, RuntimeError):
    """A mode cannot be applied to (or restored on) the given model.

    Raised when the modes applied so far do not allow the new one (a mode that must come after
    another, an export that closes nothing), when a restore target already holds a state, or when
    it differs from the saved model (class, forward).
    """


class NotConvertedError(ModesError, RuntimeError):
    """The model was never converted, and the call needs a search space (``autonas.convert`` first)."""


class InvalidStateError(ModesError, ValueError):
    """A saved architecture state or checkpoint file is not one autonas can read."""
