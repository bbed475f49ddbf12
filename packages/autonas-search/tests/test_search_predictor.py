"""ScorePredictor: ridge regression over one-hot encoded choices, the screen of adaptive evolution."""

from __future__ import annotations

import random
from typing import Any

import pytest

from autonas_search import ScorePredictor

CHOICES: dict[str, list[Any]] = {f"w{i}": [1, 2, 3, 4] for i in range(10)}
CHOICES["kernel"] = [(3, 3), (5, 5), (7, 7)]
_RNG = random.Random(0)
EFFECT = {name: [_RNG.uniform(-1, 1) for _ in values] for name, values in CHOICES.items()}


def additive(config: dict[str, Any]) -> float:
    return sum(EFFECT[name][CHOICES[name].index(config[name])] for name in CHOICES)


def draw(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{name: rng.choice(values) for name, values in CHOICES.items()} for _ in range(count)]


def ranks(values: list[float]) -> list[int]:
    order = sorted(range(len(values)), key=values.__getitem__)
    result = [0] * len(values)
    for rank, index in enumerate(order):
        result[index] = rank
    return result


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    return 1 - 6 * sum((x - y) ** 2 for x, y in zip(ra, rb, strict=True)) / (n * (n * n - 1))


def test_an_additive_score_is_learned_from_few_samples_and_ranks_unseen_configs() -> None:
    train, test = draw(60, seed=0), draw(300, seed=1)
    predictor = ScorePredictor(CHOICES)
    predictor.fit(train, [additive(c) for c in train])
    predicted, true = [predictor.predict(c) for c in test], [additive(c) for c in test]
    assert spearman(predicted, true) > 0.95
    # without shrinkage the fit is exact: the model holds the true function
    exact = ScorePredictor(CHOICES, ridge=1e-9, sweeps=50)
    exact.fit(train, [additive(c) for c in train])
    assert max(abs(exact.predict(c) - additive(c)) for c in test) < 1e-3


def test_a_noisy_score_still_ranks_better_than_chance() -> None:
    rng = random.Random(2)
    train, test = draw(40, seed=3), draw(300, seed=4)
    predictor = ScorePredictor(CHOICES)
    predictor.fit(train, [additive(c) + rng.gauss(0, 1.0) for c in train])
    assert spearman([predictor.predict(c) for c in test], [additive(c) for c in test]) > 0.6


def test_the_fit_depends_only_on_the_data() -> None:
    first, second = draw(30, seed=5), draw(30, seed=6)
    fresh = ScorePredictor(CHOICES)
    fresh.fit(second, [additive(c) for c in second])
    refitted = ScorePredictor(CHOICES)
    refitted.fit(first, [1.0] * len(first))
    refitted.fit(second, [additive(c) for c in second])  # no trace of the first fit
    assert [refitted.predict(c) for c in first] == [fresh.predict(c) for c in first]


def test_json_round_trips_of_values_encode_alike() -> None:
    config = draw(1, seed=7)[0]
    predictor = ScorePredictor(CHOICES)
    predictor.fit(draw(20, seed=8), list(range(20)))
    as_lists = {**config, "kernel": list(config["kernel"])}
    assert predictor.encode(as_lists) == predictor.encode(config)
    assert predictor.predict(as_lists) == predictor.predict(config)


def test_bad_input_is_named() -> None:
    predictor = ScorePredictor(CHOICES)
    with pytest.raises(ValueError, match=r"9 is not a choice of 'w0'; allowed: \[1, 2, 3, 4\]"):
        predictor.encode({**draw(1, seed=9)[0], "w0": 9})
    with pytest.raises(ValueError, match="one score per config and at least one; got 0 and 0"):
        predictor.fit([], [])
    with pytest.raises(ValueError, match="got 2 and 1"):
        predictor.fit(draw(2, seed=10), [1.0])
