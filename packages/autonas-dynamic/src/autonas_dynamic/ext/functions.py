"""Autograd functions of a sliced convolution and a sliced linear layer.

Both take the full-size stored parameters and the active block of each, copy the active weight
out once with the block kernels, run torch's own convolution / matmul on it, and in backward hand
the block gradients to the full parameters through :func:`.gradients.deliver` (straight into
``.grad`` where that is safe) instead of through a full-size temporary per parameter.
"""

from __future__ import annotations

from typing import Any

import torch

from .gradients import deliver
from .kernels import Block, TorchKernels

__all__ = ["ConvSpec", "sliced_conv", "sliced_linear"]

ConvSpec = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], int]
"""``(stride, padding, dilation, groups)`` of a (non-transposed) convolution."""


def _active(full: torch.Tensor, block: Block, kernels: TorchKernels) -> torch.Tensor:
    if tuple(size for _, size in block) == tuple(full.shape):
        return full
    return kernels.gather(full, block)


def _active_bias(bias: torch.Tensor | None, block: Block | None, kernels: TorchKernels) -> torch.Tensor | None:
    return None if bias is None or block is None else _active(bias, block, kernels)


class _SlicedConv(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        input: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        weight_block: Block,
        bias_block: Block | None,
        spec: ConvSpec,
        kernels: TorchKernels,
    ) -> torch.Tensor:
        stride, padding, dilation, groups = spec
        active_weight = _active(weight, weight_block, kernels)
        active_bias = _active_bias(bias, bias_block, kernels)
        zeros = [0] * len(stride)
        output = torch.convolution(input, active_weight, active_bias, stride, padding, dilation, False, zeros, groups)
        ctx.save_for_backward(input, active_weight)
        ctx.params = (weight, bias)
        ctx.blocks = (weight_block, bias_block)
        ctx.spec = spec
        ctx.kernels = kernels
        return output

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        input, active_weight = ctx.saved_tensors
        weight, bias = ctx.params
        weight_block, bias_block = ctx.blocks
        stride, padding, dilation, groups = ctx.spec
        needs_input, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        bias_sizes = [bias_block[0][1]] if bias is not None else None
        grad_input, grad_weight, grad_bias = torch.ops.aten.convolution_backward(
            grad_output,
            input,
            active_weight,
            bias_sizes,
            stride,
            padding,
            dilation,
            False,
            [0] * len(stride),
            groups,
            [needs_input, needs_weight, needs_bias and bias is not None],
        )
        if needs_weight:
            grad_weight = deliver(weight, grad_weight, weight_block, ctx.kernels)
        if needs_bias and bias is not None:
            grad_bias = deliver(bias, grad_bias, bias_block, ctx.kernels)
        return grad_input, grad_weight, grad_bias, None, None, None, None


class _SlicedLinear(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        input: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        weight_block: Block,
        bias_block: Block | None,
        kernels: TorchKernels,
    ) -> torch.Tensor:
        active_weight = _active(weight, weight_block, kernels)
        active_bias = _active_bias(bias, bias_block, kernels)
        ctx.save_for_backward(input, active_weight)
        ctx.params = (weight, bias)
        ctx.blocks = (weight_block, bias_block)
        ctx.kernels = kernels
        return torch.nn.functional.linear(input, active_weight, active_bias)

    @staticmethod
    def backward(ctx: Any, grad_output: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        input, active_weight = ctx.saved_tensors
        weight, bias = ctx.params
        weight_block, bias_block = ctx.blocks
        needs_input, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        grad_input = grad_weight = grad_bias = None
        if needs_input:
            grad_input = grad_output.matmul(active_weight)
        flat_grad = grad_output.reshape(-1, grad_output.shape[-1])
        if needs_weight:
            block_grad = flat_grad.t().matmul(input.reshape(-1, input.shape[-1]))
            grad_weight = deliver(weight, block_grad, weight_block, ctx.kernels)
        if needs_bias and bias is not None:
            grad_bias = deliver(bias, flat_grad.sum(0), bias_block, ctx.kernels)
        return grad_input, grad_weight, grad_bias, None, None, None


def sliced_conv(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    weight_block: Block,
    bias_block: Block | None,
    spec: ConvSpec,
    kernels: TorchKernels,
) -> torch.Tensor:
    """Convolution of ``input`` with the active blocks of the full ``weight`` and ``bias``."""
    return _SlicedConv.apply(input, weight, bias, weight_block, bias_block, spec, kernels)


def sliced_linear(
    input: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    weight_block: Block,
    bias_block: Block | None,
    kernels: TorchKernels,
) -> torch.Tensor:
    """Linear map of ``input`` by the active blocks of the full ``weight`` and ``bias``."""
    return _SlicedLinear.apply(input, weight, bias, weight_block, bias_block, kernels)
