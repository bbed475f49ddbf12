"""Attributing dimensions to hparams from few probed subnets (several hparams changed per subnet)."""

from __future__ import annotations

import copy
import random
from fractions import Fraction

import pytest
import torch
from torch import nn

from autonas_dynamic import DYNAMIC_REGISTRY, Hparam, export_model
from autonas_dynamic.cost import CostModel, count_flops
from autonas_dynamic.cost.fit import DimensionFitter, NeedIsolation
from autonas_dynamic.cost.probing import Variables, applied, coded_subnets, isolated_subnets, plan_probes


def widths(count: int) -> list[tuple[str, Hparam]]:
    return [(f"w{i}", Hparam([4, 8], original=8, name=f"w{i}")) for i in range(count)]


def record(hparams: list[Hparam], subnets: list[dict], dimension) -> tuple[list[list[int]], list[int]]:
    """Atom values and the dimension ``dimension(*actives)`` on each subnet."""
    atoms, values = [], []
    variables = Variables(hparams)
    for subnet in subnets:
        with applied(hparams, subnet):
            atoms.append(variables.read())
            values.append(dimension(*(hp.active for hp in hparams)))
    return atoms, values


def test_coded_subnets_need_fewer_forwards_and_give_every_hparam_its_own_code() -> None:
    named = widths(12)
    hparams = [hp for _, hp in named]
    with applied(hparams):
        probes = plan_probes(named, Variables(hparams))
    subnets = coded_subnets(probes)
    assert len(subnets) < len(probes)
    codes = [frozenset(s for s, subnet in enumerate(subnets) if id(hp) in subnet) for hp in hparams]
    assert len(set(codes)) == len(codes) and all(len(code) >= 2 for code in codes)


def test_single_and_product_dimensions_are_read_off_coded_subnets() -> None:
    named = widths(6)
    hparams = [hp for _, hp in named]
    with applied(hparams):
        probes = plan_probes(named, Variables(hparams))
        subnets = [{}, *coded_subnets(probes)]
        atoms, single = record(hparams, subnets, lambda *w: 3 * w[4])
        _, product = record(hparams, subnets, lambda *w: w[1] * w[5] * 7)
    fitter = DimensionFitter(probes, subnets, atoms)
    assert fitter.fit(single) == (Fraction(3), (4,))
    assert fitter.fit(product) == (Fraction(7), (1, 5))


def test_ambiguous_dimensions_ask_for_isolated_subnets_then_fit_exactly() -> None:
    named = widths(6)
    hparams = [hp for _, hp in named]
    with applied(hparams):
        probes = plan_probes(named, Variables(hparams))
        subnets = [{}, *coded_subnets(probes)]
        code = [{s for s, subnet in enumerate(subnets) if id(hp) in subnet} for hp in hparams]
        # Two pairs of hparams whose codes cover the same subnets: the coded subnets cannot tell them apart.
        a, b, c, d = next(
            (a, b, c, d)
            for a in range(6)
            for b in range(a + 1, 6)
            for c in range(6)
            for d in range(c + 1, 6)
            if {a, b} != {c, d} and code[a] | code[b] == code[c] | code[d] and not (code[a] & code[b])
        )
        atoms, values = record(hparams, subnets, lambda *w: w[a] * w[b])
        with pytest.raises(NeedIsolation) as need:
            DimensionFitter(probes, subnets, atoms).fit(values)
        assert {a, b, c, d} <= need.value.probes
        subnets += [subnet for p in sorted(need.value.probes) for subnet in isolated_subnets(probes[p])]
        atoms, values = record(hparams, subnets, lambda *w: w[a] * w[b])
    assert DimensionFitter(probes, subnets, atoms).fit(values) == (Fraction(1), (a, b))


class PairwiseFeatures(nn.Module):
    """Six searchable 1x1 convs; the outer product of two of them makes a dimension with two hparams."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(3, 8 + 2 * i, 1) for i in range(6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [conv(x).mean((2, 3)) for conv in self.convs]
        pairs = torch.einsum("bi,bj->bij", features[0], features[3]).flatten(1)
        return (pairs * pairs).sum(1) + sum(f.sum(1) for f in features)


def test_cost_model_with_coded_probes_is_exact_and_needs_fewer_forwards() -> None:
    torch.manual_seed(0)
    model = PairwiseFeatures()
    hparams = []
    for conv in model.convs:
        DYNAMIC_REGISTRY.convert(conv)
        conv.get_hparam("in_channels").choices = [3]
        out = conv.get_hparam("out_channels")
        out.choices = [out.original // 2, out.original]
        hparams.append(out)
    dummy = torch.randn(2, 3, 5, 5)
    costs = CostModel(model, dummy)
    assert costs.num_forwards < 1 + len(hparams) + 3
    rng = random.Random(0)
    for _ in range(5):
        for hp in hparams:
            hp.active = rng.choice(hp.choices)
        assert costs.flops() == count_flops(export_model(copy.deepcopy(model)), dummy)
