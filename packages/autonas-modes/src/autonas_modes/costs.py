"""FLOPs and parameter counts of a model's active subnet, in the units users ask for."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from autonas_dynamic.calling import model_device

from .apply import unwrap_model
from .modelspace import frozen_eval
from .profiling import num2hrb

__all__ = ["inference_flops", "param_count"]


def inference_flops(
    model: nn.Module,
    dummy_input: Any = None,
    data_shape: tuple[int, ...] | None = None,
    unit: float = 1e6,
    return_str: bool = False,
) -> float | str:
    """FLOPs (2 x multiply-accumulates; BatchNorm free) of one forward at the active subnet.

    Args:
        model: Any model, converted or plain; it is run in eval mode with patches off and its
            train/eval flags are restored.
        dummy_input: The input (see :func:`autonas_dynamic.calling.split_args`), or
        data_shape: the shape of a zero input on the model's device (exactly one of the two).
        unit: Divide the count by this (default: MFLOPs).
        return_str: Return a human-readable string such as ``"153.76M"`` (``unit`` ignored).
    """
    from autonas_dynamic.cost import count_flops

    if (dummy_input is None) == (data_shape is None):
        raise ValueError("Give exactly one of dummy_input and data_shape.")
    model = unwrap_model(model)
    if data_shape is not None:
        dummy_input = torch.zeros(data_shape, device=model_device(model))
    with frozen_eval(model):
        flops = count_flops(model, dummy_input)
    return num2hrb(flops) if return_str else flops / unit


def param_count(model: nn.Module, dummy_input: Any = None, unit: float = 1.0, return_str: bool = False) -> float | str:
    """Parameters of the active subnet (what the exported subnet would hold).

    ``dummy_input`` is accepted for compatibility with the reference's signature; the count is
    closed-form over the active hparams and needs no forward pass.
    """
    from autonas_dynamic.cost import count_params

    del dummy_input
    count = count_params(unwrap_model(model))
    return num2hrb(count) if return_str else count / unit
