"""What the analysis knows about the value of each graph node."""

from __future__ import annotations

from dataclasses import dataclass

from .dims import Dims
from .symbols import Symbol


@dataclass(frozen=True)
class Flow:
    """A tensor (or a shape read from one) whose elastic axis is sized by ``sym``.

    ``sym`` None means the tensor's sizes are fixed (a model input, a reshaped tensor, a
    parameter read directly...). ``is_shape`` marks a shape or size read from a tensor: it carries
    the tensor's channel count into whatever consumes it. ``unit_tail`` marks a tensor whose
    elastic axis is axis 1 and whose every later axis is statically 1 (the output of a global
    adaptive pool): flattening it from axis 1 moves the elastic axis to the last axis unchanged.
    ``pieces`` marks the tuple of equal parts ``x.chunk(n, dim)`` returns along the elastic axis:
    ``sym`` then sizes each part.
    ``block`` is the number of ``sym``'s channels one index along the elastic axis stands for: 1,
    or the head width after the channels were split into ``(heads, head_dim)``. ``repeat``: each
    such index appears that many times in a row (key/value heads repeated for grouped queries).
    ``parts_axis``: the notations of an axis along which equal parts of ``sym``'s size are stacked
    (a fused ``qkv`` projection reshaped to ``(..., 3, heads, head_dim)``); ``sym`` then sizes one
    part. Empty: none.
    """

    sym: Symbol | None
    dims: Dims = frozenset()
    is_shape: bool = False
    unit_tail: bool = False
    pieces: bool = False
    block: int = 1
    repeat: int = 1
    parts_axis: Dims = frozenset()


class Neutral:
    """A value that carries no channel count: dtypes, devices, spatial sizes, constants."""

    def __repr__(self) -> str:
        return "NEUTRAL"


NEUTRAL = Neutral()
FIXED = Flow(None)
Value = Flow | Neutral
