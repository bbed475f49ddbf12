"""Patching a model instance: hooked ``forward`` / ``train`` / DataParallel replication, and ``prep_for_eval``."""

from __future__ import annotations

import contextlib
import functools
import inspect
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from .generator import SyncedRandom
from .sampler import SubnetSampler
from .switch import is_patches_enabled

__all__ = ["PatchManager", "prep_for_eval"]

_DATA = "_autonas_patch_data"
_MANAGER_CLS = "_autonas_patch_cls"
_HOOKED = ("forward", "train", "_replicate_for_data_parallel")


def _unhooked_key(name: str) -> str:
    return f"_autonas_unhooked_{name}"


_guard = threading.local()


@contextlib.contextmanager
def _post_eval_suppressed() -> Iterator[None]:
    """Inside this block ``model.train(False)`` on a patched model does not run the post-eval hook."""
    depth = getattr(_guard, "depth", 0)
    _guard.depth = depth + 1
    try:
        yield
    finally:
        _guard.depth = depth


def _original(module: nn.Module, name: str) -> Callable[..., Any]:
    """The method ``name`` as it was before patching (an instance override, or the class's method)."""
    stored = module.__dict__[_unhooked_key(name)]
    # The class's function bound by partial, not by ``__get__``: torch.compile resolves a
    # ``__get__`` on a module to the instance attribute, which is the hook itself.
    return functools.partial(getattr(type(module), name), module) if stored is None else stored


def _manager_of(module: nn.Module) -> PatchManager:
    return module.__dict__[_MANAGER_CLS](module)


def _run_pre_forward(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    if is_patches_enabled():
        _manager_of(module)._hook_pre_forward(*args, **kwargs)


def _hooked_forward(module: nn.Module, *args: Any, **kwargs: Any) -> Any:
    forward = _original(module, "forward")
    if torch.compiler.is_compiling():
        from .compiling import run_outside_graph  # imported on demand: it loads torch._dynamo

        run_outside_graph(_run_pre_forward, module, args, kwargs)
        return forward(*args, **kwargs)
    if not is_patches_enabled():
        return forward(*args, **kwargs)
    manager = _manager_of(module)
    manager._hook_pre_forward(*args, **kwargs)
    output = forward(*args, **kwargs)
    manager._hook_post_forward(output)
    return output


def _hooked_train(module: nn.Module, mode: bool = True) -> nn.Module:
    result = _original(module, "train")(mode)
    if not mode and is_patches_enabled() and not getattr(_guard, "depth", 0):
        _manager_of(module).call_post_eval()
    return result


def _hooked_replicate_for_data_parallel(module: nn.Module) -> nn.Module:
    # The replica starts as a shallow copy of the module's __dict__, hooks bound to the original
    # included. It is returned as a plain module running the subnet active now: replicas run in
    # parallel threads over shared hyperparameters, so they must not sample or queue.
    replica = _original(module, "_replicate_for_data_parallel")()
    _remove_patch(replica)
    return replica


_HOOKS: dict[str, Callable[..., Any]] = {
    "forward": _hooked_forward,
    "train": _hooked_train,
    "_replicate_for_data_parallel": _hooked_replicate_for_data_parallel,
}


class _HookedMethod:
    """Stands in for a bound method of a patched module; a plain object, so the module pickles and deep-copies."""

    def __init__(self, module: nn.Module, name: str) -> None:
        self.__self__ = module
        self.__name__ = name

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return _HOOKS[self.__name__](self.__self__, *args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.signature(_original(self.__self__, self.__name__))

    def __repr__(self) -> str:
        return f"<patched method {type(self.__self__).__name__}.{self.__name__}>"


def _remove_patch(module: nn.Module) -> None:
    state = module.__dict__
    for name in _HOOKED:
        original = state.pop(_unhooked_key(name))
        if original is None:
            del state[name]
        else:
            state[name] = original
    del state[_DATA], state[_MANAGER_CLS]


def _patched_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name, module) for name, module in model.named_modules() if _DATA in module.__dict__]


