"""Every coupling pattern of example_models.py: exact groups and choices, outputs at max, export at subnets."""

from __future__ import annotations

import copy
import random
import warnings

import pytest
import torch
from example_models import EXAMPLES, Example, PoolFlattenLinear, PoolReshape

from autonas_dynamic.cost import CostModel, count_flops, count_params
from autonas_dynamic.space import SearchSpace, generate_search_space

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _groups(space: SearchSpace) -> dict[str, set[str]]:
    """Configurable hparams (kernels aside) as first name -> the other names sharing the object."""
    names: dict[int, list[str]] = {}
    for name, hparam in space.named_hparams():
        names.setdefault(id(hparam), []).append(name)
    return {
        name: set(names[id(hparam)]) - {name}
        for name, hparam in space.named_hparams(configurable=True)
        if not name.endswith("kernel_size")
    }


def _flat(output: object) -> list[torch.Tensor]:
    if isinstance(output, dict):
        return [t for value in output.values() for t in _flat(value)]
    if isinstance(output, (tuple, list)):
        return [t for value in output for t in _flat(value)]
    return [output]


def _convert(example: Example) -> tuple[torch.nn.Module, torch.nn.Module, SearchSpace]:
    torch.manual_seed(0)
    model = example.factory().eval()
    original = copy.deepcopy(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        space = generate_search_space(model)
    messages = " ".join(str(w.message) for w in caught)
    if example.warns is None:
        assert not caught, messages
    else:
        assert example.warns in messages
    return original, model, space


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_groups_and_choices(example: Example) -> None:
    _, _, space = _convert(example)
    assert _groups(space) == example.groups
    choices = space.hparams()
    for name, expected in example.choices.items():
        assert choices[name] == expected
    for name in example.fixed:
        assert name not in choices
        assert all(hp.choices == [hp.original] for n, hp in space.named_hparams() if n == name)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_outputs_at_max_and_exported_subnets(example: Example) -> None:
    original, model, space = _convert(example)
    inputs = example.inputs()
    with torch.no_grad():
        for got, want in zip(_flat(model(*inputs)), _flat(original(*inputs)), strict=True):
            torch.testing.assert_close(got, want, rtol=0, atol=0)
        rng = random.Random(0)
        for sample in (min, max, lambda c: c[len(c) // 2], rng.choice, rng.choice, rng.choice):
            space.sample(sample)
            dynamic = _flat(model(*inputs))
            exported = copy.deepcopy(model)
            SearchSpace(exported).export()
            assert not any(type(m).__name__.startswith("Dynamic") for m in exported.modules())
            for got, want in zip(_flat(exported(*inputs)), dynamic, strict=True):
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda e: e.name)
def test_sorting_keeps_the_maximal_subnet(example: Example) -> None:
    original, model, space = _convert(example)
    inputs = example.inputs()
    space.sort_parameters()
    with torch.no_grad():
        for got, want in zip(_flat(model(*inputs)), _flat(original(*inputs)), strict=True):
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("factory", [PoolFlattenLinear, PoolReshape])
def test_cost_model_stays_exact_through_a_global_pool_and_flatten(factory: type[torch.nn.Module]) -> None:
    """The classifier's in_features follow the conv: the closed-form costs equal the exported subnet's."""
    torch.manual_seed(0)
    model = factory().eval()
    space = generate_search_space(model)
    dummy = torch.randn(2, 3, 8, 8)
    costs = CostModel(model, dummy)
    seen = set()
    for sample in (min, max, lambda c: c[len(c) // 2], random.Random(0).choice):
        space.sample(sample)
        exported = copy.deepcopy(model)
        SearchSpace(exported).export()
        classifier = exported.fc1 if factory is PoolFlattenLinear else exported.fc
        assert classifier.in_features == exported.conv1.out_channels
        assert costs.flops() == count_flops(exported, dummy)
        assert costs.params() == count_params(exported) == sum(p.numel() for p in exported.parameters())
        seen.add(costs.flops())
    assert len(seen) >= 3  # min, max and the middle subnet differ in cost
