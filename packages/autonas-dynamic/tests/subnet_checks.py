"""The exactness check the layer and tracing tests share: subnets against their exported models."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable

import torch
from torch import nn

from autonas_dynamic import export_model
from autonas_dynamic.cost import CostModel, count_flops, count_params
from autonas_dynamic.space import SearchSpace


def assert_exact_subnets(
    model: nn.Module,
    space: SearchSpace,
    x: torch.Tensor,
    reference: torch.Tensor,
    check: Callable[[nn.Module, nn.Module], None] = lambda model, exported: None,
) -> None:
    """The largest subnet computes ``reference``; the smallest, the middle and three random subnets
    export to models that compute what the dynamic model does, with the closed-form costs of a count.

    ``check(model, exported)`` runs at each subnet (its own assertions on sizes and attributes).
    """
    costs = CostModel(model, x)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference, rtol=0, atol=0)
        rng = random.Random(0)
        for sample in (min, lambda c: c[len(c) // 2], rng.choice, rng.choice, rng.choice):
            space.sample(sample)
            dynamic = model(x)
            exported = export_model(copy.deepcopy(model))
            check(model, exported)
            torch.testing.assert_close(exported(x), dynamic, rtol=1e-6, atol=1e-6)
            assert (costs.flops(), costs.params()) == (count_flops(exported, x), count_params(exported))
