"""The sandwich rule: the maximal, the minimal and a few random subnets trained in one optimizer step."""

from __future__ import annotations

import contextlib
import functools
import math
import random
from collections.abc import Callable, Iterator
from typing import Any, Literal

import torch
import torch.distributed as dist
from torch import nn

from .autonas_manager import AutoNASPatchManager
from .distill import logits_distillation
from .generator import _world_size
from .manager import PatchManager
from .nested import map_tensors

__all__ = ["SandwichSubnet", "sandwich"]

#: A distillation loss: ``(output of a smaller subnet, detached output of the maximal subnet) -> loss``.
DistillLoss = Callable[[Any, Any], torch.Tensor]
#: A candidate's score: called with the candidate subnet active, returns a number (a float or a
#: one-element tensor), for example the loss of the current batch.
Score = Callable[[], Any]
SubnetKind = Literal["max", "min", "random"]
Choice = Literal["uniform", "worst", "best"]


class _Teacher:
    """The detached output of the maximal subnet on the current micro-batch, shared by a step's subnets."""

    def __init__(self, loss: DistillLoss | None, label_weight: float = 0.0) -> None:
        self.loss = loss
        self.label_weight = label_weight
        self.output: Any = None
        self.micro_batch = -1


class SandwichSubnet:
    """One subnet of a sandwich step; it is active on the model while the loop body runs.

    Attributes:
        kind: ``"max"``, ``"min"`` or ``"random"``.
        index: Position in the step's order (0 the maximal subnet, 1 the minimal, then the random ones).
        micro_batch: Index of the micro-batch this forward/backward is for.
        is_last: Whether this is the step's last subnet: under DistributedDataParallel its backward is
            the one that all-reduces the gradients.
    """

    def __init__(self, kind: SubnetKind, index: int, micro_batch: int, is_last: bool, teacher: _Teacher) -> None:
        self.kind = kind
        self.index = index
        self.micro_batch = micro_batch
        self.is_last = is_last
        self._teacher = teacher

    @property
    def teacher(self) -> Any:
        """Detached output of the maximal subnet on this micro-batch (``None`` until :meth:`loss` ran for it)."""
        teacher = self._teacher
        return teacher.output if teacher.micro_batch == self.micro_batch else None

    def loss(self, output: Any, target: Any, loss_fn: Callable[[Any, Any], torch.Tensor]) -> torch.Tensor:
        """The training loss of this subnet's ``output``.

        The maximal subnet gets ``loss_fn(output, target)``, and with distillation its detached
        output becomes the teacher of the micro-batch. Every other subnet gets the distillation loss
        against that teacher when distillation is on (plus ``label_weight * loss_fn(output, target)``
        where the sandwich mixes the two), ``loss_fn(output, target)`` otherwise.

        Raises:
            RuntimeError: Distillation is on and the maximal subnet's loss was not computed with
                this method for the micro-batch.
        """
        teacher = self._teacher
        if self.kind == "max":
            if teacher.loss is not None:
                teacher.output = map_tensors(output, torch.Tensor.detach)
                teacher.micro_batch = self.micro_batch
            return loss_fn(output, target)
        if teacher.loss is None:
            return loss_fn(output, target)
        if teacher.micro_batch != self.micro_batch:
            raise RuntimeError(
                f"no teacher for the {self.kind} subnet of micro-batch {self.micro_batch}: in-place distillation "
                "takes the maximal subnet's output as the target, so compute its loss with subnet.loss() first"
            )
        distilled = teacher.loss(output, teacher.output)
        if teacher.label_weight:
            return distilled + teacher.label_weight * loss_fn(output, target)
        return distilled

    def __repr__(self) -> str:
        return f"SandwichSubnet(kind={self.kind!r}, index={self.index}, micro_batch={self.micro_batch})"


def _distill_loss(distill: bool | DistillLoss, temperature: float) -> DistillLoss | None:
    if distill is False:
        return None
    if distill is True:
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        return functools.partial(logits_distillation, temperature=temperature)
    if not callable(distill):
        raise TypeError(f"distill must be True, False or a loss (output, teacher) -> tensor, got {distill!r}")
    if temperature != 1.0:
        raise ValueError(
            "temperature applies to the built-in soft cross-entropy only; a custom distill loss applies its own"
        )
    return distill


