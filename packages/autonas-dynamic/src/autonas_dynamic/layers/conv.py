"""Dynamic Conv1d/2d/3d and ConvTranspose1d/2d/3d: searchable channels and kernel sizes."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.modules.utils import _reverse_repeat_tuple

from ..dynamic import DynamicModule, HparamAttribute
from ..hparam import Hparam
from ..layout import LayerLayout
from ..registry import register_layer
from ..slicing import crop_kernel, slice_tensor
from .rules import restrict_by_ratio

__all__ = ["CONV_LAYOUT", "CONV_TRANSPOSE_LAYOUT", "RuntimePaddingConv", "channel_choices", "kernel_choices"]

#: Convolutions: weight ``(out, in / groups, k...)``; grouped ones couple or fix their widths.
CONV_LAYOUT = LayerLayout(
    incoming="in_channels",
    outgoing="out_channels",
    tensors={"weight": {0: "out_channels", 1: "in_channels"}, "bias": {0: "out_channels"}},
    groups="groups",
)
#: Transposed convolutions: weight ``(in, out / groups, k...)``.
CONV_TRANSPOSE_LAYOUT = LayerLayout(
    incoming="in_channels",
    outgoing="out_channels",
    tensors={"weight": {0: "in_channels", 1: "out_channels"}, "bias": {0: "out_channels"}},
    groups="groups",
)

_CONV: dict[int, Callable[..., torch.Tensor]] = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}
_CONV_TRANSPOSE: dict[int, Callable[..., torch.Tensor]] = {
    1: F.conv_transpose1d,
    2: F.conv_transpose2d,
    3: F.conv_transpose3d,
}


def channel_choices(channels: int, other: int, groups: int) -> list[int]:
    """Channel counts a conv side may take.

    Ungrouped: ``1..channels``. Grouped: multiples of the group size (depthwise: ``1..channels``);
    with unequal in/out channels whose group sizes do not divide one another, only ``channels``
    (the number of groups must follow both sides).
    """
    if groups == 1:
        return list(range(1, channels + 1))
    step, other_step = channels // groups, other // groups
    if channels != other and step % other_step and other_step % step:
        return [channels]
    return list(range(step, channels + 1, step))


def kernel_choices(
    kernel: Sequence[int], padding: str | Sequence[int], dilation: Sequence[int], padding_mode: str
) -> list[tuple[int, ...]]:
    """Kernel sizes a conv may shrink to by centre cropping.

    Each dimension keeps its parity and, with numeric padding, a size whose reduced padding
    ``p - (K - k) * dilation // 2`` stays non-negative (so the output size is unchanged).
    Only ``padding_mode="zeros"`` convs can change their kernel.
    """
    if padding_mode != "zeros":
        return [tuple(kernel)]
    per_dim = []
    for dim, big in enumerate(kernel):
        sizes = [
            small
            for small in range(big % 2 or 2, big + 1, 2)
            if isinstance(padding, str) or padding[dim] >= (big - small) * dilation[dim] // 2
        ]
        per_dim.append(sizes)
    return list(itertools.product(*per_dim))


class _DynamicConvNd(DynamicModule):
    """Dynamic convolution: ``in_channels``, ``out_channels`` and ``kernel_size`` hparams.

    The weight's channel dims are prefix slices; the kernel is centre cropped and the padding
    reduced so that the output size stays that of the full kernel. For grouped convs the number
    of groups follows the active channels (the group size stays).
    """

    in_channels = HparamAttribute()
    out_channels = HparamAttribute()
    kernel_size = HparamAttribute()
    _dynamic_tensors = ("weight", "bias")
    # Static attributes of the torch conv this class is combined with.
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding_mode: str
    _reversed_padding_repeated_twice: list[int]
    _output_padding: Callable[..., list[int]]
    #: Transposed convs store their weight as (in, out / groups, k...), others as (out, in / groups, k...).
    _transposed: ClassVar[bool] = False
    #: The forward pads from the weight's kernel at run time (the stored padding is not the one applied).
    _padding_at_run_time: ClassVar[bool] = False

    @property
    def _channel_names(self) -> tuple[str, str]:
        """The hparams of weight dims 0 and 1."""
        return ("in_channels", "out_channels") if self._transposed else ("out_channels", "in_channels")

    def _setup(self) -> None:
        in_channels, out_channels, groups = (self.__dict__[name] for name in ("in_channels", "out_channels", "groups"))
        self._move_aside("padding", "groups")
        depthwise = groups > 1 and in_channels == out_channels == groups
        sortable = groups == 1 or depthwise
        self._register_hparam(
            "in_channels",
            Hparam(channel_choices(in_channels, out_channels, groups), original=in_channels),
            importance=groups == 1,
            sortable=sortable,
        )
        self._register_hparam(
            "out_channels",
            Hparam(channel_choices(out_channels, in_channels, groups), original=out_channels),
            sortable=sortable,
        )
        kernel = tuple(self.__dict__["kernel_size"])
        padding = "same" if self._padding_at_run_time else self._saved["padding"]
        choices = kernel_choices(kernel, padding, self.dilation, self.padding_mode)
        self._register_hparam("kernel_size", Hparam(choices, original=kernel))

    # ----------------------------------------------------------------------------- active values
    @property
    def padding(self) -> str | tuple[int, ...]:
        """The padding that keeps the output size of the full kernel."""
        padding = self._saved["padding"]
        kernel = self._hparams["kernel_size"]
        if isinstance(padding, str) or kernel.active == kernel.original or self._padding_at_run_time:
            return padding
        return tuple(
            pad - (big - small) * dil // 2
            for pad, big, small, dil in zip(padding, kernel.original, kernel.active, self.dilation, strict=True)
        )

    @property
    def groups(self) -> int:
        """The active number of groups (the group size stays fixed)."""
        groups = self._saved["groups"]
        if groups == 1:
            return 1
        lead, other = (self._hparams[name] for name in self._channel_names)
        lead_size, other_size = lead.original // groups, other.original // groups
        active_groups = lead.active // lead_size
        if lead.active % lead_size or other.active != active_groups * other_size:
            raise ValueError(
                f"{type(self).__name__}: in_channels={self.in_channels} and out_channels={self.out_channels} must "
                f"span the same number of groups (group sizes: {self._group_sizes()})"
            )
        return active_groups

    def _group_sizes(self) -> dict[str, int]:
        groups = self._saved["groups"]
        return {name: self._hparams[name].original // groups for name in ("in_channels", "out_channels")}

    @property
    def weight(self) -> torch.Tensor:
        hparams = self._hparams
        lead, other = (hparams[name] for name in self._channel_names)
        kernel = hparams["kernel_size"]
        crop = () if kernel.active == kernel.original else crop_kernel(kernel.original, kernel.active)
        dim1 = other.active_slice if self._saved["groups"] == 1 else None
        return slice_tensor(self._tensor("weight"), (lead.active_slice, dim1, *crop))

    @property
    def bias(self) -> torch.Tensor | None:
        bias = self._parameters["bias"]
        if bias is None:
            return None
        return slice_tensor(bias, (self._hparams["out_channels"].active_slice,))

    # ----------------------------------------------------------------------------- forward
    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight, bias, padding, groups = self._memoized(self._active_arguments)
        if self.padding_mode != "zeros":
            input = F.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return _CONV[len(self.stride)](input, weight, bias, self.stride, padding, self.dilation, groups)

    def _active_arguments(self) -> tuple[torch.Tensor, torch.Tensor | None, Any, int]:
        return self.weight, self.bias, self.padding, self.groups

    # ----------------------------------------------------------------------------- rules
    def modify(
        self,
        *,
        channels_ratio: Sequence[float] | None = None,
        channel_divisor: int = 1,
        kernel_size: Sequence[int | Sequence[int]] = (),
    ) -> None:
        """Restrict the choices.

        Args:
            channels_ratio: Channel counts as fractions of the original (``None``: keep the choices).
            channel_divisor: Every channel count is rounded to a multiple of this (``make_divisible``).
            kernel_size: The kernel sizes to search (an int means the same size in every dim);
                ``()`` searches none. Sizes larger than the original or needing negative padding
                drop out; an even size for an odd kernel is an error. Even kernels (e.g. a 16x16
                patch embedding) ignore odd sizes, so one rule can cover a whole model.
        """
        for name in ("in_channels", "out_channels"):
            restrict_by_ratio(self._hparams[name], channels_ratio, channel_divisor)
        self._hparams["kernel_size"].restrict_to(self._kernel_rule(kernel_size))

    def _kernel_rule(self, sizes: Sequence[int | Sequence[int]]) -> set[tuple[int, ...]]:
        hparam = self._hparams["kernel_size"]
        ndim = len(hparam.original)
        result = set()
        for size in sizes:
            kernel = (size,) * ndim if isinstance(size, int) else tuple(size)
            if len(kernel) != ndim or not all(isinstance(k, int) and k > 0 for k in kernel):
                raise ValueError(
                    f"kernel_size entry {size!r} must be a positive int or a tuple of {ndim} positive ints"
                )
            if any(k % 2 == 0 and big % 2 for k, big in zip(kernel, hparam.original, strict=True)):
                raise ValueError(
                    f"kernel_size {kernel} has a different parity than the original kernel {hparam.original} "
                    f"(kernels are centre cropped); allowed kernel sizes: {hparam.choices}"
                )
            result.add(kernel)
        return result

    def unfit_rule_values(self, rule: Mapping[str, Any]) -> list[str]:
        """The kernel sizes of ``rule`` this conv cannot be cropped to: larger than its kernel, needing
        negative padding, or any size with a padding mode other than ``"zeros"``.

        Sizes of the other parity than an even kernel (odd sizes on a 16x16 patch embedding) and
        sizes asked of a 1x1 kernel are not reported: such a rule is meant for other layers.
        """
        original = self._hparams["kernel_size"].original
        if all(size == 1 for size in original):
            return []
        requested = {
            kernel
            for kernel in self._kernel_rule(rule.get("kernel_size", ()))
            if all(small % 2 == big % 2 for small, big in zip(kernel, original, strict=True))
        }
        fitting = kernel_choices(original, self._saved["padding"], self.dilation, self.padding_mode)
        unfit = sorted(requested - set(fitting))
        if not unfit:
            return []
        if self.padding_mode == "zeros":
            setting = f"padding {self._saved['padding']}"
        else:
            setting = f"padding_mode {self.padding_mode!r}"
        sizes = ", ".join(map(str, unfit))
        return [f"kernel_size {sizes} on {type(self)._original_cls.__name__} kernels {original} with {setting}"]

    # ----------------------------------------------------------------------------- sorting and export
    def _importance(self, name: str) -> torch.Tensor | None:
        if name != "in_channels" or self._saved["groups"] != 1:
            return None
        weight = self._tensor("weight").detach()
        per_input = weight.flatten(1) if self._transposed else weight.transpose(0, 1).flatten(1)
        return per_input.norm(dim=1)

    def _export_attributes(self) -> dict[str, Any]:
        attributes = super()._export_attributes()
        padding = self.padding
        attributes.update(padding=padding, groups=self.groups)
        if not isinstance(padding, str):
            attributes["_reversed_padding_repeated_twice"] = _reverse_repeat_tuple(padding, 2)
        elif padding == "same":
            reversed_padding = []
            for dil, size in zip(reversed(self.dilation), reversed(self.kernel_size), strict=True):
                total = dil * (size - 1)
                reversed_padding += [total // 2, total - total // 2]
            attributes["_reversed_padding_repeated_twice"] = reversed_padding
        return attributes


class _DynamicConvTransposeNd(_DynamicConvNd):
    """Dynamic transposed convolution (weight layout (in, out / groups, k...))."""

    _transposed = True

    def forward(self, input: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
        if self.padding_mode != "zeros":
            raise ValueError(f"Only 'zeros' padding mode is supported for {self._original_cls.__name__}")
        ndim = len(self.stride)
        weight, bias, padding, groups = self._memoized(self._active_arguments)
        output_padding = self._output_padding(
            input, output_size, self.stride, padding, self.kernel_size, ndim, self.dilation
        )
        conv = _CONV_TRANSPOSE[ndim]
        return conv(input, weight, bias, self.stride, padding, output_padding, groups, self.dilation)


class RuntimePaddingConv(_DynamicConvNd):
    """For a conv subclass whose own forward pads from ``self.weight``'s kernel at run time (TensorFlow-style
    "same" padding, as timm's ``Conv2dSame``): every centre crop of the kernel is a choice and the stored
    padding is left as it is. Declare such a class with
    ``register_layer(SameConv, dynamic=RuntimePaddingConv)``; its forward keeps running (and is verified).
    """

    _padding_at_run_time = True


for _conv in (nn.Conv1d, nn.Conv2d, nn.Conv3d):
    register_layer(_conv, CONV_LAYOUT, key=f"nn.{_conv.__name__}", dynamic=_DynamicConvNd)
for _transposed in (nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d):
    register_layer(
        _transposed, CONV_TRANSPOSE_LAYOUT, key=f"nn.{_transposed.__name__}", dynamic=_DynamicConvTransposeNd
    )
