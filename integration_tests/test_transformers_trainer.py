"""``autonas.huggingface.SandwichTrainer``: the Hugging Face Trainer training a sandwich per micro-batch.

A few Trainer steps (SGD, constant learning rate, no clipping) give the parameters of the same
sandwich steps written out by hand on the batches the Trainer drew (a BERT classifier, a GPT-2
language model, also on padded texts, and a BART encoder-decoder: the distillation of padded
sequences counts their real tokens only), with gradient accumulation, the Trainer's label
smoothing and AttentiveNAS's choice of subnets, and each log has the mean losses of the minimal
and the random subnets; evaluation scores the maximal subnet, recalibrated for a BatchNorm model;
a run resumed from a checkpoint ends where the uninterrupted one does; on two gloo ranks the
Trainer's DistributedDataParallel all-reduces once per optimizer step, the ranks agree, and their
logs average the smaller subnets' losses over both.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from test_distributed import count_allreduces, free_port

import autonas as an
from autonas_patch import QUEUE_MAXLEN, PatchManager

transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")
from autonas.huggingface import SandwichTrainer  # noqa: E402  (needs transformers)

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")

VOCAB, CLASSES, LR = 100, 5, 0.05


def _classifier() -> torch.nn.Module:
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        num_labels=CLASSES, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    return an.convert(transformers.BertForSequenceClassification(config), mode="autonas", mode_kwargs={"seed": 0})


def _dataset(size: int, seed: int) -> list[dict[str, Any]]:
    tokens = torch.randint(0, VOCAB, (size, 12), generator=torch.Generator().manual_seed(seed))
    return [{"input_ids": row, "labels": int(row[:3].sum()) % CLASSES} for row in tokens]


def _classification_loss(output, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    return F.cross_entropy(output.logits, labels, label_smoothing=smoothing)


def _language_model() -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=32, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return an.convert(transformers.GPT2LMHeadModel(config), mode="autonas", mode_kwargs={"seed": 0})


def _texts(size: int, seed: int) -> list[dict[str, Any]]:
    tokens = torch.randint(0, VOCAB, (size, 12), generator=torch.Generator().manual_seed(seed))
    return [{"input_ids": row, "labels": row} for row in tokens]


def _padded_texts(size: int, seed: int) -> list[dict[str, Any]]:
    """Texts of 4 to 12 tokens, right-padded to 12: their labels and attention mask mark the padding."""
    generator = torch.Generator().manual_seed(seed)
    rows = []
    for _ in range(size):
        length = int(torch.randint(4, 13, (1,), generator=generator))
        mask = (torch.arange(12) < length).long()
        tokens = torch.randint(1, VOCAB, (12,), generator=generator) * mask
        rows.append({"input_ids": tokens, "attention_mask": mask, "labels": tokens.masked_fill(mask == 0, -100)})
    return rows


def _seq2seq() -> torch.nn.Module:
    config = transformers.BartConfig(
        vocab_size=VOCAB, d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=32, dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0,
    )  # fmt: skip
    torch.manual_seed(0)
    return an.convert(transformers.BartForConditionalGeneration(config), mode="autonas", mode_kwargs={"seed": 0})


def _padded_pairs(size: int, seed: int) -> list[dict[str, Any]]:
    """Padded sources of 12 tokens and targets of 2 to 5 of 8 tokens whose padding labels are -100."""
    sources = _padded_texts(size, seed)
    generator = torch.Generator().manual_seed(seed + 1)
    for row in sources:
        length = int(torch.randint(2, 6, (1,), generator=generator))
        target = torch.randint(3, VOCAB, (8,), generator=generator)
        row["labels"] = target.masked_fill(torch.arange(8) >= length, -100)
    return sources


def _token_loss(output, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    assert smoothing == 0.0
    return F.cross_entropy(output.logits.reshape(-1, VOCAB), labels.reshape(-1))


def _next_token_loss(output, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    assert smoothing == 0.0
    return F.cross_entropy(output.logits[:, :-1].reshape(-1, VOCAB), labels[:, 1:].reshape(-1))


class _RecordingTrainer(SandwichTrainer):
    """Keeps each micro-batch the Trainer drew and the loss its training step returned."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.micro_batches: list[dict[str, torch.Tensor]] = []
        self.returned: list[torch.Tensor] = []

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.micro_batches.append({key: value.clone() for key, value in inputs.items()})
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.returned.append(loss)
        return loss


