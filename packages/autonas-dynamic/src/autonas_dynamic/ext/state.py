"""Which path the dynamic layers take, chosen once per process from ``AUTONAS_EXTENSIONS``.

* ``0``: the reference path (the layers slice their tensors inside autograd).
* ``1``: the fused path: the compiled sliced conv/linear functions, built on first use if the cache
  has none. A failed build or load warns once and the reference path runs (same results).
* ``auto`` (default): the fused path only on the devices listed in :data:`AUTO_FUSED_DEVICES` and
  only when the compiled library is already built (cached or shipped in the wheel): ``auto`` never
  starts a compile. None are listed today (see ``tools/bench/README.md``), so ``auto`` runs the
  reference path.

The fused path is taken only in training-style calls on CPU tensors (grad enabled, eager mode, no
autocast); everything else stays on the reference path.
"""

from __future__ import annotations

import atexit
import os
import threading
import warnings
from dataclasses import dataclass
from types import ModuleType

from . import loader

__all__ = [
    "AUTO_FUSED_DEVICES",
    "ENV_VAR",
    "ExtensionsStatus",
    "compiled_library",
    "extensions_status",
    "reset",
]

ENV_VAR = "AUTONAS_EXTENSIONS"
_MODES = ("0", "1", "auto")
#: Devices on which ``auto`` takes the fused path: those where the benchmark shows it faster.
AUTO_FUSED_DEVICES: frozenset[str] = frozenset()
#: The fused path runs on CPU tensors only, so the C++ build is the one it loads.
_VARIANT = "cpu"


@dataclass(frozen=True)
class ExtensionsStatus:
    """What the dynamic layers run on in this process.

    Attributes:
        mode: The ``AUTONAS_EXTENSIONS`` setting (``"0"``, ``"1"`` or ``"auto"``).
        path: ``"fused"`` (the compiled sliced conv/linear functions) or ``"reference"``.
        library: The compiled library file in use, if any.
        error: Why the compiled library is not in use when it was asked for.
    """

    mode: str
    path: str
    library: str | None
    error: str | None

    def __str__(self) -> str:
        text = f"autonas extensions: mode={self.mode} path={self.path}"
        if self.library is not None:
            text += f" library={self.library}"
        if self.error is not None:
            text += f" error={self.error}"
        return text


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mode: str | None = None
        self.library: ModuleType | None = None
        self.error: str | None = None
        self.forced: str | None = None


_STATE = _State()
#: Libraries whose gradient buffers are released at interpreter exit.
_RELEASED_AT_EXIT: set[str] = set()


def _requested_mode() -> str:
    value = os.environ.get(ENV_VAR, "auto").strip().lower()
    if value not in _MODES:
        raise ValueError(f"{ENV_VAR}={os.environ[ENV_VAR]!r} is not a valid setting; allowed: '0', '1', 'auto'")
    return value


def _resolve() -> None:
    """Fill in the state on first use (thread safe)."""
    if _STATE.mode is not None:
        return
    with _STATE.lock:
        if _STATE.mode is not None:
            return
        mode = _STATE.forced or _requested_mode()
        if mode == "1" or (mode == "auto" and _VARIANT in AUTO_FUSED_DEVICES):
            try:
                library = loader.load_cached(_VARIANT)
                if library is None and mode == "1":
                    library = loader.build(_VARIANT)
                if library is not None and library.__name__ not in _RELEASED_AT_EXIT:
                    # The buffers may hold Python-visible tensors: release them while Python still runs.
                    atexit.register(library.clear_buffers)
                    _RELEASED_AT_EXIT.add(library.__name__)
                _STATE.library = library
            except Exception as error:  # a compiler, ninja or loading problem: fall back, say so once
                lines = str(error).strip().splitlines()
                _STATE.error = f"{type(error).__name__}: {lines[-1] if lines else ''}"
                warnings.warn(
                    f"autonas: the compiled extension ({_VARIANT}) could not be built or loaded ({_STATE.error}); "
                    f"the dynamic layers take the reference path instead (same results). Set {ENV_VAR}=0 "
                    "to skip the build, or see docs/extensions.md",
                    RuntimeWarning,
                    stacklevel=4,
                )
        _STATE.mode = mode


def compiled_library() -> ModuleType | None:
    """The compiled library when the fused path is enabled, else ``None``."""
    if _STATE.mode is None:
        _resolve()
    return _STATE.library


def extensions_status() -> ExtensionsStatus:
    """The path the dynamic layers take in this process, and why (resolves the setting if needed)."""
    library = compiled_library()
    return ExtensionsStatus(
        mode=_STATE.mode or "auto",
        path="reference" if library is None else "fused",
        library=None if library is None else str(loader.cached_library(_VARIANT) or library.__file__),
        error=_STATE.error,
    )


def reset(mode: str | None = None) -> None:
    """Forget the resolved setting; the next use reads ``AUTONAS_EXTENSIONS`` again, or ``mode`` if given."""
    if mode is not None and mode not in _MODES:
        raise ValueError(f"unknown extensions mode {mode!r}; allowed: '0', '1', 'auto'")
    with _STATE.lock:
        _STATE.mode = None
        _STATE.library = None
        _STATE.error = None
        _STATE.forced = mode
