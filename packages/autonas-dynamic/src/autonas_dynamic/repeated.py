"""A searchable layer count where no container holds the layers: a shared block called in a loop.

ALBERT runs one layer group ``config.num_hidden_layers`` times. When the analysis finds such a loop
whose trailing calls may be left out (:mod:`autonas_dynamic.trace.repeats`), the calling module
gets a ``depth`` hparam (rule key ``"nn.ModuleList"``, field ``min_depth``). While its forward runs,
the count attribute it loops over holds the active depth (and its original value again afterwards,
so a config other modules share reads unchanged); export sets it for good, so the exported model is
the original class running the block ``depth`` times (``config.num_hidden_layers`` says so).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from torch import nn

from .dynamic import DynamicModule, HparamAttribute
from .hparam import DepthHparam

if TYPE_CHECKING:
    from .trace.repeats import RepeatedBlock

__all__ = ["RepeatedCalls", "count_set"]


class RepeatedCalls(DynamicModule):
    """A module whose forward calls one block as many times as an int attribute says: the ``depth``."""

    depth = HparamAttribute()
    _repeat: RepeatedBlock

    def _setup(self) -> None:
        repeat = self._repeat
        depth = DepthHparam(len(repeat.skippable))
        depth.restrict_to_trailing(repeat.skippable)
        self._register_hparam("depth", depth)

    @property
    def repeated_block(self) -> nn.Module:
        """The block the forward calls ``depth`` times."""
        return self.get_submodule(self._repeat.block)

    def modify(self, *, min_depth: int = 0) -> None:
        """Keep only depths of at least ``min_depth`` (the full depth always stays)."""
        self._hparams["depth"].restrict_to_at_least(min_depth)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        forward = self._saved.get("forward", super().forward)
        with count_set(self, self._repeat.count, self._hparams["depth"].active):
            return forward(*args, **kwargs)

    @classmethod
    def forward_like(cls, nn_cls: type[nn.Module]) -> Callable[..., Any]:
        """:meth:`forward` with the name and parameters of ``nn_cls.forward`` (code that inspects
        them, as a tracer does, sees the original's)."""

        @functools.wraps(nn_cls.forward)
        def forward(self: RepeatedCalls, *args: Any, **kwargs: Any) -> Any:
            return RepeatedCalls.forward(self, *args, **kwargs)

        return forward

    def _export_attributes(self) -> dict[str, Any]:
        return {}

    def export(self) -> nn.Module:
        """Export in place, the count attribute set to the active depth."""
        repeat = self.__dict__.pop("_repeat")
        _set_count(self, repeat.count, self._hparams["depth"].active)
        return super().export()

    def __reduce_ex__(self, protocol: Any) -> Any:
        from .registry import _new_repeater_instance

        state = self.__dict__.copy()
        state.pop("_memo", None)
        return (_new_repeater_instance, (self._original_cls,), state)


def _get_count(module: nn.Module, path: tuple[str, ...]) -> int:
    """The int at attribute ``path`` of ``module``."""
    holder: Any = module
    for name in path:
        holder = getattr(holder, name)
    return holder


def _set_count(module: nn.Module, path: tuple[str, ...], value: int) -> None:
    """Set the int at attribute ``path`` of ``module`` to ``value``."""
    holder: Any = module
    for name in path[:-1]:
        holder = getattr(holder, name)
    setattr(holder, path[-1], value)


@contextmanager
def count_set(module: nn.Module, path: tuple[str, ...], value: int) -> Iterator[None]:
    """Set the int at attribute ``path`` of ``module`` to ``value`` while the body runs."""
    original = _get_count(module, path)
    _set_count(module, path, value)
    try:
        yield
    finally:
        _set_count(module, path, original)
