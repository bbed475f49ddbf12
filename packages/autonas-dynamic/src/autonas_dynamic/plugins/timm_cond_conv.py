"""timm's ``CondConv2d`` (EfficientNet-CondConv): a convolution whose kernel mixes several experts per sample.

Each expert's kernel is stored flattened, ``weight`` of shape ``(num_experts, out * in / groups *
k * k)``; the forward mixes them with the routing weights it is given (``routing @ weight``), views
the result as one kernel per sample and convolves with the batch folded into the channels. timm's
forward runs unchanged: it reads ``in_channels``, ``out_channels`` and ``groups``, which follow the
active widths, and ``weight`` / ``bias``, which this module hands it as the active block of every
expert's kernel (``[:, :out, :in / groups]`` of the unflattened view, flattened again).

* A depthwise ``CondConv2d`` (``groups == in == out``) passes its input width through, like a
  depthwise conv; other grouped ones keep their sizes; plain ones search both widths.
* Channels are not sorted (the flattened kernels have no channel dim to permute).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from ..dynamic import DynamicModule, HparamAttribute
from ..hparam import Hparam
from ..layers.rules import restrict_by_ratio
from ..layout import LayerLayout

__all__ = ["COND_CONV_LAYOUT", "DynamicCondConv2d"]

#: A conv's widths and groups; the tensors are sliced by :class:`DynamicCondConv2d` itself.
COND_CONV_LAYOUT = LayerLayout(incoming="in_channels", outgoing="out_channels", groups="groups", sortable=False)


class DynamicCondConv2d(DynamicModule):
    """Dynamic ``CondConv2d``: ``in_channels`` and ``out_channels`` hparams over every expert's kernel."""

    in_channels = HparamAttribute()
    out_channels = HparamAttribute()
    _dynamic_tensors = ("weight", "bias")
    kernel_size: tuple[int, int]

    def _setup(self) -> None:
        in_channels, out_channels, groups = (self.__dict__[name] for name in ("in_channels", "out_channels", "groups"))
        self._move_aside("groups", "weight_shape")
        sizes = {"in_channels": in_channels, "out_channels": out_channels}
        choices: dict[str, Sequence[int]]
        if groups == 1 or in_channels == out_channels == groups:
            choices = {name: range(1, size + 1) for name, size in sizes.items()}
        else:  # groups of several channels: the group count would have to follow both widths
            choices = {name: [size] for name, size in sizes.items()}
        self._register_hparam("in_channels", Hparam(choices["in_channels"], original=in_channels), sortable=False)
        if groups > 1 and in_channels == out_channels == groups:
            self._register_hparam("out_channels", self._hparams["in_channels"], sortable=False)
        else:
            hparam = Hparam(choices["out_channels"], original=out_channels)
            self._register_hparam("out_channels", hparam, sortable=False)

    @property
    def groups(self) -> int:
        """1, or the active width of a depthwise layer."""
        return 1 if self._saved["groups"] == 1 else self._hparams["in_channels"].active

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """One expert's active kernel shape, ``(out, in / groups, *kernel_size)``."""
        return (self.out_channels, self.in_channels // self.groups, *self.kernel_size)

    @property
    def weight(self) -> torch.Tensor:
        stored = self._tensor("weight")
        full = self._saved["weight_shape"]
        if self.weight_shape == tuple(full):
            return stored
        per_expert = stored.view(stored.shape[0], *full)
        return per_expert[:, : self.out_channels, : self.in_channels // self.groups].reshape(stored.shape[0], -1)

    @property
    def bias(self) -> torch.Tensor | None:
        bias = self._parameters["bias"]
        return None if bias is None else bias[:, : self.out_channels]

    def modify(self, *, channels_ratio: Sequence[float] | None = None, channel_divisor: int = 1) -> None:
        """Restrict the widths as for convolutions (``make_divisible(ratio * width, channel_divisor)``)."""
        for name in ("in_channels", "out_channels"):
            restrict_by_ratio(self._hparams[name], channels_ratio, channel_divisor)

    def _export_attributes(self) -> dict[str, Any]:
        attributes = {**super()._export_attributes(), "groups": self.groups, "weight_shape": self.weight_shape}
        if self._parameters["bias"] is not None:
            attributes["bias_shape"] = (self.out_channels,)
        return attributes
