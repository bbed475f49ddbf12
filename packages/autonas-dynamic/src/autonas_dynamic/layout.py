"""How a searchable layer's sizes relate to its tensors and to the tensors it reads and writes.

A :class:`LayerLayout` is plain data. It names the layer's width hparams (the size of the
elastic axis of its input, and of its output unless that follows the input), says which
dimensions of which parameters and buffers follow each width, where the elastic axis sits in
the input and output tensors, and whether the layer splits its channels into groups. From it
the tracer derives the layer's coupling symbols, channel sorting knows which tensor dimensions
to permute, and the generic dynamic implementation slices the tensors.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Literal

__all__ = ["AXES", "LayerLayout", "spatial_ndim"]

#: Where the elastic axis of a layer's input and output sits: dim 1 (``N, C, ...``) or the last dim.
AXES = ("channels", "last")

_NAME = re.compile(r"[A-Za-z_]\w*")
_NDIM = re.compile(r"(\d)[dD]")


def spatial_ndim(cls: type) -> int | None:
    """The spatial rank a layer class's name states (``Conv2d`` -> 2, ``BatchNormAct2d`` -> 2).

    Read from the class, or from its nearest base whose name states exactly one rank; ``None``
    when none does (``Linear``, ``GroupNorm``).
    """
    for klass in cls.__mro__:
        ranks = set(_NDIM.findall(klass.__name__))
        if len(ranks) == 1:
            return int(ranks.pop())
    return None


@dataclass(frozen=True)
class LayerLayout:
    """Which sizes of a layer can change, and which tensor dimensions follow them.

    Attributes:
        incoming: The hparam that sizes the elastic axis of the layer's (first) input, e.g.
            ``"in_channels"``. It is also the name of the layer's attribute holding that size.
        outgoing: The hparam that sizes the elastic axis of the output (``"out_channels"``), or
            ``None`` when the output has the input's size (norms, per-channel scales).
        tensors: Per parameter or buffer, the dimensions that follow a width, as ``{dim: hparam}``
            (negative dims count from the end), e.g. ``{"weight": {0: "out_channels", 1:
            "in_channels"}, "bias": {0: "out_channels"}}``. Dimensions not listed keep their size.
        axis: Where the elastic axis sits in the input and output: ``"channels"`` (dim 1, as in
            ``NCHW``; a class name such as ``Conv2d`` also pins the rank) or ``"last"`` (as in
            ``N, L, C``).
        groups: The attribute holding the number of channel groups (grouped convolutions), or
            ``None``. With more than one group, a layer whose input and output widths are equal
            passes its input's width through (both follow the producer), a layer with unequal
            widths keeps both, and in each tensor only the first listed dimension spans the
            groups (later ones hold one group's channels and keep their size).
        sortable: Whether the channels may be reordered by importance (``False`` for GroupNorm,
            where a permutation would mix groups).
    """

    incoming: str
    outgoing: str | None = None
    tensors: Mapping[str, Mapping[int, str]] = field(default_factory=dict)
    axis: Literal["channels", "last"] = "channels"
    groups: str | None = None
    sortable: bool = True

    def __post_init__(self) -> None:
        widths = self.widths
        for name in (*widths, *self.tensors, *([self.groups] if self.groups else [])):
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise ValueError(f"LayerLayout: {name!r} is not an attribute name")
        if self.axis not in AXES:
            raise ValueError(f"LayerLayout: axis must be one of {AXES}, got {self.axis!r}")
        frozen = {}
        for tensor, dims in self.tensors.items():
            if not isinstance(dims, Mapping):
                raise ValueError(f"LayerLayout: tensors[{tensor!r}] must map dims to hparam names, got {dims!r}")
            for dim, hparam in dims.items():
                if isinstance(dim, bool) or not isinstance(dim, int):
                    raise ValueError(f"LayerLayout: tensors[{tensor!r}] has a non-integer dim {dim!r}")
                if hparam not in widths:
                    raise ValueError(
                        f"LayerLayout: tensors[{tensor!r}][{dim}] names {hparam!r}, which is neither the incoming "
                        f"nor the outgoing width {list(widths)}"
                    )
            frozen[tensor] = MappingProxyType(dict(dims))
        object.__setattr__(self, "tensors", MappingProxyType(frozen))

    @property
    def widths(self) -> tuple[str, ...]:
        """The width hparams: the incoming one, then the outgoing one (if any)."""
        return (self.incoming,) if self.outgoing in (None, self.incoming) else (self.incoming, self.outgoing)

    def with_tensors(self, **tensors: Mapping[int, str]) -> LayerLayout:
        """This layout with further (or replaced) tensor entries, e.g. a subclass's extra parameter."""
        return replace(self, tensors={**self.tensors, **tensors})

    def with_axis(self, axis: Literal["channels", "last"]) -> LayerLayout:
        """This layout with the elastic axis at ``axis``."""
        return replace(self, axis=axis)

    def indexed_dims(self, tensor: str, rank: int, grouped: bool) -> list[tuple[int, str]]:
        """The ``(dim, hparam)`` pairs of ``tensor`` (of rank ``rank``) that follow a width, by dim.

        With ``grouped``, only the first listed dim spans the groups and is returned.
        """
        pairs = sorted(
            (dim % rank, hparam) for dim, hparam in self.tensors.get(tensor, {}).items() if -rank <= dim < rank
        )
        return pairs[:1] if grouped else pairs
