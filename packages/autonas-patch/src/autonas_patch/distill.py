"""In-place distillation loss: the smaller subnets learn the largest one's soft predictions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["find_logits", "logits_distillation", "soft_cross_entropy"]


def soft_cross_entropy(
    output: torch.Tensor,
    teacher: torch.Tensor,
    temperature: float = 1.0,
    dim: int = 1,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy of ``output`` logits against the softened distribution of ``teacher`` logits.

    Both are logits with the classes along ``dim``: dimension 1 by default, as for
    ``F.cross_entropy`` (``(N, C)`` or ``(N, C, *)``); ``dim=-1`` for sequence logits
    ``(N, L, C)``. The loss is averaged over every other position (or over those ``mask``
    keeps: the real tokens of a padded batch, say) and scaled by ``temperature ** 2`` so that its
    gradient keeps its size whatever the temperature. It differs from the KL divergence only by
    the teacher's entropy, a constant, so both give the same gradient. The teacher gets no
    gradient. Computed in float32 (also under ``torch.autocast``).

    Args:
        output: Logits of the subnet being trained.
        teacher: Logits of the teacher (the maximal subnet), same shape.
        temperature: Softening of both distributions (> 0).
        dim: The dimension that holds the classes.
        mask: Which positions count (nonzero or ``True``), shaped as the logits without ``dim``,
            for example a ``(N, L)`` attention mask for ``(N, L, C)`` logits. A mask that keeps no
            position gives a loss of 0.

    Raises:
        TypeError: ``output``, ``teacher`` or ``mask`` is not a tensor.
        ValueError: The shapes differ, ``dim`` is not one of their dimensions, ``mask`` does not
            have the shape of their positions, or ``temperature`` is not positive.
    """
    if not (isinstance(output, torch.Tensor) and isinstance(teacher, torch.Tensor)):
        raise TypeError(
            f"soft_cross_entropy takes logit tensors, got {type(output).__name__} and {type(teacher).__name__}; "
            "for other outputs (dicts, tuples, detection heads) pass your own distill loss"
        )
    if output.shape != teacher.shape:
        raise ValueError(f"output {tuple(output.shape)} and teacher {tuple(teacher.shape)} logits differ in shape")
    if not -output.dim() <= dim < max(output.dim(), 1):
        raise ValueError(f"dim={dim} is not a dimension of logits of shape {tuple(output.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    log_probs = F.log_softmax(output.float() / temperature, dim=dim)
    target = F.softmax(teacher.detach().float() / temperature, dim=dim)
    per_position = -(target * log_probs).sum(dim=dim)
    if mask is None:
        return per_position.mean() * temperature**2
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a tensor of the positions that count, got {type(mask).__name__}")
    if mask.shape != per_position.shape:
        raise ValueError(
            f"mask {tuple(mask.shape)} does not match the positions {tuple(per_position.shape)} of logits "
            f"{tuple(output.shape)} with the classes on dimension {dim}"
        )
    kept = (mask != 0).to(device=per_position.device, dtype=per_position.dtype)
    return (per_position * kept).sum() / kept.sum().clamp_min(1) * temperature**2


def find_logits(output: Any) -> tuple[torch.Tensor, int]:
    """The logits in a model's output and the dimension of their classes (-1 for ``(N, L, C)`` sequences).

    Raises:
        TypeError: The output is neither a tensor nor holds a ``logits`` tensor.
    """
    if isinstance(output, torch.Tensor):
        return output, 1
    logits = output.get("logits") if isinstance(output, Mapping) else getattr(output, "logits", None)
    if not isinstance(logits, torch.Tensor):
        raise TypeError(
            f"the built-in distillation takes logits: a tensor, or an output with a 'logits' tensor (Hugging Face "
            f"model outputs, torchvision's GoogLeNet/Inception training outputs); got {type(output).__name__}. "
            "Pass your own loss: sandwich(model, distill=lambda output, teacher: ...)"
        )
    # Hugging Face shapes: (N, C) classification, (N, L, C) sequences, (N, C, H, W) segmentation.
    return logits, -1 if logits.dim() == 3 else 1


def logits_distillation(
    output: Any, teacher: Any, temperature: float = 1.0, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """The built-in in-place distillation loss: :func:`soft_cross_entropy` over the outputs' logits.

    A tensor output is logits with the classes on dimension 1. A structured output contributes its
    ``logits`` tensor (attribute or key: a Hugging Face ``ModelOutput``, torchvision's
    GoogLeNet/Inception training outputs, a dict), with the shapes Hugging Face heads produce:
    ``(N, L, C)`` sequence logits have the classes last, all others on dimension 1. Every position
    counts unless ``mask`` (see :func:`soft_cross_entropy`) says which do; other fields, such as
    auxiliary logits, are not distilled.

    Raises:
        TypeError: An output is neither a tensor nor holds a ``logits`` tensor.
    """
    logits, dim = find_logits(output)
    teacher_logits, _ = find_logits(teacher)
    return soft_cross_entropy(logits, teacher_logits, temperature, dim, mask)
