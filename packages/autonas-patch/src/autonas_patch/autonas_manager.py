"""The AutoNAS patch manager: a random subnet per training step, BatchNorm recalibration on ``eval()``."""

from __future__ import annotations

import sys
import warnings
import weakref
from collections import deque
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .calibration import capture_inputs, has_running_batchnorm, recalibrate_batchnorm, replay_inputs
from .checkpointing import BackwardWatch, mark_stale
from .manager import PatchManager

__all__ = ["BN_CALIB_ITERS", "QUEUE_MAXLEN", "AutoNASPatchManager"]

#: Number of input batches kept for BatchNorm recalibration.
QUEUE_MAXLEN = 50
#: Training forwards at one subnet after which its BatchNorm statistics count as trusted; also the
#: period at which a full queue still takes in a fresh batch.
BN_CALIB_ITERS = 100


def _capacity(queue: deque) -> int:
    """How many batches make ``queue`` full: its ``maxlen`` (a replaced queue may have its own), else 50."""
    return QUEUE_MAXLEN if queue.maxlen is None else queue.maxlen


def _is_full(queue: deque) -> bool:
    return len(queue) >= _capacity(queue)


_INTERNAL_DIRS = (str(Path(__file__).parent), str(Path(nn.__file__).parent))


#: Per patched model, the watches of its training forwards since the last architecture change (kept
#: outside the patch data, which pickles; see :mod:`autonas_patch.checkpointing`).
_BACKWARD_WATCHES: weakref.WeakKeyDictionary[nn.Module, list[weakref.ref[BackwardWatch]]] = weakref.WeakKeyDictionary()


def _user_stacklevel() -> int:
    """The ``stacklevel`` that points a warning at the first caller outside autonas_patch and torch.nn."""
    frame, level = sys._getframe(2), 2
    while frame.f_back is not None and frame.f_code.co_filename.startswith(_INTERNAL_DIRS):
        frame, level = frame.f_back, level + 1
    return level


class AutoNASPatchManager(PatchManager):
    """Trains every subnet of a supernet and keeps BatchNorm statistics right for evaluation.

    In train mode every forward first activates a random subnet (``sample_during_training``), and
    input batches are cached for recalibration. ``model.eval()`` switches a model whose subnet was
    sampled in training back to the maximal subnet and, when BatchNorm statistics are stale for the
    active subnet, recomputes them over the cached batches.

    Patch data keys (``manager.patch_data``):

    - ``queue``: ``deque(maxlen=50)`` of cached batches, each ``(*args, kwargs)`` with every tensor
      a detached CPU copy. A forward pushes its inputs while the queue is not full, at every 100th
      counted forward, and at every forward while ``fill`` is set (the oldest item drops out).
    - ``fill``: cache the inputs of every forward, in eval mode too (default ``False``).
    - ``count``: forwards run in train mode or while filling.
    - ``train_count_since_sample``: train-mode forwards since the last architecture change; below
      100 the BatchNorm statistics are stale (starts at 100: the converted model's own statistics).
    - ``autosampled``: whether the active subnet was sampled in training (by a training forward
      or by :func:`autonas_patch.sandwich`).
    - ``hold_subnet``: while set, a training forward runs the active subnet instead of sampling one
      (counting and caching go on); :func:`autonas_patch.sandwich` sets it for its step.
    - ``repeat_batch``: while set, a forward is neither counted nor cached: it runs a batch that was
      already seen (the second and later subnets of a sandwich step).
    - ``sampler`` and ``generator``: see :class:`PatchManager`.
    """

    sample_during_training = True

    def _default_patch_data(self) -> dict[str, Any]:
        return {
            "queue": deque(maxlen=QUEUE_MAXLEN),
            "fill": False,
            "count": 0,
            "train_count_since_sample": BN_CALIB_ITERS,
            "autosampled": False,
            "hold_subnet": False,
            "repeat_batch": False,
        }

    def _hook_pre_forward(self, *args: Any, **kwargs: Any) -> None:
        """Sample a subnet (train mode, unless held) and cache the inputs (train mode or ``fill``, unless repeated)."""
        data = self.patch_data
        training = self.model.training
        if not (training or data["fill"]):
            return
        if training:
            if self.sample_during_training and not data["hold_subnet"]:
                self.sample()
                data["autosampled"] = True
            data["train_count_since_sample"] += 1
        if data["repeat_batch"]:
            return
        queue = data["queue"]
        if data["fill"] or not _is_full(queue) or data["count"] % BN_CALIB_ITERS == 0:
            queue.append(capture_inputs(args, kwargs))
        data["count"] += 1

    def _hook_post_forward(self, output: Any) -> None:
        """Watch a training forward's outputs until their backward (see :mod:`autonas_patch.checkpointing`)."""
        if self.model.training and torch.is_grad_enabled():
            watch = BackwardWatch.attach(output, type(self.model).__name__)
            if watch is not None:
                _BACKWARD_WATCHES.setdefault(self.model, []).append(watch)

    def _hook_post_eval(self, forward_loop: Callable[[nn.Module], Any] | None = None) -> None:
        """Return to the maximal subnet after training and recalibrate BatchNorm if its statistics are stale.

        With ``forward_loop`` the statistics are recomputed over it (and its batches cached); without
        one, over the cached batches when the queue is full, otherwise a warning says the numbers
        may be off.
        """
        data = self.patch_data
        fill = data["fill"]
        try:
            if self.sampler.is_configurable():
                if data["autosampled"]:
                    self.sample_max()
                if forward_loop is None and data["train_count_since_sample"] < BN_CALIB_ITERS:
                    forward_loop = self._queue_replay()
                elif forward_loop is not None:
                    data["fill"] = True
            if forward_loop is not None:
                recalibrate_batchnorm(self.model, forward_loop)
                data["train_count_since_sample"] = BN_CALIB_ITERS
        finally:
            data["fill"] = fill

    def _queue_replay(self) -> Callable[[nn.Module], Any] | None:
        """A forward loop over the cached batches, or ``None`` (with a warning) while the queue is not full."""
        queue = self.patch_data["queue"]
        if _is_full(queue):
            return partial(replay_inputs, items=list(queue))
        if has_running_batchnorm(self.model):
            warnings.warn(
                f"autonas calibration queue not filled ({len(queue)} of {_capacity(queue)} batches): BatchNorm "
                f"statistics of the active subnet of {type(self.model).__name__} were not recalibrated, so "
                "inference results can be inaccurate. Train longer, or pass a forward_loop to "
                "autonas_patch.prep_for_eval(model, forward_loop).",
                UserWarning,
                stacklevel=_user_stacklevel(),
            )
        return None

    def _hook_pre_sample(self) -> None:
        """Mark BatchNorm statistics stale, the subnet as not auto-sampled, and pending checkpointed backwards invalid."""
        mark_stale(_BACKWARD_WATCHES.get(self.model, []), self.model)
        data = self.patch_data
        data["train_count_since_sample"] = 0
        data["autosampled"] = False
