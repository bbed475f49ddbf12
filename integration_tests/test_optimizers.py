"""Optimizers over a supernet: the fused SGD recipe of docs/training.md ("Cost").

Torch's fused SGD fails once some parameters have a momentum buffer and others not yet, which a
supernet whose depth is searched reaches when a block dropped in the first step trains later. The
recipe creates every buffer (zero) up front; with dampening 0 that is exactly the update of plain
SGD, which creates each buffer at its parameter's first gradient.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

import autonas as an
from autonas.demo.model import SEARCH_RULES, SignalNet

STEPS = 8


def _fused_sgd(model: torch.nn.Module, **options: float) -> torch.optim.SGD:
    optimizer = torch.optim.SGD(model.parameters(), fused=True, **options)
    for param in model.parameters():
        optimizer.state[param]["momentum_buffer"] = torch.zeros_like(param)
    return optimizer


def _train(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> list[set[str]]:
    """Uniform steps (one random subnet each); per step, the names of the parameters that got a gradient."""
    generator = torch.Generator().manual_seed(0)
    trained = []
    model.train()
    for _ in range(STEPS):
        x, y = torch.randn(16, 1, 40, generator=generator), torch.randint(0, 10, (16,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        trained.append({name for name, param in model.named_parameters() if param.grad is not None})
        optimizer.step()
    return trained


def test_fused_sgd_with_its_buffers_created_up_front_updates_as_plain_sgd() -> None:
    torch.manual_seed(0)
    plain = an.convert(SignalNet(), mode=[("autonas", SEARCH_RULES)], mode_kwargs={"seed": 0})
    fused = copy.deepcopy(plain)
    options = {"lr": 0.05, "momentum": 0.9, "weight_decay": 1e-4, "nesterov": True}

    trained = _train(plain, torch.optim.SGD(plain.parameters(), **options))
    assert _train(fused, _fused_sgd(fused, **options)) == trained, "both sample the same subnets"
    late = set().union(*trained[1:]) - trained[0]
    assert late, "some parameters get their first gradient after the first step (the case fused SGD fails on)"
    assert any(trained[i] - trained[i + 1] for i in range(STEPS - 1)), "and some miss a step after training"

    for (name, param), fused_param in zip(plain.named_parameters(), fused.parameters(), strict=True):
        torch.testing.assert_close(fused_param, param, rtol=1e-6, atol=1e-7, msg=lambda m, name=name: f"{name}: {m}")
