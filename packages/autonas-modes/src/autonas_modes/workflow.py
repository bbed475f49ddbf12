"""The model-facing workflow: convert, inspect, sample/select, sort and export a search space."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch.nn as nn

from .apply import ModeSpec, apply_mode, unwrap_model
from .errors import NotConvertedError
from .modelspace import changes_subnet, frozen_eval, mark_subnet_changed, model_space, restore_subnet
from .state import StateManager

if TYPE_CHECKING:
    from autonas_dynamic.hparam import Hparam

__all__ = [
    "convert",
    "export",
    "get_subnet_config",
    "is_configurable",
    "is_dynamic",
    "named_hparams",
    "plain_subnet",
    "print_search_space_summary",
    "replace_forward",
    "sample",
    "sample_and_reset",
    "search_space_size",
    "select",
    "sort_parameters",
]

_EXPORT_MODE = "export_nas"

SampleFunc = Callable[[Sequence[Any]], Any] | Mapping[str, Callable[[Sequence[Any]], Any]]


def convert(model: Any, mode: ModeSpec = "autonas", mode_kwargs: Mapping[str, Any] | None = None) -> nn.Module:
    """Convert ``model`` in place with ``mode`` and return it.

    Args:
        model: A module, a model class, or a ``(cls, args, kwargs)`` recipe. A DataParallel/DDP
            wrapper is unwrapped with a warning: the inner module is converted and returned.
        mode: ``"autonas"`` (default rules), or ``[("autonas", rules)]`` where ``rules`` is an
            ``AutoNASConfig`` dict such as ``{"nn.Conv2d": {"*": {"channels_ratio": (0.5, 1.0)}}}``.
        mode_kwargs: Extra keyword arguments for the modes' convert entrypoints, e.g.
            ``{"seed": 0}`` to seed the subnet sampling of ``"autonas"`` training.

    Returns:
        The converted model: still an instance of its class, with the same parameter names,
        now holding searchable hparams and, for ``"autonas"``, training-time subnet sampling.

    Raises:
        autonas_dynamic.errors.UnsupportedModelError: A TorchScript module, or channels-last parameters.
        autonas_dynamic.errors.AlreadyConvertedError: ``model`` already is a search space.
        ApplyModeError: Nothing is configurable under the rules, or the modes may not follow each other.
    """
    return apply_mode(unwrap_model(model, caller="convert"), mode, mode_kwargs=mode_kwargs)


def export(model: nn.Module, strict: bool = True, calib: bool = False) -> nn.Module:
    """Export the active subnet of ``model`` in place to plain torch modules and return it.

    A model that is exported already (what :func:`autonas_modes.search` returns) is returned as
    it is: the same object, unchanged.

    Args:
        model: A converted model (a DataParallel/DDP wrapper is unwrapped with a warning).
        strict: Restoring the export later requires the full stored subnet config.
        calib: Recalibrate BN statistics from the cached batches first if they are stale.

    Raises:
        NotConvertedError: ``model`` was never converted, so there is nothing to export.
    """
    model = unwrap_model(model, caller="export")
    if not StateManager.is_converted(model, is_root=True) or StateManager(model).last_mode is None:
        raise NotConvertedError(
            f"{type(model).__name__} was never converted into a search space, so there is nothing to export; "
            "convert it first: model = autonas.convert(model, mode='autonas')."
        )
    if StateManager(model).is_closed_by(_EXPORT_MODE):
        return model
    return apply_mode(model, [(_EXPORT_MODE, {"strict": strict, "calib": calib})])


@contextmanager
def plain_subnet(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager: the active subnet of ``model`` as plain torch modules in eval mode; ``model`` is unchanged.

    A converted model is exported on a copy (what :func:`export` would give, without touching the
    model); a plain or already exported model is used as it is, in eval mode, with every
    submodule's train/eval flag restored on exit. Deployment tools (ONNX export, latency in
    another runtime) trace this model.
    """
    model = unwrap_model(model)
    if is_dynamic(model):
        yield export(copy.deepcopy(model)).eval()
        return
    with frozen_eval(model):
        yield model


def is_dynamic(model: nn.Module) -> bool:
    """Whether any module of ``model`` is a dynamic (searchable) module."""
    from autonas_dynamic import is_dynamic as _is_dynamic

    return _is_dynamic(unwrap_model(model))


