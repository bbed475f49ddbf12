"""Constraints: named cost functions of a candidate config, each with a limit."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from numbers import Real
from typing import Any

from .space import SearchSpace, space_hparams

__all__ = ["TRIVIAL", "Bounds", "ConstraintsFunc", "CostFunc", "Limit"]

CostFunc = Callable[[dict[str, Any]], float]
_Bound = float | int | str | None
Limit = float | int | str | tuple[_Bound, _Bound] | None
"""A limit: a number (upper bound), a `(lower, upper)` tuple or list, `"N%"` of the value at the space's
original config (upper bound), or `None` (tracked, unconstrained); bounds of a pair may also be
`"N%"` or `None` (open)."""
Bounds = tuple[float, float]
"""A normalised limit: `lower <= value <= upper`."""

TRIVIAL: Bounds = (0.0, math.inf)
"""The bounds of an unconstrained (tracked only) cost."""


class ConstraintsFunc:
    """Evaluates named cost functions of a candidate and checks them against their limits.

    Args:
        constraints: name -> `(cost_function, limit)`. The cost function takes the candidate's
            config (the space has already selected it) and returns a number; see `Limit` for
            the accepted limits.
        space: the search space; needed only for `"N%"` limits, which are measured once at
            `space.original()` (the space's active config is restored afterwards).

    Calling the functor evaluates every cost function (no early exit, so every value can be
    recorded) and returns `(is_satisfied, {name: value})`.
    """

    def __init__(self, constraints: Mapping[str, tuple[CostFunc, Limit]], space: SearchSpace | None = None) -> None:
        if not isinstance(constraints, Mapping):
            raise TypeError(f"constraints must be a dict of name -> (cost_function, limit), got {constraints!r}")
        self._space = space
        self._funcs: dict[str, CostFunc] = {}
        self._reference: dict[str, float] = {}
        for name, entry in constraints.items():
            if not isinstance(name, str):
                raise TypeError(f"constraint names must be strings, got {name!r}")
            if not (isinstance(entry, tuple) and len(entry) == 2 and callable(entry[0])):
                raise TypeError(
                    f"constraint {name!r} must be a (cost_function, limit) tuple, got {entry!r}; "
                    "use (function, None) to track a cost without limiting it"
                )
            self._funcs[name] = entry[0]
        self._limits: dict[str, Bounds] = {}
        self.limits = {name: entry[1] for name, entry in constraints.items()}

    @property
    def names(self) -> list[str]:
        """The constraint names, in evaluation order."""
        return list(self._funcs)

    @property
    def limits(self) -> dict[str, Bounds]:
        """Every limit as `(lower, upper)`; unconstrained costs have `(0, inf)`."""
        return dict(self._limits)

    @limits.setter
    def limits(self, limits: Mapping[str, Limit]) -> None:
        """Replace the limits of the named constraints (any `Limit` form); others are kept."""
        unknown = [name for name in limits if name not in self._funcs]
        if unknown:
            raise KeyError(f"no constraint named {unknown}; constraints are: {self.names}")
        self._limits.update({name: self._parse(name, limit) for name, limit in limits.items()})

    @property
    def effective_limits(self) -> dict[str, Bounds]:
        """The limits that constrain something (everything but `(0, inf)`)."""
        return {name: limit for name, limit in self._limits.items() if limit != TRIVIAL}

    def set_rel_lower_bounds(self, rel_lower: float = 0.85, space: SearchSpace | None = None) -> None:
        """Give every effective limit without a lower bound the lower bound `rel_lower * min(upper, largest)`.

        Only candidates that use most of each budget then count as satisfied. `largest` is the
        highest value the space reaches (see `value_ranges`), so a limit above everything the space
        holds (`"150%"`, `1e12`) still leaves its largest configs satisfied. Limits with a lower
        bound of their own and limits without an upper bound are left as they are.

        Args:
            rel_lower: the fraction of the budget a candidate must use, in [0, 1].
            space: the space whose range bounds the budget; default the functor's own. Without
                either, the budget is the upper bound itself.
        """
        if not (isinstance(rel_lower, Real) and 0 <= rel_lower <= 1):
            raise ValueError(f"rel_lower must be a number in [0, 1], got {rel_lower!r}")
        banded = {
            name: upper for name, (lower, upper) in self.effective_limits.items() if lower == 0 and math.isfinite(upper)
        }
        space = space if space is not None else self._space
        ranges = self.value_ranges(space) if banded and rel_lower and space is not None else {}
        for name, upper in banded.items():
            budget = min(upper, ranges[name][1]) if name in ranges else upper
            self._limits[name] = (float(rel_lower) * budget, upper)

    def value_ranges(self, space: SearchSpace | None = None) -> dict[str, Bounds]:
        """The lowest and highest value of every constraint over the space's smallest and largest configs.

        The smallest config takes the first choice of every hparam, the largest the last (choices
        are listed from the smallest to the largest), so for costs that grow with the choices these
        are the exact extremes. The space's active config is restored afterwards.

        Args:
            space: the space to measure; default the functor's own.

        Raises:
            ValueError: there is no space to measure.
        """
        space = space if space is not None else self._space
        if space is None:
            raise ValueError("value_ranges needs a search space: pass one, or build the ConstraintsFunc with it")
        choices = space_hparams(space)
        active = space.config()
        values = []
        try:
            for pick in (0, -1):
                space.select({name: options[pick] for name, options in choices.items()})
                config = space.config()
                values.append({name: self._value(name, func(config)) for name, func in self._funcs.items()})
        finally:
            space.select({name: active[name] for name in choices})
        return {name: (min(v[name] for v in values), max(v[name] for v in values)) for name in self._funcs}

    def __call__(self, config: dict[str, Any]) -> tuple[bool, dict[str, float]]:
        values = {name: self._value(name, func(config)) for name, func in self._funcs.items()}
        return self.is_satisfied(values), values

    def is_satisfied(self, values: Mapping[str, float]) -> bool:
        """Whether every value lies within its `[lower, upper]`."""
        limits = self._limits
        return all(limits[name][0] <= value <= limits[name][1] for name, value in values.items())

    def violation(self, values: Mapping[str, float]) -> float:
        """How far `values` lie outside the limits, each relative to its bound (0 when satisfied)."""
        total = 0.0
        for name, value in values.items():
            lower, upper = self._limits[name]
            if value > upper:
                total += (value - upper) / (abs(upper) or 1.0)
            elif value < lower:
                total += (lower - value) / (abs(lower) or 1.0)
        return total

    def copy(self) -> ConstraintsFunc:
        """A functor with the same cost functions and its own copy of the limits."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone._limits = dict(self._limits)
        clone._reference = dict(self._reference)
        return clone

    def reference_value(self, name: str) -> float:
        """The value of constraint `name` at the space's original config (what `"N%"` refers to)."""
        if name not in self._reference:
            original = getattr(self._space, "original", None)
            if not callable(original):
                raise ValueError(
                    f"limit of {name!r} is a percentage, which needs a search space with original() "
                    "(the config the percentage refers to); give an absolute limit instead"
                )
            space = self._space
            assert space is not None
            active = space.config()
            reference = original()
            space.select(reference)
            try:
                self._reference[name] = self._value(name, self._funcs[name](space.config()))
            finally:
                space.select({hp: active[hp] for hp in space.hparams()})
        return self._reference[name]

    def _value(self, name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, Real) or math.isnan(value):
            raise TypeError(f"cost function of constraint {name!r} returned {value!r}; it must return a number")
        return value  # type: ignore[return-value]

    @staticmethod
    def parse_limit(name: str, limit: Limit | list[Any], reference: Callable[[], float] | None = None) -> Bounds:
        """Normalise one limit to `(lower, upper)`; the one parser of limits in autonas.

        Args:
            name: the constraint the limit belongs to (named in every error).
            limit: a number (upper bound, at least 0: the lower bound is 0), a `"N%"` string (upper
                bound), `None` (`(0, inf)`), or a `(lower, upper)` tuple or list whose bounds are
                numbers, `"N%"` strings or `None` (open: 0 below, infinity above).
            reference: returns the value `"N%"` refers to; called at most once, and only when the
                limit holds a percentage, so it may be expensive (e.g. measure a model).

        Raises:
            TypeError: the limit, or one of its bounds, has a type that is not allowed.
            ValueError: a malformed percentage, a negative upper bound given alone, a pair without
                two bounds, a lower bound above the upper one, or a percentage without `reference`.
        """
        reference = functools.cache(reference) if reference is not None else None
        if limit is None:
            return TRIVIAL
        if isinstance(limit, tuple | list):
            if len(limit) != 2:
                raise ValueError(f"limit of {name!r} is {limit!r}; a pair must be (lower, upper): two bounds")
            lower, upper = (
                _bound(name, bound, default, reference) for bound, default in zip(limit, TRIVIAL, strict=True)
            )
            if lower > upper:
                raise ValueError(f"limit of {name!r}: lower bound {lower} exceeds upper bound {upper}")
            return (lower, upper)
        if isinstance(limit, str) or (isinstance(limit, Real) and not isinstance(limit, bool)):
            upper = _bound(name, limit, math.inf, reference)
            if upper < 0:
                raise ValueError(
                    f"limit of {name!r} is {limit!r}; an upper bound alone must be a non-negative number "
                    "(the lower bound is 0); give a (lower, upper) pair for negative costs"
                )
            return (0.0, upper)
        raise TypeError(
            f"limit of {name!r} is {limit!r}; allowed: a number (upper bound), a (lower, upper) pair, "
            "a percentage string like '60%', or None"
        )

    def _parse(self, name: str, limit: Limit) -> Bounds:
        return self.parse_limit(name, limit, lambda: self.reference_value(name))

    def __getstate__(self) -> dict[str, Any]:
        # Worker processes evaluate configs they are handed; they need no space (which may be large).
        return {**self.__dict__, "_space": None}

    def __repr__(self) -> str:
        return f"ConstraintsFunc(limits={self._limits})"


def _bound(name: str, bound: Any, default: float, reference: Callable[[], float] | None) -> float:
    """One bound of a limit as a float: a number, `"N%"` of `reference()`, or `default` for `None`."""
    if bound is None:
        return default
    if isinstance(bound, str):
        text = bound.strip()
        if not text.endswith("%"):
            raise ValueError(
                f"limit of {name!r} is the string {bound!r}; a string limit must be a percentage like '60%' "
                "(give an absolute limit as a number)"
            )
        try:
            percent = float(text[:-1])
        except ValueError:
            raise ValueError(
                f"limit of {name!r}: cannot read a percentage from {bound!r} (expected e.g. '60%')"
            ) from None
        if not (math.isfinite(percent) and percent >= 0):
            raise ValueError(f"limit of {name!r}: percentage must be finite and >= 0, got {bound!r}")
        if reference is None:
            raise ValueError(
                f"limit of {name!r} is a percentage, but nothing gives the value it refers to; give an absolute limit"
            )
        return percent / 100 * reference()
    if isinstance(bound, bool) or not isinstance(bound, Real) or math.isnan(bound):
        raise TypeError(f"limit of {name!r}: bound {bound!r} is not a number")
    return float(bound)
