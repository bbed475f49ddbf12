"""The cost model's probe forwards: on meta tensors where the model allows, else real ones.

A cost depends only on the shapes each costed call sees, so the probe forwards need no
arithmetic. :class:`ProbeForwards` runs them with every parameter and buffer of the model replaced,
for the duration of the forward, by a meta tensor of the same shape, strides and dtype (the module
objects with their hparams and hooks stay; a tensor registered in several places stays shared),
and with the input tensors on the meta device: torch then only propagates shapes, which costs the
same at any input size. The stored tensors and the dynamic layers' memoised active tensors are put
back afterwards, so the model's state (values, BatchNorm statistics, training flags) is untouched.

A forward that needs values -- data-dependent control flow, ``.item()``, a tensor created on the
CPU and mixed in, an operator without a meta kernel -- fails on meta tensors; the forward then runs
for real, and so do the rest of the build's forwards, with a warning that gives the reason. A
forward may also run differently on meta tensors: ``nn.MultiheadAttention`` calls
``F.scaled_dot_product_attention`` internally, which runs its unfused fallback (separate scalings
and products) on meta tensors but one fused attention kernel on real ones. The cost model's real
check forward catches such differences and also falls back to real forwards.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn
from torch.utils._pytree import tree_map_only

from ..meta import MetaStandIns, meta_run, model_on_meta
from .recorder import OpRecord, record_ops

__all__ = ["ProbeForwards"]


class ProbeForwards:
    """Records inference forwards of ``model`` on ``dummy_input``, on meta tensors while that works.

    Args:
        model: The model (dynamic modules run their active subnet).
        dummy_input: The forward's input, as for :func:`~autonas_dynamic.cost.recorder.record_ops`.
        meta: Whether to try meta tensors at all (``False``: every forward is real).

    Attributes:
        on_meta: Whether forwards still run on meta tensors (``False`` after a fallback).
    """

    def __init__(self, model: nn.Module, dummy_input: Any, *, meta: bool = True) -> None:
        self.model, self.dummy_input = model, dummy_input
        self.on_meta = meta
        self._stand_ins = MetaStandIns()

    def record(self, *, real: bool = False) -> list[OpRecord]:
        """The costed calls of one forward of the active subnet (``real=True``: a real forward in any case)."""
        if self.on_meta and not real:
            try:
                with model_on_meta(self.model, self._stand_ins), meta_run():
                    meta_input = tree_map_only(torch.Tensor, lambda t: t.to("meta"), self.dummy_input)
                    return record_ops(self.model, meta_input)
            except Exception as error:
                self.fall_back(f"its forward fails on meta tensors ({type(error).__name__}: {error})")
        return record_ops(self.model, self.dummy_input)

    def fall_back(self, reason: str) -> None:
        """Run every later forward for real, warning once with ``reason``."""
        if self.on_meta:
            self.on_meta = False
            warnings.warn(
                f"CostModel: the probe forwards of {type(self.model).__name__} run on real tensors, which is "
                f"slower, because {reason}",
                RuntimeWarning,
                stacklevel=3,
            )
