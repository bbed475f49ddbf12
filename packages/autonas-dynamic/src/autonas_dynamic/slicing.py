"""Taking the active part of a stored tensor with as little work as possible.

Channel sets are prefixes, so most slicing yields views (writes such as BatchNorm running-stat
updates go through to the stored tensor) and, at the maximal subnet, the stored tensor itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .ext.fused import slice_parameter

__all__ = ["Index", "crop_kernel", "slice_tensor"]

#: One dimension's active part: a slice, an index tensor (non-prefix concat channels) or ``None`` (all).
Index = slice | torch.Tensor | None


def slice_tensor(tensor: torch.Tensor, indices: Sequence[Index]) -> torch.Tensor:
    """The part of ``tensor`` selected per leading dimension by ``indices``.

    Returns ``tensor`` itself when every index covers its whole dimension, one strided view when
    all are slices (a single ``as_strided`` call, the cheapest view torch offers; in training, large
    parameters get it from the compiled extension when the fused path is on, see
    :mod:`autonas_dynamic.ext`; ``narrow`` per dimension while torch.compile traces, since
    ``as_strided`` needs the storage offset), and a gathered copy only along the dimensions
    indexed by a tensor.
    Slices must have step 1.
    """
    shape = tensor.shape
    sizes: list[int] | None = None
    starts = [0] * len(shape)
    gathers = []
    for dim, index in enumerate(indices):
        if index is None:
            continue
        if isinstance(index, slice):
            start = index.start or 0
            stop = shape[dim] if index.stop is None else min(index.stop, shape[dim])
            if start == 0 and stop == shape[dim]:
                continue
            if sizes is None:
                sizes = list(shape)
            sizes[dim] = stop - start
            starts[dim] = start
        else:
            gathers.append((dim, index))
    if sizes is not None:
        fused = slice_parameter(tensor, starts, sizes) if not gathers else None
        if fused is not None:
            tensor = fused
        elif torch.compiler.is_compiling():
            for dim, (start, size) in enumerate(zip(starts, sizes, strict=True)):
                if size != shape[dim]:
                    tensor = tensor.narrow(dim, start, size)
        else:
            strides = tensor.stride()
            offset = sum(start * stride for start, stride in zip(starts, strides, strict=False))
            tensor = tensor.as_strided(sizes, strides, tensor.storage_offset() + offset)
    for dim, index in gathers:
        tensor = tensor.index_select(dim, index.to(tensor.device))
    return tensor


def crop_kernel(full: Sequence[int], active: Sequence[int]) -> tuple[slice, ...]:
    """Centre crop of a kernel of size ``full`` down to ``active`` (same parity per dimension)."""
    return tuple(slice((big - small) // 2, (big - small) // 2 + small) for big, small in zip(full, active, strict=True))