def _describe(name: str) -> str:
    return "the model itself" if name == "" else f"submodule {name!r}"


class PatchManager:
    """Patches one model instance so that its forward, train and replication run the manager's hooks.

    Patching touches only the instance, never its class: the methods ``forward``, ``train`` and
    ``_replicate_for_data_parallel`` become instance attributes that call the hooks and then the
    original method; the patch data (a dict, :attr:`patch_data`) and the manager class are stored on
    the instance too. :meth:`unpatch` restores the instance's ``__dict__`` exactly. A patched model
    still pickles and deep-copies (the copy is patched as well), and a model tree carries at most one
    patched module.

    - hooked ``forward``: with patches enabled (:func:`autonas_patch.is_patches_enabled`) runs
      :meth:`_hook_pre_forward` with the call's arguments, then the original forward, then
      :meth:`_hook_post_forward` with its output.
    - hooked ``train(mode)``: runs the original ``train``; then, when ``mode`` is ``False`` and patches
      are enabled, :meth:`_hook_post_eval` (so every ``model.eval()`` may recalibrate).
    - hooked ``_replicate_for_data_parallel``: returns a working replica, an unpatched module that runs
      the subnet active when it was made (``nn.DataParallel`` calls this at every step).

    A manager is a light view over the model: construct one around a patched model whenever needed
    (``PatchManager.get_manager(model)``); all state lives in the patch data.

    Subclasses override the ``_hook_*`` methods and :meth:`_default_patch_data`.

    Args:
        model: The model (the root of the patched tree) to manage.
    """

    #: Whether a training forward activates a freshly sampled subnet (used by subclasses).
    sample_during_training: bool = False

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"a patch manager manages an nn.Module, got {type(model).__name__}")
        self.model = model

    # ----------------------------------------------------------------------------------- lookup
    @staticmethod
    def is_patched(model: nn.Module) -> bool:
        """Whether ``model`` or one of its submodules is patched."""
        return bool(_patched_modules(model))

    @staticmethod
    def get_manager(model: nn.Module) -> PatchManager:
        """The manager (of the recorded class) of the patched module inside ``model`` (``model`` itself or a submodule).

        Raises:
            RuntimeError: No module of ``model`` is patched, or more than one is.
        """
        patched = _patched_modules(model)
        if not patched:
            raise RuntimeError(f"{type(model).__name__} is not patched: no module in it carries patch data")
        if len(patched) > 1:
            names = ", ".join(_describe(name) for name, _ in patched)
            raise RuntimeError(f"{type(model).__name__} holds more than one patched module ({names})")
        return _manager_of(patched[0][1])

    # ------------------------------------------------------------------------------ patch state
    @property
    def patch_data(self) -> dict[str, Any]:
        """The mutable patch data of the model (see the subclass for its keys)."""
        data = self.model.__dict__.get(_DATA)
        if data is None:
            raise RuntimeError(f"{type(self.model).__name__} is not patched (call patch() first)")
        return data

    @property
    def sampler(self) -> SubnetSampler:
        """The sampler given to :meth:`patch`."""
        return self.patch_data["sampler"]

    @property
    def generator(self) -> SyncedRandom:
        """The model's sampling generator; sample the model only through it to keep ranks in step."""
        return self.patch_data["generator"]

    def _default_patch_data(self) -> dict[str, Any]:
        """The manager-specific entries of a fresh patch data dict."""
        return {}

    def patch(self, sampler: SubnetSampler, seed: int | None = None) -> None:
        """Patch the model: from now on its forward, train and replication run the hooks.

        Args:
            sampler: Drives the model's search space (see :class:`autonas_patch.SubnetSampler`).
            seed: Seed of the model's sampling generator (0 is a valid seed); ``None`` draws a random
                seed, made common to all torch.distributed ranks on first use.

        Raises:
            TypeError: ``sampler`` lacks a method of the protocol.
            RuntimeError: The model or one of its submodules is already patched.
        """
        missing = [
            name
            for name in ("is_configurable", "sample", "sample_max", "sample_min")
            if not callable(getattr(sampler, name, None))
        ]
        if missing:
            raise TypeError(
                f"sampler {type(sampler).__name__} does not implement the SubnetSampler protocol: missing {missing}"
            )
        generator = SyncedRandom(seed)
        patched = _patched_modules(self.model)
        if patched:
            name, module = patched[0]
            raise RuntimeError(
                f"cannot patch {type(self.model).__name__}: {_describe(name)} is already patched by "
                f"{module.__dict__[_MANAGER_CLS].__name__}; a model tree carries at most one patched module "
                "(unpatch it first)"
            )
        state = self.model.__dict__
        for name in _HOOKED:
            state[_unhooked_key(name)] = state.get(name)
        for name in _HOOKED:
            state[name] = _HookedMethod(self.model, name)
        state[_MANAGER_CLS] = type(self)
        state[_DATA] = {"sampler": sampler, "generator": generator, **self._default_patch_data()}

    def unpatch(self) -> None:
        """Remove the patch: the model's methods and attributes are exactly as before :meth:`patch`.

        Raises:
            RuntimeError: The model is not patched.
        """
        if _DATA not in self.model.__dict__:
            raise RuntimeError(f"cannot unpatch {type(self.model).__name__}: it is not patched")
        _remove_patch(self.model)

    # -------------------------------------------------------------------------- public triggers
    def sample(self, rng: random.Random | None = None) -> None:
        """Activate a random subnet (runs the pre-sample hook first).

        Args:
            rng: Where the draws come from; ``None`` for the model's generator. Give a generator
                seeded from the model's one to draw a subnet again (the same on every rank).
        """
        self._hook_pre_sample()
        self.sampler.sample(self.generator.rng if rng is None else rng)

    def sample_max(self) -> None:
        """Activate the maximal subnet (runs the pre-sample hook first)."""
        self._hook_pre_sample()
        self.sampler.sample_max()

    def sample_min(self) -> None:
        """Activate the minimal subnet (runs the pre-sample hook first)."""
        self._hook_pre_sample()
        self.sampler.sample_min()

    def call_pre_sample(self) -> None:
        """Tell the manager the architecture is about to change; call before any select/sample done elsewhere."""
        self._hook_pre_sample()

    def call_post_eval(self, forward_loop: Callable[[nn.Module], Any] | None = None) -> None:
        """Run the post-eval hook now, whatever the global switch says (e.g. with a calibration loop)."""
        with _post_eval_suppressed():
            self._hook_post_eval(forward_loop)

    # ------------------------------------------------------------------------------------ hooks
    def _hook_pre_forward(self, *args: Any, **kwargs: Any) -> None:
        """Runs before every forward of the patched model while patches are enabled."""

    def _hook_post_forward(self, output: Any) -> None:
        """Runs after every forward of the patched model while patches are enabled (not under torch.compile)."""

    def _hook_post_eval(self, forward_loop: Callable[[nn.Module], Any] | None = None) -> None:
        """Runs after ``model.train(False)`` while patches are enabled, and from :meth:`call_post_eval`."""

    def _hook_pre_sample(self) -> None:
        """Runs before every architecture change made through the manager or announced by :meth:`call_pre_sample`."""


def prep_for_eval(model: nn.Module, forward_loop: Callable[[nn.Module], Any] | None = None) -> nn.Module:
    """Put ``model`` in eval mode and run its patch manager's post-eval hook once, with ``forward_loop``.

    ``model.eval()`` runs without triggering the hook itself, so the hook runs exactly once (also
    with patches disabled). Given a ``forward_loop`` (a callable taking the model, e.g. iterating
    over a few batches of a data loader), a patched configurable model recalibrates its BatchNorm
    statistics over it and caches its batches; without one, it recalibrates from the cached
    batches if its statistics are stale. An unpatched model is only put in eval mode.

    Returns:
        ``model``, in eval mode.
    """
    with _post_eval_suppressed():
        model.eval()
    if PatchManager.is_patched(model):
        PatchManager.get_manager(model).call_post_eval(forward_loop)
    return model
