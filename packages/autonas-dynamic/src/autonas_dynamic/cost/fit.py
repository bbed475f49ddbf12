"""Attributing a tensor dimension to the hparams: a monomial fitted on the probed subnets.

A dimension is modelled as ``v0 x prod(atom / atom_at_largest)``, ``v0`` being its size on the
largest subnet, over at most one atom per probed hparam. All atoms are at their largest on the
largest subnet, so a dimension changes exactly on the subnets where one of its atoms moves.

On subnets that change several hparams at once (:func:`~.probing.coded_subnets`) the fitter
accepts the explanation by a single atom when exactly one fits, else the explanation by two atoms
of different hparams when exactly one fits; otherwise it asks for the subnets that change the
hparams involved one at a time (:class:`NeedIsolation`), on which each hparam's factor is read off
directly. (The cost model checks the result on further subnets and falls back to isolated subnets
for every hparam if a coded fit was wrong.)
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from .probing import Probe

__all__ = ["DimensionFitter", "Monomial", "NeedIsolation", "UnexplainedDimension", "multiply"]

#: ``coefficient * prod(variables[i] for i in factors)``; factors sorted, repeats allowed.
Monomial = tuple[Fraction, tuple[int, ...]]


class UnexplainedDimension(Exception):
    """A dimension that changed with ``probe.hparam`` but in proportion with none of its atoms.

    Attributes:
        probe: The hparam's probe (``None`` if no probed hparam moved along with the dimension).
        values: The dimension on the largest subnet, then on each subnet that changes only that hparam.
    """

    def __init__(self, probe: Probe | None, values: Sequence[int]) -> None:
        super().__init__(probe.name if probe else "")
        self.probe = probe
        self.values = tuple(values)


class NeedIsolation(Exception):
    """The coded subnets leave a dimension ambiguous: ``probes`` must be probed one at a time."""

    def __init__(self, probes: set[int]) -> None:
        super().__init__(sorted(probes))
        self.probes = probes


class DimensionFitter:
    """Fits dimensions recorded on the largest subnet (state 0) and on probed subnets.

    Args:
        probes: The probes.
        subnets: ``subnets[state]`` = the probed values of that subnet, ``{id(hparam): value}``;
            ``subnets[0]`` is ``{}`` (the largest subnet).
        atoms: ``atoms[state]`` = the variable values on that subnet.
    """

    def __init__(
        self, probes: Sequence[Probe], subnets: Sequence[dict[int, Any]], atoms: Sequence[Sequence[int]]
    ) -> None:
        self._probes = probes
        self._atoms = atoms
        self._base = atoms[0]
        alone: dict[int, list[int]] = {}
        by_hparam = {id(probe.hparam): p for p, probe in enumerate(probes)}
        for state, subnet in enumerate(subnets):
            if len(subnet) == 1:
                alone.setdefault(by_hparam[next(iter(subnet))], []).append(state)
        # Probes with a subnet of their own for every probed value.
        self._isolated = {
            p: states
            for p, states in alone.items()
            if {subnets[s][id(probes[p].hparam)] for s in states} >= set(probes[p].choices)
        }
        # Per probed atom: (probe index, atom position, bit mask of the states where it moved).
        self._candidates = [
            (p, atom, self._mask([row[atom] for row in atoms]))
            for p, probe in enumerate(probes)
            for atom in probe.atoms
        ]
        self._cache: dict[tuple[int, ...], Monomial] = {}

    @staticmethod
    def _mask(values: Sequence[int]) -> int:
        return sum(1 << state for state, value in enumerate(values) if value != values[0])

    def fit(self, values: Sequence[int]) -> Monomial:
        """The monomial of a dimension, given its value on every recorded subnet.

        Raises:
            NeedIsolation: More subnets are needed to tell the explanations apart.
            UnexplainedDimension: No monomial fits.
        """
        key = tuple(values)
        found = self._cache.get(key)
        if found is None:
            found = self._cache[key] = self._fit(key)
        return found

    def _fit(self, values: tuple[int, ...]) -> Monomial:
        changed = self._mask(values)
        if not changed:
            return Fraction(values[0]), ()
        candidates = [(p, atom, mask) for p, atom, mask in self._candidates if mask & ~changed == 0]
        involved = {p for p, _, _ in candidates}
        if not involved:
            raise UnexplainedDimension(None, values[:1])
        if involved <= self._isolated.keys():
            return self._fit_isolated(values, sorted(involved))
        singles = [atom for _, atom, mask in candidates if mask == changed and self._fits(values, [atom])]
        if len(singles) == 1:
            return self._monomial(values[0], (singles[0],))
        if not singles:
            pairs = [
                (a, b)
                for (p, a, mask_a), (q, b, mask_b) in itertools.combinations(candidates, 2)
                if p != q and mask_a | mask_b == changed and self._fits(values, [a, b])
            ]
            if len(pairs) == 1:
                return self._monomial(values[0], pairs[0])
        raise NeedIsolation(involved)

    def _fit_isolated(self, values: tuple[int, ...], involved: list[int]) -> Monomial:
        """One factor per involved hparam, read off the subnets that change only that hparam."""
        base, factors = values[0], list[int]()
        for p in involved:
            states = self._isolated[p]
            if all(values[s] == base for s in states):
                continue
            matching = [atom for atom in self._probes[p].atoms if self._fits(values, [atom], states)]
            if not matching:
                raise UnexplainedDimension(self._probes[p], [base, *(values[s] for s in states)])
            factors.append(matching[0])
        if not self._fits(values, factors):
            raise UnexplainedDimension(
                self._probes[involved[0]], [base, *(values[s] for s in self._isolated[involved[0]])]
            )
        return self._monomial(base, tuple(factors))

    def _fits(self, values: Sequence[int], factors: Sequence[int], states: Sequence[int] | None = None) -> bool:
        """Whether ``values[s] x prod(factor at largest) == values[0] x prod(factor at s)`` on ``states``."""
        at_largest = 1
        for atom in factors:
            at_largest *= self._base[atom]
        for state in range(len(values)) if states is None else states:
            product = 1
            for atom in factors:
                product *= self._atoms[state][atom]
            if values[state] * at_largest != values[0] * product:
                return False
        return True

    def _monomial(self, base: int, factors: tuple[int, ...]) -> Monomial:
        coefficient = Fraction(base)
        for atom in factors:
            coefficient /= self._base[atom]
        return coefficient, tuple(sorted(factors))


def multiply(monomials: Sequence[Monomial], scale: int = 1) -> Monomial:
    """The product of monomials, times ``scale``."""
    coefficient, factors = Fraction(scale), list[int]()
    for part, part_factors in monomials:
        coefficient *= part
        factors.extend(part_factors)
    return coefficient, tuple(sorted(factors))