def _check_label_weight(label_weight: Any, distill: bool | DistillLoss) -> float:
    if (
        isinstance(label_weight, bool)
        or not isinstance(label_weight, (int, float))
        or not (label_weight >= 0 and math.isfinite(label_weight))
    ):
        raise ValueError(f"label_weight must be a finite number >= 0, got {label_weight!r}")
    if label_weight and distill is False:
        raise ValueError(
            "label_weight adds the task loss to the distillation loss; with distill=False every subnet already "
            "trains on the task loss alone"
        )
    return float(label_weight)


def _check_count(name: str, value: Any, lowest: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lowest:
        raise ValueError(f"{name} must be an int >= {lowest}, got {value!r}")


def sandwich(
    model: nn.Module,
    num_random: int = 2,
    *,
    micro_batches: int = 1,
    distill: bool | DistillLoss = True,
    temperature: float = 1.0,
    label_weight: float = 0.0,
    choose: Choice = "uniform",
    candidates: int = 4,
    score: Score | None = None,
) -> Iterator[SandwichSubnet]:
    """Train the maximal, the minimal and ``num_random`` random subnets in one optimizer step.

    Iterate over it inside one training step; each item activates its subnet, and the loop body
    runs the forward and the backward of that subnet, so the gradients of all of them add up
    before your ``optimizer.step()``::

        for x, y in loader:
            optimizer.zero_grad()
            for subnet in sandwich(model, num_random=2):
                loss = subnet.loss(model(x), y, criterion)
                loss.backward()
            optimizer.step()

    Order: the maximal subnet, the minimal subnet, then the random ones, drawn from the model's
    generator at the start of the step (the same on every torch.distributed rank). A model with a
    single subnet yields only the maximal one. While the step runs, training forwards do not
    sample subnets themselves; the first forward of each micro-batch is cached for BatchNorm
    recalibration and the others (the same batch again) are not. Afterwards ``model.eval()``
    returns to the maximal subnet and recalibrates, as after ordinary training.

    Pass the ``DistributedDataParallel`` (or any wrapper with ``no_sync()``) model you call in the
    loop: every backward but the step's last runs under ``no_sync()``, so gradients are all-reduced
    once per step. ``torch.autocast`` and ``GradScaler`` go in the loop body as usual.

    Args:
        model: The patched model (an ``autonas.convert``-ed one), or a wrapper around it.
        num_random: Random subnets per step, besides the maximal and the minimal one.
        micro_batches: Gradient accumulation: the subnets of the step are yielded once per
            micro-batch (all of them for micro-batch 0, then the same ones again for 1, ...); scale
            each loss by ``1 / micro_batches`` for the mean over the whole batch.
        distill: In-place distillation (on by default): ``True`` makes the maximal subnet's detached
            output the target of the others through :func:`autonas_patch.soft_cross_entropy` over
            the logits (a tensor output, classes on dimension 1; or the ``logits`` field of a
            structured output such as a Hugging Face ``ModelOutput``, classes last for
            ``(N, L, C)`` sequence logits); or a loss ``(output, teacher) -> tensor`` of your own
            (any output structure; the teacher keeps the output's type, its tensors detached);
            ``False`` trains every subnet on ``loss_fn``. It acts through :meth:`SandwichSubnet.loss`.
        temperature: Temperature of the built-in distillation loss.
        label_weight: With distillation, the subnets other than the maximal one train on the
            distillation loss plus ``label_weight`` times ``loss_fn(output, target)``, as in
            Once-for-All; 0 (the default): the distillation loss alone, as in BigNAS.
        choose: How each random subnet is picked: ``"uniform"`` (a uniform draw), or, as in
            AttentiveNAS, the ``"worst"`` (highest score) or ``"best"`` (lowest score) of
            ``candidates`` uniform draws. Scoring runs at the start of the step, before the maximal
            subnet, under ``torch.no_grad``; its forwards are neither counted nor cached. Under
            torch.distributed the scores are averaged over the ranks first, so every rank picks
            the same subnets.
        candidates: Uniform draws per random subnet when ``choose`` is ``"worst"`` or ``"best"``.
        score: Called with each candidate active; returns a number, lower is better (for example
            ``lambda: criterion(model(x), y)`` on the step's batch, or a cost). Needed unless
            ``choose="uniform"``.

    Yields:
        :class:`SandwichSubnet`: the active subnet, with ``loss()`` that applies the distillation.

    Raises:
        RuntimeError: The model is not patched for AutoNAS training, or a sandwich step is already
            running on it.
        ValueError / TypeError: A bad argument (named in the message).
    """
    _check_count("num_random", num_random, 0)
    _check_count("micro_batches", micro_batches, 1)
    pick = _picker(choose, candidates, score)
    teacher = _Teacher(_distill_loss(distill, temperature), _check_label_weight(label_weight, distill))
    manager = PatchManager.get_manager(model)
    if not isinstance(manager, AutoNASPatchManager):
        raise RuntimeError(
            f"sandwich() needs a model patched for AutoNAS training, {type(model).__name__} is patched by "
            f"{type(manager).__name__}"
        )
    data = manager.patch_data
    if data["hold_subnet"]:
        raise RuntimeError(f"a sandwich step is already running on {type(model).__name__}: finish it first")
    return _steps(model, manager, num_random, micro_batches, teacher, pick)


def _sample_seeded(manager: AutoNASPatchManager, seed: int) -> None:
    manager.sample(random.Random(seed))


class _Picker:
    """Draws the seeds of a step's random subnets: uniformly, or the worst / best scored of a few candidates."""

    def __init__(self, choose: Choice, candidates: int, score: Score | None) -> None:
        self.choose, self.candidates, self.score = choose, candidates, score

    def seeds(self, manager: AutoNASPatchManager, num_random: int) -> list[int]:
        """One subnet seed per random subnet; the active subnet afterwards is unspecified."""
        rng = manager.generator.rng
        if self.choose == "uniform":
            return [rng.getrandbits(64) for _ in range(num_random)]
        pool = [[rng.getrandbits(64) for _ in range(self.candidates)] for _ in range(num_random)]
        scores = _mean_over_ranks(self._scores(manager, [seed for group in pool for seed in group]))
        extreme = max if self.choose == "worst" else min
        rows = scores.view(num_random, self.candidates).tolist()
        return [group[row.index(extreme(row))] for row, group in zip(rows, pool, strict=True)]

    def _scores(self, manager: AutoNASPatchManager, seeds: list[int]) -> torch.Tensor:
        values = []
        with torch.no_grad():
            for seed in seeds:
                _sample_seeded(manager, seed)
                value = self.score()
                try:
                    values.append(float(value))
                except (TypeError, ValueError, RuntimeError) as error:
                    raise TypeError(f"score must return a number or a one-element tensor, got {value!r}") from error
        return torch.tensor(values, dtype=torch.float64)


def _mean_over_ranks(values: torch.Tensor) -> torch.Tensor:
    """``values`` averaged over the torch.distributed ranks (unchanged outside a process group)."""
    world_size = _world_size()
    if world_size == 1:
        return values
    total = values.to("cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(total)
    return total.cpu() / world_size


def _picker(choose: Any, candidates: Any, score: Any) -> _Picker:
    if choose not in ("uniform", "worst", "best"):
        raise ValueError(f"choose must be 'uniform', 'worst' or 'best', got {choose!r}")
    _check_count("candidates", candidates, 1)
    if choose != "uniform" and not callable(score):
        raise TypeError(f"choose={choose!r} ranks candidates by score: pass score=lambda: <number>, got {score!r}")
    if choose == "uniform" and score is not None:
        raise ValueError("score is used only with choose='worst' or 'best'; with choose='uniform' leave it out")
    return _Picker(choose, candidates, score)


def _steps(
    model: nn.Module,
    manager: AutoNASPatchManager,
    num_random: int,
    micro_batches: int,
    teacher: _Teacher,
    pick: _Picker,
) -> Iterator[SandwichSubnet]:
    data = manager.patch_data
    no_sync = getattr(model, "no_sync", None)
    data["hold_subnet"] = True
    try:
        if manager.sampler.is_configurable():
            data["repeat_batch"] = True  # scoring forwards are neither counted nor cached
            seeds = pick.seeds(manager, num_random)
            order: list[tuple[SubnetKind, Callable[[], None]]] = [
                ("max", manager.sample_max),
                ("min", manager.sample_min),
            ]
            order += [("random", functools.partial(_sample_seeded, manager, seed)) for seed in seeds]
        else:
            order = [("max", manager.sample_max)]
        for micro_batch in range(micro_batches):
            for index, (kind, activate) in enumerate(order):
                activate()
                data["repeat_batch"] = index > 0
                is_last = micro_batch == micro_batches - 1 and index == len(order) - 1
                sync = contextlib.nullcontext() if is_last or no_sync is None else no_sync()
                with sync:
                    yield SandwichSubnet(kind, index, micro_batch, is_last, teacher)
    finally:
        data["hold_subnet"] = data["repeat_batch"] = False
        data["autosampled"] = True
