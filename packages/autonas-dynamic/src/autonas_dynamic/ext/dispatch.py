"""The dispatch point: dynamic Conv1d/2d/3d and Linear take the fused path where it applies.

:func:`install` wraps the ``forward`` of the dynamic conv and linear base classes once. When the
fused path is enabled, the wrapper reads the layer's own active tensors (its ``weight``/``bias``
properties), turns each view into a block of the stored tensor and calls the compiled sliced
conv/linear function; any call the fused path does not cover (eval / ``no_grad``, autocast, tracing
or compiling, the maximal subnet, gathered channels, non-contiguous parameters, unbatched conv
inputs, string or non-zero padding modes, small weights, GPU tensors) runs the layer's own forward. The fused path
is CPU-only: it has not been measured on a GPU (see tools/bench/README.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..layers.conv import _DynamicConvNd
from ..layers.linear import _DynamicLinear
from .state import compiled_library

__all__ = ["Block", "block_of", "install"]

#: ``(offset, size)`` per dimension of a full tensor.
Block = tuple[tuple[int, int], ...]

#: Weights smaller than this (elements) take the reference path: their full-size gradient
#: temporaries cost less than the fused call's own overhead (e.g. depthwise convs; see
#: tools/bench/README.md).
MIN_FUSED_NUMEL = 1 << 15


def block_of(full: torch.Tensor, view: torch.Tensor) -> Block | None:
    """The block of the contiguous tensor ``full`` that ``view`` (a slicing view of it) covers.

    ``None`` when ``view`` is not such a view (e.g. a gathered copy).
    """
    if view is full:
        return tuple((0, size) for size in full.shape)
    if view._base is not full or view.stride() != full.stride() or view.dim() != full.dim():
        return None
    remainder = int(view.storage_offset() - full.storage_offset())
    block = []
    for size, full_size, stride in zip(view.shape, full.shape, full.stride(), strict=True):
        offset, remainder = divmod(remainder, stride) if stride else (0, remainder)
        if offset + size > full_size:
            return None
        block.append((offset, size))
    return tuple(block) if remainder == 0 else None


def _fusable(input: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether this call is a plain eager training call on tensors the fused path handles."""
    return (
        torch.is_grad_enabled()
        and weight.requires_grad
        and weight.numel() >= MIN_FUSED_NUMEL
        and type(input) is torch.Tensor
        and input.device.type == "cpu"
        and weight.is_contiguous()
        and not torch.is_autocast_enabled(input.device.type)
        and not torch.jit.is_scripting()
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
    )


def _weight_block(module: Any) -> tuple[list[int], list[int]] | None:
    """Offsets and sizes of the active weight block, or ``None`` when the fused path does not apply."""
    weight, bias = module._parameters["weight"], module._parameters["bias"]
    block = block_of(weight, module.weight)
    if block is None or tuple(size for _, size in block) == tuple(weight.shape):
        return None  # a gathered copy, or the maximal subnet (the reference path slices nothing then)
    if bias is not None and (not bias.is_contiguous() or block_of(bias, module.bias) != block[:1]):
        return None
    return [offset for offset, _ in block], [size for _, size in block]


def _conv_forward(original: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    def forward(self: Any, input: torch.Tensor) -> torch.Tensor:
        library = compiled_library()
        if library is None:
            return original(self, input)
        weight = self._parameters["weight"]
        batched = input.dim() == weight.dim()  # torch.convolution, unlike F.conv*d, needs a batch dim
        if self.padding_mode != "zeros" or not batched or not _fusable(input, weight):
            return original(self, input)
        padding = self.padding
        if isinstance(padding, str):
            if padding != "valid":
                return original(self, input)
            padding = (0,) * len(self.stride)
        block = _weight_block(self)
        if block is None:
            return original(self, input)
        bias = self._parameters["bias"]
        return library.sliced_conv(
            input, weight, bias, *block, list(self.stride), list(padding), list(self.dilation), self.groups
        )

    forward.__wrapped__ = original  # type: ignore[attr-defined]
    forward.__doc__ = original.__doc__
    return forward


def _linear_forward(original: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    def forward(self: Any, input: torch.Tensor) -> torch.Tensor:
        library = compiled_library()
        if library is None or not _fusable(input, self._parameters["weight"]):
            return original(self, input)
        block = _weight_block(self)
        if block is None:
            return original(self, input)
        return library.sliced_linear(input, self._parameters["weight"], self._parameters["bias"], *block)

    forward.__wrapped__ = original  # type: ignore[attr-defined]
    forward.__doc__ = original.__doc__
    return forward


def install() -> None:
    """Wrap the dynamic conv and linear forwards (idempotent)."""
    for cls, wrap in ((_DynamicConvNd, _conv_forward), (_DynamicLinear, _linear_forward)):
        if not hasattr(cls.forward, "__wrapped__"):
            cls.forward = wrap(cls.forward)  # type: ignore[method-assign]
