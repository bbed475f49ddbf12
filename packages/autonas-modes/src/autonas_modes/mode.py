"""Modes (one optimisation step each) and the registries that name them.

A mode describes how a model is converted, how the conversion is replayed on a fresh model
(restore), which modes may follow it, and which export mode must eventually close it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import torch.nn as nn
from pydantic import BaseModel

from .errors import ApplyModeError  # also importable from here, where it used to live

__all__ = [
    "NAS_REGISTRY",
    "ConvertReturn",
    "ModeDescriptor",
    "ModeLike",
    "ModeRegistry",
    "get_mode_descriptor",
]

Metadata = dict[str, Any]
ConvertReturn = tuple[nn.Module, Metadata]


class ModeDescriptor(abc.ABC):
    """Describes one mode: its name, config class, entrypoints and chaining rules.

    Subclasses set :attr:`name`, :attr:`config_class` and implement :meth:`convert` and
    :meth:`restore`; every other property has the default that "no restriction" needs.
    """

    @property
    @abc.abstractmethod
    def name(self) -> str:
        """The string id stored in the state."""

    @property
    @abc.abstractmethod
    def config_class(self) -> type[BaseModel]:
        """The pydantic class that validates the user's config for this mode."""

    @property
    def next_modes(self) -> set[str] | None:
        """Modes allowed immediately after this one (``None``: any; empty set: none)."""
        return None

    @property
    def may_follow(self) -> frozenset[str]:
        """Modes whose registered successors this one extends (e.g. ``{"autonas"}``): it may come right after them."""
        return frozenset()

    @property
    def next_prohibited_modes(self) -> set[str] | None:
        """Modes that may never follow this one."""
        return None

    @property
    def export_mode(self) -> str | None:
        """The mode that must eventually close this one (``None``: nothing to close)."""
        return None

    @property
    def is_export_mode(self) -> bool:
        """Whether this mode closes another one."""
        return False

    @property
    def search_algorithm(self) -> type:
        """The searcher class that :func:`autonas_modes.search` runs for this mode."""
        raise RuntimeError(f"Search is not supported for mode {self.name!r}.")

    @property
    def require_model_like(self) -> bool:
        """Whether the mode wants the uninstantiated model recipe instead of a module."""
        return False

    @property
    def save_mode_in_state(self) -> bool:
        """Whether the mode is written to the saved state."""
        return True

    def check_model(self, model: nn.Module) -> None:
        """Raise when ``model`` itself cannot take this mode (default: any model can).

        Called for the first mode that :func:`autonas_modes.apply_mode` applies or
        :func:`autonas_modes.restore_from_autonas_state` restores, before the model's state is
        touched and before the chaining rules, so the error names what is wrong with the model.
        """
        return None

    @abc.abstractmethod
    def convert(self, model: nn.Module, config: BaseModel, **mode_kwargs: Any) -> ConvertReturn:
        """Apply the mode to ``model``; return the model and the metadata to store."""

    @abc.abstractmethod
    def restore(self, model: nn.Module, config: BaseModel, metadata: Metadata) -> nn.Module:
        """Replay the mode on a fresh model from its stored config and metadata."""

    def saved_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """A stored config as this version reads it (default: unchanged).

        A key added to :attr:`config_class` after a state was saved must not take its new default
        on restore where that default would rebuild a different model: override this to give such
        keys the value that reproduces the saved behaviour.
        """
        return config

    def update_for_save(self, model: nn.Module, config: BaseModel, metadata: Metadata) -> None:
        """Refresh ``metadata`` in place before the state is saved (default: nothing to refresh)."""
        return None

    def update_for_new_mode(self, model: nn.Module, config: BaseModel, metadata: Metadata) -> None:
        """Refresh ``metadata`` in place before another mode is appended (default: nothing to refresh)."""
        return None

    def check_can_follow(self, previous: ModeDescriptor) -> None:
        """Raise ``ApplyModeError`` when this mode may not come right after ``previous``."""
        if previous.next_modes is not None and self.name not in previous.next_modes:
            raise ApplyModeError(
                f"Cannot add {self.name} after {previous.name}! "
                f"Next modes of {previous.name} are {sorted(previous.next_modes)}."
            )
        if previous.next_prohibited_modes is not None and self.name in previous.next_prohibited_modes:
            raise ApplyModeError(
                f"Cannot add {self.name} after {previous.name}! "
                f"{previous.name} does not allow {self.name} to be its next mode."
            )

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def __hash__(self) -> int:
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ModeDescriptor):
            return self.name == other.name
        return NotImplemented


