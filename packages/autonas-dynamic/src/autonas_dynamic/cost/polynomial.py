"""Sums of gated monomials over integer variables, evaluated together in a few vectorised steps.

Each term is ``coefficient x prod(variables[f] for f in factors)``, counted only while all of its
gates ``variables[g] > index`` hold (the blocks of dynamic ``Sequential``\\ s it lives in run).
Several sums (FLOPs and parameters) share one evaluation: terms with equal factors and gates
become one row, each gate becomes a 0/1 factor, each sum's coefficients are scaled to integers by
its common denominator, and evaluation is a gather and a product per factor slot and one
matrix-vector product, in int64 (Python integers when the largest subnet's value could overflow
int64).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np

__all__ = ["GatedTerm", "Polynomials"]


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


class Polynomials:
    """Several sums of :class:`GatedTerm`\\ s over the same variables, compiled for evaluation.

    Args:
        sums: The terms of each sum.
        maxima: The largest value of each variable (bounds the results, to choose the integer type).
    """

    def __init__(self, sums: Sequence[Iterable[GatedTerm]], maxima: Sequence[int]) -> None:
        rows: dict[tuple[tuple[int, ...], tuple[tuple[int, int], ...]], list[Fraction]] = {}
        for output, terms in enumerate(sums):
            for term in terms:
                row = rows.setdefault((term.factors, tuple(sorted(set(term.gates)))), [Fraction(0)] * len(sums))
                row[output] += term.coefficient
        kept = [(factors, gates, coefficients) for (factors, gates), coefficients in rows.items() if any(coefficients)]
        self.num_terms = [sum(1 for *_, coefficients in kept if coefficients[i]) for i in range(len(sums))]
        self.denominators = [
            math.lcm(*(coefficients[i].denominator for *_, coefficients in kept)) if kept else 1
            for i in range(len(sums))
        ]
        matrix = [[int(c[i] * d) for *_, c in kept] for i, d in enumerate(self.denominators)]
        gates = sorted({gate for _, row_gates, _ in kept for gate in row_gates})
        one = len(maxima)  # position of the constant 1 appended to the variables; gate indicators follow
        gate_position = {gate: one + 1 + j for j, gate in enumerate(gates)}
        slots = [[*factors, *(gate_position[g] for g in row_gates)] for factors, row_gates, _ in kept]
        degree = max(map(len, slots), default=0)
        padded = np.array([slot + [one] * (degree - len(slot)) for slot in slots], dtype=np.intp)
        #: One index array per factor slot (gathering column by column is much cheaper than a 2-D gather).
        self._columns = list(padded.reshape(len(kept), degree).T.copy())
        self._gate_variables = np.array([g for g, _ in gates], dtype=np.intp)
        self._gate_indices = np.array([index for _, index in gates], dtype=np.int64)
        bound = max(
            (
                sum(abs(c) * math.prod(maxima[f] for f in factors) for c, (factors, *_) in zip(row, kept, strict=True))
                for row in matrix
            ),
            default=0,
        )
        self._dtype: Any = np.int64 if bound < 2**62 else object
        self._matrix = np.array(matrix, dtype=self._dtype).reshape(len(sums), len(kept))

    def __call__(self, variables: Sequence[int]) -> list[int]:
        """The value of each sum for the given variables."""
        values = np.array([*variables, 1], dtype=self._dtype)
        if len(self._gate_variables):
            values = np.concatenate([values, values[self._gate_variables] > self._gate_indices])
        products = np.ones(self._matrix.shape[1], dtype=self._dtype)
        for column in self._columns:
            products = products * values[column]
        totals = (self._matrix @ products).tolist()
        return [int(total) // denominator for total, denominator in zip(totals, self.denominators, strict=True)]
