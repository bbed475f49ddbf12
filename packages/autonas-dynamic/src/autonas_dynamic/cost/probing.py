"""The subnets the cost model probes, and the hparam values it reads.

The cost model learns how each tensor dimension depends on the hparams from a few forwards:
the largest subnet, then subnets that change configurable hparams away from their maxima. An
hparam may move several *atoms* (integer values read from the hparams: a channel count, one
entry of a kernel-size tuple, the inputs of a concatenation that follow their concat hparam);
its :class:`Probe` uses as few of its choices as keep those atoms apart. Probed subnets either
change several hparams each, every atom on a pair of subnets of its own (:func:`coded_subnets`),
or a single hparam (:func:`isolated_subnets`).
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from ..hparam import Hparam

__all__ = ["Probe", "Variables", "applied", "coded_subnets", "isolated_subnets", "plan_probes", "random_subnets"]

#: At most this many choices of an hparam are inspected to see which atoms it moves.
MAX_INSPECTED_CHOICES = 64


class Variables:
    """The integer values of a list of hparams, tuple values (kernel sizes) spread into one per entry.

    Args:
        hparams: Distinct hparam objects.

    Attributes:
        position: ``(id(hparam), tuple index or None)`` -> position of that value.
        owners: The hparam of each position.
        maxima: The largest value of each position over the hparam's choices.
    """

    def __init__(self, hparams: Sequence[Hparam]) -> None:
        self.hparams = list(hparams)
        self.maxima: list[int] = []
        self.owners: list[Hparam] = []
        self.position: dict[tuple[int, int | None], int] = {}
        self._flat = not any(isinstance(hparam.original, tuple) for hparam in self.hparams)
        for hparam in self.hparams:
            sample = hparam.original
            components = range(len(sample)) if isinstance(sample, tuple) else [None]
            for component in components:
                self.position[id(hparam), component] = len(self.owners)
                self.owners.append(hparam)
                if component is None:
                    self.maxima.append(max(hparam.choices))
                else:
                    self.maxima.append(max(choice[component] for choice in hparam.choices))

    def __len__(self) -> int:
        return len(self.owners)

    def read(self) -> list[int]:
        """The active values, in order."""
        values = [hparam.active for hparam in self.hparams]
        if self._flat:
            return values
        return [entry for value in values for entry in (value if isinstance(value, tuple) else (value,))]


@dataclass(frozen=True, eq=False)
class Probe:
    """How one configurable hparam is probed: the values it takes and the atoms it moves.

    Attributes:
        name: Full name of the hparam.
        hparam: The hparam.
        choices: The values it takes on its own subnets (together they keep its atoms apart).
        atoms: Positions (in the :class:`Variables`) of the atoms that move with it, one per class
            of atoms that move in proportion on every inspected choice.
        markers: The distinct values that move one atom and as few of the others as possible, one
            per atom (used on shared subnets, so that each atom changes on subnets of its own).
    """

    name: str
    hparam: Hparam
    choices: tuple[Any, ...]
    atoms: tuple[int, ...]
    markers: tuple[Any, ...]


def _spread(values: Sequence[Any], limit: int) -> list[Any]:
    """At most ``limit`` of ``values``, evenly spread, always including the first."""
    if len(values) <= limit:
        return list(values)
    step = (len(values) - 1) / (limit - 1)
    return [values[round(i * step)] for i in range(limit)]


def _direction(vector: Sequence[int]) -> tuple[int, ...]:
    """``vector`` divided by the gcd of its entries: equal for proportional vectors."""
    divisor = math.gcd(*vector) or 1
    return tuple(value // divisor for value in vector)


def plan_probes(configurable: Sequence[tuple[str, Hparam]], atoms: Variables) -> list[Probe]:
    """One :class:`Probe` per hparam that moves an atom, from (and back to) the current (largest) subnet.

    The first probed value is the hparam's smallest; more values are added while they separate
    atoms (or an atom from the constants) that all probed values so far moved proportionally.
    """
    base = atoms.read()
    probes = []
    for name, hparam in configurable:
        current = hparam.active
        table: dict[Any, list[int]] = {}
        try:
            for choice in _spread([c for c in hparam.choices if c != current], MAX_INSPECTED_CHOICES):
                hparam.active = choice
                table[choice] = atoms.read()
        finally:
            hparam.active = current
        moved = [a for a in range(len(atoms)) if any(values[a] != base[a] for values in table.values())]
        if not moved:
            continue

        def classes(chosen: Sequence[Any], moved: list[int] = moved, table: dict[Any, list[int]] = table) -> int:
            vectors = {_direction([base[a], *(table[c][a] for c in chosen)]) for a in moved}
            vectors.add(_direction([1] * (len(chosen) + 1)))
            return len(vectors)

        candidates = list(table)
        chosen = [candidates[0]]
        target = classes(candidates)
        while classes(chosen) < target:
            chosen.append(max((c for c in candidates if c not in chosen), key=lambda c: classes([*chosen, c])))
        representatives: dict[tuple[int, ...], int] = {}
        for a in moved:
            representatives.setdefault(_direction([base[a], *(table[c][a] for c in candidates)]), a)
        atoms_moved = tuple(representatives.values())
        markers = tuple(dict.fromkeys(_marker(a, atoms_moved, base, table) for a in atoms_moved))
        probes.append(Probe(name, hparam, tuple(chosen), atoms_moved, markers))
    return probes


def _marker(atom: int, atoms: Sequence[int], base: Sequence[int], table: dict[Any, list[int]]) -> Any:
    """The inspected value that moves ``atom`` and the fewest of ``atoms`` (the smallest such value)."""
    movers = [choice for choice, values in table.items() if values[atom] != base[atom]]
    return min(movers, key=lambda choice: sum(table[choice][a] != base[a] for a in atoms))


def isolated_subnets(probe: Probe) -> list[dict[int, Any]]:
    """The subnets that change only ``probe``'s hparam, one per probed value."""
    return [{id(probe.hparam): choice} for choice in probe.choices]


