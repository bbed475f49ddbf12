"""Hyperparameters: the searchable quantities of dynamic layers.

An :class:`Hparam` holds the sorted choices of one architectural quantity (a channel count, a
kernel size, a block depth), its original value and the currently active value. Layers whose
sizes are coupled share ONE ``Hparam`` object, so setting ``active`` on it resizes all of them.

Channel sets are always a prefix of the stored tensors (``active_slice`` is ``slice(0, active)``):
instead of remembering an order, :func:`autonas_dynamic.sort_parameters` permutes the stored
tensors in place. The only non-prefix channel set is that of a :class:`ConcatHparam` whose inputs
are not all at their maximum.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

__all__ = ["ConcatHparam", "DepthHparam", "DerivedHparam", "HeadCountHparam", "Hparam", "ImportanceEstimator"]

ImportanceEstimator = Callable[[], "torch.Tensor | None"]

#: Above this many input combinations, a concat hparam enumerates only a neighbourhood of sums.
MAX_CONCAT_COMBINATIONS = 50_000_000


class Hparam:
    """One searchable quantity: its choices, its original value and its active value.

    Args:
        choices: The allowed values (any order, duplicates dropped). ``original`` is always added.
        original: The value of the unmodified layer; defaults to ``max(choices)``.
        name: Used in error messages (layers set their local name, e.g. ``"out_channels"``).

    Example:
        >>> hp = Hparam([16, 32, 64])
        >>> hp.active = 32
        >>> hp.active_slice
        slice(0, 32, None)
    """

    #: Channels that sorting keeps together, in order (the width of one attention head; 1: none).
    block: int = 1

    def __init__(self, choices: Iterable[Any], original: Any = None, name: str | None = None) -> None:
        self.name = name
        self._choices: Sequence[Any]
        self._choice_set: Collection[Any]
        if isinstance(choices, range) and choices.step > 0 and (original is None or original in choices) and choices:
            # kept as the range (sorted, distinct, constant-time membership): a layer's 1..width choices
            # are thousands of values that its rule usually replaces right away
            original = choices[-1] if original is None else original
            self._choices = self._choice_set = choices
        else:
            values = set(choices)
            if original is None:
                if not values:
                    raise ValueError(f"hparam {name!r} needs at least one choice or an original value")
                original = max(values)
            values.add(original)
            self._choices, self._choice_set = sorted(values), frozenset(values)
        self._original = original
        self._active = original
        self._is_configurable = True
        self._importance_estimators: list[ImportanceEstimator] | None = []

    # ----------------------------------------------------------------------------- values
    @property
    def original(self) -> Any:
        """The value of the unmodified layer (never removed from ``choices``)."""
        return self._original

    @property
    def choices(self) -> list[Any]:
        """The sorted allowed values. Assigning a subset shrinks them (they can never grow)."""
        return list(self._choices)

    @choices.setter
    def choices(self, values: Iterable[Any]) -> None:
        new = set(values)
        if self._original not in new:
            raise ValueError(f"{self.label}: new choices {sorted(new)} must contain the original {self._original!r}")
        if self._active not in new:
            raise ValueError(f"{self.label}: new choices {sorted(new)} must contain the active value {self._active!r}")
        if self._is_configurable:
            extra = {value for value in new if value not in self._choice_set}
            if extra:
                raise ValueError(
                    f"{self.label}: choices can only shrink; {sorted(extra)} are not in the current {self.choices}"
                )
        elif new != set(self._choice_set):
            raise ValueError(f"{self.label} is not configurable; its choices {self.choices} cannot change")
        self._set_choices(new)

    def _set_choices(self, values: Iterable[Any]) -> None:
        """Store new choices without any check (subclasses and merging use it)."""
        self._choice_set = frozenset(values)
        self._choices = sorted(self._choice_set)

    @property
    def active(self) -> Any:
        """The selected value. Assigning ``None`` selects the original."""
        return self._active

    @active.setter
    def active(self, value: Any) -> None:
        self._active = self._checked(value)

    def _checked(self, value: Any) -> Any:
        """``value`` (``None`` meaning the original) if it may become active, else a ``ValueError``."""
        if value is None:
            value = self._original
        if value not in self._choice_set:
            raise ValueError(f"{self.label}: value {value!r} is not allowed; choices are {self.choices}")
        if not self._is_configurable and value != self._active:
            raise ValueError(f"{self.label} is not configurable: it stays at {self._active!r}, cannot become {value!r}")
        return value

    @property
    def min(self) -> Any:
        """The smallest choice."""
        return self._choices[0]

    @property
    def max(self) -> Any:
        """The largest choice."""
        return self._choices[-1]

    @property
    def is_configurable(self) -> bool:
        """Whether a search may change this hparam (not pinned and more than one choice)."""
        return self._is_configurable and len(self._choices) > 1

    @property
    def is_sortable(self) -> bool:
        """Whether the channels this hparam governs may be reordered by importance."""
        return self._importance_estimators is not None

    @property
    def active_slice(self) -> slice | torch.Tensor:
        """The active channels: ``slice(0, active)`` (channels are always a prefix)."""
        if not isinstance(self._active, int):
            raise TypeError(f"{self.label} has {type(self._active).__name__} values and no channel slice")
        return slice(0, self._active)

    # ----------------------------------------------------------------------------- operations
    def pin(self) -> None:
        """Fix this hparam at its original value, its only choice from now on (what a frozen layer keeps)."""
        with self._force_configurable():
            self.active = self._original
            self.choices = [self._original]

    def restrict_to(self, allowed: Iterable[Any]) -> None:
        """Keep only the choices that are in ``allowed``; the original always stays.

        The active value falls back to the original when it is dropped. An hparam that follows
        another (a concat input) keeps its choices: they are its follower's to decide.
        """
        if not self._is_configurable:
            return
        new = self._common(allowed) | {self._original}
        if self._active not in new:
            self.active = self._original
        self.choices = new

    @contextmanager
    def held_at(self, value: Any) -> Iterator[Hparam]:
        """Context manager: ``value`` (one of the choices) is active, even on a pinned hparam.

        For reading the layers at a given size (e.g. full-size tensors while sorting channels or
        converting a layer); the previous active value returns on exit, even on errors.
        """
        previous = self._active
        with self._force_configurable():
            self.active = value
        try:
            yield self
        finally:
            self._active = previous

    @contextmanager
    def _force_configurable(self) -> Iterator[None]:
        """Temporarily let a pinned hparam change (the flag is restored even on errors)."""
        flag = self._is_configurable
        self._is_configurable = True
        try:
            yield
        finally:
            self._is_configurable = flag

    # ----------------------------------------------------------------------------- importance
    def register_importance(self, estimator: ImportanceEstimator) -> None:
        """Add a zero-argument callable returning one importance score per channel (or ``None``)."""
        if self._importance_estimators is None:
            raise RuntimeError(f"{self.label} is not sortable; it accepts no importance estimator")
        if estimator not in self._importance_estimators:
            self._importance_estimators.append(estimator)

    def make_unsortable(self) -> None:
        """Mark the governed channels as not reorderable (e.g. a GroupNorm or a grouped conv uses them)."""
        self._importance_estimators = None

    @property
    def importance(self) -> torch.Tensor | None:
        """Sum of the max-normalised estimator outputs; ``None`` if unsortable or no estimator has one."""
        if self._importance_estimators is None:
            return None
        total = None
        with torch.no_grad():
            for estimator in self._importance_estimators:
                scores = estimator()
                if scores is None:
                    continue
                if scores.dim() != 1 or scores.numel() != self.max:
                    raise ValueError(
                        f"{self.label}: an importance estimator returned shape {tuple(scores.shape)}, "
                        f"expected ({self.max},)"
                    )
                scores = scores.detach().float().cpu()
                scores = scores / (scores.max() + 1e-9)
                total = scores if total is None else total + scores
        return total

    # ----------------------------------------------------------------------------- merging
    def __iand__(self, other: Hparam) -> Hparam:
        """Merge a coupled hparam into this one (choices intersect, estimators combine)."""
        if other is self:
            return self
        if other.original != self._original:
            raise ValueError(
                f"cannot merge {other.label} (original {other.original!r}) into "
                f"{self.label} (original {self._original!r}): coupled sizes must be equal"
            )
        common = self._common(other._choice_set)
        if self._active not in common:
            self._active = self._original
        with self._force_configurable():
            self.choices = common
        self._is_configurable = self._is_configurable and other._is_configurable
        if self._importance_estimators is None or other._importance_estimators is None:
            self._importance_estimators = None
        else:
            for estimator in other._importance_estimators:
                self.register_importance(estimator)
        return self

    def _common(self, values: Iterable[Any]) -> set[Any]:
        """The choices that are among ``values``."""
        return {value for value in values if value in self._choice_set}

    # ----------------------------------------------------------------------------- dunder
    def __iter__(self) -> Iterator[Any]:
        return iter(self._choices)

    def __repr__(self) -> str:
        label = f"{self.name!r}, " if self.name else ""
        return f"{type(self).__name__}({label}choices={self.choices}, active={self._active!r}, original={self._original!r})"

    @property
    def label(self) -> str:
        """How error messages name this hparam: ``"hparam 'out_channels'"``, or its class without a name."""
        return f"hparam {self.name!r}" if self.name else type(self).__name__


class DerivedHparam(Hparam):
    """An hparam computed from another one, its parent: not configurable, it follows whatever the parent becomes.

    Subclasses define :meth:`derive`, the value for a value of the parent (a segment of the parent's
    channels, the width of a number of heads).

    Args:
        parent: The hparam this one follows.
        original: Its value when the parent is at its original value.
        name: Used in error messages.
    """

    def __init__(self, parent: Hparam, original: int, name: str | None = None) -> None:
        self.name = name
        self._original = original
        self._is_configurable = False
        self._importance_estimators = None
        self._parent = parent

    @property
    def parent(self) -> Hparam:
        """The hparam this one follows."""
        return self._parent

    def derive(self, value: Any) -> Any:
        """This hparam's value when the parent's is ``value``."""
        raise NotImplementedError

    def follow(self, parent: Hparam) -> None:
        """Follow ``parent`` from now on: it took the place of the parent wherever that was used, and
        holds the parent's values (a chain of links, e.g. grouped convs feeding grouped convs)."""
        if parent.original != self._parent.original:
            raise ValueError(f"{self.label} cannot follow {parent.label}: its original is not {self._parent.original}")
        self._parent = parent

    @property
    def _active(self) -> Any:  # type: ignore[override]
        return self.derive(self._parent.active)

    @_active.setter
    def _active(self, value: Any) -> None:
        if value != self._active:
            raise ValueError(f"{self.label} follows {self._parent.label}; it cannot be set to {value!r}")

    @property
    def _choice_set(self) -> frozenset[Any]:  # type: ignore[override]
        return frozenset(self.derive(choice) for choice in self._parent.choices)

    @property
    def _choices(self) -> list[Any]:  # type: ignore[override]
        return sorted(self._choice_set)


