"""Which path the dynamic layers take, chosen once per process from ``AUTONAS_EXTENSIONS``.

* ``0``: the reference path (the layers slice their tensors inside autograd).
* ``1``: the fused path with the compiled kernels; they are built on first use if the cache has
  none. A failed build warns once and the fused path runs on the torch-op kernels (same results).
* ``auto`` (default): the fused path only on the devices listed in :data:`AUTO_FUSED_DEVICES`,
  where it was measured faster than the reference path (``tools/bench/bench_ext.py``); none are
  listed today (see ``tools/bench/README.md``), so ``auto`` runs the reference path.

The fused path is taken only in training-style calls on CPU tensors (grad enabled, eager mode, no
autocast); everything else stays on the reference path.
"""

from __future__ import annotations

import os
import threading
import warnings
from dataclasses import dataclass

from . import loader
from .kernels import CompiledKernels, TorchKernels

__all__ = [
    "AUTO_FUSED_DEVICES",
    "ENV_VAR",
    "ExtensionsStatus",
    "active_kernels",
    "extensions_status",
    "fused_path_enabled",
    "reset",
]

ENV_VAR = "AUTONAS_EXTENSIONS"
_MODES = ("0", "1", "auto")
#: Devices on which ``auto`` takes the fused path: those where the benchmark shows it faster.
AUTO_FUSED_DEVICES: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ExtensionsStatus:
    """What the dynamic layers run on in this process.

    Attributes:
        mode: The ``AUTONAS_EXTENSIONS`` setting (``"0"``, ``"1"`` or ``"auto"``).
        path: ``"fused"`` (sliced conv/linear with direct gradient delivery) or ``"reference"``.
        kernels: The block kernels of the fused path: ``"torch"`` or ``"compiled (C++)"`` /
            ``"compiled (C++ and CUDA)"``; ``None`` on the reference path.
        library: The compiled library file in use, if any.
        error: Why the compiled kernels are not in use when they were asked for.
    """

    mode: str
    path: str
    kernels: str | None
    library: str | None
    error: str | None

    def __str__(self) -> str:
        text = f"autonas extensions: mode={self.mode} path={self.path}"
        if self.kernels is not None:
            text += f" kernels={self.kernels}"
        if self.library is not None:
            text += f" library={self.library}"
        if self.error is not None:
            text += f" error={self.error}"
        return text


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.mode: str | None = None
        self.kernels: TorchKernels | None = None
        self.library: str | None = None
        self.error: str | None = None
        self.forced: str | None = None


_STATE = _State()


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
        kernels: TorchKernels | None = None
        if mode == "1" or (mode == "auto" and "cpu" in AUTO_FUSED_DEVICES):
            kernels = TorchKernels()
            variant = "cpu"  # the fused path runs on CPU tensors only
            try:
                library = loader.load_cached(variant)
                if library is None and mode == "1":
                    library = loader.build(variant)
                if library is not None:
                    kernels = CompiledKernels(library)
                    _STATE.library = str(loader.cached_library(variant))
            except Exception as error:  # a compiler, ninja or toolkit problem: fall back, say so once
                _STATE.error = (
                    f"{type(error).__name__}: {str(error).strip().splitlines()[-1] if str(error).strip() else ''}"
                )
                warnings.warn(
                    f"autonas: the compiled kernels ({variant}) could not be built or loaded ({_STATE.error}); "
                    f"the fused path uses the torch-op kernels instead (same results). Set {ENV_VAR}=0 "
                    "to skip the build, or see docs/extensions.md",
                    RuntimeWarning,
                    stacklevel=4,
                )
        _STATE.kernels = kernels
        _STATE.mode = mode


def fused_path_enabled() -> bool:
    """Whether the dynamic conv/linear layers take the fused path in training (on CPU tensors)."""
    _resolve()
    return _STATE.kernels is not None


def active_kernels() -> TorchKernels:
    """The block kernels of the fused path (only meaningful when it is enabled)."""
    _resolve()
    return _STATE.kernels or TorchKernels()


def extensions_status() -> ExtensionsStatus:
    """The path the dynamic layers take in this process, and why (resolves the setting if needed)."""
    _resolve()
    kernels = _STATE.kernels
    return ExtensionsStatus(
        mode=_STATE.mode or "auto",
        path="reference" if kernels is None else "fused",
        kernels=None if kernels is None else kernels.name,
        library=_STATE.library if isinstance(kernels, CompiledKernels) else None,
        error=_STATE.error,
    )


def reset(mode: str | None = None, *, compiled: bool = True) -> None:
    """Forget the resolved setting; the next use reads ``AUTONAS_EXTENSIONS`` again, or ``mode`` if given.

    ``compiled=False`` keeps the fused path on the torch-op kernels (to compare the two).
    """
    if mode is not None and mode not in _MODES:
        raise ValueError(f"unknown extensions mode {mode!r}; allowed: '0', '1', 'auto'")
    with _STATE.lock:
        _STATE.mode = None
        _STATE.kernels = None
        _STATE.library = None
        _STATE.error = None
        _STATE.forced = mode
    if mode is not None and mode != "0" and not compiled:
        with _STATE.lock:
            _STATE.mode = mode
            _STATE.kernels = TorchKernels()
