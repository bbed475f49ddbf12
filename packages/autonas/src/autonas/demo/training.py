"""Training and evaluation loops of the demo, with tqdm progress bars."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from tqdm.auto import tqdm

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
) -> None:
    """Train with SGD (Nesterov momentum, one-cycle learning-rate schedule) and cross-entropy.

    The model is put in train mode, so a converted autonas model samples a random subnet at
    every step. The progress bar shows the running loss and training accuracy of each epoch.

    Args:
        model: the model to train, in place.
        data: the training split.
        epochs: passes over ``data``; 0 trains nothing.
        lr: peak learning rate.
        batch_size: images per step.
        seed: seed of the batch order.
        desc: label of the progress bar.
        progress: whether to show the progress bar.
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
        for images, labels in bar:
            logits = model(images)
            loss = loss_fn(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            seen += len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            total_loss += loss.item() * len(labels)
            bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")


@torch.no_grad()
def accuracy(model: nn.Module, data: Split, batch_size: int = 512) -> float:
    """Share of ``data`` that ``model`` classifies correctly, computed in eval mode.

    The caller puts the model in eval mode (for a converted model that may recalibrate BatchNorm),
    so that this function only runs plain forwards.
    """
    if model.training:
        raise ValueError("accuracy() needs the model in eval mode: call model.eval() first")
    correct = 0
    for images, labels in data.loader(batch_size):
        correct += int((model(images).argmax(1) == labels).sum())
    return correct / len(data)