def _arguments(tmp_path: Path, **overrides: Any) -> transformers.TrainingArguments:
    settings = {
        "output_dir": str(tmp_path), "per_device_train_batch_size": 4, "per_device_eval_batch_size": 8,
        "max_steps": 3, "learning_rate": LR, "optim": "sgd", "lr_scheduler_type": "constant",
        "max_grad_norm": 0.0, "use_cpu": True, "report_to": [], "save_strategy": "no", "logging_strategy": "no",
        "disable_tqdm": True, "seed": 0,
    }  # fmt: skip
    return transformers.TrainingArguments(**(settings | overrides))


CLASSIFIER = (_classifier, _dataset, _classification_loss)
LANGUAGE_MODEL = (_language_model, _texts, _next_token_loss)
PADDED_LANGUAGE_MODEL = (_language_model, _padded_texts, _next_token_loss)
SEQ2SEQ = (_seq2seq, _padded_pairs, _token_loss)
CASES = {
    # gradient accumulation, distillation at a temperature
    "accumulated_distillation": (CLASSIFIER, {"gradient_accumulation_steps": 2}, {"temperature": 2.0}),
    # the Trainer's label smoother applies to every subnet without distillation
    "label_smoothing_no_distillation": (CLASSIFIER, {"label_smoothing_factor": 0.1}, {"distill": False}),
    # AttentiveNAS: each random subnet the worst of 3 candidates by the task loss on the micro-batch
    "worst_candidates": (CLASSIFIER, {}, {"choose": "worst", "candidates": 3}),
    # a causal LM's own shifted loss for the maximal subnet, distillation over (N, L, V) logits
    "language_model_accumulated": (LANGUAGE_MODEL, {"gradient_accumulation_steps": 2}, {}),
    # padded texts: the distillation counts the tokens of the attention mask only
    "padded_language_model": (PADDED_LANGUAGE_MODEL, {}, {"temperature": 2.0}),
    # an encoder-decoder: the distillation counts the decoder positions whose labels are scored
    "padded_seq2seq": (SEQ2SEQ, {}, {}),
}


def _masked_distillation(temperature: float, tokens: torch.Tensor):
    """The built-in distillation written out over the real tokens of a padded batch."""

    def loss(output, teacher) -> torch.Tensor:
        return an.soft_cross_entropy(output.logits, teacher.logits, temperature, dim=-1, mask=tokens)

    return loss


@pytest.mark.parametrize("case", CASES)
def test_trainer_steps_equal_the_sandwich_steps_written_out(case: str, tmp_path: Path) -> None:
    (build, data, written_loss), arguments, sandwich_kwargs = CASES[case]
    model = build()
    reference = copy.deepcopy(model)  # the same weights and the same subnet generator
    initial = {key: value.clone() for key, value in model.state_dict().items()}
    logged = {"logging_strategy": "steps", "logging_steps": 1}
    trainer = _RecordingTrainer(
        model=model, args=_arguments(tmp_path, **arguments, **logged), train_dataset=data(32, 0), **sandwich_kwargs
    )
    trainer.train()

    accumulate = arguments.get("gradient_accumulation_steps", 1)
    smoothing = arguments.get("label_smoothing_factor", 0.0)
    assert len(trainer.micro_batches) == 3 * accumulate
    optimizer = torch.optim.SGD(reference.parameters(), lr=LR)
    reference.train()
    subnets, max_losses, step_losses = set(), [], []
    for start in range(0, len(trainer.micro_batches), accumulate):
        optimizer.zero_grad()
        step_losses.append({"min": [], "random": []})
        for inputs in trainer.micro_batches[start : start + accumulate]:
            features = dict(inputs)  # with the labels: an encoder-decoder reads them shifted as its decoder inputs

            def task_loss(output, labels=inputs["labels"]):
                return written_loss(output, labels, smoothing)

            options = dict(sandwich_kwargs)
            if "choose" in options:
                options["score"] = lambda features=features, task_loss=task_loss: task_loss(reference(**features))
            if "attention_mask" in inputs:
                seq2seq = reference.config.is_encoder_decoder
                tokens = inputs["labels"] != -100 if seq2seq else inputs["attention_mask"]
                options["distill"] = _masked_distillation(options.pop("temperature", 1.0), tokens)
            for subnet in an.sandwich(reference, num_random=2, **options):
                subnets.add(str(an.get_subnet_config(reference, configurable=True)))
                output = reference(**features)
                loss = subnet.loss(output, inputs["labels"], lambda out, _: task_loss(out))
                (loss / accumulate).backward()
                if subnet.kind == "max":
                    max_losses.append(loss.detach() / accumulate)
                else:
                    step_losses[-1][subnet.kind].append(loss.item())
        optimizer.step()
    assert len(subnets) > 4, "the micro-batches train different random subnets"
    if "attention_mask" in trainer.micro_batches[0]:
        # counting the padding too, the second step's maximal loss differs (GPT-2 by 2.5e-4, BART by 2.8e-5)
        assert all((batch["labels"] == -100).any() for batch in trainer.micro_batches), "every batch is padded"
    torch.testing.assert_close(torch.stack(trainer.returned), torch.stack(max_losses))
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logs) == 3, "one training log per optimizer step"
    for entry, losses in zip(logs, step_losses, strict=True):
        assert entry["min_subnet_loss"] == pytest.approx(sum(losses["min"]) / accumulate, rel=1e-5)
        assert len(losses["random"]) == 2 * accumulate
        assert entry["random_subnet_loss"] == pytest.approx(sum(losses["random"]) / (2 * accumulate), rel=1e-5)
    moved = 0
    for key, trained in model.state_dict().items():
        torch.testing.assert_close(
            trained, reference.state_dict()[key], msg=lambda message, key=key: f"{key}: {message}"
        )
        moved += not torch.equal(trained, initial[key])
    assert moved > 10, "training changed the weights"


