"""Which slices take the fused path: plain eager training slices of large leaf parameters on the CPU."""

from __future__ import annotations

import torch

from .state import compiled_library

__all__ = ["MIN_FUSED_NUMEL", "slice_parameter"]

#: Parameters smaller than this (elements) are sliced the reference way: their full-size gradient
#: temporaries cost less than a call into the extension (e.g. norm weights, depthwise convs).
MIN_FUSED_NUMEL = 1 << 15


def slice_parameter(tensor: torch.Tensor, offsets: list[int], sizes: list[int]) -> torch.Tensor | None:
    """The block ``(offsets, sizes)`` of ``tensor`` from the compiled extension, or ``None`` where it does not apply.

    It applies to contiguous leaf parameters of at least :data:`MIN_FUSED_NUMEL` elements on the
    CPU, with gradients enabled, outside autocast, tracing and compiling, when the fused path is on.
    """
    if not (torch.is_grad_enabled() and tensor.requires_grad and tensor.is_leaf):
        return None
    if tensor.numel() < MIN_FUSED_NUMEL or tensor.device.type != "cpu" or not tensor.is_contiguous():
        return None
    library = compiled_library()
    if library is None or type(tensor) not in (torch.nn.Parameter, torch.Tensor):  # no tensor subclasses
        return None
    if torch.is_autocast_enabled("cpu") or torch.jit.is_tracing() or torch.compiler.is_compiling():
        return None
    return library.slice_parameter(tensor, offsets, sizes)
