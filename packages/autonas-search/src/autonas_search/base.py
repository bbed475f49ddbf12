"""`BaseSearcher`: configuration, state, checkpoints and the search flow shared by every searcher."""

from __future__ import annotations

import copy
import hashlib
import json
import random
import warnings
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, final

from . import _validate
from .checkpoint import checkpoint_path, load_checkpoint, save_checkpoint
from .constraints import ConstraintsFunc, CostFunc, Limit
from .errors import CheckpointError
from .ranks import check_ranks, share_from_first
from .space import SearchSpace, check_search_space

__all__ = ["BaseSearcher", "Constraints"]

Constraints = Mapping[str, tuple[CostFunc, Limit]] | ConstraintsFunc
_FORMAT = "autonas-search-checkpoint/1"


class BaseSearcher(ABC):
    """The search flow, the search config, the search state and its checkpoints.

    `search(space, constraints, config)` runs: `reset_search()`, `sanitize_search_config(config)`,
    `before_search()`, loading the checkpoint (if any), `run_search()`, `after_search()`, and
    returns `best`. Subclasses add config keys by extending the `default_search_config` property
    and state by extending `default_state_dict`: every state key is an attribute, saved in
    checkpoints and reset before each search. The constructor takes no arguments.
    """

    space: SearchSpace
    config: dict[str, Any]
    constraints: Constraints
    constraints_func: ConstraintsFunc
    rng: random.Random
    best: dict[str, Any]

    @final
    def __init__(self) -> None:
        self.best = {}
        self.reset_search()

    @property
    def default_search_config(self) -> dict[str, Any]:
        """Every accepted search-config key with its default (unknown keys are an error)."""
        return {
            "checkpoint": None,
            "strict_checkpoint": True,
            "verbose": False,
            "seed": 0,
            "score_func": None,
            "ranks": None,
        }

    @property
    def default_state_dict(self) -> dict[str, Any]:
        """Every state key with its initial value; subclasses extend it."""
        return {}

    def sanitize_search_config(self, config: Mapping[str, Any] | None) -> dict[str, Any]:
        """The defaults updated with `config`, checked; unknown keys are an error listing the accepted ones."""
        config = {} if config is None else config
        if not isinstance(config, Mapping):
            raise TypeError(f"search config must be a dict, got {config!r}")
        defaults = self.default_search_config
        unknown = sorted(set(config) - set(defaults))
        if unknown:
            raise ValueError(
                f"unknown search config key(s) {unknown} for {type(self).__name__}; accepted keys: {sorted(defaults)}"
            )
        config = {**defaults, **config}
        _validate.check_path(config, "checkpoint")
        _validate.check_bool(config, "strict_checkpoint")
        _validate.check_bool(config, "verbose")
        _validate.check_int(config, "seed", 0, allow_none=True)
        _validate.check_callable(config, "score_func", allow_none=True)
        if config["ranks"] is not None and check_ranks(config["ranks"]).rank != 0:
            config["verbose"] = False  # progress is shown by rank 0
        return config

    def reset_search(self) -> None:
        """Set every state key to a fresh copy of its default."""
        self.best = {}
        for key, value in self.default_state_dict.items():
            setattr(self, key, copy.deepcopy(value))

    def search(
        self, space: SearchSpace, constraints: Constraints, config: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Search `space` for the best candidate within `constraints`.

        Args:
            space: any `SearchSpace` (e.g. a `ChoiceSpace`).
            constraints: name -> `(cost_function, limit)` (see `ConstraintsFunc`), or a
                `ConstraintsFunc` (copied, so the caller's limits stay as they are).
            config: search config; see `default_search_config` for the keys.

        Returns:
            The best candidate: `config`, `metric`, `constraints`, `is_satisfied`, `is_best`.
        """
        self.space = check_search_space(space)
        self.reset_search()
        self.config = self.sanitize_search_config(config)
        self.constraints = constraints
        seed = self.config["seed"]
        if seed is None:  # a fresh seed, the same on every rank
            seed = share_from_first(self.config["ranks"], random.SystemRandom().getrandbits(64))
        self.rng = random.Random(seed)
        self.before_search()
        self.load_search_checkpoint()
        self.run_search()
        self.after_search()
        return dict(self.best)

    def before_search(self) -> None:
        """Build `constraints_func` (runs before the checkpoint, if any, is loaded)."""
        self.constraints_func = self.build_constraints_func(self.constraints)

    def build_constraints_func(self, constraints: Constraints) -> ConstraintsFunc:
        """The functor that evaluates `constraints`; override to supply a specialised one."""
        if isinstance(constraints, ConstraintsFunc):
            return constraints.copy()
        return ConstraintsFunc(constraints, self.space)

    @abstractmethod
    def run_search(self) -> None:
        """Search, updating the state."""

    def after_search(self) -> None:  # noqa: B027 (an optional hook)
        """Finish the search (e.g. select the best candidate)."""

    def state_dict(self) -> dict[str, Any]:
        """Every state key with its current value (live references)."""
        return {key: getattr(self, key) for key in self.default_state_dict}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Set the state from `state`, which must hold exactly the state keys."""
        expected = set(self.default_state_dict)
        if set(state) != expected:
            raise CheckpointError(
                f"search state keys {sorted(state)} do not match {type(self).__name__}'s {sorted(expected)}"
            )
        defaults = self.default_state_dict
        for key, value in state.items():
            if not isinstance(value, type(defaults[key])):
                raise CheckpointError(
                    f"search state {key!r} is a {type(value).__name__}, expected {type(defaults[key]).__name__}"
                )
        for key, value in state.items():
            setattr(self, key, value)

    def checkpoint_rank(self) -> int | None:
        """This process's rank when several processes search together (one checkpoint each); None if alone."""
        return None

    def fingerprint(self) -> dict[str, str]:
        """What identifies this search in a checkpoint: searcher, hparams, limits and seed (digests)."""
        parts = {
            "searcher": type(self).__qualname__,
            "hparams": {name: list(choices) for name, choices in self.space.hparams().items()},
            "limits": self.constraints_func.limits,
            "seed": self.config["seed"],
        }
        return {key: _digest(value) for key, value in parts.items()}

    def save_search_checkpoint(self) -> None:
        """Write the state and the random generator's state to the checkpoint (if configured; rank 0 alone)."""
        path = checkpoint_path(self.config["checkpoint"], self.checkpoint_rank())
        ranks = self.config["ranks"]
        if path is None or (ranks is not None and ranks.rank != 0):
            return
        data = {
            "format": _FORMAT,
            "fingerprint": self.fingerprint(),
            "state": self.state_dict(),
            "rng_state": self.rng.getstate(),
        }
        save_checkpoint(path, data)

    def load_search_checkpoint(self) -> bool:
        """Resume from the checkpoint if one exists; True if it was loaded.

        A corrupt checkpoint, or one written by a different search, raises `CheckpointError`;
        with `strict_checkpoint=False` it is ignored with a warning and the search starts afresh.
        With `ranks`, rank 0 reads the file and every rank loads what it read, whatever the number
        of ranks that wrote it.
        """
        path = checkpoint_path(self.config["checkpoint"], self.checkpoint_rank())
        if path is None:
            return False
        try:
            data = self._read_checkpoint(path)
            if data is None:
                return False
            self._check_checkpoint(path, data)
            rng = random.Random()
            rng.setstate(data["rng_state"])
            self.load_state_dict(data["state"])
        except (CheckpointError, TypeError, ValueError) as error:
            if not isinstance(error, CheckpointError):
                error = CheckpointError(f"search checkpoint {path} is malformed: {error}")
            if self.config["strict_checkpoint"]:
                raise error from None
            warnings.warn(f"ignoring search checkpoint {path} and starting afresh: {error}", stacklevel=3)
            return False
        self.rng = rng
        return True

    def _read_checkpoint(self, path: Any) -> dict[str, Any] | None:
        """The checkpoint's data (None if there is none), read by rank 0 alone and shared with every rank."""
        ranks = self.config["ranks"]
        if ranks is None or ranks.size == 1:
            return load_checkpoint(path)
        read: tuple[dict[str, Any] | None, str | None] = (None, None)
        if ranks.rank == 0:
            try:
                read = (load_checkpoint(path), None)
            except CheckpointError as error:
                read = (None, str(error))
        data, message = share_from_first(ranks, read)
        if message is not None:
            raise CheckpointError(message)
        return data

    def _check_checkpoint(self, path: Any, data: dict[str, Any]) -> None:
        if data.get("format") != _FORMAT:
            raise CheckpointError(f"{path} is not an autonas-search checkpoint (format {data.get('format')!r})")
        if not isinstance(data.get("state"), dict) or "rng_state" not in data:
            raise CheckpointError(f"search checkpoint {path} lacks its state")
        saved = data.get("fingerprint")
        current = self.fingerprint()
        if not isinstance(saved, dict):
            raise CheckpointError(f"search checkpoint {path} lacks its fingerprint")
        differing = [key for key in current if saved.get(key) != current[key]]
        if differing:
            raise CheckpointError(
                f"search checkpoint {path} was written by a different search: its {', '.join(differing)} "
                "differ from this one's. Use another checkpoint path, or delete the file to start afresh."
            )


def _digest(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
