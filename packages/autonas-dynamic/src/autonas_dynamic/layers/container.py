"""Dynamic Sequential: a searchable depth that drops trailing blocks (the shared :class:`DepthContainer`)."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable
from typing import Any

from torch import nn

from ..dynamic import DynamicModule, HparamAttribute
from ..hparam import DepthHparam
from ..registry import register_layer

__all__ = ["DepthContainer"]


class DepthContainer(DynamicModule):
    """A container of blocks with a ``depth`` hparam: only the first ``depth`` blocks are active.

    Printing and export see the active blocks only. Which trailing blocks may be dropped is decided
    by the search-space analysis (:meth:`DepthHparam.restrict_to_trailing`).
    """

    depth = HparamAttribute()

    def _setup(self) -> None:
        self._register_hparam("depth", DepthHparam(len(self._modules)))

    def _active_blocks(self) -> dict[str, nn.Module | None]:
        return dict(itertools.islice(self._modules.items(), self._hparams["depth"].active))

    def __repr__(self) -> str:
        modules = self._modules
        self.__dict__["_modules"] = self._active_blocks()
        try:
            return super().__repr__()
        finally:
            self.__dict__["_modules"] = modules

    def modify(self, *, min_depth: int = 0) -> None:
        """Keep only depths of at least ``min_depth`` (the full depth always stays)."""
        self._hparams["depth"].restrict_to_at_least(min_depth)

    def _export_attributes(self) -> dict[str, Any]:
        return {}

    def export(self) -> nn.Module:
        """Export in place, keeping only the first ``depth`` blocks."""
        self.__dict__["_modules"] = self._active_blocks()
        return super().export()


def _pass_through_when_dropped(
    container: DepthContainer, index: int, block: nn.Module, args: tuple, output: Any
) -> Any:
    """Forward hook of a Sequential's block: a dropped block called from outside the container returns its input."""
    if index >= container._hparams["depth"].active and args:
        return args[0]
    return None


class _DynamicSequential(DepthContainer):
    """Dynamic Sequential: only the first ``depth`` blocks run.

    ``state_dict``, ``len``, indexing and ``named_modules`` always see every block; only
    ``forward``, printing and export see the first ``depth``. Code that runs the blocks one by
    one instead of calling the container (timm's gradient checkpointing, ``checkpoint_seq``) gets
    each dropped block's input back as its output, so it computes the active subnet too (the
    dropped block's own computation is discarded).
    """

    def _setup(self) -> None:
        super()._setup()
        blocks = list(self._modules.values())
        for index, block in enumerate(blocks):
            if block is not None and blocks.count(block) == 1:  # a block filling several positions runs while any does
                block.register_forward_hook(functools.partial(_pass_through_when_dropped, self, index))

    def forward(self, input: Any) -> Any:
        blocks: Iterable[nn.Module] = self._modules.values()  # type: ignore[assignment]
        for module in itertools.islice(blocks, self._hparams["depth"].active):
            input = module(input)
        return input

    def export(self) -> nn.Module:
        """Export in place, keeping only the first ``depth`` blocks, without the pass-through hooks."""
        for block in self._modules.values():
            if block is None:
                continue
            hooks = block._forward_hooks
            for key in [key for key, hook in hooks.items() if _is_pass_through(hook)]:
                del hooks[key]
        return super().export()


def _is_pass_through(hook: Any) -> bool:
    return isinstance(hook, functools.partial) and hook.func is _pass_through_when_dropped


register_layer(nn.Sequential, key="nn.Sequential", dynamic=_DynamicSequential)
