"""The depth of an ``nn.ModuleList`` that a forward iterates, under the proof used for Sequential depth.

Trailing residual blocks of a list iterated in the forward (reading a value from before the loop
too, as transformer layers read their attention mask) may be dropped: the forward's own loop sees
only the active blocks. A list indexed by a fixed layer count keeps its depth, with a warning; so
does a list traced without an example input, which could not be run at a smaller depth.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn

from autonas_dynamic import export_model
from autonas_dynamic.cost import CostModel, count_flops, count_params
from autonas_dynamic.space import generate_search_space

WIDTH = 8


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(WIDTH, WIDTH)

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        return x + torch.relu(self.fc(x)) * scale


class Stack(nn.Module):
    """Residual blocks in a ModuleList; ``indexed``: run by a fixed layer count instead of iterating."""

    def __init__(self, indexed: bool = False) -> None:
        super().__init__()
        self.indexed = indexed
        self.blocks = nn.ModuleList(Block() for _ in range(3))
        self.head = nn.Linear(WIDTH, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.sigmoid(x.mean(-1, keepdim=True))  # computed before the loop, read by every block
        if self.indexed:
            for i in range(3):
                x = self.blocks[i](x, scale)
        else:
            for block in self.blocks:
                x = block(x, scale)
        return self.head(x)


def _x() -> torch.Tensor:
    return torch.randn(4, WIDTH, generator=torch.Generator().manual_seed(0))


def test_an_iterated_module_list_gets_a_depth_that_drops_trailing_blocks() -> None:
    torch.manual_seed(0)
    model = Stack().eval()
    x = _x()
    with torch.no_grad():
        reference = model(x)
    space = generate_search_space(model, {"nn.ModuleList": {"min_depth": 0}}, example_input=x)
    assert space.hparams() == {"blocks.depth": [0, 1, 2, 3]}
    costs = CostModel(model, x)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference, rtol=0, atol=0)
        for depth in (0, 1, 2, 3):
            space.select({"blocks.depth": depth})
            assert len(model.blocks) == depth and len(list(model.blocks)) == depth
            assert len(model.blocks._modules) == 3 and len(model.state_dict()) == 8  # every block is kept
            exported = export_model(copy.deepcopy(model))
            assert type(exported.blocks) is nn.ModuleList and len(exported.blocks) == depth
            torch.testing.assert_close(exported(x), model(x), rtol=0, atol=0)
            assert (costs.flops(), costs.params()) == (count_flops(exported, x), count_params(exported))


@pytest.mark.parametrize("indexed", [True, False])
def test_a_module_list_that_cannot_be_run_shorter_keeps_its_depth(indexed: bool) -> None:
    model = Stack(indexed)
    example = _x() if indexed else None  # without an example input the forward cannot be tried
    reason = r"fails \(IndexError" if indexed else "no example input"
    with pytest.warns(UserWarning, match=rf"the depth of 'blocks' stays 3: .*{reason}"):
        space = generate_search_space(model, {"nn.ModuleList": {"min_depth": 0}}, example_input=example)
    assert space.hparams() == {}
    assert type(model.blocks) is nn.ModuleList


class LayerDropStack(nn.Module):
    """A ModuleList whose loop skips blocks at random in training (LayerDrop, as Wav2Vec2's encoder does)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(Block() for _ in range(3))
        self.head = nn.Linear(WIDTH, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.sigmoid(x.mean(-1, keepdim=True))
        for block in self.blocks:
            if self.training and torch.rand([]) < 0.5:
                continue
            x = block(x, scale)
        return self.head(x)


@pytest.mark.parametrize("seed", range(4))
def test_blocks_skipped_at_random_in_training_keep_their_depth_hparam(seed: int) -> None:
    torch.manual_seed(seed)  # the training-mode trace must not depend on the random draws
    model = LayerDropStack().eval()
    x = _x()
    space = generate_search_space(model, {"nn.ModuleList": {"min_depth": 1}}, example_input=x)
    assert space.hparams() == {"blocks.depth": [1, 2, 3]}
    space.select({"blocks.depth": 2})
    with torch.no_grad():
        exported = export_model(copy.deepcopy(model))
        torch.testing.assert_close(exported(x), model(x), rtol=0, atol=0)
    assert torch.rand(64).max() < 1  # tracing leaves torch.rand as it was
