"""Sandwich training with the Hugging Face ``Trainer``: :class:`SandwichTrainer`.

Needs ``transformers`` and ``accelerate`` (``pip install autonas[huggingface]``); importing this
module imports them, ``import autonas`` does not.
"""

from __future__ import annotations

import functools
import os
import random
from typing import Any

import torch
from torch import nn

try:
    import transformers
except ImportError as error:  # an optional extra of autonas
    raise ImportError(
        "autonas.huggingface needs transformers and accelerate: pip install 'autonas[huggingface]'"
    ) from error

from autonas_patch import PatchManager, sandwich
from autonas_patch.distill import find_logits, logits_distillation
from autonas_patch.sandwich import Choice, DistillLoss

__all__ = ["SandwichTrainer"]

#: The subnets whose mean training loss is logged beside the maximal subnet's ``loss``.
_LOGGED_KINDS = ("min", "random")


def _task_loss(output: Any, task_loss: torch.Tensor) -> torch.Tensor:
    """The loss ``Trainer.compute_loss`` gave for ``output``, passed through as the sandwich's target."""
    return task_loss


def _token_mask(config: Any, inputs: dict[str, Any]) -> torch.Tensor | None:
    """The ``(N, L)`` mask of the positions whose sequence logits count: the real tokens of the batch.

    A decoder-only or encoder model's logits follow its ``attention_mask``; an encoder-decoder's
    follow the decoder's, which is ``decoder_attention_mask`` or, without one, the positions the
    ``labels`` score (its decoder reads the labels shifted right, so logit ``t`` predicts label ``t``).
    """
    if getattr(config, "is_encoder_decoder", False):
        mask = inputs.get("decoder_attention_mask")
        labels = inputs.get("labels")
        if mask is None and isinstance(labels, torch.Tensor) and labels.dim() == 2:
            mask = labels != -100
    else:
        mask = inputs.get("attention_mask")
    return mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None


def _distill_real_tokens(output: Any, teacher: Any, temperature: float, mask: torch.Tensor | None) -> torch.Tensor:
    """The built-in distillation; over ``mask``'s positions only where the logits are ``(N, L, C)`` of its ``(N, L)``."""
    logits, dim = find_logits(output)
    applies = mask is not None and dim == -1 and tuple(logits.shape[:2]) == tuple(mask.shape)
    return logits_distillation(output, teacher, temperature, mask=mask if applies else None)


