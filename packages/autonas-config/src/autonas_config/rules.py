"""Per-layer-type rules: the keyword arguments a dynamic layer's ``modify()`` accepts, validated.

A rule restricts the choices of one layer: ``channels_ratio=(0.5, 1.0), channel_divisor=16`` on a
96-channel conv leaves the widths ``[48, 96]`` (see :func:`autonas_config.make_divisible`). The
field defaults are the defaults of ``modify()``; inside an :class:`~autonas_config.AutoNASConfig`
a rule only overrides the keys it names (see :func:`autonas_config.resolve_rule`).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import AfterValidator, BeforeValidator, Field, StrictFloat, StrictInt, field_validator

from .base import BaseConfig

__all__ = [
    "BaseRule",
    "ChannelRule",
    "DynamicBatchNorm1dConfig",
    "DynamicBatchNorm2dConfig",
    "DynamicBatchNorm3dConfig",
    "DynamicConv1dConfig",
    "DynamicConv2dConfig",
    "DynamicConv3dConfig",
    "DynamicConvTranspose1dConfig",
    "DynamicConvTranspose2dConfig",
    "DynamicConvTranspose3dConfig",
    "DynamicGroupNormConfig",
    "DynamicInstanceNorm1dConfig",
    "DynamicInstanceNorm2dConfig",
    "DynamicInstanceNorm3dConfig",
    "DynamicLayerNormConfig",
    "DynamicLinearConfig",
    "DynamicSequentialConfig",
    "DynamicSyncBatchNormConfig",
    "FeatureRule",
    "HeadsRule",
]


def _sorted_ratios(value: tuple[float, ...] | None) -> tuple[float, ...] | None:
    if value is None:
        return None
    if not value:
        raise ValueError("give at least one ratio in (0, 1], or None to keep the layer's current choices")
    outside = [ratio for ratio in value if not 0 < ratio <= 1]
    if outside:
        raise ValueError(f"ratios must lie in (0, 1]; got {outside}")
    return tuple(sorted(set(value)))


def _int_as_tuple(value: Any) -> Any:
    return (value,) if isinstance(value, int) and not isinstance(value, bool) else value


def _odd_kernel_sizes(value: tuple[int | tuple[int, ...], ...]) -> tuple[int | tuple[int, ...], ...]:
    for entry in value:
        sizes = entry if isinstance(entry, tuple) else (entry,)
        if not sizes or any(size < 1 or size % 2 == 0 for size in sizes):
            raise ValueError(f"kernel sizes must be odd positive integers (or tuples of them); got {entry!r}")
    return tuple(dict.fromkeys(value))


Ratios = Annotated[tuple[StrictFloat, ...] | None, AfterValidator(_sorted_ratios)]
"""Width ratios in (0, 1]; a list or tuple, stored sorted without duplicates. ``None`` keeps the current choices."""

Divisor = Annotated[StrictInt, Field(ge=1)]
"""Every width choice is rounded to a multiple of this (at least 1)."""

KernelSizes = Annotated[
    tuple[StrictInt | tuple[StrictInt, ...], ...], BeforeValidator(_int_as_tuple), AfterValidator(_odd_kernel_sizes)
]
"""Kernel-size choices: odd sizes, each an int (same size in every dimension) or a tuple per dimension."""


class BaseRule(BaseConfig):
    """Base class of the per-layer-type rules; its fields are the keyword arguments of ``modify()``.

    Subclass it to describe the rule of a custom layer type (or use :class:`ChannelRule` /
    :class:`FeatureRule`), then declare the layer type with ``autonas_dynamic.register_layer``.
    """


class ChannelRule(BaseRule):
    """A rule of channel ratios and a divisor, for any layer type whose ``modify()`` takes just these."""

    channels_ratio: Ratios = Field(
        default=None, description="Ratios of the original channel count to search, each in (0, 1]."
    )
    channel_divisor: Divisor = Field(default=1, description="Channel counts are rounded to multiples of this.")


class _ConvRule(ChannelRule):
    kernel_ndim: ClassVar[int]
    kernel_size: KernelSizes = Field(
        default=(),
        description="Kernel sizes to search (odd ints, or tuples with one size per spatial dimension); "
        "() searches only the original kernel.",
    )

    @field_validator("kernel_size")
    @classmethod
    def _check_kernel_ndim(cls, value: tuple[int | tuple[int, ...], ...]) -> tuple[int | tuple[int, ...], ...]:
        for entry in value:
            if isinstance(entry, tuple) and len(entry) != cls.kernel_ndim:
                raise ValueError(
                    f"kernel size {entry!r} has {len(entry)} dimension(s); "
                    f"{cls.__name__} takes an int or a tuple of {cls.kernel_ndim}"
                )
        return value


class FeatureRule(BaseRule):
    """A rule of feature ratios and a divisor, for any layer type whose ``modify()`` takes just these."""

    features_ratio: Ratios = Field(
        default=None, description="Ratios of the original feature count to search, each in (0, 1]."
    )
    feature_divisor: Divisor = Field(default=1, description="Feature counts are rounded to multiples of this.")


class DynamicConv1dConfig(_ConvRule):
    """Rule for ``nn.Conv1d``: channel ratios and divisor, kernel sizes."""

    kernel_ndim = 1


class DynamicConv2dConfig(_ConvRule):
    """Rule for ``nn.Conv2d``: channel ratios and divisor, kernel sizes."""

    kernel_ndim = 2


class DynamicConv3dConfig(_ConvRule):
    """Rule for ``nn.Conv3d``: channel ratios and divisor, kernel sizes."""

    kernel_ndim = 3


class DynamicConvTranspose1dConfig(_ConvRule):
    """Rule for ``nn.ConvTranspose1d``: channel ratios and divisor, kernel sizes."""

    kernel_ndim = 1


class DynamicConvTranspose2dConfig(_ConvRule):
    """Rule for ``nn.ConvTranspose2d``: channel ratios and divisor, kernel sizes."""

    kernel_ndim = 2


class DynamicConvTranspose3dConfig(_ConvRule):
    """Rule for ``nn.ConvTranspose3d``: channel ratios and divisor, kernel sizes."""

    kernel_ndim = 3


class DynamicLinearConfig(FeatureRule):
    """Rule for ``nn.Linear``: feature ratios and divisor (both in and out features)."""


class DynamicBatchNorm1dConfig(FeatureRule):
    """Rule for ``nn.BatchNorm1d``: feature ratios and divisor."""


class DynamicBatchNorm2dConfig(FeatureRule):
    """Rule for ``nn.BatchNorm2d``: feature ratios and divisor."""


class DynamicBatchNorm3dConfig(FeatureRule):
    """Rule for ``nn.BatchNorm3d``: feature ratios and divisor."""


class DynamicSyncBatchNormConfig(FeatureRule):
    """Rule for ``nn.SyncBatchNorm``: feature ratios and divisor."""


class DynamicInstanceNorm1dConfig(FeatureRule):
    """Rule for ``nn.InstanceNorm1d``: feature ratios and divisor."""


class DynamicInstanceNorm2dConfig(FeatureRule):
    """Rule for ``nn.InstanceNorm2d``: feature ratios and divisor."""


class DynamicInstanceNorm3dConfig(FeatureRule):
    """Rule for ``nn.InstanceNorm3d``: feature ratios and divisor."""


class DynamicLayerNormConfig(FeatureRule):
    """Rule for ``nn.LayerNorm``: ratios and divisor of the last normalized dimension."""


class DynamicGroupNormConfig(ChannelRule):
    """Rule for ``nn.GroupNorm``: channel ratios and divisor (the group size stays fixed)."""


class DynamicSequentialConfig(BaseRule):
    """Rule for ``nn.Sequential``: the fewest blocks a subnet may keep."""

    min_depth: StrictInt = Field(default=0, ge=0, description="Depth choices below this are dropped.")


class HeadsRule(BaseRule):
    """Rule of the ``heads`` section: the head counts to search in each attention module.

    The head width stays; a count ``h`` makes the query/key/value projections ``h * head_dim``
    wide. In grouped-query attention the rule counts the key/value heads (the query heads follow as
    whole groups of them).
    """

    heads_ratio: Ratios = Field(
        default=None, description="Ratios of the original head count to search, each in (0, 1]."
    )
    heads_divisor: Divisor = Field(default=1, description="Head counts are rounded to multiples of this.")
