"""Training and evaluation loops of the demo, with tqdm progress bars."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

import autonas as an

from .data import Split

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]


def train(
    model: nn.Module,
    data: Split,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 64,
    seed: int = 0,
    desc: str = "train",
    progress: bool = True,
    sandwich_random: int | None = None,
) -> None:
    """Train with SGD (Nesterov momentum, one-cycle learning-rate schedule) and cross-entropy.

    The model is put in train mode. A converted autonas model then samples a random subnet at
    every step, unless ``sandwich_random`` is given: each step then trains the maximal, the
    minimal and ``sandwich_random`` random subnets (``an.sandwich``), the maximal one on the
    labels and the others on its detached predictions (in-place distillation). The progress
    bar shows the running loss and training accuracy of each epoch (of the maximal subnet
    under the sandwich rule).

    Args:
        model: the model to train, in place.
        data: the training split.
        epochs: passes over ``data``; 0 trains nothing.
        lr: peak learning rate.
        batch_size: signals per step.
        seed: seed of the batch order.
        desc: label of the progress bar.
        progress: whether to show the progress bar.
        sandwich_random: random subnets per step of the sandwich rule; ``None`` trains the model
            as it is called (one forward per step).
    """
    if epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {epochs}")
    if epochs == 0:
        return
    loader = data.loader(batch_size, shuffle=True, seed=seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * len(loader))
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    for epoch in range(epochs):
        seen, correct, total_loss = 0, 0, 0.0
        bar = tqdm(loader, desc=f"{desc} {epoch + 1}/{epochs}", leave=False, disable=not progress, unit="batch")
        for signals, labels in bar:
            optimizer.zero_grad(set_to_none=True)
            if sandwich_random is None:
                logits = model(signals)
                loss = loss_fn(logits, labels)
                loss.backward()
            else:
                logits, loss = _sandwich_backward(model, signals, labels, loss_fn, sandwich_random)
            optimizer.step()
            scheduler.step()
            seen += len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            total_loss += loss.item() * len(labels)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")


def _sandwich_backward(
    model: nn.Module, signals: torch.Tensor, labels: torch.Tensor, loss_fn: nn.Module, num_random: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Accumulate the gradients of one sandwich step; return the maximal subnet's logits and loss."""
    for subnet in an.sandwich(model, num_random=num_random):
        logits = model(signals)
        loss = subnet.loss(logits, labels, loss_fn)
        loss.backward()
        if subnet.kind == "max":
            max_logits, max_loss = logits.detach(), loss.detach()
    return max_logits, max_loss


@torch.no_grad()
def accuracy(model: nn.Module, data: Split, batch_size: int = 512) -> float:
    """Share of ``data`` that ``model`` classifies correctly, computed in eval mode.

    The caller puts the model in eval mode (for a converted model that may recalibrate BatchNorm),
    so that this function only runs plain forwards.
    """
    if model.training:
        raise ValueError("accuracy() needs the model in eval mode: call model.eval() first")
    correct = 0
    for signals, labels in data.loader(batch_size):
        correct += int((model(signals).argmax(1) == labels).sum())
    return correct / len(data)
