"""The architecture state kept on a converted model: which modes were applied, with what.

The state lives on the root module as ``_autonas_state`` (a list of
``(mode_name, {"config": dict, "metadata": dict})``) and ``_autonas_state_version``. Exactly one
module of a model tree may hold it. :func:`autonas_state` turns it into plain JSON data and
:func:`restore_from_autonas_state` replays it on a fresh model.
"""

from __future__ import annotations

import copy
import json
import warnings
from collections import deque
from collections.abc import Iterator, Mapping
from importlib.metadata import version as _version
from typing import Any

import torch.nn as nn
from pydantic import BaseModel

from .errors import ApplyModeError, InvalidStateError, NotConvertedError
from .mode import ModeDescriptor, ModeLike, ModeRegistry, get_mode_descriptor

__all__ = [
    "STATE_FORMAT_VERSION",
    "StateManager",
    "autonas_state",
    "get_mode",
    "restore_from_autonas_state",
]

STATE_FORMAT_VERSION = 1
_STATE_ATTR = "_autonas_state"
_VERSION_ATTR = "_autonas_state_version"
_STATE_KEYS = {"format_version", "autonas_version", "modes"}


def _library_version() -> str:
    return _version("autonas-modes")


def as_plain_data(data: Any) -> Any:
    """``data`` as the JSON round trip would return it (tuples become lists)."""
    return json.loads(json.dumps(data))


class StateManager:
    """Reads and writes the mode state stored on the root of a model tree.

    Args:
        model: The root module.
        init_state: Create a fresh, empty state on ``model`` (it must not hold one yet).
    """

    def __init__(self, model: nn.Module, init_state: bool = False) -> None:
        if init_state:
            if self.is_converted(model):
                raise ApplyModeError(
                    f"{type(model).__name__} already holds an autonas state; restore needs a fresh model."
                )
            setattr(model, _STATE_ATTR, [])
            setattr(model, _VERSION_ATTR, _library_version())
        elif not self.is_converted(model, is_root=True):
            raise NotConvertedError(
                f"{type(model).__name__} holds no autonas state: convert it first (autonas.convert(model, mode='autonas'))."
            )
        self._model = model

    @staticmethod
    def is_converted(model: nn.Module, is_root: bool = False) -> bool:
        """Whether some module of the tree holds a state; with ``is_root`` it must be ``model`` itself."""
        holders = [name for name, module in model.named_modules() if hasattr(module, _STATE_ATTR)]
        if len(holders) > 1:
            raise ApplyModeError(f"More than one module holds an autonas state: {holders}.")
        if is_root and holders and holders[0] != "":
            raise ApplyModeError(
                f"Model has autonas state but not the root! The state is on submodule {holders[0]!r}; "
                "use that submodule, or convert the root model."
            )
        return bool(holders)

    @staticmethod
    def transfer_state(source: nn.Module, target: nn.Module) -> None:
        """Move the state from ``source`` to ``target`` (a mode returned a new model object)."""
        if source is target:
            return
        for attr in (_STATE_ATTR, _VERSION_ATTR):
            setattr(target, attr, getattr(source, attr))
            delattr(source, attr)

    @property
    def _state(self) -> list[tuple[str, dict[str, Any]]]:
        return getattr(self._model, _STATE_ATTR)

    def modes(self) -> Iterator[tuple[ModeDescriptor, BaseModel, dict[str, Any]]]:
        """Each applied mode with its validated config and its (live) metadata, in order."""
        for name, entry in self._state:
            descriptor = get_mode_descriptor(name)
            yield descriptor, descriptor.config_class.model_validate(entry["config"]), entry["metadata"]

    @property
    def last_mode(self) -> ModeDescriptor | None:
        """The descriptor of the last applied mode, or ``None``."""
        return get_mode_descriptor(self._state[-1][0]) if self._state else None

    def export_stack(self) -> deque[tuple[str, str]]:
        """``(mode, export_mode)`` pairs still waiting for their export mode, innermost last."""
        stack: deque[tuple[str, str]] = deque()
        for name, _ in self._state:
            descriptor = get_mode_descriptor(name)
            if descriptor.is_export_mode:
                if not stack or stack[-1][1] != name:
                    raise ApplyModeError(f"Stored state is inconsistent: {name} closes nothing in {list(stack)}.")
                stack.pop()
            elif descriptor.export_mode is not None:
                stack.append((name, descriptor.export_mode))
        return stack

    def is_closed_by(self, export_mode: str) -> bool:
        """Whether ``export_mode`` was applied and no mode applied since still waits for it."""
        applied = any(name == export_mode for name, _ in self._state)
        return applied and all(pending != export_mode for _, pending in self.export_stack())

    def check_mode(self, mode: ModeLike) -> ModeDescriptor:
        """Check that ``mode`` may be appended now; return its descriptor."""
        descriptor = get_mode_descriptor(mode)
        stack = self.export_stack()
        if descriptor.is_export_mode and (not stack or stack[-1][1] != descriptor.name):
            raise ApplyModeError(
                f"Cannot add {descriptor.name} according to the current export stack: {stack}. "
                "An export mode must close the last mode that needs it."
            )
        last = self.last_mode
        if last is not None:
            descriptor.check_can_follow(last)
        if stack:
            descriptor.check_can_follow(get_mode_descriptor(stack[-1][0]))
        return descriptor

    def add_mode(self, mode: ModeLike, config: BaseModel, metadata: dict[str, Any]) -> None:
        """Append an applied mode with its config and metadata."""
        descriptor = get_mode_descriptor(mode)
        self._state.append((descriptor.name, {"config": config.model_dump(), "metadata": metadata}))

    def _update_last(self, model: nn.Module, entrypoint: str) -> None:
        if not self._state:
            return
        name, entry = self._state[-1]
        descriptor = get_mode_descriptor(name)
        config = descriptor.config_class.model_validate(entry["config"])
        getattr(descriptor, entrypoint)(model, config, entry["metadata"])
        entry["config"] = config.model_dump()

    def update_last_state_before_new_mode(self, model: nn.Module) -> None:
        """Let the last mode refresh its metadata before another mode is appended."""
        self._update_last(model, "update_for_new_mode")

    def update_last_state_before_save(self, model: nn.Module) -> None:
        """Let the last mode refresh its metadata before the state is saved."""
        self._update_last(model, "update_for_save")

    def has_state_for_mode_type(self, registry: ModeRegistry) -> bool:
        """Whether any stored mode belongs to ``registry``."""
        return any(registry.belongs(name) for name, _ in self._state)

    def state_dict(self) -> list[tuple[str, dict[str, Any]]]:
        """The saved modes (those with ``save_mode_in_state``), deep-copied."""
        return [
            (name, copy.deepcopy(entry)) for name, entry in self._state if get_mode_descriptor(name).save_mode_in_state
        ]


