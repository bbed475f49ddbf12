"""timm's ``MixedConv2d`` (MixNet): one convolution per split of the channels, outputs concatenated.

``MixedConv2d`` splits its input channels into groups (``splits``) and runs one child convolution
per group, each with its own kernel size. Channel sets are prefixes, so a narrower input fills the
groups in order: ``[48, 48, 48]`` at 100 channels runs ``[48, 48, 4]``. Each child convolution
becomes dynamic with hparams that follow the layer's (:class:`SegmentHparam`), so its weight,
cost and export always match the layer's width.

* A depthwise ``MixedConv2d`` (every child depthwise) passes its input width through, like a
  depthwise conv; otherwise the input and output widths are searched separately.
* Every group keeps at least one channel, so that every child convolution runs at every subnet
  (and the cost model sees the same calls): only the last group shrinks.

Channels cannot move between groups (each has its own kernel), so the widths are not sortable.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch
from torch import nn

from ..dynamic import DynamicModule, HparamAttribute
from ..hparam import DerivedHparam, Hparam
from ..layers.rules import restrict_by_ratio
from ..layout import LayerLayout
from ..registry import DYNAMIC_REGISTRY

__all__ = ["MIXED_CONV_LAYOUT", "DynamicMixedConv2d", "SegmentHparam"]

#: The layout of a (not depthwise) mixed conv; its tensors live in the child convolutions.
MIXED_CONV_LAYOUT = LayerLayout(incoming="in_channels", outgoing="out_channels", sortable=False)


class SegmentHparam(DerivedHparam):
    """The part of another hparam's channels that falls into one segment: ``clamp(parent - offset, 0, size)``."""

    def __init__(self, parent: Hparam, offset: int, size: int, name: str | None = None) -> None:
        super().__init__(parent, size, name)
        self._offset, self._size = offset, size

    def derive(self, value: int) -> int:
        return max(0, min(self._size, value - self._offset))


def _convs(module: nn.Module) -> list[Any]:
    """The child convolutions of a mixed conv, in order."""
    return [conv for conv in module._modules.values() if conv is not None]


def _is_depthwise(module: nn.Module) -> bool:
    return all(conv.groups == conv.in_channels == conv.out_channels for conv in _convs(module))


class DynamicMixedConv2d(DynamicModule):
    """Dynamic ``MixedConv2d`` (see the module doc)."""

    in_channels = HparamAttribute()
    out_channels = HparamAttribute()

    @classmethod
    def instance_layout(cls, module: nn.Module, layout: LayerLayout) -> LayerLayout:
        """A depthwise mixed conv passes its input's width through."""
        return replace(layout, outgoing=None) if _is_depthwise(module) else layout

    def _setup(self) -> None:
        convs = _convs(self)
        depthwise = _is_depthwise(self)
        in_splits = list(self.__dict__["splits"])
        out_splits = in_splits if depthwise else [conv.out_channels for conv in convs]
        self.__dict__["_mixed"] = (depthwise, in_splits, out_splits)
        for conv in convs:
            DYNAMIC_REGISTRY.convert(conv).freeze()  # kernels stay; widths follow this layer
        sizes = {"in_channels": in_splits, "out_channels": out_splits}
        for name in ("in_channels",) if depthwise else ("in_channels", "out_channels"):
            splits = sizes[name]
            smallest = sum(splits[:-1]) + 1
            total = sum(splits)
            self._register_hparam(name, Hparam(range(smallest, total + 1), original=total), sortable=False)
        if depthwise:
            self._register_hparam("out_channels", self._hparams["in_channels"], sortable=False)

    def _install(self, name: str, hparam: Hparam) -> None:
        super()._install(name, hparam)
        depthwise = self.__dict__["_mixed"][0]
        if depthwise and name == "in_channels" and "out_channels" in self._hparam_roles:
            super()._install("out_channels", hparam)
        if "out_channels" in self._hparams:
            self._link_convs()

    def _link_convs(self) -> None:
        """Give each child convolution the segments of this layer's widths as its hparams."""
        depthwise, in_splits, out_splits = self.__dict__["_mixed"]
        in_offsets = itertools.accumulate([0, *in_splits[:-1]])
        out_offsets = itertools.accumulate([0, *out_splits[:-1]])
        for conv, in_offset, in_size, out_offset, out_size in zip(
            _convs(self), in_offsets, in_splits, out_offsets, out_splits, strict=True
        ):
            incoming = SegmentHparam(self._hparams["in_channels"], in_offset, in_size, name="in_channels")
            outgoing = incoming if depthwise else SegmentHparam(self._hparams["out_channels"], out_offset, out_size)
            conv.set_hparam("in_channels", incoming)
            conv.set_hparam("out_channels", outgoing)

    @property
    def splits(self) -> list[int]:
        """The active input channels of each group."""
        return [conv.get_hparam("in_channels").active for conv in _convs(self)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pieces = torch.split(x, self.splits, 1)
        return torch.cat([conv(piece) for conv, piece in zip(_convs(self), pieces, strict=True)], 1)

    def modify(self, *, channels_ratio: Sequence[float] | None = None, channel_divisor: int = 1) -> None:
        """Restrict both widths to ``make_divisible(ratio * original, channel_divisor)`` (within the allowed range)."""
        for hparam in {id(hp): hp for hp in self._hparams.values()}.values():
            restrict_by_ratio(hparam, channels_ratio, channel_divisor)

    def _export_attributes(self) -> dict[str, Any]:
        return {"in_channels": self.in_channels, "out_channels": self.out_channels, "splits": self.splits}

    def export(self) -> nn.Module:
        """Export in place, with the child convolutions."""
        del self.__dict__["_mixed"]
        super().export()
        for conv in _convs(self):
            if isinstance(conv, DynamicModule):
                conv.export()
        return self
