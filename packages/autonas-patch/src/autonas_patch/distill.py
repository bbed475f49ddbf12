"""In-place distillation loss: the smaller subnets learn the largest one's soft predictions."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["soft_cross_entropy"]


def soft_cross_entropy(output: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Cross-entropy of ``output`` logits against the softened distribution of ``teacher`` logits.

    Both are logits with the classes along dimension 1 (``(N, C)`` or ``(N, C, *)``, as for
    ``F.cross_entropy``); the loss is averaged over every other position and scaled by
    ``temperature ** 2`` so that its gradient keeps its size whatever the temperature. It differs
    from the KL divergence only by the teacher's entropy, a constant, so both give the same
    gradient. The teacher gets no gradient. Computed in float32 (also under ``torch.autocast``).

    Args:
        output: Logits of the subnet being trained.
        teacher: Logits of the teacher (the maximal subnet), same shape.
        temperature: Softening of both distributions (> 0).

    Raises:
        TypeError: ``output`` or ``teacher`` is not a tensor.
        ValueError: The shapes differ, or ``temperature`` is not positive.
    """
    if not (isinstance(output, torch.Tensor) and isinstance(teacher, torch.Tensor)):
        raise TypeError(
            f"soft_cross_entropy takes logit tensors, got {type(output).__name__} and {type(teacher).__name__}; "
            "for other outputs (dicts, tuples, detection heads) pass your own distill loss"
        )
    if output.shape != teacher.shape:
        raise ValueError(f"output {tuple(output.shape)} and teacher {tuple(teacher.shape)} logits differ in shape")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    log_probs = F.log_softmax(output.float() / temperature, dim=1)
    target = F.softmax(teacher.detach().float() / temperature, dim=1)
    return -(target * log_probs).sum(dim=1).mean() * temperature**2
