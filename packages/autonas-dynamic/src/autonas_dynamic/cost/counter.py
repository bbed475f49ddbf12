"""Reference counts: FLOPs from one recorded forward, parameters from the module tree."""

from __future__ import annotations

from typing import Any

from torch import nn

from .recorder import record_ops
from .structure import walk_modules

__all__ = ["count_flops", "count_params"]


def count_flops(model: nn.Module, dummy_input: Any) -> int:
    """FLOPs (``2 x MACs``) of one inference forward of ``model`` on ``dummy_input``.

    Runs the forward once (eval mode, no autograd; every module's training flag is restored) and
    sums the cost of each aten call by the conventions of :mod:`autonas_dynamic.cost.ops`. Works on
    plain and dynamic models alike (a dynamic model runs its active subnet).

    Args:
        model: The model.
        dummy_input: A single value (the only positional argument), a tuple of positional
            arguments, or a tuple ending in a dict of keyword arguments.

    Example:
        >>> conv = nn.Conv2d(2, 4, 3, groups=2, padding="same", bias=False)
        >>> count_flops(conv, torch.randn(1, 2, 3, 5))
        1080
    """
    return sum(record.flops for record in record_ops(model, dummy_input))


def count_params(model: nn.Module) -> int:
    """Number of parameters of ``model`` (of its active subnet if it is dynamic).

    Every parameter counts, batch-norm ones included; a parameter registered in several places
    counts once. Blocks that a dynamic ``Sequential`` drops at its active depth are left out and
    dynamic layers count their active slices, so this equals the parameter count of the exported
    subnet.
    """
    seen: set[int] = set()
    total = 0
    for _, module, gates in walk_modules(model):
        if not all(gate.is_open for gate in gates):
            continue
        for name, stored in module._parameters.items():
            if stored is None or id(stored) in seen:
                continue
            seen.add(id(stored))
            total += getattr(module, name).numel()
    return total
