"""Gradient checkpointing: one backward per subnet trains as without it; a deferred backward raises."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from patch_models import SuperNet, SuperNetSampler
from torch.utils.checkpoint import checkpoint

from autonas_patch import AutoNASPatchManager, sandwich


class CheckpointedSuperNet(SuperNet):
    """The test supernet with its blocks checkpointed while ``flag`` (a library's switch) is set.

    A block keeps its output shape whatever its hidden width, so a recompute under another subnet
    does not fail by itself (the case of a reentrant checkpoint around a transformer's MLP).
    """

    def __init__(self, flag: str = "gradient_checkpointing", use_reentrant: bool = True) -> None:
        super().__init__()
        self.flag, self.use_reentrant = flag, use_reentrant
        setattr(self, flag, False)

    def forward(self, x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
        x = torch.relu(self.stem_bn(self.stem(x)))
        for block in list(self.blocks)[: self.blocks.active_depth]:
            x = checkpoint(block, x, use_reentrant=self.use_reentrant) if getattr(self, self.flag) else block(x)
        return self.head(x.mean(dim=(2, 3))) * scale


def _model(checkpointing: bool, **kwargs) -> CheckpointedSuperNet:
    torch.manual_seed(0)
    model = CheckpointedSuperNet(**kwargs)
    setattr(model, model.flag, checkpointing)
    AutoNASPatchManager(model).patch(SuperNetSampler(model), seed=0)
    return model.train()


def _batch(step: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(step)
    return torch.randn(4, 3, 8, 8, generator=generator), torch.randint(0, 5, (4,), generator=generator)


def _sandwich_gradients(model: CheckpointedSuperNet, deferred: bool) -> dict[str, torch.Tensor]:
    """Gradients of one sandwich step: a backward per subnet, or one backward of the summed losses."""
    x, y = _batch()
    losses = []
    for subnet in sandwich(model, num_random=2, distill=False):
        loss = subnet.loss(model(x), y, F.cross_entropy)
        if deferred:
            losses.append(loss)
        else:
            loss.backward()
    if deferred:
        torch.stack(losses).sum().backward()
    return {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("use_reentrant", [True, False])
def test_one_backward_per_subnet_with_checkpointing_gives_the_gradients_without_it(use_reentrant: bool) -> None:
    expected = _sandwich_gradients(_model(checkpointing=False), deferred=False)
    got = _sandwich_gradients(_model(checkpointing=True, use_reentrant=use_reentrant), deferred=False)
    assert got.keys() == expected.keys()
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, msg=name)


@pytest.mark.parametrize("flag", ["gradient_checkpointing", "grad_checkpointing"])
@pytest.mark.parametrize("use_reentrant", [True, False])
def test_a_backward_deferred_past_the_next_subnet_raises_under_checkpointing(flag: str, use_reentrant: bool) -> None:
    model = _model(checkpointing=True, flag=flag, use_reentrant=use_reentrant)
    with pytest.raises(RuntimeError, match="CheckpointedSuperNet with gradient checkpointing, after the active subnet"):
        _sandwich_gradients(model, deferred=True)


def test_without_checkpointing_a_deferred_backward_sums_the_subnet_gradients() -> None:
    expected = _sandwich_gradients(_model(checkpointing=False), deferred=False)
    got = _sandwich_gradients(_model(checkpointing=False), deferred=True)
    for name, grad in expected.items():
        torch.testing.assert_close(got[name], grad, msg=name)


def test_uniform_steps_with_checkpointing_train_as_without_it() -> None:
    trained = {}
    for checkpointing in (False, True):
        model = _model(checkpointing)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        for step in range(4):
            x, y = _batch(step)
            optimizer.zero_grad()
            F.cross_entropy(model(x), y).backward()  # each forward samples a new subnet
            optimizer.step()
        trained[checkpointing] = dict(model.named_parameters())  # (a recompute updates BatchNorm statistics again)
    for name, value in trained[False].items():
        torch.testing.assert_close(trained[True][name], value, msg=name)


def test_a_forward_never_backpropagated_does_not_stop_later_steps() -> None:
    model = _model(checkpointing=True)
    x, y = _batch()
    model(x)  # its graph is dropped at once
    kept = model(x)  # its graph is kept, but never backpropagated
    F.cross_entropy(model(x), y).backward()  # a later subnet trains normally
    assert kept.grad_fn is not None
    assert model.head.weight.grad is not None


def test_a_patched_model_still_copies_and_pickles_with_forwards_awaiting_backward() -> None:
    model = _model(checkpointing=True)
    output = model(_batch()[0])
    clone = pickle.loads(pickle.dumps(model))
    copied = copy.deepcopy(model)
    for other in (clone, copied):
        assert torch.equal(other.head.weight, model.head.weight)
        F.cross_entropy(other(_batch()[0]), _batch()[1]).backward()  # trains on its own
    output.sum().backward()  # no architecture change on the original since its forward