class HeadCountHparam(DerivedHparam):
    """The number of heads of a width split into heads: the size of a tensor dim with one entry per head.

    A per-head tensor (a relative position bias table, an embedding of position buckets into one
    bias per head, a per-head scale) follows the width of its heads (``parent``, a multiple of
    ``head_dim``): it keeps ``parent.active // head_dim`` entries, and sorting the parent's whole
    heads reorders its entries alike (see :func:`autonas_dynamic.sort_parameters`).

    Args:
        parent: The width of the heads (``heads * head_dim``).
        head_dim: The width of one head.
        name: Used in error messages.
    """

    def __init__(self, parent: Hparam, head_dim: int, name: str | None = None) -> None:
        super().__init__(parent, parent.original // head_dim, name)
        self.head_dim = head_dim

    def derive(self, value: int) -> int:
        return value // self.head_dim


class DepthHparam(Hparam):
    """The number of leading blocks of a container that run: choices ``0..num_blocks``.

    Only trailing blocks can be dropped, and only blocks that may be skipped without changing the
    shapes the rest of the model sees; :meth:`restrict_to_trailing` applies that analysis.
    """

    def __init__(self, num_blocks: int, name: str | None = "depth") -> None:
        super().__init__(range(num_blocks + 1), original=num_blocks, name=name)

    def restrict_to_at_least(self, min_depth: int) -> None:
        """Keep only depths of at least ``min_depth`` (the full depth always stays)."""
        if isinstance(min_depth, bool) or not isinstance(min_depth, int) or min_depth < 0:
            raise ValueError(f"min_depth must be a non-negative int, got {min_depth!r}")
        self.restrict_to({depth for depth in self.choices if depth >= min_depth})

    def restrict_to_trailing(self, skippable: Sequence[bool]) -> None:
        """Keep only depths whose dropped blocks are all skippable.

        Args:
            skippable: One flag per block; depth ``i`` is allowed when every block ``j >= i`` is
                skippable (the full depth always is).
        """
        if len(skippable) != self._original:
            raise ValueError(f"{self.label}: got {len(skippable)} skippable flags for {self._original} blocks")
        allowed = {self._original}
        for index in range(self._original - 1, -1, -1):
            if not skippable[index]:
                break
            allowed.add(index)
        if self._active not in allowed:
            self._active = self._original
        with self._force_configurable():
            self.choices = self._common(allowed)


class ConcatHparam(Hparam):
    """The size of a channel concatenation: the sum of its input hparams.

    Only the concat hparam is searched; its inputs become non-configurable and follow it: for every
    achievable sum the most balanced combination of input values is used; among equally balanced
    ones, the input that appears first gets the larger value (deterministic, unlike set order).
    An input may appear several times (``torch.cat([a, a])``); it then always takes one value.

    Args:
        inputs: The hparams of the concatenated tensors, in concatenation order.
        name: Used in error messages.
    """

    def __init__(self, inputs: Sequence[Hparam], name: str | None = None) -> None:
        if not inputs:
            raise ValueError("a concat hparam needs at least one input")
        self.name = name
        self._inputs = list(inputs)
        self._distinct: list[Hparam] = []
        for hp in self._inputs:
            if not any(hp is seen for seen in self._distinct):
                self._distinct.append(hp)
        self._offsets: list[int] = list(itertools.accumulate([0] + [hp.max for hp in self._inputs[:-1]]))
        self._slice_cache: dict[tuple[int, ...], slice | torch.Tensor] = {}
        self._sum_to_combo = self._enumerate_sums()
        super().__init__(self._sum_to_combo, original=sum(hp.original for hp in self._inputs), name=name)
        self._sync_inputs()

    @property
    def inputs(self) -> list[Hparam]:
        """The input hparams in concatenation order (repeated inputs repeated)."""
        return list(self._inputs)

    @property
    def segments(self) -> list[tuple[Hparam, int]]:
        """``(input hparam, start offset)`` of every concatenated segment, offsets at full size."""
        return list(zip(self._inputs, self._offsets, strict=True))

    @property
    def active(self) -> int:
        return sum(hp.active for hp in self._inputs)

    @active.setter
    def active(self, value: int | None) -> None:
        value = self._checked(value)
        for hp, part in zip(self._distinct, self._sum_to_combo[value], strict=True):
            hp._active = part

    @property
    def _active(self) -> int:  # type: ignore[override]
        return sum(hp._active for hp in self._inputs)

    @_active.setter
    def _active(self, value: int) -> None:
        """Follow a value set from outside (a concatenation this one is every part of): no checks."""
        if value != self._active:
            for hp, part in zip(self._distinct, self._sum_to_combo[value], strict=True):
                hp._active = part

    @property
    def active_slice(self) -> slice | torch.Tensor:
        """The active channels of the concatenation: a prefix slice, or an index tensor."""
        key = tuple(hp._active for hp in self._distinct)
        cached = self._slice_cache.get(key)
        if cached is None:
            parts = [torch.arange(hp.active) + offset for hp, offset in self.segments]
            index = torch.cat(parts)
            is_prefix = torch.equal(index, torch.arange(index.numel()))
            cached = slice(0, index.numel()) if is_prefix else index
            self._slice_cache[key] = cached
        return cached

    def _set_choices(self, values: Iterable[Any]) -> None:
        super()._set_choices(values)
        self._sync_inputs()

    def _sync_inputs(self) -> None:
        """Drop sums not in the choices and pin every input to the values the kept sums use."""
        self._sum_to_combo = {total: combo for total, combo in self._sum_to_combo.items() if total in self._choice_set}
        for position, hp in enumerate(self._distinct):
            used = {combo[position] for combo in self._sum_to_combo.values()}
            if hp._active not in used:
                hp._active = hp.original
            hp._set_choices(used | {hp.original})
            hp._is_configurable = False

    def _enumerate_sums(self) -> dict[int, tuple[int, ...]]:
        counts = [sum(1 for other in self._inputs if other is hp) for hp in self._distinct]
        # Largest values first: among equally balanced combinations the earliest input gets more.
        options = [hp.choices[::-1] for hp in self._distinct]
        if math.prod(len(values) for values in options) > MAX_CONCAT_COMBINATIONS:
            warnings.warn(
                f"{self.label}: too many input combinations; only combinations near balanced ones are used",
                stacklevel=3,
            )
            combos = self._neighbourhood_combinations(options, counts)
        else:
            combos = itertools.product(*options)
        best: dict[int, tuple[float, tuple[int, ...]]] = {}
        for combo in combos:
            total = sum(value * count for value, count in zip(combo, counts, strict=True))
            values = [value for value, count in zip(combo, counts, strict=True) for _ in range(count)]
            mean = total / len(values)
            imbalance = sum(abs(value - mean) for value in values)
            if total not in best or imbalance < best[total][0]:
                best[total] = (imbalance, combo)
        return {total: combo for total, (_, combo) in sorted(best.items())}

    @staticmethod
    def _neighbourhood_combinations(options: list[list[int]], counts: list[int]) -> Iterator[tuple[int, ...]]:
        """Per target mean value, the combinations within a window of choices around it."""
        lowest, highest = min(min(values) for values in options), max(max(values) for values in options)
        span = max(1, highest - lowest)
        radius = max(1, int(((MAX_CONCAT_COMBINATIONS / span) ** (1 / len(options)) - 1) / 2))
        seen: set[tuple[int, ...]] = set()
        for target in range(lowest, highest + 1):
            windows = []
            for values in options:
                distances = [abs(value - target) for value in values]
                centre = distances.index(min(distances))
                windows.append(values[max(0, centre - radius) : centre + radius + 1])
            for combo in itertools.product(*windows):
                if combo not in seen:
                    seen.add(combo)
                    yield combo

    @property
    def importance(self) -> torch.Tensor | None:
        """Own importance (from the consumers) plus, per segment, the importance of its input."""
        own = super().importance
        parts, found = [], own is not None
        for hp, offset in self.segments:
            segment = own[offset : offset + hp.max] if own is not None else torch.zeros(hp.max)
            extra = hp.importance if hp.is_sortable else None
            if extra is not None:
                found = True
                segment = segment + extra
            parts.append(segment)
        return torch.cat(parts) if found else None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_slice_cache"] = {}
        return state
