"""What the module tree says about a subnet: which blocks run, which hparams exist.

A block of a dynamic ``nn.Sequential`` runs (and is kept by export) iff the container's depth
hparam is larger than the block's index; a module nested in several such containers runs iff all
of its :class:`Gate`\\ s are open. A block that fills several positions (``nn.Sequential(*[block] * 4)``)
exists while its first position runs, and its i-th call runs iff its i-th position does
(:func:`repeated_blocks`). So does a shared block that a module's forward calls ``depth`` times
(:class:`~autonas_dynamic.repeated.RepeatedCalls`): its i-th call runs iff the depth exceeds i.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch import nn

from ..dynamic import DynamicModule
from ..hparam import Hparam
from ..repeated import RepeatedCalls

__all__ = ["Gate", "Repeat", "depth_hparam", "repeated_blocks", "walk_modules"]


@dataclass(frozen=True, eq=False)
class Gate:
    """Block ``index`` of a dynamic ``Sequential`` whose depth hparam is ``depth``: open iff depth > index."""

    depth: Hparam
    index: int

    @property
    def is_open(self) -> bool:
        return self.depth.active > self.index

    @property
    def can_close(self) -> bool:
        """Whether some choice of the depth drops this block."""
        return self.depth.min <= self.index


def depth_hparam(module: nn.Module) -> Hparam | None:
    """The depth hparam of a dynamic ``nn.Sequential`` or ``nn.ModuleList``, else ``None``."""
    if isinstance(module, DynamicModule) and isinstance(module, (nn.Sequential, nn.ModuleList)):
        return dict(module.named_hparams()).get("depth")
    return None


def walk_modules(model: nn.Module) -> Iterator[tuple[str, nn.Module, tuple[Gate, ...]]]:
    """Yield ``(qualified name, module, gates)`` for every module once, in ``named_modules`` order."""
    seen: set[int] = set()

    def visit(
        name: str, module: nn.Module, gates: tuple[Gate, ...]
    ) -> Iterator[tuple[str, nn.Module, tuple[Gate, ...]]]:
        if id(module) in seen:
            return
        seen.add(id(module))
        yield name, module, gates
        depth = depth_hparam(module)
        for index, (child_name, child) in enumerate(module._modules.items()):
            if child is None:
                continue
            child_gates = (*gates, Gate(depth, index)) if depth is not None else gates
            yield from visit(f"{name}.{child_name}" if name else child_name, child, child_gates)

    yield from visit("", model, ())


@dataclass(frozen=True, eq=False)
class Repeat:
    """A block at several ``positions`` of a dynamic ``Sequential`` whose depth hparam is ``depth``
    (or called ``depth`` times by a :class:`RepeatedCalls`: positions ``0..`` one per call)."""

    depth: Hparam
    positions: tuple[int, ...]


def repeated_blocks(model: nn.Module) -> dict[int, Repeat]:
    """For every module inside (or being) a block that fills several positions of a dynamic
    ``Sequential``, or that a :class:`RepeatedCalls` calls ``depth`` times: that repetition, keyed
    by ``id(module)``.

    Raises:
        ValueError: A module is inside two such repeated blocks (its calls cannot be told apart).
    """
    found: dict[int, Repeat] = {}
    for block, repeat in _repetitions(model):
        for module in block.modules():
            if id(module) in found:
                raise ValueError(f"{type(module).__name__} is inside two blocks that each fill several positions")
            found[id(module)] = repeat
    return found


def _repetitions(model: nn.Module) -> Iterator[tuple[nn.Module, Repeat]]:
    """Each repeated block with its repetition."""
    for _, container, _ in walk_modules(model):
        if isinstance(container, RepeatedCalls):
            depth = container.get_hparam("depth")
            yield container.repeated_block, Repeat(depth, tuple(range(depth.original)))
            continue
        depth = depth_hparam(container)
        if depth is None:
            continue
        positions: dict[int, list[int]] = {}
        blocks: dict[int, nn.Module] = {}
        for index, child in enumerate(container._modules.values()):
            if child is not None:
                positions.setdefault(id(child), []).append(index)
                blocks[id(child)] = child
        for key, indices in positions.items():
            if len(indices) >= 2:
                yield blocks[key], Repeat(depth, tuple(indices))
