"""Glue between a converted model, its search space and its patch manager."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch.nn as nn

if TYPE_CHECKING:
    from autonas_dynamic.hparam import Hparam
    from autonas_dynamic.space import SearchSpace

__all__ = [
    "HparamSampler",
    "ModelSearchSpace",
    "changes_subnet",
    "coerce_config",
    "from_json",
    "frozen_eval",
    "mark_subnet_changed",
    "model_space",
    "patch_model",
    "restore_subnet",
    "unpatch_model",
]


class HparamSampler:
    """The patch manager's sampling protocol over the configurable hparams of a converted model.

    Holds the hparam objects themselves (shared with the layers), so it survives ``deepcopy``
    and pickling together with the model and costs no tree walk per training step.
    """

    def __init__(self, hparams: list[Hparam]) -> None:
        self.hparams = hparams

    def is_configurable(self) -> bool:
        """Whether any hparam has several choices."""
        return any(hp.is_configurable for hp in self.hparams)

    def sample(self, rng: random.Random) -> None:
        """Activate a uniformly drawn choice of every configurable hparam."""
        for hp in self.hparams:
            hp.active = rng.choice(hp.choices)

    def sample_max(self) -> None:
        """Activate the maximal subnet."""
        for hp in self.hparams:
            hp.active = hp.max

    def sample_min(self) -> None:
        """Activate the minimal subnet."""
        for hp in self.hparams:
            hp.active = hp.min


def model_space(model: nn.Module) -> SearchSpace:
    """The search space view over an already converted model (no tracing)."""
    from autonas_dynamic.space import SearchSpace

    return SearchSpace(model)


def from_json(hparam: Hparam, value: Any) -> Any:
    """``value`` as ``hparam`` takes it: a JSON list read back as a tuple where the choices are tuples (kernel sizes).

    The one rule for configs that went through JSON (checkpoints, saved states).
    """
    if isinstance(value, list) and any(isinstance(choice, tuple) for choice in hparam.choices):
        return tuple(value)
    return value


def coerce_config(hparams: Mapping[str, Hparam], config: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` read through :func:`from_json`; names that are no key of ``hparams`` pass through unchanged."""
    return {name: from_json(hparams[name], value) if name in hparams else value for name, value in config.items()}


class ModelSearchSpace:
    """A converted model seen through the ``autonas_search.SearchSpace`` protocol: the one adapter.

    ``hparams()``, ``config()`` and ``select()`` work on the configurable hparams only (each
    shared hparam once, under its first full name); the fixed ones never change. ``original()``
    is the unmodified architecture, which ``"N%"`` limits refer to.
    """

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self._hparams = dict(model_space(model).named_hparams(configurable=True))

    def hparams(self) -> dict[str, list[Any]]:
        """The choices of every configurable hparam."""
        return {name: hp.choices for name, hp in self._hparams.items()}

    def config(self) -> dict[str, Any]:
        """The active value of every configurable hparam."""
        return {name: hp.active for name, hp in self._hparams.items()}

    def original(self) -> dict[str, Any]:
        """The configuration of the original model."""
        return {name: hp.original for name, hp in self._hparams.items()}

    def select(self, config: Mapping[str, Any]) -> None:
        """Activate ``config`` (read through :func:`from_json`, so JSON round-tripped configs work)."""
        for name, value in config.items():
            hp = self._hparams.get(name)
            if hp is None:
                raise KeyError(f"{name!r} is not a configurable hparam of this model; known: {sorted(self._hparams)}")
            hp.active = from_json(hp, value) if isinstance(value, list) else value


def changes_subnet(model: nn.Module, config: Mapping[str, Any]) -> bool:
    """Whether selecting ``config`` would change the active subnet of ``model``.

    A name that is no hparam of the model counts as a change (selecting it is an error, or ignored).
    """
    space = model_space(model)
    active = space.config()
    coerced = coerce_config(dict(space.named_hparams()), config)
    return any(name not in active or active[name] != value for name, value in coerced.items())


def restore_subnet(model: nn.Module, config: Mapping[str, Any], strict: bool = True) -> dict[str, Any]:
    """Select a stored (possibly JSON round-tripped) subnet config on ``model``.

    Returns:
        ``config`` as selected: JSON lists turned back into tuples (see :func:`coerce_config`), so
        a restored state can keep exactly what was saved.
    """
    space = model_space(model)
    coerced = coerce_config(dict(space.named_hparams()), config)
    space.select(coerced, strict=strict)
    return coerced


def patch_model(model: nn.Module, manager_cls: type, seed: int | None = None) -> None:
    """Patch ``model`` with ``manager_cls`` driving its search space (``seed``: its sampling generator's)."""
    hparams = [hp for _, hp in model_space(model).named_hparams(configurable=True)]
    manager_cls(model).patch(HparamSampler(hparams), seed=seed)


def mark_subnet_changed(model: nn.Module) -> None:
    """Tell the patch manager (if any) that the subnet changed: its BN statistics are now stale."""
    from autonas_patch import PatchManager

    if PatchManager.is_patched(model):
        PatchManager.get_manager(model).call_pre_sample()


def unpatch_model(model: nn.Module, calibrate: bool = False) -> None:
    """Remove the patch from ``model`` if it has one, recalibrating stale BN statistics first if asked."""
    from autonas_patch import PatchManager

    if not PatchManager.is_patched(model):
        return
    manager = PatchManager.get_manager(model)
    if calibrate:
        manager.call_post_eval()
    manager.unpatch()


@contextmanager
def frozen_eval(model: nn.Module) -> Iterator[nn.Module]:
    """Context manager: ``model`` in eval mode with patches off (no sampling, no BN recalibration).

    Every submodule's own train/eval flag is restored on exit.
    """
    from autonas_dynamic.calling import training_mode
    from autonas_patch import no_patches

    with no_patches(), training_mode(model, False):
        yield model
