"""Compiled sums of gated monomials: exact integers, shared evaluation, overflow-safe."""

from __future__ import annotations

import random
from fractions import Fraction

import pytest

from autonas_dynamic.cost.polynomial import GatedTerm, Polynomials

FLOPS = [
    GatedTerm(Fraction(3, 2), (0, 1), ((2, 1),)),
    GatedTerm(Fraction(1, 2), (0,)),
    GatedTerm(Fraction(5), ()),
    GatedTerm(Fraction(2), (1, 1), ((2, 0), (2, 1))),
    GatedTerm(Fraction(-1, 2), (0, 1), ((2, 1),)),  # merges with the first term
]
PARAMS = [GatedTerm(Fraction(1), (0, 1), ((2, 2),)), GatedTerm(Fraction(7), ())]


def reference(terms: list[GatedTerm], values: list[int]) -> int:
    total = sum((term.value(values) for term in terms), Fraction(0))
    assert total.denominator == 1
    return int(total)


@pytest.mark.parametrize("scale", [1, 10**9])
def test_sums_equal_term_by_term_evaluation(scale: int) -> None:
    maxima = [8 * scale, 5 * scale, 3]
    compiled = Polynomials([FLOPS, PARAMS], maxima)
    rng = random.Random(0)
    for _ in range(50):
        values = [2 * rng.randint(1, 4) * scale, rng.randint(1, 5) * scale, rng.randint(0, 3)]
        assert compiled(values) == [reference(FLOPS, values), reference(PARAMS, values)]
    assert compiled.num_terms == [4, 2]


def test_a_closed_gate_drops_the_term() -> None:
    compiled = Polynomials([[GatedTerm(Fraction(1), (0,), ((1, 2),))]], [10, 4])
    assert compiled([10, 3]) == [10]
    assert compiled([10, 2]) == [0]
