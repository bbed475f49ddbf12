"""Dynamic normalisation layers: BatchNorm, SyncBatchNorm, InstanceNorm, LayerNorm, GroupNorm.

Importing this module also extends ``nn.SyncBatchNorm.convert_sync_batchnorm`` to dynamic
BatchNorms (see :func:`_convert_sync_batchnorm`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..dynamic import DynamicModule, HparamAttribute, sliced_tensor_property
from ..hparam import Hparam
from ..layout import LayerLayout
from ..registry import DYNAMIC_REGISTRY, register_layer
from .rules import restrict_by_ratio

__all__ = ["FEATURE_NORM_LAYOUT", "GROUP_NORM_LAYOUT", "LAYER_NORM_LAYOUT", "group_norm_choices"]

#: BatchNorm and InstanceNorm: every tensor has one entry per channel.
FEATURE_NORM_LAYOUT = LayerLayout(
    incoming="num_features",
    tensors={name: {0: "num_features"} for name in ("weight", "bias", "running_mean", "running_var")},
)
#: LayerNorm: the last entry of ``normalized_shape`` over the last dimension.
LAYER_NORM_LAYOUT = LayerLayout(
    incoming="num_features", tensors={"weight": {-1: "num_features"}, "bias": {-1: "num_features"}}, axis="last"
)
#: GroupNorm: channels in fixed-size groups, which a permutation would mix.
GROUP_NORM_LAYOUT = LayerLayout(
    incoming="num_channels", tensors={"weight": {0: "num_channels"}, "bias": {0: "num_channels"}}, sortable=False
)


class _DynamicFeatureNorm(DynamicModule):
    """Shared part of BatchNorm/InstanceNorm: one ``num_features`` hparam slicing every tensor."""

    num_features = HparamAttribute()
    _dynamic_tensors = ("weight", "bias", "running_mean", "running_var")
    # Static attributes of the torch norm this class is combined with.
    eps: float
    momentum: float | None
    track_running_stats: bool
    _check_input_dim: Callable[[torch.Tensor], None]
    weight = sliced_tensor_property("weight", "num_features")
    bias = sliced_tensor_property("bias", "num_features")
    running_mean = sliced_tensor_property("running_mean", "num_features")
    running_var = sliced_tensor_property("running_var", "num_features")

    def _setup(self) -> None:
        size = self.__dict__["num_features"]
        self._register_hparam("num_features", Hparam(range(1, size + 1), original=size))

    def modify(self, *, features_ratio: Sequence[float] | None = None, feature_divisor: int = 1) -> None:
        """Restrict ``num_features`` to ``make_divisible(ratio * original, feature_divisor)``."""
        restrict_by_ratio(self._hparams["num_features"], features_ratio, feature_divisor)


class _DynamicBatchNorm(_DynamicFeatureNorm):
    """Dynamic BatchNorm; running-stat updates write through the prefix views into the full buffers."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(input)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            tracked = self._buffers["num_batches_tracked"]
            if tracked is not None:
                tracked.add_(1)
                momentum = 1.0 / float(tracked) if self.momentum is None else self.momentum
        weight, bias, running_mean, running_var = self._memoized(self._active_arguments)
        use_batch_stats = self.training or (running_mean is None and running_var is None)
        if self.training and not self.track_running_stats:
            running_mean = running_var = None
        return F.batch_norm(input, running_mean, running_var, weight, bias, use_batch_stats, momentum, self.eps)

    def _active_arguments(self) -> tuple[torch.Tensor | None, ...]:
        return self.weight, self.bias, self.running_mean, self.running_var


class _DynamicSyncBatchNorm(_DynamicFeatureNorm):
    """Dynamic SyncBatchNorm: torch's forward, reading the active tensors."""

    forward = nn.SyncBatchNorm.forward


_installed = vars(nn.SyncBatchNorm)["convert_sync_batchnorm"].__func__
#: torch's own conversion (found again under ``__wrapped__`` if this module is reloaded).
_torch_convert_sync_batchnorm: Callable[..., nn.Module] = getattr(_installed, "__wrapped__", _installed)


def _convert_sync_batchnorm(cls: type[nn.SyncBatchNorm], module: nn.Module, process_group: Any = None) -> nn.Module:
    """``nn.SyncBatchNorm.convert_sync_batchnorm`` that also converts dynamic BatchNorms.

    A dynamic BatchNorm becomes a dynamic SyncBatchNorm over the same full-size tensors that
    shares the BatchNorm's ``num_features`` hparam object (so its coupling and active value stay).
    torch's conversion reads the layer at its full size; the active value is restored afterwards.
    """
    if not (isinstance(module, DynamicModule) and isinstance(module, nn.modules.batchnorm._BatchNorm)):
        return _torch_convert_sync_batchnorm(cls, module, process_group)
    hparam = module.get_hparam("num_features")
    with hparam.held_at(hparam.original):
        sync = _torch_convert_sync_batchnorm(cls, module, process_group)
    dynamic = DYNAMIC_REGISTRY.convert(sync)
    dynamic.set_hparam("num_features", hparam)
    return dynamic


