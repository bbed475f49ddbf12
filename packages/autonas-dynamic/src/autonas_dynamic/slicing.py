"""Taking the active part of a stored tensor with as little work as possible.

Channel sets are prefixes, so most slicing yields views (writes such as BatchNorm running-stat
updates go through to the stored tensor) and, at the maximal subnet, the stored tensor itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["Index", "crop_kernel", "slice_tensor"]

#: One dimension's active part: a slice, an index tensor (non-prefix concat channels) or ``None`` (all).
Index = slice | torch.Tensor | None


def _covers(index: Index, size: int) -> bool:
    if index is None:
        return True
    if isinstance(index, slice):
        return (index.start in (None, 0)) and (index.stop is None or index.stop >= size) and index.step in (None, 1)
    return False


def slice_tensor(tensor: torch.Tensor, indices: Sequence[Index]) -> torch.Tensor:
    """The part of ``tensor`` selected per leading dimension by ``indices``.

    Returns ``tensor`` itself when every index covers its whole dimension, a view when all are
    slices, and a gathered copy only for the dimensions indexed by a tensor.
    """
    shape = tensor.shape
    if all(_covers(index, shape[dim]) for dim, index in enumerate(indices)):
        return tensor
    view = tensor[tuple(index if isinstance(index, slice) else slice(None) for index in indices)]
    for dim, index in enumerate(indices):
        if isinstance(index, torch.Tensor):
            view = view.index_select(dim, index.to(view.device))
    return view


def crop_kernel(full: Sequence[int], active: Sequence[int]) -> tuple[slice, ...]:
    """Centre crop of a kernel of size ``full`` down to ``active`` (same parity per dimension)."""
    return tuple(slice((big - small) // 2, (big - small) // 2 + small) for big, small in zip(full, active, strict=True))
