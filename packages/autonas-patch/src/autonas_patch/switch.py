"""The process-wide switch that turns training-time sampling and BN recalibration on and off.

The switch is on by default. While it is off, a patched model behaves like the plain model: a
training forward neither samples a subnet nor queues its inputs, and ``model.eval()`` does not
recalibrate BatchNorm statistics. Explicit calls (:func:`autonas_patch.prep_for_eval`,
``PatchManager.call_post_eval``) still run.

Every switch object works as a context manager and as a decorator, nests, and restores the
previous value on exit even when the body raises.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["enable_patches", "is_patches_enabled", "no_patches", "set_patches_enabled"]

F = TypeVar("F", bound=Callable[..., Any])

_enabled = True


def is_patches_enabled() -> bool:
    """Whether training-time sampling and BN recalibration are currently on."""
    return _enabled


def _set(flag: bool) -> None:
    global _enabled
    _enabled = flag


class _Switch:
    """Sets the switch to ``flag`` inside a ``with`` block or a decorated call, then restores it."""

    def __init__(self, flag: bool) -> None:
        if not isinstance(flag, bool):
            raise TypeError(f"the patches switch takes a bool, got {flag!r} ({type(flag).__name__})")
        self._flag = flag
        self._previous: list[bool] = []

    def __enter__(self) -> None:
        self._previous.append(_enabled)
        _set(self._flag)

    def __exit__(self, *exc_info: object) -> None:
        _set(self._previous.pop())

    def __call__(self, func: F) -> F:
        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with _Switch(self._flag):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class no_patches(_Switch):
    """Turn patches off inside a ``with`` block or a decorated function.

    Example::

        with autonas_patch.no_patches():
            model.train()
            model(x)  # runs the active subnet, samples nothing, queues nothing
    """

    def __init__(self) -> None:
        super().__init__(False)


class enable_patches(_Switch):
    """Turn patches on inside a ``with`` block or a decorated function (undoes an outer ``no_patches``)."""

    def __init__(self) -> None:
        super().__init__(True)


class set_patches_enabled(_Switch):
    """Set the switch to ``flag`` now; used as a context manager, restore the previous value on exit.

    Like ``torch.set_grad_enabled``: ``set_patches_enabled(False)`` as a plain call switches patches off
    for good; ``with set_patches_enabled(False): ...`` switches them off for the block only; as a
    decorator (``@set_patches_enabled(False)``) it leaves the switch alone until the function runs.
    """

    def __init__(self, flag: bool) -> None:
        super().__init__(flag)
        self._before_call: bool | None = _enabled
        _set(flag)

    def __enter__(self) -> None:
        # The first ``with`` restores the value from before the call; a reused object restores its entry value.
        self._previous.append(_enabled if self._before_call is None else self._before_call)
        self._before_call = None
        _set(self._flag)

    def __call__(self, func: F) -> F:
        if self._before_call is not None:
            _set(self._before_call)
            self._before_call = None
        return super().__call__(func)
