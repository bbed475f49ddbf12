"""Elastic dimensions: which tensor axis a symbol sizes, in one or more index notations.

A conv2d's channels are axis ``1`` of an ``NCHW`` tensor, also reachable as ``-3``; a Linear's
features are axis ``-1``. The rank of a tensor is unknown while tracing, so a set that holds both
a non-negative and a negative notation pins the rank; a set with one notation can only be compared
with axes written the same way. Every helper answers conservatively: *unknown* counts as *maybe*.
"""

from __future__ import annotations

from collections.abc import Iterable

Dims = frozenset[int]


def rank_of(dims: Dims) -> int | None:
    """The tensor rank implied by ``dims`` holding both notations of the same axis, else None."""
    pos = [d for d in dims if d >= 0]
    neg = [d for d in dims if d < 0]
    if pos and neg:
        return pos[0] - neg[0]
    return None


def is_elastic(axis: int, dims: Dims) -> bool | None:
    """Whether ``axis`` names the elastic axis: True, False, or None when it cannot be told."""
    if axis in dims:
        return True
    rank = rank_of(dims)
    if rank is not None:
        return axis % rank == next(d for d in dims if d >= 0) if -rank <= axis < rank else False
    same_notation = [d for d in dims if (d >= 0) == (axis >= 0)]
    return False if same_notation else None


def may_touch(dims: Dims, axes: Iterable[int]) -> bool:
    """Whether any of ``axes`` is (or may be) the elastic axis."""
    return any(is_elastic(a, dims) is not False for a in axes)


def after_reduction(dims: Dims, axes: Iterable[int], keepdim: bool) -> Dims:
    """The notations of the elastic axis after removing non-elastic ``axes`` (e.g. a spatial mean)."""
    axes = list(axes)
    if keepdim:
        return dims
    kept = set()
    for d in dims:
        if (d >= 0 and all(a >= 0 and a > d for a in axes)) or (d < 0 and all(a < 0 and a < d for a in axes)):
            kept.add(d)
    rank = rank_of(dims)
    if rank is not None:
        pos = next(d for d in dims if d >= 0)
        removed_before = sum(1 for a in axes if a % rank < pos)
        kept.add(pos - removed_before)
        kept.add(pos - removed_before - (rank - len(set(a % rank for a in axes))))
    return frozenset(kept)


def ndim_dims(ndim: int | None) -> Dims:
    """The channel notations of an N-d conv / norm output: ``{1, -(ndim+1)}``, or ``{1}``."""
    return frozenset({1} if ndim is None else {1, -(ndim + 1)})