def test_trainer_evaluates_the_maximal_subnet(tmp_path: Path) -> None:
    model = _classifier()
    trainer = SandwichTrainer(model=model, args=_arguments(tmp_path), train_dataset=_dataset(16, 0))
    trainer.train()
    evaluation = _dataset(16, 1)
    trained = copy.deepcopy(model)

    def mean_loss(sample_func) -> float:
        with an.no_patches(), torch.no_grad():
            an.sample(trained, sample_func=sample_func)
            trained.eval()
            batches = [evaluation[:8], evaluation[8:]]
            return sum(
                F.cross_entropy(
                    trained(input_ids=torch.stack([row["input_ids"] for row in batch])).logits,
                    torch.tensor([row["labels"] for row in batch]),
                ).item()
                for batch in batches
            ) / len(batches)

    expected, of_minimal = mean_loss(max), mean_loss(min)
    assert abs(expected - of_minimal) > 1e-3, "the minimal subnet scores otherwise, so the check can fail"
    assert trainer.evaluate(eval_dataset=evaluation)["eval_loss"] == pytest.approx(expected, rel=1e-5)


def test_a_batchnorm_model_caches_one_batch_per_micro_batch_and_evaluates_recalibrated(tmp_path: Path) -> None:
    config = transformers.ResNetConfig(embedding_size=32, hidden_sizes=[64, 128], depths=[2, 2], num_labels=4)
    torch.manual_seed(0)
    model = an.convert(transformers.ResNetForImageClassification(config), mode="autonas", mode_kwargs={"seed": 0})
    generator = torch.Generator().manual_seed(0)
    images = [{"pixel_values": torch.randn(3, 32, 32, generator=generator), "labels": i % 4} for i in range(48)]
    half = QUEUE_MAXLEN // 2
    trainer = SandwichTrainer(model=model, args=_arguments(tmp_path, max_steps=half), train_dataset=images[:32])
    queue = PatchManager.get_manager(model).patch_data["queue"]
    trainer.train()
    assert len(queue) == half, "the first of the four forwards of each micro-batch is cached"
    trainer.train()  # recalibration waits for a full queue
    assert len(queue) == QUEUE_MAXLEN
    held_out = images[32:]
    pixels = torch.stack([row["pixel_values"] for row in held_out])
    labels = torch.tensor([row["labels"] for row in held_out])

    def loss_of(net: torch.nn.Module) -> float:
        with torch.no_grad():
            return F.cross_entropy(net(pixel_values=pixels).logits, labels).item()

    recalibrated, as_trained = copy.deepcopy(model), copy.deepcopy(model)
    recalibrated.eval()  # the maximal subnet, its BatchNorm statistics recalibrated from the queue
    with an.no_patches():
        an.sample(as_trained, sample_func=max)
        as_trained.eval()  # the maximal subnet with the running statistics training left
    expected = loss_of(recalibrated)
    assert abs(expected - loss_of(as_trained)) > 1e-3, "recalibration changes the statistics"
    evaluated = trainer.evaluate(eval_dataset=held_out)["eval_loss"]
    assert evaluated == pytest.approx(expected, rel=1e-5)


def test_bad_model_or_arguments_fail_when_the_trainer_is_built(tmp_path: Path) -> None:
    plain = transformers.BertForSequenceClassification(transformers.BertConfig(hidden_size=32, num_attention_heads=2))
    with pytest.raises(TypeError, match="BertForSequenceClassification is not converted"):
        SandwichTrainer(model=plain, args=_arguments(tmp_path))
    with pytest.raises(ValueError, match="num_random must be an int >= 0, got -1"):
        SandwichTrainer(model=_classifier(), args=_arguments(tmp_path), num_random=-1)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        SandwichTrainer(model=_classifier(), args=_arguments(tmp_path), temperature=0.0)


