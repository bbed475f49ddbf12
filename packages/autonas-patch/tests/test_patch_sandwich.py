"""The sandwich rule and in-place distillation: order, accumulated gradients, caching, AMP, micro-batches."""

from __future__ import annotations

import copy
import functools
import random
import warnings
from collections import deque, namedtuple
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from patch_models import SuperNet, SuperNetSampler, patched_supernet
from torch import nn

from autonas_patch import (
    AutoNASPatchManager,
    PatchManager,
    SandwichSubnet,
    no_patches,
    sandwich,
    soft_cross_entropy,
)

MAX_CONFIG = {"blocks.depth": 3, "blocks.0.hidden": 8, "blocks.1.hidden": 8, "blocks.2.hidden": 8}
MIN_CONFIG = {"blocks.depth": 1, "blocks.0.hidden": 2, "blocks.1.hidden": 2, "blocks.2.hidden": 2}


def data(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(step)
    return torch.randn(4, 3, 8, 8, generator=generator), torch.randint(0, 5, (4,), generator=generator)


class Trainer:
    """SGD steps, optionally under bfloat16 autocast with a GradScaler; ``micro_batches`` chunks of each batch."""

    def __init__(self, model: nn.Module, micro_batches: int = 1, amp: bool = False) -> None:
        self.model, self.micro_batches, self.amp = model, micro_batches, amp
        self.optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        self.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10, enabled=amp)
        model.train()

    def chunk(self, step: int, micro_batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = data(step)
        return x.chunk(self.micro_batches)[micro_batch], y.chunk(self.micro_batches)[micro_batch]

    def backward(self, loss_of_output: Any, x: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.amp):
            loss = loss_of_output(self.model(x)) / self.micro_batches
        self.scaler.scale(loss).backward()
        return loss

    def update(self) -> None:
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad()


Record = list[list[tuple[str, int, dict[str, int]]]]


def sandwich_training(model: SuperNet, steps: int, amp: bool = False, **options: Any) -> Record:
    """``steps`` optimizer steps with ``sandwich`` (no distillation unless asked); per step the (kind, micro-batch, subnet) of every item."""
    options.setdefault("distill", False)
    sampler = PatchManager.get_manager(model).sampler
    trainer = Trainer(model, options.get("micro_batches", 1), amp)
    record = []
    for step in range(steps):
        items = []
        for subnet in sandwich(model, **options):
            x, y = trainer.chunk(step, subnet.micro_batch)
            trainer.backward(lambda output, y=y, subnet=subnet: subnet.loss(output, y, F.cross_entropy), x)
            items.append((subnet.kind, subnet.micro_batch, sampler.config()))
        trainer.update()
        record.append(items)
    return record


def manual_training(model: SuperNet, record: Record, micro_batches: int = 1, amp: bool = False) -> None:
    """The same steps written out by hand: select each recorded subnet, forward, backward, then one update."""
    sampler = PatchManager.get_manager(model).sampler
    trainer = Trainer(model, micro_batches, amp)
    with no_patches():
        for step, items in enumerate(record):
            for _, micro_batch, config in items:
                sampler.select(config)
                x, y = trainer.chunk(step, micro_batch)
                trainer.backward(lambda output, y=y: F.cross_entropy(output, y), x)
            trainer.update()


def assert_same_parameters(a: nn.Module, b: nn.Module) -> None:
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


@pytest.fixture
def model() -> SuperNet:
    return patched_supernet(seed=3)[0]


def test_order_is_max_min_then_random_subnets_drawn_from_the_model_generator(model) -> None:
    record = sandwich_training(model, steps=4, num_random=2)
    for items in record:
        assert [kind for kind, _, _ in items] == ["max", "min", "random", "random"]
        assert items[0][2] == MAX_CONFIG and items[1][2] == MIN_CONFIG
    randoms = [config for items in record for _, _, config in items[2:]]
    assert len({tuple(config.values()) for config in randoms}) > 4, "random subnets must vary"

    again = patched_supernet(seed=3)[0]
    assert sandwich_training(again, steps=4, num_random=2) == record, "the model's seed fixes the random subnets"
    other = patched_supernet(seed=4)[0]
    assert sandwich_training(other, steps=4, num_random=2) != record


def test_gradients_of_all_subnets_accumulate_before_the_step(model) -> None:
    reference = copy.deepcopy(model)
    record = sandwich_training(model, steps=3, num_random=2)
    manual_training(reference, record)
    assert_same_parameters(model, reference)

    last_only = copy.deepcopy(reference)  # a loop that kept only the last subnet's gradient ends elsewhere
    manual_training(last_only, [[items[-1]] for items in record])
    assert not torch.equal(last_only.head.weight, model.head.weight)


def test_micro_batches_repeat_the_same_subnets_and_match_a_manual_loop(model) -> None:
    reference = copy.deepcopy(model)
    record = sandwich_training(model, steps=3, num_random=1, micro_batches=2)
    for items in record:
        assert [(kind, micro) for kind, micro, _ in items] == [
            ("max", 0),
            ("min", 0),
            ("random", 0),
            ("max", 1),
            ("min", 1),
            ("random", 1),
        ]
        assert items[2][2] == items[5][2], "every micro-batch trains the same random subnet"
    manual_training(reference, record, micro_batches=2)
    assert_same_parameters(model, reference)


def test_autocast_and_grad_scaler_compose(model) -> None:
    reference = copy.deepcopy(model)
    record = sandwich_training(model, steps=3, num_random=1, amp=True)
    manual_training(reference, record, amp=True)
    assert_same_parameters(model, reference)
    plain = patched_supernet(seed=3)[0]
    sandwich_training(plain, steps=3, num_random=1)
    assert not torch.equal(plain.head.weight, model.head.weight), "bfloat16 autocast must have been active"


def test_each_step_caches_one_batch_per_micro_batch_and_eval_recalibrates_the_max_subnet(model) -> None:
    manager = PatchManager.get_manager(model)
    data_ = manager.patch_data
    data_["queue"] = deque(maxlen=4)
    sandwich_training(model, steps=2, num_random=2, micro_batches=2)
    assert data_["count"] == 4 and len(data_["queue"]) == 4, "one cached batch per micro-batch, not per subnet"
    cached = [item[0] for item in data_["queue"]]
    assert torch.equal(cached[0], data(0)[0][:2]) and torch.equal(cached[3], data(1)[0][2:])
    assert data_["autosampled"] and data_["train_count_since_sample"] < 100
    before = model.stem_bn.running_mean.clone()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.eval()
    assert manager.sampler.config() == MAX_CONFIG
    assert not torch.equal(model.stem_bn.running_mean, before), "eval() recalibrated from the 4 cached batches"
    assert data_["train_count_since_sample"] == 100


def test_plain_training_samples_again_after_a_step_also_after_break(model) -> None:
    sampler = PatchManager.get_manager(model).sampler
    model.train()
    x, _ = data(0)
    for subnet in sandwich(model, num_random=2):
        if subnet.kind == "min":
            break
    assert sampler.config() == MIN_CONFIG
    data_ = PatchManager.get_manager(model).patch_data
    assert not data_["hold_subnet"] and not data_["repeat_batch"]
    configs = set()
    for _ in range(6):
        model(x)
        configs.add(tuple(sampler.config().values()))
    assert len(configs) > 1, "forwards outside a sandwich step sample their own subnet"


def test_with_patches_off_the_subnets_still_change_but_nothing_is_cached(model) -> None:
    manager = PatchManager.get_manager(model)
    model.train()
    seen = []
    with no_patches():
        for _ in sandwich(model, num_random=1):
            model(data(0)[0])
            seen.append(manager.sampler.config())
    assert seen[:2] == [MAX_CONFIG, MIN_CONFIG]
    assert manager.patch_data["count"] == 0 and len(manager.patch_data["queue"]) == 0


def test_a_model_with_one_subnet_yields_only_the_maximal_one() -> None:
    torch.manual_seed(0)
    net = SuperNet()
    sampler = SuperNetSampler(net, widths=(8,), depths=(3,))
    AutoNASPatchManager(net).patch(sampler, seed=0)
    assert [subnet.kind for subnet in sandwich(net, num_random=3, micro_batches=2)] == ["max", "max"]
    scored: list[None] = []
    chosen = sandwich(net, num_random=3, choose="worst", score=lambda: scored.append(None) or 0.0)
    assert [subnet.kind for subnet in chosen] == ["max"] and not scored, "nothing to choose from, nothing scored"


def test_distillation_targets_are_the_detached_max_output(model) -> None:
    model.train()
    x, y = data(0)
    seen: list[tuple[SandwichSubnet, torch.Tensor, torch.Tensor]] = []
    for subnet in sandwich(model, num_random=2, temperature=2.0):  # distillation is on by default
        assert subnet.teacher is None if subnet.kind == "max" else subnet.teacher is not None
        output = model(x)
        loss = subnet.loss(output, y, F.cross_entropy)
        seen.append((subnet, output, loss))
        loss.backward()
    (max_subnet, max_output, max_loss), *others = seen
    assert torch.equal(max_loss, F.cross_entropy(max_output, y))
    teacher = max_subnet.teacher
    assert torch.equal(teacher, max_output) and not teacher.requires_grad and teacher.grad_fn is None
    for subnet, output, loss in others:
        assert subnet.teacher is teacher
        assert torch.equal(loss, soft_cross_entropy(output, max_output.detach(), 2.0))
        assert not torch.equal(loss, F.cross_entropy(output, y))


@pytest.mark.parametrize("distill", [True, F.mse_loss], ids=["built-in", "custom"])
def test_label_weight_adds_the_task_loss_to_the_distillation_loss_of_the_smaller_subnets(model, distill) -> None:
    model.train()
    x, y = data(0)
    teacher_loss = functools.partial(soft_cross_entropy, temperature=1.0) if distill is True else distill
    kinds = []
    for subnet in sandwich(model, num_random=1, distill=distill, label_weight=0.5):
        output = model(x)
        loss = subnet.loss(output, y, F.cross_entropy)
        if subnet.kind == "max":
            expected = F.cross_entropy(output, y)
        else:
            expected = teacher_loss(output, subnet.teacher) + 0.5 * F.cross_entropy(output, y)
        torch.testing.assert_close(loss, expected, rtol=0, atol=0)
        loss.backward()
        kinds.append(subnet.kind)
    assert kinds == ["max", "min", "random"]


def test_a_custom_distill_loss_takes_structured_outputs(model) -> None:
    model.train()
    x, y = data(0)
    calls = []

    def distill(output: dict[str, torch.Tensor], teacher: dict[str, torch.Tensor]) -> torch.Tensor:
        calls.append(teacher)
        return F.mse_loss(output["logits"], teacher["logits"])

    def task_loss(output: dict[str, torch.Tensor], target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output["logits"], target)

    for subnet in sandwich(model, num_random=1, distill=distill):
        logits = model(x)
        loss = subnet.loss({"logits": logits, "step": 0}, y, task_loss)
        if subnet.kind == "max":
            expected = logits.detach()
        loss.backward()
    assert len(calls) == 2
    assert all(torch.equal(teacher["logits"], expected) and teacher["step"] == 0 for teacher in calls)
    assert not calls[0]["logits"].requires_grad


class ModelOutput(dict):
    """A dict whose keys are also attributes, as Hugging Face model outputs are."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


TrainOutputs = namedtuple("TrainOutputs", ["logits", "aux_logits"])  # as torchvision's GoogLeNet in training


@pytest.mark.parametrize("wrap", [ModelOutput, TrainOutputs], ids=["dict subclass", "namedtuple"])
def test_the_built_in_distillation_takes_the_logits_of_structured_outputs(model, wrap) -> None:
    model.train()
    x, y = data(0)
    seen = []
    for subnet in sandwich(model, num_random=1, temperature=2.0):
        logits = model(x)
        output = wrap(logits=logits, aux_logits=logits * 2)
        seen.append((subnet, output, subnet.loss(output, y, lambda output, y: F.cross_entropy(output.logits, y))))
    (max_subnet, max_output, _), *others = seen
    teacher = max_subnet.teacher
    assert type(teacher) is wrap, "the teacher keeps the output's class"
    assert torch.equal(teacher.logits, max_output.logits) and not teacher.logits.requires_grad
    assert torch.equal(teacher.aux_logits, max_output.aux_logits) and not teacher.aux_logits.requires_grad
    for _, output, loss in others:
        assert torch.equal(loss, soft_cross_entropy(output.logits, teacher.logits, 2.0))


def test_the_built_in_distillation_of_sequence_logits_takes_the_classes_last(model) -> None:
    model.train()
    x, y = data(0)
    losses = []
    for subnet in sandwich(model, num_random=0):
        sequence = model(x).unsqueeze(1).expand(-1, 3, -1) * torch.arange(1.0, 4.0).view(1, 3, 1)  # (N, L, C)
        losses.append((sequence, subnet.loss(ModelOutput(logits=sequence), y, lambda output, _: output.logits.sum())))
    (teacher, _), (student, loss) = losses
    expected = soft_cross_entropy(student.transpose(1, 2), teacher.detach().transpose(1, 2))
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(soft_cross_entropy(student, teacher, dim=-1), expected)
    assert not torch.allclose(loss, soft_cross_entropy(student, teacher)), "dimension 1 is the sequence here"


def test_the_built_in_distillation_names_outputs_without_logits(model) -> None:
    model.train()
    x, y = data(0)
    with pytest.raises(TypeError, match=r"an output with a 'logits' tensor .*got dict\. Pass your own loss"):
        for subnet in sandwich(model, num_random=0):
            subnet.loss({"scores": model(x)}, y, lambda output, y: output["scores"].sum()).backward()


def test_without_distillation_every_subnet_takes_the_task_loss(model) -> None:
    model.train()
    x, y = data(0)
    for subnet in sandwich(model, num_random=1, distill=False):
        output = model(x)
        assert torch.equal(subnet.loss(output, y, F.cross_entropy), F.cross_entropy(output, y))
        assert subnet.teacher is None


def test_distillation_needs_the_max_subnets_loss_first(model) -> None:
    model.train()
    x, y = data(0)
    with pytest.raises(RuntimeError, match="no teacher for the min subnet of micro-batch 0"):
        for subnet in sandwich(model, num_random=0, distill=True):
            output = model(x)
            loss = F.cross_entropy(output, y) if subnet.kind == "max" else subnet.loss(output, y, F.cross_entropy)
            loss.backward()
    assert not PatchManager.get_manager(model).patch_data["hold_subnet"]


def test_soft_cross_entropy_is_cross_entropy_against_softened_teacher_probabilities() -> None:
    generator = torch.Generator().manual_seed(0)
    output = torch.randn(6, 5, 3, generator=generator, requires_grad=True)
    teacher = torch.randn(6, 5, 3, generator=generator, requires_grad=True)
    loss = soft_cross_entropy(output, teacher, temperature=3.0)
    expected = F.cross_entropy(output / 3.0, F.softmax(teacher / 3.0, dim=1)) * 9.0
    torch.testing.assert_close(loss, expected)
    kl = F.kl_div(F.log_softmax(output / 3.0, 1), F.log_softmax(teacher / 3.0, 1), log_target=True, reduction="none")
    kl_loss = kl.sum(1).mean() * 9.0
    (grad,) = torch.autograd.grad(loss, output, retain_graph=True)
    (kl_grad,) = torch.autograd.grad(kl_loss, output)
    torch.testing.assert_close(grad, kl_grad)
    loss.backward()
    assert teacher.grad is None, "the teacher gets no gradient"


def test_a_mask_averages_soft_cross_entropy_over_the_positions_it_keeps() -> None:
    generator = torch.Generator().manual_seed(0)
    output = torch.randn(3, 7, 5, generator=generator, requires_grad=True)
    teacher = torch.randn(3, 7, 5, generator=generator)
    lengths = torch.tensor([7, 4, 2])
    mask = (torch.arange(7) < lengths[:, None]).long()  # an attention mask of right-padded sequences
    loss = soft_cross_entropy(output, teacher, 2.0, dim=-1, mask=mask)
    kept = mask.bool()
    torch.testing.assert_close(loss, soft_cross_entropy(output[kept], teacher[kept], 2.0, dim=-1))
    assert not torch.allclose(loss, soft_cross_entropy(output, teacher, 2.0, dim=-1)), "padding changes the mean"
    (grad,) = torch.autograd.grad(loss, output)
    assert torch.count_nonzero(grad[~kept]) == 0 and torch.count_nonzero(grad[kept]) > 0
    empty = soft_cross_entropy(output, teacher, dim=-1, mask=torch.zeros(3, 7, dtype=torch.bool))
    assert empty.item() == 0.0 and empty.requires_grad
    with pytest.raises(ValueError, match=r"mask \(3, 5\) does not match the positions \(3, 7\) of logits \(3, 7, 5\)"):
        soft_cross_entropy(output, teacher, dim=-1, mask=torch.ones(3, 5))
    with pytest.raises(TypeError, match="mask must be a tensor of the positions that count, got list"):
        soft_cross_entropy(output, teacher, dim=-1, mask=[[1] * 7] * 3)  # type: ignore[arg-type]


def _candidate_configs(model: SuperNet, steps: int, num_random: int, candidates: int) -> list[list[list[dict]]]:
    """Per step and random subnet, the configs of the candidates a copy of ``model``'s generator draws."""
    manager = PatchManager.get_manager(model)
    rng = copy.deepcopy(manager.generator.rng)
    sampler = SuperNetSampler(copy.deepcopy(model))
    steps_drawn = []
    for _ in range(steps):
        pool = [[rng.getrandbits(64) for _ in range(candidates)] for _ in range(num_random)]
        groups = []
        for group in pool:
            configs = []
            for seed in group:
                sampler.sample(random.Random(seed))
                configs.append(sampler.config())
            groups.append(configs)
        steps_drawn.append(groups)
    return steps_drawn


def _active_width(config: dict[str, int]) -> int:
    """Hidden channels of the blocks that run: a deterministic score of a subnet."""
    return sum(config[f"blocks.{i}.hidden"] for i in range(config["blocks.depth"]))


@pytest.mark.parametrize(("choose", "pick"), [("worst", max), ("best", min)])
def test_choose_trains_the_worst_or_best_scored_of_the_candidates(model, choose, pick) -> None:
    sampler = PatchManager.get_manager(model).sampler
    drawn = _candidate_configs(model, steps=3, num_random=2, candidates=4)
    scored = []

    def score() -> torch.Tensor:
        scored.append((torch.is_grad_enabled(), sampler.config()))
        return torch.tensor(float(_active_width(sampler.config())))

    record = sandwich_training(model, steps=3, num_random=2, choose=choose, candidates=4, score=score)
    for items, groups in zip(record, drawn, strict=True):
        assert [kind for kind, _, _ in items] == ["max", "min", "random", "random"]
        chosen = [config for _, _, config in items[2:]]
        assert chosen == [pick(group, key=_active_width) for group in groups]
    assert [config for _, config in scored] == [c for groups in drawn for group in groups for c in group]
    assert not any(grad for grad, _ in scored), "scoring runs without autograd"
    widths = {_active_width(config) for _, _, config in (i for items in record for i in items[2:])}
    everything = {_active_width(c) for groups in drawn for group in groups for c in group}
    assert widths != everything, "the choice must differ from taking every candidate"


def test_chosen_subnets_repeat_over_micro_batches_and_are_scored_once(model) -> None:
    calls: list[dict[str, int]] = []
    sampler = PatchManager.get_manager(model).sampler
    record = sandwich_training(
        model,
        steps=2,
        num_random=2,
        micro_batches=2,
        choose="best",
        candidates=3,
        score=lambda: calls.append(sampler.config()) or _active_width(sampler.config()),
    )
    assert len(calls) == 2 * 2 * 3, "candidates x random subnets per step, not per micro-batch"
    for items in record:
        first, second = items[:4], items[4:]
        assert [config for _, _, config in first] == [config for _, _, config in second]
        assert [micro_batch for _, micro_batch, _ in items] == [0] * 4 + [1] * 4


def test_scoring_forwards_are_neither_cached_nor_counted(model) -> None:
    manager = PatchManager.get_manager(model)
    x, y = data(0)
    for step in range(3):
        for subnet in sandwich(model, choose="worst", candidates=3, score=lambda: F.cross_entropy(model(x), y)):
            subnet.loss(model(x), y, F.cross_entropy).backward()
        assert len(manager.patch_data["queue"]) == manager.patch_data["count"] == step + 1


def test_bad_arguments_are_named(model) -> None:
    with pytest.raises(ValueError, match="num_random must be an int >= 0, got -1"):
        sandwich(model, num_random=-1)
    with pytest.raises(ValueError, match="micro_batches must be an int >= 1, got 0"):
        sandwich(model, micro_batches=0)
    with pytest.raises(TypeError, match="distill must be True, False or a loss"):
        sandwich(model, distill="kl")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="temperature must be > 0, got 0"):
        sandwich(model, distill=True, temperature=0)
    with pytest.raises(ValueError, match="temperature applies to the built-in soft cross-entropy only"):
        sandwich(model, distill=F.mse_loss, temperature=2.0)
    for bad in (-0.5, float("nan"), float("inf"), True, "0.5"):
        with pytest.raises(ValueError, match=f"label_weight must be a finite number >= 0, got {bad!r}"):
            sandwich(model, label_weight=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="with distill=False every subnet already trains on the task loss"):
        sandwich(model, distill=False, label_weight=0.5)
    with pytest.raises(RuntimeError, match="SuperNet is not patched"):
        sandwich(SuperNet())
    with pytest.raises(TypeError, match="soft_cross_entropy takes logit tensors, got dict"):
        soft_cross_entropy({"logits": torch.zeros(2, 3)}, torch.zeros(2, 3))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"dim=2 is not a dimension of logits of shape \(2, 3\)"):
        soft_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 3), dim=2)
    with pytest.raises(ValueError, match=r"output \(2, 3\) and teacher \(2, 4\)"):
        soft_cross_entropy(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="choose must be 'uniform', 'worst' or 'best', got 'top'"):
        sandwich(model, choose="top")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="choose='worst' ranks candidates by score"):
        sandwich(model, choose="worst")
    with pytest.raises(ValueError, match="candidates must be an int >= 1, got 0"):
        sandwich(model, choose="best", candidates=0, score=lambda: 0.0)
    with pytest.raises(ValueError, match="score is used only with choose='worst' or 'best'"):
        sandwich(model, score=lambda: 0.0)
    with pytest.raises(TypeError, match="score must return a number or a one-element tensor, got 'low'"):
        next(iter(sandwich(model, choose="best", score=lambda: "low")))
    steps = iter(sandwich(model))
    next(steps)
    with pytest.raises(RuntimeError, match="a sandwich step is already running on SuperNet"):
        sandwich(model)
    steps.close()
    next(iter(sandwich(model)))
