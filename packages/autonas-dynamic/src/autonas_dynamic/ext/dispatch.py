"""The dispatch point: dynamic Conv1d/2d/3d and Linear take the fused path where it applies.

:func:`install` wraps the ``forward`` of the dynamic conv and linear base classes once. The wrapper
reads the layer's own active tensors (its ``weight``/``bias`` properties), turns each view into a
block of the stored tensor and calls the fused function; any call the fused path does not cover
(eval / ``no_grad``, autocast, tracing or compiling, the maximal subnet, gathered channels,
non-contiguous parameters, unbatched conv inputs, string or non-zero padding modes, GPU tensors) runs the layer's own
forward. On GPUs the fused path measured slower than the reference (the layer calls are
launch-bound and its Python autograd function adds host time), so it is CPU-only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..layers.conv import _DynamicConvNd
from ..layers.linear import _DynamicLinear
from .functions import sliced_conv, sliced_linear
from .kernels import Block
from .state import active_kernels, fused_path_enabled

__all__ = ["block_of", "install"]


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
        and type(input) is torch.Tensor
        and input.device.type == "cpu"
        and weight.is_contiguous()
        and not torch.is_autocast_enabled(input.device.type)
        and not torch.jit.is_scripting()
        and not torch.jit.is_tracing()
        and not torch.compiler.is_compiling()
        and fused_path_enabled()
    )


def _blocks(module: Any) -> tuple[Block, Block | None] | None:
    """Blocks of the stored weight and bias, or ``None`` when the fused path does not apply."""
    weight, bias = module._parameters["weight"], module._parameters["bias"]
    weight_block = block_of(weight, module.weight)
    if weight_block is None:
        return None
    bias_block = None
    if bias is not None:
        bias_block = block_of(bias, module.bias) if bias.is_contiguous() else None
        if bias_block is None:
            return None
    whole = tuple(size for _, size in weight_block) == tuple(weight.shape)
    if whole and (bias_block is None or tuple(size for _, size in bias_block) == tuple(bias.shape)):
        return None  # the maximal subnet: the reference path slices nothing
    return weight_block, bias_block


def _conv_forward(original: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    def forward(self: Any, input: torch.Tensor) -> torch.Tensor:
        weight = self._parameters["weight"]
        batched = input.dim() == weight.dim()  # torch.convolution, unlike F.conv*d, needs a batch dim
        if self.padding_mode != "zeros" or not batched or not _fusable(input, weight):
            return original(self, input)
        padding = self.padding
        if isinstance(padding, str):
            if padding != "valid":
                return original(self, input)
            padding = (0,) * len(self.stride)
        blocks = _blocks(self)
        if blocks is None:
            return original(self, input)
        spec = (tuple(self.stride), tuple(padding), tuple(self.dilation), self.groups)
        return sliced_conv(input, weight, self._parameters["bias"], *blocks, spec, active_kernels())

    forward.__wrapped__ = original  # type: ignore[attr-defined]
    forward.__doc__ = original.__doc__
    return forward


def _linear_forward(original: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    def forward(self: Any, input: torch.Tensor) -> torch.Tensor:
        weight = self._parameters["weight"]
        if not _fusable(input, weight):
            return original(self, input)
        blocks = _blocks(self)
        if blocks is None:
            return original(self, input)
        return sliced_linear(input, weight, self._parameters["bias"], *blocks, active_kernels())

    forward.__wrapped__ = original  # type: ignore[attr-defined]
    forward.__doc__ = original.__doc__
    return forward


def install() -> None:
    """Wrap the dynamic conv and linear forwards (idempotent)."""
    for cls, wrap in ((_DynamicConvNd, _conv_forward), (_DynamicLinear, _linear_forward)):
        if not hasattr(cls.forward, "__wrapped__"):
            cls.forward = wrap(cls.forward)  # type: ignore[method-assign]
