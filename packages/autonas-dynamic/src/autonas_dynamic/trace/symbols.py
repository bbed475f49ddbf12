"""Symbols: the tracing-side view of a searchable size, kept as a union-find forest.

Every layer slot that sizes a tensor dimension (a conv's ``in_channels``, a BatchNorm's
``num_features``, ...) owns one :class:`Symbol`. The analysis joins the symbols of slots that must
always have the same size; the root of each tree carries what holds for the whole group: whether it
is fixed (with the first reason), whether its channels may be sorted, and which concatenations
produce it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn as nn


@dataclass(frozen=True)
class Slot:
    """One hparam of one layer: ``module``'s hparam called ``name`` (e.g. ``"out_channels"``)."""

    module: nn.Module
    name: str

    def __hash__(self) -> int:
        return hash((id(self.module), self.name))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Slot) and other.module is self.module and other.name == self.name


class Symbol:
    """A node of the union-find forest; the root of a tree describes one group of coupled slots.

    A symbol created for a ``torch.cat`` along the elastic dimension is a *concat source*: its
    size is the sum of the sizes of its ``concat_inputs`` (other symbols).
    """

    __slots__ = ("_parent", "concat_inputs", "concats", "fixed_reason", "slots", "sortable", "step")

    def __init__(self, slot: Slot | None = None, *, sortable: bool = True) -> None:
        self._parent: Symbol | None = None
        self.slots: list[Slot] = [slot] if slot is not None else []
        self.fixed_reason: str | None = None
        self.sortable = sortable
        self.concats: list[Symbol] = []
        self.concat_inputs: list[Symbol] = []  # non-empty for a concat source
        self.step = 1  # the group's size changes in multiples of this (whole attention heads)

    @classmethod
    def concat_of(cls, inputs: list[Symbol]) -> Symbol:
        """A new concat source whose size is the sum of ``inputs`` (duplicates allowed)."""
        sym = cls()
        sym.concat_inputs = list(inputs)
        sym.concats.append(sym)
        return sym

    def find(self) -> Symbol:
        """The root of this symbol's tree (with path halving)."""
        node = self
        while node._parent is not None:
            parent = node._parent
            if parent._parent is not None:
                node._parent = parent._parent
            node = parent
        return node

    @property
    def fixed(self) -> bool:
        """Whether the group of this symbol must keep its original size."""
        return self.find().fixed_reason is not None

    def fix(self, reason: str) -> None:
        """Pin the whole group to its original size; the first reason is kept."""
        root = self.find()
        if root.fixed_reason is None:
            root.fixed_reason = reason

    def mark_unsortable(self) -> None:
        """Forbid reordering the channels of the whole group."""
        self.find().sortable = False

    def require_step(self, step: int) -> None:
        """Let the whole group change only in multiples of ``step`` channels (sorted in blocks of ``step``)."""
        root = self.find()
        root.step = math.lcm(root.step, step)

    def union(self, other: Symbol) -> Symbol:
        """Join two groups; returns the new root (this symbol's root)."""
        a, b = self.find(), other.find()
        if a is b:
            return a
        b._parent = a
        a.slots.extend(b.slots)
        a.concats.extend(b.concats)
        a.sortable = a.sortable and b.sortable
        a.step = math.lcm(a.step, b.step)
        if a.fixed_reason is None:
            a.fixed_reason = b.fixed_reason
        b.slots, b.concats = [], []
        return a

    def __repr__(self) -> str:
        root = self.find()
        names = ", ".join(f"{type(s.module).__name__}.{s.name}" for s in root.slots[:4])
        state = "fixed" if root.fixed_reason else "free"
        return f"Symbol({state}; {names}{', ...' if len(root.slots) > 4 else ''})"


def full_size(sym: Symbol) -> int | None:
    """The original size of a group: an int attribute of one of its layers, or the sum over its concat inputs."""
    root = sym.find()
    for slot in root.slots:
        size = getattr(slot.module, slot.name, None)
        if isinstance(size, int) and not isinstance(size, bool):
            return size
    if root.concat_inputs:
        sizes = [full_size(inp) for inp in root.concat_inputs]
        return None if None in sizes else sum(sizes)  # type: ignore[arg-type]
    return None