def coded_subnets(probes: Sequence[Probe]) -> list[dict[int, Any]]:
    """Fewer subnets that change several hparams at once, each atom on a pair of subnets of its own.

    Every atom of every probe gets a distinct pair of subnets (its code) on which its hparam takes
    the atom's marker value; pairs of one hparam never share a subnet. A dimension that follows one
    atom then changes on that atom's subnets (and on those of markers that also move it), which
    identifies it; ambiguous cases are resolved with :func:`isolated_subnets`. Returns the isolated
    subnets of every probe when coding would not need fewer forwards.
    """
    isolated = [subnet for probe in probes for subnet in isolated_subnets(probe)]
    size = 3
    while size < len(isolated):
        codes = _assign_pairs(probes, size)
        if codes is not None:
            subnets: list[dict[int, Any]] = [{} for _ in range(size)]
            for probe, probe_codes in zip(probes, codes, strict=True):
                for marker, code in zip(probe.markers, probe_codes, strict=True):
                    for state in code:
                        subnets[state][id(probe.hparam)] = marker
            return subnets
        size += 1
    return isolated


def _assign_pairs(probes: Sequence[Probe], size: int) -> list[list[tuple[int, int]]] | None:
    """Distinct pairs of ``range(size)``, one per atom, disjoint within each probe; ``None`` if too few."""
    free = list(itertools.combinations(range(size), 2))
    codes = []
    for probe in probes:
        taken: set[int] = set()
        probe_codes = []
        for _ in probe.markers:
            code = next((pair for pair in free if not taken.intersection(pair)), None)
            if code is None:
                return None
            free.remove(code)
            taken.update(code)
            probe_codes.append(code)
        codes.append(probe_codes)
    return codes


@contextmanager
def applied(configurable: Sequence[Hparam], values: dict[int, Any] | None = None) -> Iterator[None]:
    """Select a subnet: each configurable hparam at ``values[id(hparam)]``, else at its maximum.

    The previously active subnet is selected again on exit.
    """
    previous = [(hparam, hparam.active) for hparam in configurable]
    try:
        for hparam in configurable:
            hparam.active = (values or {}).get(id(hparam), hparam.max)
        yield
    finally:
        for hparam, value in previous:
            hparam.active = value


def random_subnets(configurable: Sequence[Hparam], count: int, seed: int = 0) -> list[dict[int, Any]]:
    """The smallest subnet and ``count - 1`` random ones (a fixed seed: reproducible checks)."""
    rng = random.Random(seed)
    subnets = [{id(hparam): hparam.min for hparam in configurable}]
    subnets += [{id(hparam): rng.choice(hparam.choices) for hparam in configurable} for _ in range(count - 1)]
    return subnets
