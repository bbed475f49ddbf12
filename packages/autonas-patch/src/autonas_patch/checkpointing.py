"""A clear error where gradient checkpointing would recompute a forward under another subnet.

Gradient checkpointing (Hugging Face ``model.gradient_checkpointing_enable()``, timm
``model.set_grad_checkpointing()``) drops the activations of its blocks in the forward and
recomputes them in the backward, with the model as it is then. A supernet's layers read the
active subnet when they run, so a backward that comes after the active subnet changed recomputes
those blocks for the wrong subnet: an obscure shape error, or, where the block's shapes agree
(a reentrant checkpoint around a block whose inner width changed), silently wrong gradients. A loop
gets there by deferring the backward, for example by summing the losses of a sandwich step and
calling ``backward()`` once.

Each training forward's outputs carry a :class:`BackwardWatch` (a tensor hook, a few
microseconds). When the architecture changes while a forward is not yet backpropagated and the
model checkpoints (looked up only then), its watch goes stale, and a backward that reaches a stale
output raises before any block is recomputed.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch
from torch import nn

from .nested import iter_tensors

__all__ = ["BackwardWatch", "mark_stale", "uses_gradient_checkpointing"]

#: Instance attributes by which Hugging Face (``gradient_checkpointing``) and timm
#: (``grad_checkpointing``) modules say they checkpoint their blocks.
_CHECKPOINT_FLAGS = ("gradient_checkpointing", "grad_checkpointing")


def uses_gradient_checkpointing(model: nn.Module) -> bool:
    """Whether a module of ``model`` has its library's gradient checkpointing switched on."""
    return any(vars(module).get(flag) is True for module in model.modules() for flag in _CHECKPOINT_FLAGS)


class BackwardWatch:
    """Whether one forward's outputs were backpropagated, and whether the subnet changed before that.

    Its hooks live in the forward's autograd graph, and the watch with them: once the graph is gone
    nothing can backpropagate through it, and the watch's weak reference dies.
    """

    def __init__(self, model_name: str) -> None:
        self.model_name = model_name
        self.reached = False
        self.stale = False

    @classmethod
    def attach(cls, output: Any, model_name: str) -> weakref.ref[BackwardWatch] | None:
        """Hook the outputs of one forward; a weak reference to their watch, ``None`` without a graph."""
        watch = cls(model_name)
        hooked = False
        for tensor in iter_tensors(output):
            if tensor.grad_fn is None:
                continue
            try:
                tensor.register_hook(watch._on_backward)
            except RuntimeError:  # a tensor that takes no hooks (e.g. under a torch.func transform)
                continue
            hooked = True
        return weakref.ref(watch) if hooked else None

    def _on_backward(self, grad: torch.Tensor) -> None:
        if self.stale:
            raise RuntimeError(
                f"backward through a forward of {self.model_name} with gradient checkpointing, after the active "
                "subnet changed: checkpointing recomputes that forward now, with another subnet, so its gradients "
                "would be wrong. Call backward() on each subnet's loss before the next subnet runs (in an "
                "autonas.sandwich loop: inside the loop body), or switch gradient checkpointing off."
            )
        self.reached = True


def mark_stale(watches: list[weakref.ref[BackwardWatch]], model: nn.Module) -> None:
    """The architecture changes: stale the watches not yet backpropagated if ``model`` checkpoints; forget them all."""
    pending = [watch for watch in (ref() for ref in watches) if watch is not None and not watch.reached]
    watches.clear()
    if pending and uses_gradient_checkpointing(model):
        for watch in pending:
            watch.stale = True
