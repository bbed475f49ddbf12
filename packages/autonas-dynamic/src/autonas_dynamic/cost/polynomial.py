"""A sum of gated monomials over integer variables, evaluated in a few vectorised steps.

Each term is ``coefficient x prod(variables[f] for f in factors)``, counted only while all of its
gates ``variables[g] > index`` hold (the blocks of dynamic ``Sequential``\\ s it lives in run).
Terms with equal factors and gates are merged, coefficients are scaled to integers by their common
denominator, and evaluation is one gather-product-dot in int64 (Python integers when the largest
subnet's value could overflow int64).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = ["GatedTerm", "Polynomial"]


@dataclass(frozen=True)
class GatedTerm:
    """``coefficient x prod(variables[factors])`` while ``variables[g] > index`` for every gate ``(g, index)``."""

    coefficient: Fraction
    factors: tuple[int, ...]
    gates: tuple[tuple[int, int], ...] = ()

    def is_open(self, variables: Sequence[int]) -> bool:
        """Whether every gate is open (the blocks the term lives in run)."""
        return all(variables[g] > index for g, index in self.gates)

    def value(self, variables: Sequence[int]) -> Fraction:
        """The term's value for the given variables (0 when a gate is closed)."""
        if not self.is_open(variables):
            return Fraction(0)
        return self.coefficient * math.prod(variables[f] for f in self.factors)


class Polynomial:
    """A compiled sum of :class:`GatedTerm`\\ s.

    Args:
        terms: The terms (merged when their factors and gates agree).
        maxima: The largest value of each variable (bounds the result, to choose the integer type).
    """

    def __init__(self, terms: Iterable[GatedTerm], maxima: Sequence[int]) -> None:
        merged: dict[tuple[tuple[int, ...], tuple[tuple[int, int], ...]], Fraction] = defaultdict(Fraction)
        for term in terms:
            merged[term.factors, tuple(sorted(set(term.gates)))] += term.coefficient
        kept = [(factors, gates, coefficient) for (factors, gates), coefficient in merged.items() if coefficient]
        self.num_terms = len(kept)
        self.denominator = math.lcm(*(coefficient.denominator for *_, coefficient in kept)) if kept else 1
        coefficients = [int(coefficient * self.denominator) for *_, coefficient in kept]
        bound = sum(
            abs(c) * math.prod(maxima[f] for f in factors) for c, (factors, *_) in zip(coefficients, kept, strict=True)
        )
        self._dtype: Any = np.int64 if bound < 2**62 else object
        self._coefficients = np.array(coefficients, dtype=self._dtype)
        one = len(maxima)  # position of the constant 1 appended to the variables
        degree = max((len(factors) for factors, *_ in kept), default=0)
        self._factors = np.array(
            [[*factors, *[one] * (degree - len(factors))] for factors, *_ in kept], dtype=np.intp
        ).reshape(self.num_terms, degree)
        width = max((len(gates) for _, gates, _ in kept), default=0)
        padded = [[*gates, *[(one, 0)] * (width - len(gates))] for _, gates, _ in kept]
        self._gated = width > 0
        self._gate_variables = np.array([[g for g, _ in row] for row in padded], dtype=np.intp).reshape(
            self.num_terms, width
        )
        self._gate_indices = np.array([[i for _, i in row] for row in padded], dtype=np.int64).reshape(
            self.num_terms, width
        )

    def __call__(self, variables: Sequence[int]) -> int:
        """The value for the given variables (in the order the terms refer to them)."""
        values = np.array([*variables, 1], dtype=self._dtype)
        products = values[self._factors].prod(axis=1)
        if self._gated:
            products = products * (values[self._gate_variables] > self._gate_indices).all(axis=1)
        return int(self._coefficients @ products) // self.denominator
