"""The one ``dummy_input`` convention and the train/eval flag helper, as the cost model uses them."""

from __future__ import annotations

import types
from collections import UserDict, namedtuple

import pytest
import torch
import torch.nn as nn

from autonas_dynamic import count_flops
from autonas_dynamic.calling import move_to, split_args, training_mode


class Scaled(nn.Module):
    """``x @ w`` times ``scale``: the FLOPs depend on whether ``scale`` arrived as a keyword."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3, bias=False)

    def forward(self, x: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
        out = self.linear(x)
        return out if scale is None else out * scale


@pytest.mark.parametrize(
    "mapping",
    [{"scale": torch.ones(3)}, UserDict(scale=torch.ones(3)), types.MappingProxyType({"scale": torch.ones(3)})],
)
def test_a_trailing_mapping_holds_keyword_arguments_for_the_cost_model_too(mapping: object) -> None:
    x = torch.randn(2, 4)
    args, kwargs = split_args((x, mapping))
    assert args == (x,) and list(kwargs) == ["scale"]
    linear = 2 * 2 * 4 * 3
    assert count_flops(Scaled(), (x,)) == count_flops(Scaled(), x) == linear
    assert count_flops(Scaled(), (x, mapping)) == count_flops(Scaled(), (x, {"scale": torch.ones(3)})) > linear


def test_an_empty_trailing_dict_passes_a_mapping_positionally() -> None:
    mapping = {"a": 1}
    assert split_args((mapping, {})) == ((mapping,), {})
    assert split_args(mapping) == ((mapping,), {})


def test_move_to_keeps_containers_and_namedtuples() -> None:
    Pair = namedtuple("Pair", "left right")
    moved = move_to({"pair": Pair(torch.ones(1), [torch.zeros(1), 3])}, torch.device("meta"))
    assert isinstance(moved["pair"], Pair) and moved["pair"].left.is_meta and moved["pair"].right[0].is_meta
    assert moved["pair"].right[1] == 3


def test_training_mode_sets_each_flag_directly_and_restores_each_even_on_errors() -> None:
    class NoEval(nn.Sequential):
        def train(self, mode: bool = True) -> NoEval:
            raise AssertionError("train()/eval() overrides and hooks do not run")

    model = NoEval(nn.Linear(2, 2), nn.Dropout())
    model[1].training = False
    with pytest.raises(RuntimeError), training_mode(model, True):
        assert all(module.training for module in model.modules())
        raise RuntimeError
    assert (model.training, model[0].training, model[1].training) == (True, True, False)
