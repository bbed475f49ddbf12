"""A small NAS-like problem for the tests: a chain of layers with widths and kernel sizes.

FLOPs add up per layer (input width x output width x kernel area); the score saturates with the
widths. Module-level functions, so that worker processes can evaluate them.
"""

from __future__ import annotations

import math
from typing import Any

NUM_LAYERS = 6
CHOICES: dict[str, list[Any]] = {f"layer{i}.width": [8, 16, 24, 32] for i in range(NUM_LAYERS)}
CHOICES["layer1.kernel"] = [(3, 3), (5, 5)]  # tuples must survive checkpoints as tuples
CHOICES["layer4.kernel"] = [(1, 1), (3, 3), (5, 5)]
CHOICES["act"] = ["relu"]  # fixed: part of the config, not searched
SENSITIVITY = [1.5, 0.4, 1.1, 0.7, 1.3, 0.9]


def kernel_area(config: dict[str, Any], layer: int) -> int:
    kernel = config.get(f"layer{layer}.kernel", (3, 3))
    return kernel[0] * kernel[1]


def flops(config: dict[str, Any]) -> int:
    total, width_in = 0, 3
    for i in range(NUM_LAYERS):
        width = config[f"layer{i}.width"]
        total += width_in * width * kernel_area(config, i) * 16
        width_in = width
    return total


def params(config: dict[str, Any]) -> int:
    total, width_in = 0, 3
    for i in range(NUM_LAYERS):
        width = config[f"layer{i}.width"]
        total += width_in * width * kernel_area(config, i) + width
        width_in = width
    return total


def score(config: dict[str, Any]) -> float:
    raw = sum(s * math.log(config[f"layer{i}.width"]) for i, s in enumerate(SENSITIVITY))
    raw += 0.3 * math.log(kernel_area(config, 1)) + 0.2 * math.log(kernel_area(config, 4))
    return 100 * (1 - math.exp(-raw / 10))


MAX_FLOPS = flops({name: values[-1] for name, values in CHOICES.items()})


class CountingScore:
    """The score, counting calls and the configs it saw (configurable part)."""

    def __init__(self) -> None:
        self.calls = 0
        self.seen: list[dict[str, Any]] = []

    def __call__(self, config: dict[str, Any]) -> float:
        self.calls += 1
        self.seen.append(dict(config))
        return score(config)


class FailingScore:
    """The score, raising at its `fail_at`-th call (a search killed part-way)."""

    def __init__(self, fail_at: int) -> None:
        self.fail_at = fail_at
        self.calls = 0

    def __call__(self, config: dict[str, Any]) -> float:
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("killed")
        return score(config)
