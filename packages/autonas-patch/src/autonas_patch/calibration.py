"""BatchNorm recalibration: cached input batches and the cumulative-average statistics reset."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .nested import map_tensors

__all__ = ["capture_inputs", "has_running_batchnorm", "recalibrate_batchnorm", "replay_inputs"]


def _detached_cpu_copy(tensor: torch.Tensor) -> torch.Tensor:
    # A CPU input is cloned: callers often refill one input buffer in place at every step.
    if tensor.device.type == "cpu":
        return tensor.detach().clone()
    return tensor.detach().to("cpu", non_blocking=True)


def capture_inputs(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """A calibration item ``(*args, kwargs)`` holding detached CPU copies of every input tensor."""
    return (*map_tensors(args, _detached_cpu_copy), map_tensors(kwargs, _detached_cpu_copy))


# By design this package imports nothing of autonas-dynamic, so it keeps its own small copies of
# "the model's device" and "set every module's training flag, then restore each" (the shared ones
# live in autonas-dynamic's calling module).
def _model_device(model: nn.Module) -> torch.device | None:
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return None


def replay_inputs(model: nn.Module, items: Iterable[tuple[Any, ...]]) -> None:
    """Run ``model(*item[:-1], **item[-1])`` for every captured item, on the model's device."""
    device = _model_device(model)
    for item in items:
        if device is not None:
            item = map_tensors(item, lambda tensor: tensor.to(device))
        model(*item[:-1], **item[-1])


def _running_batchnorms(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.running_mean is not None]


def has_running_batchnorm(model: nn.Module) -> bool:
    """Whether the model holds a BatchNorm layer (1d/2d/3d, SyncBatchNorm) that tracks running statistics."""
    return bool(_running_batchnorms(model))


def recalibrate_batchnorm(model: nn.Module, forward_loop: Callable[[nn.Module], Any]) -> None:
    """Recompute every BatchNorm's running statistics as a cumulative average over ``forward_loop``.

    Each BatchNorm that tracks running statistics is reset and put in train mode with
    ``momentum=None``; every other module, ``model`` included, is in eval mode during the loop (no
    dropout, and a patched model does not sample). ``forward_loop(model)`` runs under
    ``torch.no_grad``. Afterwards every submodule gets back its own train/eval flag and every
    BatchNorm its momentum, also when the loop raises. Models without such a BatchNorm are left
    alone (the loop does not run).
    """
    batchnorms = _running_batchnorms(model)
    if not batchnorms:
        return
    flags = [(module, module.training) for module in model.modules()]
    momenta = [(bn, bn.momentum) for bn in batchnorms]
    try:
        for module, _ in flags:
            module.training = False
        for bn in batchnorms:
            bn.reset_running_stats()
            bn.training = True
            bn.momentum = None
        with torch.no_grad():
            forward_loop(model)
    finally:
        for module, flag in flags:
            module.training = flag
        for bn, momentum in momenta:
            bn.momentum = momentum