def get_mode(model: nn.Module) -> ModeDescriptor | None:
    """The descriptor of the last mode applied to ``model``, or ``None`` if it was never converted."""
    if not StateManager.is_converted(model, is_root=True):
        return None
    return StateManager(model).last_mode


def autonas_state(model: nn.Module) -> dict[str, Any]:
    """The architecture state of ``model`` as plain JSON data (lists, dicts, str, numbers).

    ``{"format_version": 1, "autonas_version": "...", "modes": [{"mode": name, "config": {...},
    "metadata": {...}}, ...]}``; a model that was never converted has an empty ``modes`` list.
    The last mode refreshes its metadata (e.g. the active subnet) first.
    """
    from .apply import unwrap_model

    model = unwrap_model(model)
    modes: list[dict[str, Any]] = []
    if StateManager.is_converted(model, is_root=True):
        manager = StateManager(model)
        manager.update_last_state_before_save(model)
        modes = [{"mode": name, **entry} for name, entry in manager.state_dict()]
    return as_plain_data(
        {"format_version": STATE_FORMAT_VERSION, "autonas_version": _library_version(), "modes": modes}
    )


def validate_state(state: Any) -> dict[str, Any]:
    """Check that ``state`` is an :func:`autonas_state` dict; raise :class:`InvalidStateError` (a ``ValueError``) saying what is wrong."""
    if not isinstance(state, Mapping):
        raise InvalidStateError(f"An autonas state must be a dict, got {type(state).__name__}.")
    if "autonas_state" in state and "model_state_dict" in state:
        raise InvalidStateError(
            "This is a full checkpoint written by autonas.save(); pass checkpoint['autonas_state']."
        )
    missing = _STATE_KEYS - set(state)
    if missing:
        raise InvalidStateError(
            f"Not an autonas state: missing keys {sorted(missing)} (expected {sorted(_STATE_KEYS)})."
        )
    if state["format_version"] != STATE_FORMAT_VERSION:
        raise InvalidStateError(
            f"Unsupported autonas state format_version {state['format_version']!r}; "
            f"this version reads format_version {STATE_FORMAT_VERSION}."
        )
    if not isinstance(state["modes"], list) or not all(
        isinstance(entry, Mapping) and {"mode", "config", "metadata"} <= set(entry) for entry in state["modes"]
    ):
        raise InvalidStateError("An autonas state's 'modes' must be a list of {'mode', 'config', 'metadata'} dicts.")
    return dict(state)


def _warn_on_version_mismatch(saved: str) -> None:
    current = _library_version()
    if saved.split(".")[:2] != current.split(".")[:2]:
        warnings.warn(
            f"The autonas state was written by autonas {saved}; this is {current}. Restoring may not be exact.",
            stacklevel=3,
        )


def restore_from_autonas_state(model: Any, state: Mapping[str, Any]) -> nn.Module:
    """Replay the modes of ``state`` on a fresh ``model`` and return it.

    Args:
        model: A module that was never converted, or a model-like recipe (a class, or
            ``(cls, args, kwargs)``) that is instantiated first.
        state: What :func:`autonas_state` returned (possibly after a JSON round trip).

    Returns:
        The model with every mode restored (converted, subnet selected, exported, ...).

    Raises:
        InvalidStateError: ``state`` is not an autonas state.
        autonas_dynamic.errors.UnsupportedModelError: ``model`` is a DataParallel / DDP wrapper
            (restore the bare model, then wrap it), or cannot be converted (TorchScript, channels-last).
        autonas_dynamic.errors.AlreadyConvertedError: ``model`` already is a search space.
        ApplyModeError: ``model`` already holds a state, or differs from the saved model.
    """
    from autonas_dynamic.checks import check_not_wrapped

    from .apply import as_module

    state = validate_state(state)
    _warn_on_version_mismatch(state["autonas_version"])
    model = as_module(model)
    check_not_wrapped(model, "restore needs the bare model: restore first, then wrap it in DataParallel/DDP")
    entries = copy.deepcopy(state["modes"])
    if entries:
        get_mode_descriptor(entries[0]["mode"]).check_model(model)
    manager = StateManager(model, init_state=True)
    for entry in entries:
        descriptor = manager.check_mode(entry["mode"])
        config = descriptor.config_class.model_validate(descriptor.saved_config(entry["config"]))
        restored = descriptor.restore(model, config, entry["metadata"])
        StateManager.transfer_state(model, restored)
        model = restored
        manager = StateManager(model)
        manager.add_mode(descriptor, config, entry["metadata"])
    return model