ModeLike = str | ModeDescriptor


class ModeRegistry:
    """A named collection of mode descriptors (one instance per descriptor class).

    All registries are known globally, so :func:`get_mode_descriptor` finds a mode by name
    whichever registry holds it.
    """

    _all: ClassVar[dict[str, ModeRegistry]] = {}

    def __init__(self, registry_name: str) -> None:
        if registry_name in ModeRegistry._all:
            raise ValueError(f"A mode registry named {registry_name!r} already exists.")
        self.registry_name = registry_name
        self._modes: dict[str, ModeDescriptor] = {}
        ModeRegistry._all[registry_name] = self

    def register_mode(self, cls_or_instance: type[ModeDescriptor] | ModeDescriptor) -> Callable[..., Any]:
        """Register a descriptor (class decorator or instance); a second one of that name is an error."""
        descriptor = cls_or_instance() if isinstance(cls_or_instance, type) else cls_or_instance
        if descriptor.name in self._modes:
            raise ValueError(f"Mode {descriptor.name!r} is already registered in registry {self.registry_name!r}.")
        self._modes[descriptor.name] = descriptor
        return cls_or_instance  # type: ignore[return-value]

    def remove_mode(self, name: str) -> None:
        """Unregister the mode called ``name``."""
        if name not in self._modes:
            raise KeyError(f"Mode {name!r} is not registered in registry {self.registry_name!r}.")
        del self._modes[name]

    def __contains__(self, mode: object) -> bool:
        key = mode.name if isinstance(mode, ModeDescriptor) else mode
        return key in self._modes

    def __getitem__(self, mode: ModeLike) -> ModeDescriptor:
        key = mode.name if isinstance(mode, ModeDescriptor) else mode
        try:
            return self._modes[key]
        except KeyError:
            raise KeyError(
                f"Mode {key!r} is not registered in registry {self.registry_name!r}; known modes: {sorted(self._modes)}."
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._modes)

    def __len__(self) -> int:
        return len(self._modes)

    @classmethod
    def registries(cls) -> list[ModeRegistry]:
        """Every registry created so far."""
        return list(cls._all.values())

    @classmethod
    def get_from_any(cls, mode: ModeLike) -> ModeDescriptor:
        """The descriptor of ``mode`` from whichever registry holds it."""
        if isinstance(mode, ModeDescriptor):
            return mode
        hits = [registry._modes[mode] for registry in cls._all.values() if mode in registry._modes]
        if not hits:
            known = sorted({name for registry in cls._all.values() for name in registry._modes})
            raise KeyError(f"Unknown mode {mode!r}; registered modes: {known}.")
        if any(hit is not hits[0] for hit in hits):
            raise RuntimeError(f"Mode {mode!r} is registered with different descriptors in different registries.")
        return hits[0]

    @classmethod
    def followers_of(cls, name: str) -> set[str]:
        """The registered modes that declare they may follow mode ``name`` (see :attr:`ModeDescriptor.may_follow`)."""
        return {mode for registry in cls._all.values() for mode, d in registry._modes.items() if name in d.may_follow}

    def belongs(self, mode_name: str) -> bool:
        """Whether a stored mode name belongs to this registry."""
        return mode_name in self._modes


NAS_REGISTRY = ModeRegistry("nas")


def get_mode_descriptor(mode: ModeLike) -> ModeDescriptor:
    """Look a mode up by name (or pass a descriptor through), loading the built-in modes first."""
    from . import nas  # noqa: F401  (registers "autonas" and "export_nas")

    return ModeRegistry.get_from_any(mode)