def test_resuming_from_a_checkpoint_trains_as_the_uninterrupted_run(tmp_path: Path) -> None:
    def run(folder: Path, resume: Path | None = None) -> dict[str, torch.Tensor]:
        model = _classifier()
        arguments = _arguments(folder, max_steps=4, save_strategy="steps", save_steps=2, optim="adamw_torch")
        SandwichTrainer(model=model, args=arguments, train_dataset=_dataset(64, 0)).train(
            resume_from_checkpoint=None if resume is None else str(resume)
        )
        return model.state_dict()

    uninterrupted = run(tmp_path / "whole")
    checkpoint = tmp_path / "whole" / "checkpoint-2"
    resumed = run(tmp_path / "resumed", resume=checkpoint)
    for key, value in uninterrupted.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=0, msg=key)
    # Without the generator state the resumed run draws the first steps' subnets again.
    (checkpoint / "autonas_sampling_0.pth").unlink()
    restarted = run(tmp_path / "restarted", resume=checkpoint)
    assert any(not torch.equal(restarted[key], value) for key, value in uninterrupted.items())


# ------------------------------------------------------------------ two ranks (torchrun's environment)
class _CountingTrainer(SandwichTrainer):
    """Counts the gradient all-reduces of each optimizer step and keeps the subnet each micro-batch ended on."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.allreduces: list[int] | None = None
        self.subnets: list[str] = []
        self.min_losses: list[float] = []  # this rank's, one per micro-batch

    def _track_loss(self, kind, loss):
        if kind == "min":
            self.min_losses.append(loss.item())
        super()._track_loss(kind, loss)

    def training_step(self, model, inputs, num_items_in_batch=None):
        if self.allreduces is None:  # the first call: the Trainer has wrapped the model in DDP by now
            self.allreduces = []
            model.register_comm_hook(self.allreduces, count_allreduces)
        if len(self.subnets) % self.args.gradient_accumulation_steps == 0:
            self.allreduces.append(0)
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.subnets.append(str(an.get_subnet_config(model.module, configurable=True)))
        return loss


def _train_on_rank(rank: int, port: int, out_dir: str) -> None:
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    torch.set_num_threads(1)
    model = _classifier()
    # A seed per rank: only the broadcast of rank 0's generator on first use makes the ranks agree.
    PatchManager.get_manager(model).generator.reseed(5 + rank)
    arguments = _arguments(
        Path(out_dir),
        gradient_accumulation_steps=2,
        ddp_backend="gloo",
        ddp_bucket_cap_mb=100,
        logging_strategy="steps",
        logging_steps=1,
    )  # one gradient bucket: one all-reduce is one hook call
    trainer = _CountingTrainer(model=model, args=arguments, train_dataset=_dataset(64, 0))
    trainer.train()
    parameters = {key: value.clone() for key, value in model.state_dict().items()}
    torch.save(
        {
            "allreduces": trainer.allreduces,
            "subnets": trainer.subnets,
            "parameters": parameters,
            "min_losses": trainer.min_losses,
            "logs": [entry for entry in trainer.state.log_history if "loss" in entry],
        },
        Path(out_dir) / f"rank{rank}.pt",
    )
    torch.distributed.barrier()  # leave together: tearing gloo down while the peer still sends aborts


def test_two_ranks_all_reduce_once_per_step_and_stay_identical(tmp_path: Path) -> None:
    mp.spawn(_train_on_rank, args=(free_port(), str(tmp_path)), nprocs=2)
    first, second = (torch.load(tmp_path / f"rank{rank}.pt", weights_only=False) for rank in range(2))
    # 3 steps of 2 micro-batches of 4 subnets each: 8 backwards per step, one of them all-reduces
    assert first["allreduces"] == second["allreduces"] == [1, 1, 1]
    assert first["subnets"] == second["subnets"] and len(set(first["subnets"])) > 3
    untrained = _classifier().state_dict()
    for key, value in first["parameters"].items():
        assert torch.equal(value, second["parameters"][key]), key
    assert not torch.equal(first["parameters"]["classifier.weight"], untrained["classifier.weight"])
    # each log has the minimal subnet's mean loss over the step's micro-batches of both ranks
    assert first["min_losses"] != second["min_losses"], "the ranks train on different batches"
    for step, (log_first, log_second) in enumerate(zip(first["logs"], second["logs"], strict=True)):
        both = first["min_losses"][2 * step : 2 * step + 2] + second["min_losses"][2 * step : 2 * step + 2]
        assert log_first["min_subnet_loss"] == log_second["min_subnet_loss"] == pytest.approx(sum(both) / 4)