_convert_sync_batchnorm.__wrapped__ = _torch_convert_sync_batchnorm  # type: ignore[attr-defined]
nn.SyncBatchNorm.convert_sync_batchnorm = classmethod(_convert_sync_batchnorm)  # type: ignore[method-assign,assignment]


class _DynamicInstanceNorm(_DynamicFeatureNorm):
    """Dynamic InstanceNorm (torch's forward, reading the active tensors and ``num_features``)."""


for _batch_norm in (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d):
    register_layer(_batch_norm, FEATURE_NORM_LAYOUT, key=f"nn.{_batch_norm.__name__}", dynamic=_DynamicBatchNorm)
register_layer(nn.SyncBatchNorm, FEATURE_NORM_LAYOUT, key="nn.SyncBatchNorm", dynamic=_DynamicSyncBatchNorm)
for _instance_norm in (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d):
    register_layer(
        _instance_norm, FEATURE_NORM_LAYOUT, key=f"nn.{_instance_norm.__name__}", dynamic=_DynamicInstanceNorm
    )


class _DynamicLayerNorm(DynamicModule):
    """Dynamic LayerNorm: ``num_features`` is the last entry of ``normalized_shape``."""

    num_features = HparamAttribute()
    _dynamic_tensors = ("weight", "bias")
    eps: float
    weight = sliced_tensor_property("weight", "num_features", dim=-1)
    bias = sliced_tensor_property("bias", "num_features", dim=-1)

    def _setup(self) -> None:
        self._move_aside("normalized_shape")
        size = self._saved["normalized_shape"][-1]
        self._register_hparam("num_features", Hparam(range(1, size + 1), original=size))

    @property
    def normalized_shape(self) -> tuple[int, ...]:
        """The original leading dims and the active last dim."""
        return (*self._saved["normalized_shape"][:-1], self._hparams["num_features"].active)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        shape, weight, bias = self._memoized(self._active_arguments)
        return F.layer_norm(input, shape, weight, bias, self.eps)

    def _active_arguments(self) -> tuple[Any, ...]:
        return self.normalized_shape, self.weight, self.bias

    def modify(self, *, features_ratio: Sequence[float] | None = None, feature_divisor: int = 1) -> None:
        """Restrict the last dim to ``make_divisible(ratio * original, feature_divisor)``."""
        restrict_by_ratio(self._hparams["num_features"], features_ratio, feature_divisor)

    def _export_attributes(self) -> dict[str, Any]:
        return {"normalized_shape": self.normalized_shape}


def group_norm_choices(num_groups: int, num_channels: int) -> list[int]:
    """Channel counts of a GroupNorm that keep its group size: multiples of both the group size and
    ``num_groups``, at least ``num_groups``."""
    group_size = num_channels // num_groups
    return [c for c in range(num_groups, num_channels + 1) if c % group_size == 0 and c % num_groups == 0]


class _DynamicGroupNorm(DynamicModule):
    """Dynamic GroupNorm: the group size stays, the number of groups follows ``num_channels``.

    Its channels cannot be reordered (a permutation would mix groups), so it makes every hparam it
    shares unsortable.
    """

    num_channels = HparamAttribute()
    _dynamic_tensors = ("weight", "bias")
    eps: float
    weight = sliced_tensor_property("weight", "num_channels")
    bias = sliced_tensor_property("bias", "num_channels")

    def _setup(self) -> None:
        self._move_aside("num_groups")
        size = self.__dict__["num_channels"]
        self._register_hparam(
            "num_channels", Hparam(group_norm_choices(self._saved["num_groups"], size), original=size), sortable=False
        )

    @property
    def num_groups(self) -> int:
        """Active channels divided by the (fixed) group size."""
        hparam = self._hparams["num_channels"]
        return hparam.active // (hparam.original // self._saved["num_groups"])

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        groups, weight, bias = self._memoized(self._active_arguments)
        return F.group_norm(input, groups, weight, bias, self.eps)

    def _active_arguments(self) -> tuple[Any, ...]:
        return self.num_groups, self.weight, self.bias

    def modify(self, *, channels_ratio: Sequence[float] | None = None, channel_divisor: int = 1) -> None:
        """Restrict ``num_channels`` to ``make_divisible(ratio * original, channel_divisor)``."""
        restrict_by_ratio(self._hparams["num_channels"], channels_ratio, channel_divisor)

    def _export_attributes(self) -> dict[str, Any]:
        return {"num_channels": self.num_channels, "num_groups": self.num_groups}


register_layer(nn.LayerNorm, LAYER_NORM_LAYOUT, key="nn.LayerNorm", dynamic=_DynamicLayerNorm)
register_layer(nn.GroupNorm, GROUP_NORM_LAYOUT, key="nn.GroupNorm", dynamic=_DynamicGroupNorm)
