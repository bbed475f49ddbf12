"""Sandwich training with in-place distillation on Hugging Face models built from tiny configs.

Their outputs are ``ModelOutput`` objects: the built-in distillation takes their ``logits``
(classes last for a language model's ``(N, L, V)``), the teacher keeps the output's class, and a
few steps give the same parameters as the same steps written out by hand.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

import autonas as an
from autonas_patch import SandwichSubnet

transformers = pytest.importorskip("transformers")

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

VOCAB = 100


def _bert_classifier() -> torch.nn.Module:
    config = transformers.BertConfig(
        vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=128,
        num_labels=5, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )  # fmt: skip
    return transformers.BertForSequenceClassification(config)


def _gpt2_lm() -> torch.nn.Module:
    config = transformers.GPT2Config(
        vocab_size=VOCAB, n_embd=64, n_layer=2, n_head=4, n_positions=32, resid_pdrop=0.0, embd_pdrop=0.0,
        attn_pdrop=0.0, bos_token_id=0, eos_token_id=0,
    )  # fmt: skip
    return transformers.GPT2LMHeadModel(config)


def _labels(tokens: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Targets of a batch: one class per sequence for a classifier, the next token for a language model."""
    if logits.dim() == 2:
        return tokens.sum(dim=1) % logits.shape[1]
    return tokens.roll(-1, dims=1)


def _task_loss(output, labels: torch.Tensor) -> torch.Tensor:
    logits = output.logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))


MODELS: dict[str, tuple[Callable[[], torch.nn.Module], int]] = {
    "bert_classifier": (_bert_classifier, 1),
    "gpt2_lm": (_gpt2_lm, -1),
}


def _batches(steps: int) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(0, VOCAB, (4, 12), generator=generator) for _ in range(steps)]


@pytest.mark.parametrize("name", MODELS)
def test_sandwich_distillation_on_model_outputs_matches_a_manual_loop(name: str) -> None:
    build, class_dim = MODELS[name]
    torch.manual_seed(0)
    model = an.convert(build(), mode="autonas", mode_kwargs={"seed": 0})
    reference = copy.deepcopy(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    record = []
    for tokens in _batches(3):
        optimizer.zero_grad()
        step = []
        for subnet in an.sandwich(model, num_random=2, temperature=2.0):
            output = model(tokens)
            loss = subnet.loss(output, _labels(tokens, output.logits), _task_loss)
            loss.backward()
            if subnet.kind == "max":
                teacher = subnet.teacher
                assert type(teacher) is type(output), "the teacher keeps the ModelOutput class"
                assert torch.equal(teacher.logits, output.logits) and not teacher.logits.requires_grad
            step.append((an.get_subnet_config(model, configurable=True), loss.detach()))
        optimizer.step()
        record.append(step)
    assert len({str(config) for step in record for config, _ in step}) > 2, "the steps train different subnets"

    optimizer = torch.optim.SGD(reference.parameters(), lr=0.05)
    reference.train()
    with an.no_patches():
        for tokens, step in zip(_batches(3), record, strict=True):
            optimizer.zero_grad()
            teacher_logits = None
            for index, (config, recorded_loss) in enumerate(step):
                an.select(reference, config)
                output = reference(tokens)
                logits = output.logits
                if index == 0:
                    loss = _task_loss(output, _labels(tokens, logits))
                    teacher_logits = logits.detach()
                else:
                    loss = an.soft_cross_entropy(logits, teacher_logits, temperature=2.0, dim=class_dim)
                torch.testing.assert_close(loss.detach(), recorded_loss)
                loss.backward()
            optimizer.step()
    for (key, trained), written_out in zip(model.state_dict().items(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(trained, written_out, msg=lambda message, key=key: f"{key}: {message}")


def _loss(model: torch.nn.Module, tokens: torch.Tensor, subnet: SandwichSubnet) -> torch.Tensor:
    output = model(tokens)
    return subnet.loss(output, _labels(tokens, output.logits), _task_loss)


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_gradient_checkpointing_trains_each_subnet_as_without_it_and_refuses_a_deferred_backward(
    use_reentrant: bool,
) -> None:
    torch.manual_seed(0)
    model = an.convert(_bert_classifier(), mode="autonas", mode_kwargs={"seed": 0}).train()
    checkpointed = copy.deepcopy(model)
    checkpointed.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": use_reentrant})
    tokens = _batches(1)[0]
    grads = []
    for net in (model, checkpointed):
        for subnet in an.sandwich(net, num_random=2):
            _loss(net, tokens, subnet).backward()
        grads.append({name: p.grad.clone() for name, p in net.named_parameters() if p.grad is not None})
    assert grads[1].keys() == grads[0].keys()
    for name, grad in grads[0].items():
        torch.testing.assert_close(grads[1][name], grad, msg=name)
    # Summed losses would recompute every checkpointed layer for the last subnet: refused, not wrong.
    with pytest.raises(RuntimeError, match="with gradient checkpointing, after the active subnet changed"):
        sum(_loss(checkpointed, tokens, subnet) for subnet in an.sandwich(checkpointed, num_random=2)).backward()
