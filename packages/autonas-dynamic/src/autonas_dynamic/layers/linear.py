"""Dynamic Linear: searchable ``in_features`` and ``out_features``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..dynamic import DynamicModule, HparamAttribute, sliced_tensor_property
from ..hparam import Hparam
from ..layout import LayerLayout
from ..registry import register_layer
from ..slicing import slice_tensor
from .rules import restrict_by_ratio

__all__ = ["LINEAR_LAYOUT"]

#: A linear map over the last dimension: weight ``(out, in)``.
LINEAR_LAYOUT = LayerLayout(
    incoming="in_features",
    outgoing="out_features",
    tensors={"weight": {0: "out_features", 1: "in_features"}, "bias": {0: "out_features"}},
    axis="last",
)


class _DynamicLinear(DynamicModule):
    """Dynamic linear layer; the weight is sliced to ``(out_features, in_features)``."""

    in_features = HparamAttribute()
    out_features = HparamAttribute()
    _dynamic_tensors = ("weight", "bias")
    bias = sliced_tensor_property("bias", "out_features")

    def _setup(self) -> None:
        for name in ("in_features", "out_features"):
            size = self.__dict__[name]
            self._register_hparam(name, Hparam(range(1, size + 1), original=size), importance=name == "in_features")

    @property
    def weight(self) -> torch.Tensor:
        hparams = self._hparams
        return slice_tensor(
            self._tensor("weight"), (hparams["out_features"].active_slice, hparams["in_features"].active_slice)
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight, bias = self._memoized(self._active_arguments)
        return F.linear(input, weight, bias)

    def _active_arguments(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return self.weight, self.bias

    def modify(self, *, features_ratio: Sequence[float] | None = None, feature_divisor: int = 1) -> None:
        """Restrict both feature counts to ``make_divisible(ratio * original, feature_divisor)``."""
        for name in ("in_features", "out_features"):
            restrict_by_ratio(self._hparams[name], features_ratio, feature_divisor)

    def _importance(self, name: str) -> torch.Tensor | None:
        return self._tensor("weight").detach().norm(dim=0) if name == "in_features" else None


register_layer(nn.Linear, LINEAR_LAYOUT, key="nn.Linear", dynamic=_DynamicLinear)
