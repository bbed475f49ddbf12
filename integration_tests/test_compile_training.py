"""A supernet under ``torch.compile``: sampling stays eager, every subnet trains and evaluates as in eager mode.

The patched forward samples a subnet, counts and caches its inputs outside the compiled graph,
and the dynamic layers slice their tensors in a way the compiler traces; torch.compile then
captures one graph per subnet (its guards cover the active widths and depths). The
``aot_eager`` backend traces exactly as inductor does, without generating code, so these checks
run in seconds.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

import autonas as an
from autonas.demo.model import SEARCH_RULES, SignalNet
from autonas_patch import PatchManager

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

STEPS = 6


def _batches(steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    return [
        (torch.randn(16, 1, 40, generator=generator), torch.randint(0, 10, (16,), generator=generator))
        for _ in range(steps)
    ]


def _train(model: torch.nn.Module, call, sandwich: bool) -> tuple[list[float], list[dict]]:
    """SGD steps through ``call`` (the model, or its compiled form); the losses and the subnets trained."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    losses, subnets = [], []
    for x, y in _batches(STEPS):
        optimizer.zero_grad()
        # A sandwich step's subnets, or one forward that samples its own subnet.
        for subnet in an.sandwich(model, num_random=1) if sandwich else [None]:
            output = call(x)
            loss = F.cross_entropy(output, y) if subnet is None else subnet.loss(output, y, F.cross_entropy)
            loss.backward()
            losses.append(loss.item())
            subnets.append(an.get_subnet_config(model, configurable=True))
        optimizer.step()
    return losses, subnets


@pytest.mark.parametrize("sandwich", [False, True], ids=["uniform", "sandwich"])
def test_a_compiled_supernet_trains_and_evaluates_like_the_eager_one(sandwich: bool) -> None:
    torch._dynamo.reset()
    torch.manual_seed(0)
    eager = an.convert(SignalNet(), mode=[("autonas", SEARCH_RULES)], mode_kwargs={"seed": 0})
    model = copy.deepcopy(eager)
    compiled = torch.compile(model, backend="aot_eager")

    eager_losses, eager_subnets = _train(eager, eager, sandwich)
    losses, subnets = _train(model, compiled, sandwich)
    assert subnets == eager_subnets, "the compiled model samples the same subnets, one per training forward"
    assert len({str(subnet) for subnet in subnets}) > 2
    torch.testing.assert_close(losses, eager_losses, rtol=1e-4, atol=1e-5)
    for (key, value), eager_value in zip(model.state_dict().items(), eager.state_dict().values(), strict=True):
        torch.testing.assert_close(value, eager_value, rtol=1e-4, atol=1e-5, msg=lambda m, key=key: f"{key}: {m}")
    queue = PatchManager.get_manager(model).patch_data["queue"]
    assert len(queue) == len(PatchManager.get_manager(eager).patch_data["queue"]) == STEPS, "inputs cached eagerly"

    x, _ = _batches(1)[0]
    eager.eval()
    model.eval()  # maximal subnet, BatchNorm recalibrated from the cached batches
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), eager(x), rtol=1e-4, atol=1e-5)
        an.select(model, subnets[1])
        an.select(eager, subnets[1])
        torch.testing.assert_close(compiled(x), eager(x), rtol=1e-4, atol=1e-5)
