"""Attributing a tensor dimension to the hparams: a monomial fitted on the probed subnets.

A dimension seen at the largest subnet (``v0``) and on every probe is modelled as
``v0 x prod(atom / atom_at_largest)`` over at most one atom per probed hparam: for each probe
in which the dimension changed, the atom of that hparam that moved in exact proportion with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from .probing import Probe

__all__ = ["DimensionFitter", "Monomial", "UnexplainedDimension", "multiply"]

#: ``coefficient * prod(variables[i] for i in factors)``; factors sorted, repeats allowed.
Monomial = tuple[Fraction, tuple[int, ...]]


class UnexplainedDimension(Exception):
    """A dimension that changed with ``probe.hparam`` but in proportion with none of its atoms."""

    def __init__(self, probe: Probe, values: Sequence[int]) -> None:
        super().__init__(probe.name)
        self.probe = probe
        self.values = tuple(values)


class DimensionFitter:
    """Fits dimensions recorded on the largest subnet (state 0) and on every probed subnet.

    Args:
        probes: The probes, in the order their subnets were recorded after state 0.
        atoms: ``atoms[state]`` = the variable values of each recorded subnet.
    """

    def __init__(self, probes: Sequence[Probe], atoms: Sequence[Sequence[int]]) -> None:
        self._atoms = atoms
        self._probes: list[tuple[Probe, range]] = []
        start = 1
        for probe in probes:
            self._probes.append((probe, range(start, start + len(probe.choices))))
            start += len(probe.choices)
        self.num_states = start
        self._cache: dict[tuple[int, ...], Monomial] = {}

    def fit(self, values: Sequence[int]) -> Monomial:
        """The monomial of a dimension, given its value in every state (raises :class:`UnexplainedDimension`)."""
        key = tuple(values)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._fit(key)
        return found

    def _fit(self, values: tuple[int, ...]) -> Monomial:
        base, largest = values[0], self._atoms[0]
        coefficient, factors = Fraction(base), []
        for probe, states in self._probes:
            if all(values[s] == base for s in states):
                continue
            for atom in probe.atoms:
                if largest[atom] and all(values[s] * largest[atom] == base * self._atoms[s][atom] for s in states):
                    coefficient /= largest[atom]
                    factors.append(atom)
                    break
            else:
                raise UnexplainedDimension(probe, [values[s] for s in (0, *states)])
        return coefficient, tuple(sorted(factors))


def multiply(monomials: Sequence[Monomial], scale: int = 1) -> Monomial:
    """The product of monomials, times ``scale``."""
    coefficient, factors = Fraction(scale), []
    for part, part_factors in monomials:
        coefficient *= part
        factors.extend(part_factors)
    return coefficient, tuple(sorted(factors))
