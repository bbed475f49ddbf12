"""Search spaces: the `SearchSpace` protocol every searcher drives, and `ChoiceSpace`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

__all__ = ["ChoiceSpace", "SearchSpace", "check_choices", "check_search_space", "space_hparams"]


@runtime_checkable
class SearchSpace(Protocol):
    """What a searcher needs from a search space.

    A space may also define `original() -> dict`, the configuration that `"N%"` limits refer to
    (for a model: the unmodified architecture). Searchers select every candidate with `select`
    before they evaluate its constraints and score, so a space bound to a model may read the
    active subnet instead of the config it is handed.
    """

    def hparams(self) -> Mapping[str, Sequence[Any]]:
        """The choices of every configurable hparam (two or more choices each), by name.

        Choices are listed from the smallest to the largest: the first choice of every hparam
        makes the smallest config, the last the largest (the range that limits are clamped to).
        """
        ...

    def config(self) -> dict[str, Any]:
        """The active configuration: every hparam's current value, configurable or not."""
        ...

    def select(self, config: Mapping[str, Any]) -> None:
        """Make `config` (a value for every configurable hparam) the active configuration."""
        ...


def check_search_space(space: object) -> SearchSpace:
    """Return `space` if it implements `SearchSpace`, else raise a `TypeError` naming what is missing."""
    missing = [name for name in ("hparams", "config", "select") if not callable(getattr(space, name, None))]
    if missing:
        raise TypeError(
            f"{type(space).__name__} is not a search space: it lacks {', '.join(f'{m}()' for m in missing)}. "
            "A search space needs hparams(), config() and select(config) (see autonas_search.SearchSpace)."
        )
    return space  # type: ignore[return-value]


def check_choices(owner: str, name: Any, values: Any) -> tuple[Any, ...]:
    """The choices of hparam `name` as a tuple; a `ValueError` naming `owner` and `name` unless they are valid.

    Valid choices are a non-empty list or tuple without NaN and without a value given twice.
    """
    if not isinstance(name, str):
        raise TypeError(f"{owner}: hparam names must be strings, got {name!r}")
    if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{owner}: choices of {name!r} must be a non-empty list or tuple, got {values!r}")
    values = tuple(values)
    for i, value in enumerate(values):
        if isinstance(value, float) and math.isnan(value):
            raise ValueError(f"{owner}: choices of {name!r} contain NaN")
        if value in values[:i]:
            raise ValueError(f"{owner}: choices of {name!r} contain {value!r} twice: {list(values)}")
    return values


def space_hparams(space: SearchSpace) -> dict[str, tuple[Any, ...]]:
    """`space.hparams()` with every hparam's choices checked by `check_choices` (errors name the space)."""
    owner = f"{type(space).__name__}.hparams()"
    hparams = space.hparams()
    if not isinstance(hparams, Mapping):
        raise TypeError(f"{owner} must return a dict of hparam name -> list of choices, got {hparams!r}")
    return {name: check_choices(owner, name, values) for name, values in hparams.items()}


class ChoiceSpace:
    """A search space over a dict of choices, for searching anything that is not a model.

    Args:
        choices: hparam name -> the values it may take (a list or tuple; list choices from the
            smallest to the largest). An hparam with a single choice is fixed: it is part of
            `config()` but not of `hparams()`.
        original: the configuration `"N%"` limits refer to; defaults to the last choice of
            every hparam (the full-size configuration when choices grow).

    The active configuration starts at `original`.
    """

    def __init__(self, choices: Mapping[str, Sequence[Any]], original: Mapping[str, Any] | None = None) -> None:
        if not isinstance(choices, Mapping) or not choices:
            raise ValueError(f"ChoiceSpace needs a non-empty dict of name -> list of choices, got {choices!r}")
        self._choices = {name: check_choices("ChoiceSpace", name, values) for name, values in choices.items()}
        self._configurable = {name: values for name, values in self._choices.items() if len(values) > 1}
        self._allowed = {name: _membership(values) for name, values in self._choices.items()}
        self._original = {name: values[-1] for name, values in self._choices.items()}
        if original is not None:
            self._original = self._checked(original, require_all=True)
        self._config = dict(self._original)

    def hparams(self) -> dict[str, tuple[Any, ...]]:
        """The choices of every configurable hparam (those with two or more choices)."""
        return dict(self._configurable)

    def choices(self) -> dict[str, tuple[Any, ...]]:
        """The choices of every hparam, fixed ones included."""
        return dict(self._choices)

    def config(self) -> dict[str, Any]:
        """The active configuration (every hparam)."""
        return dict(self._config)

    def original(self) -> dict[str, Any]:
        """The configuration that `"N%"` limits refer to."""
        return dict(self._original)

    def select(self, config: Mapping[str, Any]) -> None:
        """Set the hparams named in `config`; the others keep their value."""
        self._config.update(self._checked(config, require_all=False))

    def size(self) -> int:
        """The number of distinct configurations."""
        return math.prod(len(values) for values in self._choices.values())

    def _checked(self, config: Mapping[str, Any], require_all: bool) -> dict[str, Any]:
        if not isinstance(config, Mapping):
            raise TypeError(f"a config must be a dict of hparam name -> value, got {config!r}")
        unknown = [name for name in config if name not in self._choices]
        if unknown:
            raise KeyError(f"unknown hparam(s) {unknown}; the space has: {sorted(self._choices)}")
        if require_all and len(config) != len(self._choices):
            missing = sorted(set(self._choices) - set(config))
            raise KeyError(f"config lacks hparam(s) {missing}")
        allowed = self._allowed
        for name, value in config.items():
            try:
                known = value in allowed[name]
            except TypeError:  # an unhashable value: compare with each choice
                known = value in self._choices[name]
            if not known:
                raise ValueError(f"{value!r} is not a choice of {name!r}; allowed: {list(self._choices[name])}")
        return dict(config)

    def __repr__(self) -> str:
        return f"ChoiceSpace({dict((k, list(v)) for k, v in self._choices.items())})"


def _membership(values: tuple[Any, ...]) -> frozenset[Any] | tuple[Any, ...]:
    """A fast container for `value in choices` checks (a set when every choice is hashable)."""
    try:
        return frozenset(values)
    except TypeError:
        return values