def is_configurable(model: nn.Module) -> bool:
    """Whether ``model`` has at least one hparam with more than one choice."""
    model = unwrap_model(model)
    return is_dynamic(model) and model_space(model).is_configurable()


def named_hparams(model: nn.Module, configurable: bool | None = None) -> Iterator[tuple[str, Hparam]]:
    """``(full name, hparam)`` pairs; ``configurable=True`` gives each configurable hparam once."""
    return model_space(unwrap_model(model)).named_hparams(configurable=configurable)


def search_space_size(model: nn.Module) -> int:
    """The number of subnets: the product of the choice counts of the configurable hparams."""
    return model_space(unwrap_model(model)).size()


def get_subnet_config(model: nn.Module, configurable: bool | None = None) -> dict[str, Any]:
    """The active value of every hparam (``configurable=True``: each configurable hparam once)."""
    return model_space(unwrap_model(model)).config(configurable=configurable)


def sample(model: nn.Module, sample_func: SampleFunc | None = None) -> dict[str, Any]:
    """Activate a subnet drawn by ``sample_func`` and return the full config.

    Args:
        model: A converted model.
        sample_func: A function of an hparam's choices (``min``, ``max``, ``random.choice``,
            :func:`autonas_modes.centroid`), or a dict from glob patterns over hparam names to
            such functions (the last matching pattern wins; unmatched hparams keep their value).
            ``None`` draws uniformly at random from the model's seeded generator.
    """
    model = unwrap_model(model)
    mark_subnet_changed(model)
    return model_space(model).sample(sample_func if sample_func is not None else _random_choice(model))


def _random_choice(model: nn.Module) -> Callable[[Sequence[Any]], Any]:
    """``choice`` of the model's own seeded generator (the same on every rank), else of ``random``."""
    from autonas_patch import PatchManager

    if PatchManager.is_patched(model):
        return PatchManager.get_manager(model).generator.rng.choice
    return random.choice


def select(model: nn.Module, config: Mapping[str, Any], strict: bool = True) -> None:
    """Activate the subnet described by ``config`` (a full or configurable-only subnet config).

    With ``strict`` every configurable hparam must be given and names that match nothing are an
    error; the error lists the missing, unexpected or inconsistent names. BatchNorm statistics
    become stale only if the active subnet changes (selecting it again keeps them).
    """
    model = unwrap_model(model)
    if changes_subnet(model, config):
        mark_subnet_changed(model)
    restore_subnet(model, config, strict=strict)


@contextmanager
def sample_and_reset(model: nn.Module, sample_func: SampleFunc | None = None) -> Iterator[dict[str, Any]]:
    """Context manager: activate a sampled subnet, restore the previous subnet on exit."""
    previous = get_subnet_config(model)
    try:
        yield sample(model, sample_func)
    finally:
        select(model, previous)


def sort_parameters(model: nn.Module, hps_to_sort: list[str] | None = None) -> None:
    """Permute the stored channels of ``model`` by importance, so the most important come first.

    Outputs at the maximal subnet are unchanged; smaller subnets then keep the most important
    channels. ``hps_to_sort`` limits sorting to those hparam names.
    """
    model_space(unwrap_model(model)).sort_parameters(hps_to_sort=hps_to_sort)


def print_search_space_summary(model: nn.Module) -> None:
    """Print every hparam with its choices (configurable ones marked with ``*``)."""
    model_space(unwrap_model(model)).print_summary()


@contextmanager
def replace_forward(model: nn.Module, new_forward: Callable[..., Any]) -> Iterator[nn.Module]:
    """Context manager: calls of ``model`` run ``new_forward(*args, **kwargs)`` instead of its forward.

    The class's forward is swapped (so a patched model keeps its training-time hooks around the
    new forward); the original, bound to ``model``, stays reachable as ``model.forward_original``
    inside the block.
    """
    model = unwrap_model(model)
    cls = type(model)
    original = cls.forward

    def forward(self: nn.Module, *args: Any, **kwargs: Any) -> Any:
        return new_forward(*args, **kwargs)

    model.forward_original = original.__get__(model, cls)
    cls.forward = forward
    try:
        yield model
    finally:
        cls.forward = original
        del model.forward_original
