"""Handing the gradient of an active block to a full-size parameter without a full-size temporary.

The reference path slices the parameter inside autograd, so every backward materialises a
full-size zero tensor per sliced parameter, copies the block into it and adds that into ``.grad``.
:func:`deliver` instead writes the block straight into ``.grad``:

* ``.grad`` exists: the block is added into its active part in place;
* ``.grad`` is ``None``: it becomes a zero-filled buffer holding the block. The buffer is kept and
  reused on the next step once nobody else holds it (after ``zero_grad(set_to_none=True)``), so
  only the previously written block is zeroed again, not the whole tensor.

It does so only where that is indistinguishable from autograd accumulating the full gradient: a
leaf parameter without tensor hooks, a backward that accumulates into ``.grad`` (``backward()``,
not ``torch.autograd.grad``), no higher-order graph. Everywhere else it returns the full-size
gradient for autograd to accumulate, as the reference does.
"""

from __future__ import annotations

import sys
import weakref
from dataclasses import dataclass

import torch
from torch.autograd.graph import get_gradient_edge

from .kernels import Block, TorchKernels

__all__ = ["GradBuffers", "deliver", "writes_grad_directly"]


def writes_grad_directly(param: torch.Tensor) -> bool:
    """Whether the running backward may write ``param``'s gradient into ``param.grad`` itself."""
    if torch.is_grad_enabled() or not param.requires_grad or param.grad_fn is not None:
        return False
    if param._backward_hooks or getattr(param, "_post_accumulate_grad_hooks", None):
        return False
    grad = param.grad
    if grad is not None and (grad.layout != torch.strided or grad.requires_grad or grad.shape != param.shape):
        return False
    try:
        # False when the backward does not accumulate into this parameter (backward(inputs=...));
        # raises inside torch.autograd.grad, which returns gradients instead of accumulating them.
        return torch._C._will_engine_execute_node(get_gradient_edge(param).node)
    except (RuntimeError, AttributeError):
        return False


@dataclass
class _Buffer:
    param: weakref.ref
    tensor: torch.Tensor
    block: Block
    version: int


def _unshared(tensor: torch.Tensor) -> bool:
    """Whether only the buffer record refers to ``tensor``: no ``.grad``, no view, no saved copy."""
    # References: the record, this call's argument and getrefcount's own.
    return (
        sys.getrefcount(tensor) <= 3
        and tensor._use_count() == 1  # type: ignore[attr-defined]
        and torch._C._storage_Use_Count(tensor.untyped_storage()._cdata) <= 2
    )


class GradBuffers:
    """Full-size gradient buffers, one per parameter, reused while nobody else holds them."""

    def __init__(self) -> None:
        self._buffers: dict[int, _Buffer] = {}

    def fresh(self, param: torch.Tensor, values: torch.Tensor, block: Block, kernels: TorchKernels) -> torch.Tensor:
        """A full-size tensor shaped like ``param``: zero except ``block``, which holds ``values``."""
        record = self._buffers.get(id(param))
        if record is not None and record.param() is param and _unshared(record.tensor):
            tensor = record.tensor
            if tensor._version == record.version:
                kernels.zero(tensor, record.block)  # only the block written last time is non-zero
            else:
                tensor.zero_()  # written by someone else since (e.g. an optimizer's in-place update)
        else:
            tensor = torch.zeros_like(param, memory_format=torch.contiguous_format)
            if record is None:
                weakref.finalize(param, self._buffers.pop, id(param), None)
        kernels.store(tensor, values, block, accumulate=False)
        self._buffers[id(param)] = _Buffer(weakref.ref(param), tensor, block, tensor._version)
        return tensor

    def clear(self) -> None:
        """Forget every buffer (their memory is freed once no ``.grad`` refers to them)."""
        self._buffers.clear()


_BUFFERS = GradBuffers()


def deliver(param: torch.Tensor, values: torch.Tensor, block: Block, kernels: TorchKernels) -> torch.Tensor | None:
    """Give ``param`` the gradient ``values`` of its ``block``.

    Returns ``None`` when the gradient went into ``param.grad`` directly (autograd then has nothing
    left to accumulate), else the full-size gradient for autograd to accumulate.
    """
    if tuple(size for _, size in block) == tuple(param.shape):
        return values
    if writes_grad_directly(param):
        grad = param.grad
        if grad is None:
            param.grad = _BUFFERS.fresh(param, values, block, kernels)
        else:
            kernels.store(grad, values, block, accumulate=True)
        return None
    full = torch.zeros_like(param, memory_format=torch.contiguous_format)
    kernels.store(full, values, block, accumulate=False)
    return full