class SandwichTrainer(transformers.Trainer):
    """A ``transformers.Trainer`` whose every training micro-batch trains a sandwich of subnets.

    Each call of :meth:`training_step` runs :func:`autonas.sandwich` on its micro-batch: the
    maximal subnet on the task loss (what ``Trainer.compute_loss`` computes: the model's own loss
    from ``labels``, a ``label_smoother`` or a ``compute_loss_func``), then the minimal one and
    ``num_random`` random ones, by default on in-place distillation from the maximal subnet's
    logits (over the real tokens of padded sequences: the positions of the ``attention_mask``, or
    for an encoder-decoder of its ``decoder_attention_mask`` or scored ``labels``); their
    gradients add up before the optimizer step. With gradient accumulation each
    micro-batch draws its own random subnets; under ``torchrun`` the gradients are all-reduced
    once per optimizer step (the Trainer's ``no_sync`` covers the earlier micro-batches, the
    sandwich's covers the earlier subnets of the last one). Evaluation and prediction run the
    maximal subnet, as after any autonas training.

    With ``choose="worst"`` (or ``"best"``) each random subnet is the one of ``candidates`` uniform
    draws with the highest (lowest) task loss on the micro-batch, as in AttentiveNAS.

    Checkpoints hold the state of the model's subnet generator beside the Trainer's random states,
    so ``train(resume_from_checkpoint=...)`` goes on drawing the subnets the uninterrupted run would.

    Each training log has, beside ``loss`` (the maximal subnet's), ``min_subnet_loss`` and
    ``random_subnet_loss``: the mean loss those subnets trained on since the last log (their
    distillation loss, or with ``label_weight`` the sum, or the task loss with ``distill=False``),
    over micro-batches and ranks.

    Args:
        *args: What ``transformers.Trainer`` takes; ``model`` is an ``autonas.convert``-ed model.
        num_random: Random subnets per micro-batch, besides the maximal and the minimal one.
        distill: As in :func:`autonas.sandwich`: ``True`` (soft cross-entropy on the ``logits``),
            ``False`` (every subnet on the task loss) or a loss ``(output, teacher) -> tensor``.
        temperature: Temperature of the built-in distillation loss.
        label_weight: Weight of the task loss added to the distillation loss of the smaller subnets.
        choose: ``"uniform"``, ``"worst"`` or ``"best"``: how each random subnet is picked.
        candidates: Uniform draws per random subnet when ``choose`` is ``"worst"`` or ``"best"``.
        **kwargs: What ``transformers.Trainer`` takes.

    Raises:
        TypeError: The model is not an ``autonas.convert``-ed one.
        ValueError: A bad sandwich argument (named in the message).
    """

    def __init__(
        self,
        *args: Any,
        num_random: int = 2,
        distill: bool | DistillLoss = True,
        temperature: float = 1.0,
        label_weight: float = 0.0,
        choose: Choice = "uniform",
        candidates: int = 4,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if not PatchManager.is_patched(self.model):
            raise TypeError(
                f"SandwichTrainer trains an autonas supernet, but {type(self.model).__name__} is not converted: "
                "pass model=autonas.convert(model, mode='autonas')"
            )
        self.sandwich_kwargs = {
            "num_random": num_random,
            "distill": distill,
            "temperature": temperature,
            "label_weight": label_weight,
            "choose": choose,
            "candidates": candidates,
        }
        # The sandwich checks its arguments when created and starts work only when iterated:
        # a bad argument fails here, not at the first training step.
        self._sandwich(self.model, score=lambda: 0.0).close()
        #: Per logged kind: the sum of its subnets' losses since the last log and their number.
        self._subnet_losses: torch.Tensor | None = None

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        """The Trainer's log, with the smaller subnets' mean losses added to a training log."""
        totals = self._subnet_losses
        if "loss" in logs and self.control.should_log and totals is not None:
            totals = self.accelerator.reduce(totals.clone(), reduction="sum")  # over the ranks
            for kind, (total, count) in zip(_LOGGED_KINDS, totals.tolist(), strict=True):
                if count:
                    logs[f"{kind}_subnet_loss"] = total / count
            self._subnet_losses.zero_()
        super().log(logs, *args, **kwargs)

    def _track_loss(self, kind: str, loss: torch.Tensor) -> None:
        """Add the (unscaled) training loss of a minimal or random subnet to the next log's mean."""
        if self._subnet_losses is None:
            self._subnet_losses = torch.zeros(len(_LOGGED_KINDS), 2, device=loss.device)
        total, count = self._subnet_losses[_LOGGED_KINDS.index(kind)]
        total += loss.detach().float()
        count += 1

    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        torch.save({"rng": self._subnet_rng().getstate()}, self._sampling_state_file(output_dir))

    def _load_rng_state(self, checkpoint: str | None) -> None:
        super()._load_rng_state(checkpoint)
        path = None if checkpoint is None else self._sampling_state_file(checkpoint)
        if path is None or not os.path.isfile(path):
            return  # a checkpoint of a plain Trainer: the generator goes on from where it is
        self._subnet_rng().setstate(torch.load(path, weights_only=True)["rng"])

    def _subnet_rng(self) -> random.Random:
        """The model's subnet generator (the same on every rank)."""
        return PatchManager.get_manager(self.model).generator.rng

    def _sampling_state_file(self, folder: str) -> str:
        """Where a checkpoint keeps this process's subnet generator state."""
        return os.path.join(folder, f"autonas_sampling_{self.args.process_index}.pth")

    def _sandwich(self, model: nn.Module, score: Any, inputs: dict[str, Any] | None = None) -> Any:
        """The sandwich of one micro-batch; ``score`` ranks the candidates unless ``choose`` is uniform.

        With the built-in distillation and the micro-batch's ``inputs``, the distillation counts
        their real tokens only.
        """
        kwargs = dict(self.sandwich_kwargs)
        if kwargs["distill"] is True and inputs is not None:
            mask = _token_mask(getattr(self.model, "config", None), inputs)
            kwargs["distill"] = functools.partial(_distill_real_tokens, temperature=kwargs["temperature"], mask=mask)
            kwargs["temperature"] = 1.0  # applied by the loss above
        if kwargs["choose"] == "uniform":
            return sandwich(model, **kwargs)
        return sandwich(model, **kwargs, score=score)

    def _task_loss_of(self, model: nn.Module, inputs: dict[str, Any]) -> tuple[torch.Tensor, Any]:
        """``Trainer.compute_loss`` on the active subnet: the loss (a scalar) and the model's output."""
        # compute_loss may pop the labels from its inputs: each call gets its own dict
        task_loss, output = self.compute_loss(model, dict(inputs), return_outputs=True)
        if self.args.n_gpu > 1:
            task_loss = task_loss.mean()  # nn.DataParallel gathers one loss per device
        return task_loss, output

    def _candidate_score(self, model: nn.Module, inputs: dict[str, Any]) -> float:
        with self.compute_loss_context_manager():
            return float(self._task_loss_of(model, inputs)[0])

    def training_step(
        self, model: nn.Module, inputs: dict[str, Any], num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """Forward and backward of every subnet of the sandwich on ``inputs``; returns the maximal subnet's loss.

        The losses are means over the micro-batch, divided by the number of micro-batches of the
        optimizer step. ``num_items_in_batch``, the token count the Trainer passes for losses summed
        per token over the whole step, is not used: the distillation losses are means, and models
        that accept the count without using it (a BERT classifier) would leave the maximal
        subnet's loss undivided.
        """
        model.train()
        if callable(getattr(self.optimizer, "train", None)):
            self.optimizer.train()  # schedule-free optimizers keep separate train and eval weights
        inputs = self._prepare_inputs(inputs)
        scale = 1.0 / self.current_gradient_accumulation_steps
        reported = None
        for subnet in self._sandwich(model, functools.partial(self._candidate_score, model, inputs), inputs):
            with self.compute_loss_context_manager():
                task_loss, output = self._task_loss_of(model, inputs)
                loss = subnet.loss(output, task_loss, _task_loss)
            self.accelerator.backward(loss * scale)
            if subnet.kind == "max":
                reported = loss.detach() * scale
            else:
                self._track_loss(subnet.kind, loss)
        return reported
