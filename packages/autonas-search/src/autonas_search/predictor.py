"""`ScorePredictor`: a cheap model of the score over the encoded config, to screen children before scoring."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .hashing import frozen

__all__ = ["ScorePredictor"]


class ScorePredictor:
    """Ridge regression of the score on the one-hot encoded choices (an additive model).

    `score(config) ~ bias + sum over hparams of weight[hparam][index of its value]`. In
    architecture search the accuracy grows with each layer's width and kernel in a nearly
    additive way, so a few dozen scored candidates already rank new ones better than chance;
    the predictor only needs to order children, not to be right about their scores.

    The fit is a fixed number of backfitting sweeps (block coordinate descent, one hparam at a
    time) from zero weights: pure Python, O(sweeps x samples x hparams), and a deterministic
    function of the data, so a resumed search predicts exactly what an uninterrupted one did.

    Args:
        choices: hparam name -> its choices (the searcher's configurable hparams).
        ridge: the penalty on each weight, in units of samples (a value seen once is shrunk by half).
        sweeps: backfitting sweeps per fit.
    """

    def __init__(self, choices: Mapping[str, Sequence[Any]], ridge: float = 1.0, sweeps: int = 4) -> None:
        self._names = list(choices)
        self._index = [{frozen(value): i for i, value in enumerate(values)} for values in choices.values()]
        self._ridge = ridge
        self._sweeps = sweeps
        self._bias = 0.0
        self._weights = [[0.0] * len(values) for values in choices.values()]

    def encode(self, config: Mapping[str, Any]) -> list[int]:
        """The index of each hparam's value among its choices.

        Raises:
            ValueError: a value is not one of its hparam's choices.
        """
        try:
            return [index[config[name]] for name, index in zip(self._names, self._index, strict=True)]
        except (KeyError, TypeError):  # an unhashable value (a kernel size read back as a list), or a bad one
            pass
        encoded = []
        for name, index in zip(self._names, self._index, strict=True):
            value = frozen(config[name])
            if value not in index:
                raise ValueError(f"{config[name]!r} is not a choice of {name!r}; allowed: {list(index)}")
            encoded.append(index[value])
        return encoded

    def fit(self, configs: Sequence[Mapping[str, Any]], scores: Sequence[float]) -> None:
        """Fit the weights to `scores` of `configs` (at least one)."""
        if not configs or len(configs) != len(scores):
            raise ValueError(f"fit needs one score per config and at least one; got {len(configs)} and {len(scores)}")
        rows = [self.encode(config) for config in configs]
        # groups[column][value]: the rows whose hparam `column` takes its choice `value`
        groups: list[list[list[int]]] = [[[] for _ in weights] for weights in self._weights]
        for i, row in enumerate(rows):
            for column, value in enumerate(row):
                groups[column][value].append(i)
        self._bias = sum(scores) / len(scores)
        residuals = [score - self._bias for score in scores]
        weights = self._weights = [[0.0] * len(w) for w in self._weights]
        ridge = self._ridge
        for _ in range(self._sweeps):
            for column, old in enumerate(weights):
                new = []
                for value, members in enumerate(groups[column]):
                    weight = (sum([residuals[i] for i in members]) + len(members) * old[value]) / (len(members) + ridge)
                    change = old[value] - weight
                    for i in members:
                        residuals[i] += change
                    new.append(weight)
                weights[column] = new

    def predict(self, config: Mapping[str, Any]) -> float:
        """The predicted score of `config`."""
        return self._bias + sum([w[i] for w, i in zip(self._weights, self.encode(config), strict=True)])
