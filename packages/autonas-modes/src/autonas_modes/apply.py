"""Applying modes to a model: model-like inputs, wrapper unwrapping, chaining checks."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch.nn as nn

from .mode import ModeDescriptor, ModeLike, get_mode_descriptor
from .state import StateManager

__all__ = ["ModelLikeModule", "apply_mode", "as_module", "standardize_modes", "unwrap_model"]

ModeConfig = Mapping[str, Any] | None
ModeSpec = ModeLike | Sequence[ModeLike | tuple[ModeLike, ModeConfig]]


class ModelLikeModule(nn.Module):
    """Placeholder for a model that is not built yet: a recipe ``(cls, args, kwargs)``."""

    def __init__(
        self, factory: Callable[..., nn.Module], args: Sequence[Any] = (), kwargs: Mapping[str, Any] | None = None
    ):
        super().__init__()
        self.factory = factory
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})

    def init_modellike(self) -> nn.Module:
        """Build the model from the recipe."""
        model = self.factory(*self.args, **self.kwargs)
        if not isinstance(model, nn.Module):
            raise TypeError(f"The model recipe {self.factory!r} returned {type(model).__name__}, not an nn.Module.")
        return model


def as_model_like(model: Any) -> nn.Module:
    """Wrap a class, a callable or a ``(cls, args, kwargs)`` tuple into a :class:`ModelLikeModule`.

    Modules pass through unchanged.
    """
    if isinstance(model, nn.Module):
        return model
    if isinstance(model, tuple):
        if not model or len(model) > 3 or not callable(model[0]):
            raise TypeError(f"A model recipe tuple must be (cls,), (cls, args) or (cls, args, kwargs), got {model!r}.")
        factory, args, kwargs = (*model, (), None)[:3]
        return ModelLikeModule(factory, args, kwargs)
    if callable(model):
        return ModelLikeModule(model)
    raise TypeError(f"Expected an nn.Module, a model class/callable or a (cls, args, kwargs) tuple; got {model!r}.")


def as_module(model: Any) -> nn.Module:
    """The model itself, or the model built from a model-like recipe."""
    model = as_model_like(model)
    return model.init_modellike() if isinstance(model, ModelLikeModule) else model


def unwrap_model(model: Any, caller: str | None = None) -> Any:
    """The module inside DataParallel / DistributedDataParallel wrappers (anything else passes through).

    Args:
        model: A module, possibly wrapped, or anything else.
        caller: The public function that unwraps; when given, unwrapping warns (``UserWarning``)
            that ``caller`` works on the inner module. Functions whose result does not depend on
            which of the two objects they got unwrap silently.
    """
    from autonas_dynamic.checks import is_wrapped

    if caller is not None and is_wrapped(model):
        warnings.warn(
            f"{caller}() unwraps the {type(model).__name__} model and works on the inner "
            f"{type(model.module).__name__}; pass the bare model to avoid this warning.",
            stacklevel=3,
        )
    while is_wrapped(model):
        model = model.module
    return model


def standardize_modes(mode: ModeSpec) -> list[tuple[ModeDescriptor, dict[str, Any]]]:
    """Turn a mode spec (a name, a descriptor, or a list of those or of ``(mode, config)``) into pairs."""
    items = [mode] if isinstance(mode, str | ModeDescriptor) else list(mode)
    pairs = []
    for item in items:
        if isinstance(item, tuple):
            if len(item) != 2:
                raise ValueError(f"A mode entry must be a name or a (mode, config) pair, got {item!r}.")
            name, config = item
        else:
            name, config = item, None
        if config is not None and not isinstance(config, Mapping):
            raise TypeError(f"The config of mode {name!s} must be a dict or None, got {type(config).__name__}.")
        pairs.append((get_mode_descriptor(name), dict(config or {})))
    return pairs


def apply_mode(model: Any, mode: ModeSpec, mode_kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Apply ``mode`` (one or several modes, each optionally with its config) to ``model``.

    Args:
        model: A module (a DataParallel/DDP wrapper is unwrapped with a warning), a model class or
            callable, or a ``(cls, args, kwargs)`` recipe.
        mode: ``"autonas"``, a descriptor, or a list of names / descriptors / ``(mode, config)``
            pairs; ``config`` is a dict validated by the mode's config class (``None``: defaults).
        mode_kwargs: Extra keyword arguments for every mode's ``convert`` (not stored).

    Returns:
        The converted model (the same object as the input module, modified in place).
    """
    modes = standardize_modes(mode)
    model = as_model_like(model)
    if not modes:
        return model.init_modellike() if isinstance(model, ModelLikeModule) else model
    if isinstance(model, ModelLikeModule) and not modes[0][0].require_model_like:
        model = model.init_modellike()
    model = unwrap_model(model, caller="apply_mode")
    modes[0][0].check_model(model)
    manager = StateManager(model, init_state=not StateManager.is_converted(model, is_root=True))
    manager.update_last_state_before_new_mode(model)
    for descriptor, config_dict in modes:
        manager.check_mode(descriptor)
        config = descriptor.config_class.model_validate(config_dict)
        converted, metadata = descriptor.convert(model, config, **dict(mode_kwargs or {}))
        StateManager.transfer_state(model, converted)
        model = converted
        manager = StateManager(model)
        manager.add_mode(descriptor, config, metadata)
    return model
