"""A layer count that no container holds: one shared block called as many times as an attribute says.

ALBERT's encoder runs its single layer group ``config.num_hidden_layers`` times. The calling module
gets a ``depth`` hparam when the calls are residual and chained and lowering the attribute lowers
the number of calls; the attribute holds the active depth only while the forward runs and is set
for good on export.
"""

from __future__ import annotations

import copy
import pickle
from types import SimpleNamespace

import pytest
import torch
import torch.nn as nn
from subnet_checks import assert_exact_subnets

from autonas_dynamic import export_model
from autonas_dynamic.space import generate_search_space

WIDTH = 8


class Block(nn.Module):
    def __init__(self, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        self.fc1 = nn.Linear(WIDTH, 2 * WIDTH)
        self.fc2 = nn.Linear(2 * WIDTH, WIDTH)

    def forward(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        out = self.fc2(torch.relu(self.fc1(x))) * scale
        return x + out if self.residual else out


class SharedLoop(nn.Module):
    """Runs one block ``layers`` times; the count is an attribute of its own or of its config.

    ``residual=False``: the block's output does not add to its input (no call may be left out).
    """

    def __init__(self, layers: int = 3, in_config: bool = False, residual: bool = True) -> None:
        super().__init__()
        self.heads = layers  # an attribute equal to the count that the loop does not read
        self.config = SimpleNamespace(num_layers=layers, labels=layers)
        self.in_config = in_config
        if not in_config:
            self.num_layers = layers
        self.embed = nn.Linear(4, WIDTH)
        self.block = Block(residual)
        self.head = nn.Linear(WIDTH, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        scale = torch.sigmoid(h.mean(-1, keepdim=True))  # read by every call, as a mask would be
        for _ in range(self.config.num_layers if self.in_config else self.num_layers):
            h = self.block(h, scale)
        return self.head(h)


def _x() -> torch.Tensor:
    return torch.randn(5, 4, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("in_config", [False, True])
def test_a_shared_block_called_by_count_gets_a_depth_that_drops_trailing_calls(in_config: bool) -> None:
    torch.manual_seed(0)
    model = SharedLoop(in_config=in_config).eval()
    x = _x()
    with torch.no_grad():
        reference = model(x)
    space = generate_search_space(model, example_input=x)
    assert space.hparams() == {
        "depth": [1, 2, 3],  # the caller is the root: its hparam is "depth"
        "block.fc1.out_features": list(range(1, 2 * WIDTH + 1)),
        "embed.out_features": list(range(1, WIDTH + 1)),  # the stream the block adds to
    }

    def check(model: nn.Module, exported: nn.Module) -> None:
        depth = space.config()["depth"]
        assert type(exported) is SharedLoop
        assert (exported.config.num_layers if in_config else exported.num_layers) == depth
        assert exported.heads == 3 and exported.config.labels == 3  # the look-alike attributes stay
        assert (model.config.num_layers if in_config else model.num_layers) == 3  # unchanged between forwards

    assert_exact_subnets(model, space, x, reference, check)


def test_the_depth_follows_the_rule_of_module_lists_and_survives_copies() -> None:
    model = SharedLoop(layers=4).eval()
    x = _x()
    space = generate_search_space(model, {"nn.ModuleList": {"min_depth": 2}, "nn.Linear": None}, example_input=x)
    assert space.hparams() == {"depth": [2, 3, 4]}
    space.select({"depth": 2})
    calls: list[int] = []
    hook = model.block.register_forward_hook(lambda *_: calls.append(1))
    with torch.no_grad():
        expected = model(x)
        assert len(calls) == 2
        hook.remove()
        for copied in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            torch.testing.assert_close(copied(x), expected, rtol=0, atol=0)
            assert copied.depth == 2 and copied.num_layers == 4
    exported = export_model(model)
    assert type(exported) is SharedLoop and exported.num_layers == 2 and "_repeat" not in vars(exported)


def test_calls_of_a_block_that_is_not_residual_keep_their_count() -> None:
    model = SharedLoop(residual=False).eval()
    space = generate_search_space(model, example_input=_x())
    assert not any(name.endswith("depth") for name in space.hparams())
    assert type(model) is SharedLoop


class LiteralLoop(SharedLoop):
    """The count is a literal: no attribute would lower it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x)
        scale = torch.sigmoid(h.mean(-1, keepdim=True))
        for _ in range(3):
            h = self.block(h, scale)
        return self.head(h)


def test_a_count_no_attribute_sets_stays() -> None:
    model = LiteralLoop().eval()
    space = generate_search_space(model, example_input=_x())
    assert "depth" not in space.hparams() and type(model) is LiteralLoop
